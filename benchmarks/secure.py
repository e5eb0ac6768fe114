"""What secure mode costs: plaintext vs CURVE, side by side in one interleaved run.

1. Joint steps/s of ``agentd launch`` (n = 5, K = 1, ``dac`` on ``random-mdp``, loopback),
   plaintext vs ``--secure`` (CURVE on every socket, ZAP, the key check on every message).
2. Peer-message throughput through the real transport (encode, guard, log off, CURVE box)
   between two processes: an agent's DEALER sending ``pr_values`` bodies of several sizes to a
   neighbour's ROUTER as fast as it can, the receiver decoding and guarding every message;
   messages/s and MB/s of payload, from the first to the last message received.

Variants are interleaved over repeats so machine noise hits them alike; medians are shown
with the secure/plaintext ratio.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from throughput import run_launch

from agentd.runtime.keys import load_keys, new_keys
from agentd.runtime.transport import Transport
from protocols import Guard

DEADLINE_S = 120                         # per transfer: a lost message fails, never hangs
SIZES = (10, 100, 1_750, 16_000)        # float64 values per message: ~0.2, 1, 14, 128 kB


def body(values: int) -> dict:
    rows = max(1, values // 2)
    return {"qid": 1, "states": np.arange(min(rows, 1 << 16), dtype=np.int64),
            "values": np.random.default_rng(0).random((rows, 2))}


def _receiver(keydir: str | None, count: int, ready, out, warm, done, t0) -> None:
    keys = load_keys(keydir, "agent-0") if keydir else None
    t = Transport(0, Guard(0, {1}, {"pr_values"}), None, keys)
    link = t.bind_router("tcp://127.0.0.1:*", "peer")
    ready.send(link.endpoint)
    got, last = 0, 0.0
    deadline = time.monotonic() + DEADLINE_S
    while got < count and time.monotonic() < deadline:
        for lk in t.poll(1000):
            got += len(t.recv_all(lk))
            last = time.perf_counter()
            if got:
                warm.set()             # the link is up: the sender starts the clock
    done.set()                         # the sender may close its socket now
    rejected = sum(t.stats["peer"].rejected.values())
    rate = (count - 1) / (last - t0.value) if got >= count else None
    out.send((rate, got, rejected))
    t.close()


def _sender(keydir: str | None, endpoint: str, values: int, count: int, warm, done, t0
            ) -> None:
    keys = load_keys(keydir, "agent-1") if keydir else None
    t = Transport(1, Guard(1, {0}, {"pr_values"}), None, keys)
    link = t.connect_dealer(endpoint, "peer", 0, b"a1")
    msg = body(values)
    t.send(link, "pr_values", 0, msg, 0)        # one message through the handshake, untimed
    warm.wait(DEADLINE_S)
    t0.value = time.perf_counter()            # CLOCK_MONOTONIC: the receiver's clock too
    for step in range(1, count):
        t.send(link, "pr_values", 0, msg, step)
    done.wait(DEADLINE_S)   # closing earlier would discard what is still queued
    t.close()


def peer_rate(keydir: str | None, values: int, count: int) -> float:
    """Messages/s from one agent to a neighbour, each through the whole transport: from the
    sender's first timed send to the receiver's last receipt (one clock on one machine)."""
    ctx = multiprocessing.get_context("spawn")
    ready_r, ready_w = ctx.Pipe(False)
    out_r, out_w = ctx.Pipe(False)
    warm, done, t0 = ctx.Event(), ctx.Event(), ctx.Value("d", 0.0)
    recv = ctx.Process(target=_receiver, args=(keydir, count, ready_w, out_w, warm, done, t0))
    recv.start()
    endpoint = ready_r.recv()
    send = ctx.Process(target=_sender, args=(keydir, endpoint, values, count, warm, done, t0))
    send.start()
    try:
        if not out_r.poll(DEADLINE_S + 30):
            raise RuntimeError("the receiver did not report")
        rate, got, rejected = out_r.recv()
        if rate is None:
            raise RuntimeError(f"only {got} of {count} messages of {values} values arrived "
                               f"within {DEADLINE_S} s ({rejected} rejected)")
        return rate
    finally:
        for proc in (send, recv):
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join()


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=4000, help="joint steps per launch")
    p.add_argument("--quick", action="store_true", help="1 repeat, fewer steps and messages")
    args = p.parse_args()
    repeats, steps = (1, 1500) if args.quick else (args.repeats, args.steps)
    with tempfile.TemporaryDirectory(prefix="agentd-bench-keys-") as tmp:
        keydir = str(Path(tmp) / "keys")
        new_keys(keydir, 2)
        launch: dict[str, list[float]] = {"plaintext": [], "secure": []}
        peer: dict[tuple[int, str], list[float]] = {}
        for r in range(repeats):
            for mode in ("plaintext", "secure"):
                extra = ("--secure",) if mode == "secure" else ()
                s = run_launch(5, 1, steps, 600, extra=extra)
                assert s["secure"] is (mode == "secure")
                launch[mode].append(s["steps_per_s"])
            for values in SIZES:
                count = max(200, (20_000 if not args.quick else 5_000) // (1 + values // 500))
                for mode, kd in (("plaintext", None), ("secure", keydir)):
                    peer.setdefault((values, mode), []).append(peer_rate(kd, values, count))
            print(f"repeat {r + 1}/{repeats} done", file=sys.stderr, flush=True)
    plain, secure = median(launch["plaintext"]), median(launch["secure"])
    print(f"agentd launch --n 5 (dac, random-mdp, K = 1, loopback), medians of {repeats}:")
    print(f"  plaintext {plain:8.0f} joint steps/s")
    print(f"  secure    {secure:8.0f} joint steps/s   secure/plaintext {secure / plain:.2f}")
    print("\npeer messages (pr_values) agent 1 -> agent 0 through the transport, two processes:")
    print(f"  {'payload':>10} | {'plain msg/s':>11} {'MB/s':>7} | {'CURVE msg/s':>11} "
          f"{'MB/s':>7} | ratio")
    for values in SIZES:
        nbytes = len(np.zeros((max(1, values // 2), 2)).tobytes()) + 8 * max(1, values // 2)
        a, b = median(peer[values, "plaintext"]), median(peer[values, "secure"])
        print(f"  {nbytes:>8} B | {a:11,.0f} {a * nbytes / 1e6:7.1f} | {b:11,.0f} "
              f"{b * nbytes / 1e6:7.1f} | {b / a:5.2f}")


if __name__ == "__main__":
    main()
