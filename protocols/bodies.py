"""The nested schemas of control-plane bodies, and the names a process may ship.

The coordinator's handlers index what these declare without looking again: a ``bye``'s stats
go into summary.json as they are (so they must be JSON, with the counters the summary adds up
being non-negative ints), a ``security`` report is a map of plane -> reason -> count, a
``files`` manifest lists at most ``MAX_MANIFEST`` entries of (path, size, SHA-256).
"""

from __future__ import annotations

import re

from protocols.schema import (
    Bool,
    DictOf,
    Int,
    Json,
    ListOf,
    Num,
    Obj,
    OneOf,
    Opt,
    Str,
    Tup,
)

PLANE_NAMES = ("control", "env", "peer")
# process ids: agents 0..N-1, coordinator -1, env server -2, not yet admitted -3 (int32, as
# in the fixed layout's header)
PROC_ID = Int(-3, (1 << 31) - 1)
OS_PID = Int(0, (1 << 31) - 1)
HOST = Str(255)
ENDPOINT = Str(1024, pattern=r"[a-z][a-z0-9+.-]{0,15}://[^\x00-\x20\x7f]{1,1000}")
TEXT = Str(1 << 20)
PATH = Str(4096)
SHA256 = Str(64, pattern=r"[0-9a-f]{64}")
FILES_MODE = Str(16, choices=("shared", "ship"))
COUNT = Int(0)
COUNTS = DictOf(Str(128), COUNT, 256)
PLANE = Str(16, choices=PLANE_NAMES)
CAPS = DictOf(Str(64), Json(max_depth=4, max_len=256), 64)

SPACE = Obj({"type": Str(32)}, extra=Json(max_depth=4, max_len=1 << 16, arrays=True),
            max_extra=16)
SPACES = Obj({"obs": ListOf(SPACE, 1 << 16), "act": ListOf(SPACE, 1 << 16)},
             extra=Json(max_depth=6, max_len=1 << 16, arrays=True), max_extra=16)
LOCAL_OFFER = DictOf(Str(64), Json(max_depth=2, max_len=64), 16)
SCALARS = DictOf(Str(128), OneOf((Num(finite=False), Bool())), 512)

HANDSHAKE_COUNTS = DictOf(PLANE, COUNTS, len(PLANE_NAMES))
HANDSHAKE_PEERS = ListOf(Tup((Str(512), COUNT)), 64)

_FREE = Json(max_depth=6, max_len=1 << 16)
PLANE_STATS = Obj({"msgs_sent": COUNT, "msgs_recv": COUNT, "bytes_sent": COUNT,
                   "bytes_recv": COUNT, "rejected": COUNTS, "refused_out": COUNTS,
                   "handshakes_failed": COUNTS},
                  optional=frozenset({"msgs_sent", "msgs_recv", "bytes_sent", "bytes_recv",
                                      "rejected", "refused_out", "handshakes_failed"}),
                  extra=_FREE, max_extra=32)
DP_EDGE = Obj({"releases": COUNT, "epsilon": Num(finite=False)}, extra=_FREE, max_extra=8)
DP_REPORT = Obj({"edges": DictOf(Str(11, pattern=r"-?[0-9]{1,10}"), DP_EDGE, 1 << 16),
                 "releases": COUNT, "epsilon": Num(finite=False), "delta": Num(),
                 "accountant": Str(64), "exact_fields": COUNTS, "sigma": _FREE, "clip": _FREE},
                optional=frozenset({"exact_fields"}), extra=_FREE, max_extra=16)
_STATS_KNOWN = {"files": FILES_MODE, "planes": DictOf(PLANE, PLANE_STATS, len(PLANE_NAMES)),
                "rejected": COUNTS, "handshakes_failed": COUNTS, "handshake_peers": COUNTS,
                "msgs_sent": COUNT, "msgs_recv": COUNT, "bytes_sent": COUNT,
                "bytes_recv": COUNT, "steps": COUNT, "steps_per_s": Num(finite=False),
                "peer_bytes_last_step": Num(), "dp": Opt(DP_REPORT)}
# What a process reports in its bye: the fields the summary adds up are typed, the rest is
# free-form JSON (bounded) that goes into summary.json as it came.
STATS = Obj(_STATS_KNOWN, optional=frozenset(_STATS_KNOWN), extra=_FREE, max_extra=128)

# -- admission: what a welcome tells an agent or the env server (``info``) --------------
_AGENT = Int(0, (1 << 31) - 1)
_CONTROLS = ListOf(_AGENT, 1 << 16)
_WELCOME_KNOWN = {
    "config": Json(max_depth=8, max_len=1 << 16), "run_dir": PATH, "run_id": Str(256),
    "n_procs": Int(0, (1 << 31) - 1), "rejoin": COUNT,
    # an agent's
    "seed": Int(), "neighbours": DictOf(_AGENT, Opt(ENDPOINT), 1 << 16),
    "weights": DictOf(_AGENT, Num(), 1 << 16), "env_endpoint": Opt(ENDPOINT),
    "controls": _CONTROLS, "view": _CONTROLS,
    "graph_edges": ListOf(Tup((_AGENT, _AGENT)), 1 << 24), "spaces": Opt(SPACES),
    "env_local": Opt(LOCAL_OFFER),
    "takes_turns": Bool(),   # the plan's: a turn schedule follows the welcome
    # the env server's
    "seeds": DictOf(Str(64), Int(), 16), "controllers": DictOf(_AGENT, _CONTROLS, 1 << 16),
    "views": DictOf(_AGENT, _CONTROLS, 1 << 16)}
WELCOME_INFO = Obj(_WELCOME_KNOWN, optional=frozenset(_WELCOME_KNOWN) - {
    "config", "run_dir", "run_id", "n_procs"}, extra=_FREE, max_extra=8)

# -- the run-directory transfer ------------------------------------------------------------
MAX_MANIFEST = 4096      # entries a 'files' message may list (the collector caps lower)
RUN_PATH = Str(255)
MANIFEST = ListOf(Tup((RUN_PATH, Int(0), SHA256)), MAX_MANIFEST)
MAX_FILES = MAX_MANIFEST
# A process name as used in file names: agent-<i> or envserver.
_NAME = r"agent-[0-9]{1,9}|envserver"
_SHIPPED = (r"logs/(?:{n})\.(?:log|out)", r"checkpoints/(?:{n})\.npz",
            r"checkpoints/(?:{n})/[a-z]{{1,16}}-[0-9]{{1,19}}\.[a-z0-9]{{1,8}}")
SHIPPED_FILE = re.compile("|".join(p.format(n=_NAME) for p in _SHIPPED))


def is_shipped_file(path: str, name: str) -> bool:
    """Is ``path`` (relative, POSIX) a file the process ``name`` may ship into the run
    directory: its message log or output (logs/<name>.log|.out), its final checkpoint
    (checkpoints/<name>.npz) or one of its step / recovery checkpoints
    (checkpoints/<name>/<word>-<number>.<ext>)? Nothing else, no other process's file, no
    name with another character in it: the rule is applied on both ends."""
    return len(path) <= 255 and SHIPPED_FILE.fullmatch(path) is not None and (
        path.startswith((f"logs/{name}.", f"checkpoints/{name}.", f"checkpoints/{name}/")))
