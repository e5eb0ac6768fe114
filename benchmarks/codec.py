"""Per-message cost of the two hot kinds, and of a peer and a control kind, as the pipeline
pays it: send (the guard's outgoing check, then the encode) and receive (the guard's whole
incoming path: header, routing checks, body, schema); with ``--baseline REV`` next to the
agentd of commit REV in the same run.

For a ``step`` reply and an ``act`` of the n = 5, K = 1 shapes of ``throughput.py``, a
``consensus`` (128 values) and a ``bye`` (a real summary's stats): medians over interleaved
repeats, in microseconds, and the frame sizes. With ``--baseline``, each repeat runs this
script once in a subprocess on REV's tree (``git archive``, as ``throughput.py`` does) and once
on this checkout's, alternately.

    python benchmarks/codec.py [--repeats 5] [--n 20000] [--baseline REV]
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

STEP = {"t": 5, "obs": np.zeros((1, 1), np.int64), "final_obs": np.zeros((1, 1), np.int64),
        "reward": np.zeros((1, 1)), "terminated": np.zeros(1, bool),
        "truncated": np.zeros(1, bool), "last": False}
ACT = {"t": 5, "a": np.zeros((1, 1), np.int64)}
CONSENSUS = {"t": 5, "r": 0, "idx": np.arange(128, dtype=np.int32),
             "x": np.linspace(-1, 1, 128)}
_PLANE = {"msgs_sent": 4000, "msgs_recv": 4000, "bytes_sent": 400000, "bytes_recv": 500000,
          "rejected": {}, "refused_out": {}, "handshakes_failed": {}, "catch_all": 0}
BYE = {"stats": {"planes": {p: dict(_PLANE) for p in ("control", "env", "peer")},
                 "rejected": {}, "handshakes_failed": {}, "handshake_peers": {},
                 "msgs_sent": 12000, "msgs_recv": 12000, "bytes_sent": 1200000,
                 "bytes_recv": 1500000, "steps": 4000, "steps_per_s": 812.5,
                 "peer_bytes_last_step": 0.0, "dp": None, "cpu_s": 4.2, "rss_mb": 45.1,
                 "pid": 1234, "host": "vm", "secure": False, "insecure": False}}


def per_call(fn, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def cases() -> dict[str, dict]:
    """kind -> {"send": fn, "receive": fn, "bytes": int}, with this tree's API."""
    from protocols import COORDINATOR, ENVSERVER, Codec, Guard, encode

    checked = "check" in inspect.signature(encode).parameters    # the codec checks act/step
    codec = Codec()
    out = {}
    for kind, body, src, dst, plane in (("step", STEP, ENVSERVER, 0, "env"),
                                        ("act", ACT, 0, ENVSERVER, "env"),
                                        ("consensus", CONSENSUS, 1, 0, "peer"),
                                        ("bye", BYE, 0, COORDINATOR, "control")):
        sender = Guard(src, [dst], ["consensus"])
        receiver = Guard(dst, [src], ["consensus"])
        frame = encode(codec, kind, src, dst, 5, 1, body)
        if checked:
            def send(k=kind, b=body, s=src, d=dst, p=plane, g=sender):
                g.outgoing(k, d, b, p, encoded_checked=True)
                return encode(codec, k, s, d, 5, 1, b, check=True)
        else:
            def send(k=kind, b=body, s=src, d=dst, p=plane, g=sender):
                g.outgoing(k, d, b, p)
                return encode(codec, k, s, d, 5, 1, b)
        ident = b"a1" if plane == "peer" else None
        out[kind] = {"send": send, "bytes": len(frame),
                     "receive": lambda f=frame, g=receiver, p=plane, i=ident: g.incoming(
                         [f], p, i)}
        out[kind]["receive"]()        # it must be accepted
    return out


def measure(repeats: int, n: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {}
    fns = cases()
    for _ in range(repeats):
        for kind, c in fns.items():
            for side in ("send", "receive"):
                calls = n if kind != "bye" else max(1, n // 10)
                samples.setdefault(f"{kind} {side}", []).append(per_call(c[side], calls))
            samples[f"{kind} bytes"] = [c["bytes"]]
    return samples


def child(tree: Path | None, n: int) -> dict[str, list[float]]:
    """One repeat of ``measure`` in a subprocess on ``tree`` (None: this checkout)."""
    env = {**os.environ, "PYTHONPATH": str(tree)} if tree else None
    with tempfile.TemporaryDirectory() as cwd:    # not the checkout's root on sys.path
        out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child",
                              "--n", str(n)], env=env, cwd=cwd, capture_output=True, text=True,
                             check=True)
    return json.loads(out.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--n", type=int, default=20000, help="calls per measurement")
    parser.add_argument("--baseline", default=None, metavar="REV",
                        help="the commit to measure side by side (each repeat a subprocess)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(1, args.n)))
        return 0
    sides: dict[str, dict[str, list[float]]] = {"now": {}}
    with tempfile.TemporaryDirectory(prefix="agentd-before-") as tmp:
        before = None
        if args.baseline:
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            from throughput import export_tree
            before = export_tree(args.baseline, Path(tmp))
            sides["before"] = {}
        for _ in range(args.repeats):
            for name, tree in (("before", before), ("now", None)):
                if name in sides:
                    for key, vals in child(tree, args.n).items():
                        sides[name].setdefault(key, []).extend(vals)
    print(f"medians of {args.repeats} interleaved repeats, microseconds per message; send = "
          "the guard's outgoing check + encode, receive = the guard's incoming path")
    cols = [("now", "send"), ("now", "receive")] + ([("before", "send"), ("before", "receive")]
                                                    if "before" in sides else [])
    print(f"{'kind':>9} | " + " ".join(f"{s + ' ' + side:>14}" for s, side in cols)
          + " | bytes now" + (" before | send now/before  receive now/before"
                              if "before" in sides else ""))
    for kind in ("step", "act", "consensus", "bye"):
        med = {(s, side): statistics.median(sides[s][f"{kind} {side}"]) for s, side in cols}
        line = f"{kind:>9} | " + " ".join(f"{med[c]:>14.1f}" for c in cols)
        line += f" | {int(sides['now'][f'{kind} bytes'][0]):>9}"
        if "before" in sides:
            line += (f" {int(sides['before'][f'{kind} bytes'][0]):>6} | "
                     f"{med['now', 'send'] / med['before', 'send']:>15.2f} "
                     f"{med['now', 'receive'] / med['before', 'receive']:>19.2f}")
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
