"""The fuzzer: hostile frames against every receiver's guard and against the coordinator's
guard and control handlers (a real Coordinator of an admitted run, bound on loopback, fed as
its loop would feed it, during the run and in the end-of-run transfer phase). It reports
crashes (any exception but a named refusal or the run's orderly end), hangs (a case over
``--hang`` seconds), the slowest case, the pace and the peak memory.

    .venv/bin/python fuzz/run.py --cases 1000000 --seed 1 --report fuzz/report.json

Cases: byte mutations of real frames (flips, interesting bytes, inserts, cuts, repeats,
splices, 8-byte integers), structured ones (a decoded frame with one value anywhere replaced,
dropped or added: NaN, huge ints, bools, NUL bytes, odd keys, bad arrays), and bodies drawn from
each kind's schema with one value spoiled. The corpus is the frames in the message logs of
real runs: ``--corpus RUN_DIR ...``, or two small runs made on loopback first. Crashes are
saved as reproducers under ``--out`` (frame bytes and what was fed where). ``--live N`` then
sends N hostile frames over real sockets to a running run (``fuzz/live.py``): the env server's
and the agents' handler paths behind their guards, black-box.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

from gen import Mutator, retarget
from hostile import AGENT_IDS, ENV_ID, CoordinatorUnderAttack, receiver_guards
from live import attack

from agentd.runtime.msglog import open_log
from protocols import COORDINATOR, ProtocolError, peer_identity
from protocols.kinds import REGISTRY

CORPUS_RUNS = (["--n", "3", "--steps", "200", "--episode-len", "20"],
               ["--algo", "pr", "--env", "digital", "--n", "4", "--steps", "150",
                "--episode-len", "30", "--env-plane", "zmq"])


class Hang(Exception):
    """A case that ran past the hang limit."""


def make_corpus(where: Path) -> list[Path]:
    runs = []
    for i, args in enumerate(CORPUS_RUNS):
        run = where / f"corpus-{i}"
        subprocess.run([sys.executable, "-m", "agentd", "launch", "--run-dir", str(run),
                        "--quiet", *args], check=True, capture_output=True, timeout=600)
        runs.append(run)
    return runs


def load_corpus(runs: list[Path], limit: int = 20_000) -> dict[str, list[bytes]]:
    """Frames by plane from the runs' message logs (each distinct frame once)."""
    seen: set[bytes] = set()
    by_plane: dict[str, list[bytes]] = {"control": [], "env": [], "peer": []}
    for run in runs:
        for path in sorted((run / "logs").glob("*.log")):
            for rec in open_log(path):
                for frame in rec.frames[:1]:
                    if rec.plane in by_plane and frame not in seen and len(seen) < limit:
                        seen.add(frame)
                        by_plane[rec.plane].append(frame)
    return by_plane


