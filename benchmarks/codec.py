"""Per-message cost of the two hot kinds in the fixed layout and in msgpack, side by side.

For a ``step`` reply and an ``act`` of the n = 5, K = 1 shapes of ``throughput.py``: encode,
and decode with the guard's checks, in both wire forms, interleaved over repeats; medians in
microseconds and the frame sizes.

    python benchmarks/codec.py [--repeats 5] [--n 20000]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from protocols import ENVSERVER, Codec, Guard, encode
from protocols.envelope import VERSION

STEP = {"t": 5, "obs": np.zeros((1, 1), np.int64), "final_obs": np.zeros((1, 1), np.int64),
        "reward": np.zeros((1, 1)), "terminated": np.zeros(1, bool),
        "truncated": np.zeros(1, bool), "last": False}
ACT = {"t": 5, "a": np.zeros((1, 1), np.int64)}


def msgpack_encode(codec: Codec, kind: str, src: int, dst: int, body: dict) -> bytes:
    """The general envelope (what every kind used before the fixed layouts)."""
    header = codec.pack({"v": VERSION, "k": kind, "s": src, "d": dst, "t": 5, "q": 1})
    return len(header).to_bytes(2, "little") + header + codec.pack(body)


def per_call(fn, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--n", type=int, default=20000, help="calls per measurement")
    args = parser.parse_args()
    codec, to_agent, to_env = Codec(), Guard(0), Guard(ENVSERVER)
    cases = {}
    for kind, body, src, dst, guard in (("step", STEP, ENVSERVER, 0, to_agent),
                                        ("act", ACT, 0, ENVSERVER, to_env)):
        fixed = encode(codec, kind, src, dst, 5, 1, body)
        packed = msgpack_encode(codec, kind, src, dst, body)
        cases[kind] = {
            "encode fixed": lambda k=kind, b=body, s=src, d=dst: encode(codec, k, s, d, 5, 1, b),
            "encode msgpack": lambda k=kind, b=body, s=src, d=dst: msgpack_encode(codec, k, s,
                                                                                  d, b),
            "decode fixed": lambda f=fixed, g=guard: g.incoming([f], "env"),
            "decode msgpack": lambda f=packed, g=guard: g.incoming([f], "env"),
            "bytes": (len(fixed), len(packed))}
    samples: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        for kind, fns in cases.items():
            for name, fn in fns.items():
                if name != "bytes":
                    samples.setdefault(f"{kind} {name}", []).append(per_call(fn, args.n))
    print(f"medians of {args.repeats} interleaved repeats, microseconds per message "
          "(decode includes the guard's checks)")
    print(f"{'kind':>4} | {'encode fixed':>12} {'msgpack':>8} | {'decode fixed':>12} "
          f"{'msgpack':>8} | {'bytes fixed':>11} {'msgpack':>8}")
    for kind, fns in cases.items():
        med = {name: statistics.median(samples[f"{kind} {name}"]) for name in fns
               if name != "bytes"}
        print(f"{kind:>4} | {med['encode fixed']:>12.1f} {med['encode msgpack']:>8.1f} | "
              f"{med['decode fixed']:>12.1f} {med['decode msgpack']:>8.1f} | "
              f"{fns['bytes'][0]:>11} {fns['bytes'][1]:>8}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
