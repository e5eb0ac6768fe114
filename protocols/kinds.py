"""The one registry of message kinds and their schemas.

Every message that crosses a socket has a registered kind. A kind belongs to one *plane*:
``control`` (coordinator <-> agents / env server), ``env`` (agent <-> env server) or ``peer``
(agent <-> neighbour agent). Only peer kinds may cross peer edges, and only those the running
algorithm declares. Registering a name twice is an import-time error.

Every kind is written to the message logs except the file transfer that assembles the run
directory at the end (``logged=False``): it carries the logs themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from protocols import bodies as B
from protocols.arrays import FLOATS, INTS, NUMERIC, Arr
from protocols.errors import DuplicateKind, UnknownKind
from protocols.schema import (
    Bool,
    Bytes,
    Field,
    Int,
    ListOf,
    Num,
    Opt,
    Str,
    Val,
)
from protocols.typed import compile_check

__all__ = ["FLOATS", "INTS", "NUMERIC", "PLANES", "REGISTRY", "UNITS", "Arr", "Kind", "Val",
           "lookup", "peer_kind", "peer_kinds", "register"]
PLANES = ("control", "env", "peer")
UNITS = ("row", "array")


@dataclass(frozen=True)
class Kind:
    """A registered message kind: its plane and the schema of its body."""

    name: str
    plane: str
    fields: Mapping[str, Field]
    optional: frozenset[str] = field(default_factory=frozenset)
    doc: str = ""
    logged: bool = True
    # Differential privacy (docs/privacy.md): the float arrays a DP run clips and noises, each with
    # its sensitivity unit ("row": each row, or each element of a 1-D array, is clipped on its
    # own; "array": the whole array is), and the fields that carry private data but are sent
    # as they are (integer indices: noise cannot apply), so reports can say what ε misses.
    released: Mapping[str, str] = field(default_factory=dict)
    exact: tuple[str, ...] = ()
    # maps, lists and arrays a body may decode to (None: one per 4 bytes of the frame); the
    # decoder stops past it, before a small frame becomes a great many Python objects
    max_objects: int | None = 4096
    # the body's check, compiled to a msgspec type when the kind is registered
    _check: Callable[[Any], None] | None = field(default=None, init=False, repr=False,
                                                  compare=False)

    def check_body(self, body: Any) -> None:
        """Refuse (SchemaMismatch) a body that is not exactly what the schema declares."""
        check = self._check
        if check is None:
            check = compile_check(self.name, self.fields, self.optional)
            object.__setattr__(self, "_check", check)
        check(body)


REGISTRY: dict[str, Kind] = {}


def register(kind: Kind) -> Kind:
    """Add a kind to the registry; a duplicate name is an error at import time."""
    if kind.name in REGISTRY:
        raise DuplicateKind(f"message kind '{kind.name}' is registered twice")
    if kind.plane not in PLANES:
        raise ValueError(f"kind '{kind.name}': plane must be one of {PLANES}")
    for name, unit in kind.released.items():
        spec = kind.fields.get(name)
        if unit not in UNITS or not isinstance(spec, Arr) or not spec.dtypes <= FLOATS:
            raise ValueError(f"kind '{kind.name}': released field '{name}' must be a float "
                             f"array with a unit in {UNITS}")
    object.__setattr__(kind, "_check", compile_check(kind.name, kind.fields, kind.optional))
    REGISTRY[kind.name] = kind
    return kind


def peer_kind(name: str, fields: Mapping[str, Field], *, doc: str,
              released: Mapping[str, str] | None = None, exact: tuple[str, ...] = (),
              optional: frozenset[str] = frozenset()) -> Kind:
    """Register a peer-plane kind: the public way for a learner (a plug-in's too) to add a
    message of its own, at import time of its module. The guard then checks it like any
    built-in kind; ``released`` / ``exact`` declare what a DP run clips and noises / sends as
    it is. Registering the identical definition again returns the one registered (a module
    imported twice); a different kind under a taken name is DuplicateKind."""
    kind = Kind(name, "peer", dict(fields), frozenset(optional), doc=doc,
                released=dict(released or {}), exact=tuple(exact))
    have = REGISTRY.get(name)
    if have is not None and have == kind:
        return have
    if have is not None:
        raise DuplicateKind(f"message kind '{name}' is already registered ({have.plane} plane: "
                            f"{have.doc[:60]!r}); give the new kind a name of its own")
    return register(kind)


def lookup(name: Any) -> Kind:
    kind = REGISTRY.get(name) if type(name) is str else None
    if kind is None:
        raise UnknownKind(f"unknown message kind {name!r:.80}")
    return kind


def peer_kinds() -> frozenset[str]:
    return frozenset(k.name for k in REGISTRY.values() if k.plane == "peer")


# Scalars every kind uses; the nested control-plane bodies are in protocols.bodies (B).
INT, STR, DICT = Int(), Str(), Val((dict,))
OPT_INT, OPT_STR = Opt(INT), Opt(STR)
FLOAT = Num()

# -- control plane: coordinator <-> agents and env server ----------------------------------
register(Kind("hello", "control", {"role": Str(32), "pid": B.OS_PID, "host": B.HOST,
                                   "endpoint": Opt(B.ENDPOINT), "want_id": Opt(B.PROC_ID),
                                   "caps": B.CAPS},
              doc="a process asks to join: role agent|envserver, its bound endpoint"))
register(Kind("welcome", "control", {"id": B.PROC_ID, "info": B.WELCOME_INFO},
              max_objects=None,
              doc="admission: id, neighbours and endpoints, row of W, config, seed"))
register(Kind("env_ready", "control", {"spaces": B.SPACES, "local": B.LOCAL_OFFER},
              frozenset(["local"]), max_objects=1 << 18,
              doc="env server -> coordinator: the env is built; its spaces for the welcomes "
                  "and where agents on its machine reach its local env plane"))
register(Kind("heartbeat", "control", {"epoch": Int(0, 1 << 20)}, frozenset(["epoch"]),
              doc="liveness, both ways; the coordinator's carry its epoch (how many times it "
                  "was resumed from its journal): a process that sees it change sends again "
                  "what the coordinator may have lost"))
register(Kind("metrics", "control", {"step": INT, "scalars": B.SCALARS},
              doc="agent -> coordinator: scalar diagnostics only (numbers or bools; NaN and "
                  "infinity allowed: a diverging learner's loss is worth seeing)"))
register(Kind("episodes", "control", {"step": INT, "returns": Arr(FLOATS, (1,), 1 << 16),
                                      "lengths": Arr(INTS, (1,), 1 << 16)},
              doc="env server -> coordinator: returns of the episodes that just ended"))
register(Kind("error", "control", {"message": B.TEXT, "files": B.FILES_MODE},
              frozenset(["files"]),
              doc="a process reports a fatal error (files: 'shared' or 'ship', see bye)"))
register(Kind("bye", "control", {"stats": B.STATS}, doc="a process finished; its final stats"))
register(Kind("ack", "control", {}, doc="coordinator confirms a bye: safe to close"))
register(Kind("tally", "control", {"stats": B.STATS},
              doc="agent -> coordinator after the ack: its transport counters (and DP account) "
                  "again, now with the messages it sent and received after its bye (answers to "
                  "neighbours still finishing their last step, e.g. deep-PR values)"))
register(Kind("turn", "control", {"order": ListOf(B.PROC_ID, 1 << 16), "turn_len": INT},
              doc="coordinator -> agents of an alternating learner (MA2QL): agent order[k] "
                  "learns in joint steps [k turn_len, (k+1) turn_len), round after round"))
register(Kind("stop", "control", {"reason": B.TEXT}, doc="coordinator ends the run"))
register(Kind("restarted", "control", {"agent": B.PROC_ID, "checkpoint": Opt(B.PATH),
                                       "sha256": Opt(B.SHA256), "step": INT, "env_step": INT,
                                       "resumed_step": INT, "lost": INT, "skipped": INT},
              optional=frozenset({"skipped"}),
              doc="a restarted agent resumed: the recovery checkpoint it restored (taken "
                  "after its own step 'step', env step 'env_step'), the env step it resumed "
                  "at, the transitions it lost, and (if any) how many newer checkpoints it "
                  "skipped as unusable"))
register(Kind("peer_moved", "control", {"id": B.PROC_ID, "endpoint": B.ENDPOINT},
              doc="coordinator: neighbour 'id' was restarted and listens at 'endpoint'"))
register(Kind("env_restarted", "control", {"step": INT, "truncated": Int(0, 1 << 16),
                                           "reset_seed": INT},
              doc="a restarted env server resumed at 'step'; the episodes in flight in its "
                  "'truncated' env copies were cut there"))
register(Kind("env_moved", "control", {"endpoint": B.ENDPOINT},
              doc="coordinator: the env server was restarted and listens at 'endpoint'"))
register(Kind("security", "control", {"counts": B.HANDSHAKE_COUNTS, "peers": B.HANDSHAKE_PEERS},
              doc="failed handshakes so far, by plane and reason, and the peers they came from"))
# The run directory, assembled on the coordinator's host at the end (pulled by the coordinator
# in checksummed chunks from each process that wrote its files on another disk).
register(Kind("files", "control", {"files": B.MANIFEST}, logged=False,
              max_objects=B.MAX_MANIFEST + 16,
              doc="a process's files to ship: [[relative path, size, sha256 hex], ...]"))
register(Kind("file_get", "control", {"path": B.RUN_PATH, "offset": Int(0),
                                      "length": Int(0, 1 << 24)}, logged=False,
              doc="coordinator asks for one chunk of a file"))
register(Kind("file_chunk", "control", {"path": B.RUN_PATH, "offset": Int(0),
                                        "data": Bytes(1 << 24), "crc32": Int(0, (1 << 32) - 1)},
              logged=False, doc="one chunk of a file and its CRC-32"))
register(Kind("files_done", "control", {"received": ListOf(B.RUN_PATH, B.MAX_FILES),
                                        "failed": ListOf(B.RUN_PATH, B.MAX_FILES)},
              logged=False, doc="coordinator: which files arrived whole (and which did not)"))

# -- env plane: agent <-> environment server -----------------------------------------------
register(Kind("join", "env", {"t": INT, "token": Str(256)}, frozenset(["t", "token"]),
              doc="agent is ready for the first observation (or, rejoining, for the current "
                  "one; t: the last step it was sent, for a restarted env server; token: the "
                  "one its local env plane connection opened with)"))
register(Kind("act", "env", {"t": INT, "a": Arr(NUMERIC, (2, 3, 4, 5))},
              doc="actions for step t: (K, m, *act_shape)"))
register(Kind("step", "env", {"t": INT, "obs": Arr(), "final_obs": Arr(),
                              "reward": Arr(FLOATS, (2,)), "terminated": Arr(frozenset(["bool"]), (1,)),
                              "truncated": Arr(frozenset(["bool"]), (1,)), "last": Bool(),
                              "restart": Bool()}, frozenset(["restart"]),
              doc="env reply: obs to act on, s' of the transition, reward (K, m), flags"))

# -- peer plane: the only kinds that may cross edges between agents -------------------------
register(Kind("consensus", "peer", {"t": INT, "r": INT, "idx": Arr(INTS, (1,)),
                                    "x": Arr(FLOATS, (1,))},
              doc="importance log-ratio consensus estimates x for buffer entries idx "
                  "(empty idx: the first len(x) entries), step t, gossip round r",
              released={"x": "row"}))
register(Kind("consensus_sum", "peer", {"t": INT, "r": INT, "idx": Arr(INTS, (1,)),
                                        "s": Arr(FLOATS, (1,)), "w": Num(ints=False)},
              doc="log-ratio consensus by running sums: the sender's cumulative shares s "
                  "pushed to the receiver for buffer entries idx (empty: the first len(s)), "
                  "and the weight W_ij(t) it used, step t, round r; no DP release declared "
                  "(noise on cumulative sums would break the mass they conserve), so a DP run "
                  "that would send it refuses to start"))
register(Kind("pr_query", "peer", {"qid": INT, "states": Arr(NUMERIC, (1, 2))},
              doc="policy reciprocity: a batch of states to evaluate", exact=("states",)))
register(Kind("pr_values", "peer", {"qid": INT, "states": Arr(INTS, (1,), 1 << 16),
                                    "values": Arr(FLOATS, (1, 2), 1 << 20)},
              doc="policy reciprocity: a neighbour's values (rows) at the given states",
              released={"values": "row"}, exact=("states",)))
register(Kind("latent", "peer", {"t": INT, "z": Arr(FLOATS, (1, 2), 1 << 16)},
              doc="MDPO: the sender's predicted latent z for its observation at step t, one "
                  "row per env copy; exact shape and dtype declared at admission",
              released={"z": "row"}))
register(Kind("policy_params", "peer", {"episode": INT, "logits": Arr(FLOATS, (2,), 64)},
              doc="NON-PRIVATE, opponent-shaping learners with opponent=shared only: the "
                  "policy logits an agent played in an episode (published full-information "
                  "LOLA / Meta-MAPG)", released={"logits": "array"}))
register(Kind("happo_factor", "peer", {"it": INT, "factor": Arr(FLOATS, (1,), 1 << 22)},
              doc="NON-PRIVATE, happo only: the compound importance factor M * pi_new/pi_old "
                  "of iteration it over the sender's batch, to the next agent of that "
                  "iteration's random order; exact shape (rollout x K,) declared at admission; "
                  "no DP release declared (a noised factor is no longer a ratio), so a DP run "
                  "of happo refuses to start"))