class Fuzzer:
    """One fuzzing session: its targets, its corpus, its tallies."""

    def __init__(self, corpus: dict[str, list[bytes]], seed: int, work: Path, out: Path,
                 hang: float) -> None:
        self.rng = random.Random(seed)
        self.corpus = corpus
        self.all_frames = [f for frames in corpus.values() for f in frames]
        self.mutator = Mutator(self.rng, self.all_frames)
        self.work, self.out, self.hang = work, out, hang
        self.guards = receiver_guards()
        self.coord: CoordinatorUnderAttack | None = None
        self.generation = 0
        self.outcomes: dict[str, dict[str, int]] = {}
        self.crashes: list[dict[str, Any]] = []
        self.hangs: list[dict[str, Any]] = []
        self.slowest: dict[str, Any] = {"seconds": 0.0}
        self.summaries = 0

    def fresh_coordinator(self) -> None:
        if self.coord is not None:
            self.coord.close()
        self.generation += 1
        self.coord = CoordinatorUnderAttack(self.work / f"coord-{self.generation}")

    def frame_for(self, plane: str, src: int, dst: int) -> tuple[bytes, str]:
        rng = self.rng
        how = rng.random()
        if how < 0.2:
            kinds = [k for k, v in REGISTRY.items() if v.plane == plane or rng.random() < 0.1]
            return self.mutator.generated(rng.choice(kinds), src, dst), "generated"
        pool = self.corpus.get(plane) or self.all_frames
        frame = rng.choice(pool if rng.random() < 0.8 else self.all_frames)
        if rng.random() < 0.7:
            frame = retarget(frame, src, dst)
        if how < 0.55:
            return self.mutator.structured(frame), "structured"
        return self.mutator.bytes_level(frame), "bytes"

    def one(self, i: int) -> None:
        rng = self.rng
        target = rng.choice(["coordinator"] * 4 + sorted(self.guards))
        if target == "coordinator":
            ident, src = rng.choice([(ENV_ID, -2), *((a, k) for k, a in enumerate(AGENT_IDS)),
                                     (b"\x00stranger", 7)])
            frame, how = self.frame_for("control", src, COORDINATOR)
            self.coord.end_of_run(rng.random() < 0.3)
            run = lambda: self._feed(frame, ident)
        else:
            guard, plane = self.guards[target]
            src = rng.choice([1, 2, 1, 2, -2, -1, 5])
            ident = rng.choice([peer_identity(src) if src >= 0 else None] * 4 + [b"a1", b"\x00z"])
            sender = rng.choice([None, None, None, src, src, 1, -2, -999])
            frame, how = self.frame_for(plane, src, guard.me)
            run = lambda: self._guard(guard, frame, plane, ident, sender)
        self._timed(i, target, how, frame, run)

    @staticmethod
    def _guard(guard, frame: bytes, plane: str, ident: bytes | None, sender: int | None) -> str:
        try:
            guard.incoming([frame], plane, ident, sender)
        except ProtocolError as exc:
            return f"rejected {exc.reason}"
        return "accepted"

    def _feed(self, frame: bytes, ident: bytes) -> str:
        outcome = self.coord.feed(frame, ident)
        return f"rejected {self.coord.last_reason}" if outcome == "rejected" else outcome

    def _timed(self, i: int, target: str, how: str, frame: bytes, run) -> None:
        started = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, self.hang)
        try:
            outcome = run()
        except Hang:
            outcome = "hang"
            self.hangs.append(self._record(i, target, how, frame, "hang"))
        except Exception as exc:  # noqa: BLE001 - a crash is what we are looking for
            outcome = "crash"
            self.crashes.append(self._record(i, target, how, frame, exc))
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        spent = time.perf_counter() - started
        if spent > self.slowest["seconds"]:
            self.slowest = {"seconds": round(spent, 6), "case": i, "target": target,
                            "mutation": how, "frame_bytes": len(frame),
                            "frame_head": frame[:48].hex()}
        per = self.outcomes.setdefault(target, {})
        per[outcome] = per.get(outcome, 0) + 1

    def _record(self, i: int, target: str, how: str, frame: bytes, what: Any) -> dict:
        digest = hashlib.sha1(frame).hexdigest()[:16]
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / f"{digest}.bin").write_bytes(frame)
        return {"case": i, "target": target, "mutation": how, "reproducer": f"{digest}.bin",
                "error": what if isinstance(what, str) else f"{type(what).__name__}: {what}",
                "traceback": "" if isinstance(what, str) else
                "".join(traceback.format_exception(what)[-4:])}

    def check_summary(self, i: int) -> None:
        """What the handlers kept must still make summary.json."""
        self.summaries += 1
        try:
            self.coord.summary()
        except Exception as exc:  # noqa: BLE001
            self.crashes.append(self._record(i, "coordinator summary", "-", b"", exc))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--corpus", nargs="*", type=Path, default=None)
    p.add_argument("--report", type=Path, default=None)
    p.add_argument("--out", type=Path, default=HERE / "crashes")
    p.add_argument("--hang", type=float, default=5.0, help="seconds that make a case a hang")
    p.add_argument("--live", type=int, default=0,
                   help="also send this many hostile frames to a live run's sockets")
    args = p.parse_args(argv)
    logging.disable(logging.WARNING)      # refusals are counted; printing them is the cost

    def on_alarm(_signum: int, _frame: Any) -> None:
        raise Hang
    signal.signal(signal.SIGALRM, on_alarm)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with tempfile.TemporaryDirectory(prefix="agentd-fuzz-") as tmp:
        work = Path(tmp)
        runs = args.corpus or make_corpus(work)
        corpus = load_corpus(runs)
        fz = Fuzzer(corpus, args.seed, work, args.out, args.hang)
        fz.fresh_coordinator()
        started = time.monotonic()
        for i in range(args.cases):
            fz.one(i)
            if i % 20_000 == 19_999:
                fz.check_summary(i)
            if i % 200_000 == 199_999:
                fz.fresh_coordinator()
        fz.check_summary(args.cases)
        fz.coord.close()
        seconds = time.monotonic() - started
        live = attack(work / "live", corpus, args.live, args.seed) if args.live else None
    report = {"cases": args.cases, "seed": args.seed, "seconds": round(seconds, 1),
              "cases_per_s": round(args.cases / seconds), "corpus_frames":
              {k: len(v) for k, v in corpus.items()}, "outcomes": fz.outcomes,
              "summaries_written": fz.summaries, "crashes": len(fz.crashes),
              "hangs": len(fz.hangs), "slowest": fz.slowest,
              "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                                   1), "start_rss_mb": round(rss0 / 1024, 1),
              "crash_list": fz.crashes[:50], "hang_list": fz.hangs[:50], "live": live}
    text = json.dumps(report, indent=2)
    print(text)
    if args.report is not None:
        args.report.write_text(text + "\n")
    live_ok = live is None or (live["exit_code"] == 0 and live["status"] == "done")
    return 1 if fz.crashes or fz.hangs or not live_ok else 0


if __name__ == "__main__":
    sys.exit(main())
