"""The live part of the fuzzer: hostile frames sent over real sockets to every socket a running
run binds (the coordinator's control ROUTER, the env server's env ROUTER, each agent's peer
ROUTER), from clients that are not in the run; then the run must still finish on its own, every
process exiting 0, with summary.json written and the frames refused or dropped."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import zmq
from gen import Mutator, retarget

LIVE_RUN = ["--algo", "pr", "--env", "digital", "--n", "4", "--steps", "4000",
            "--episode-len", "40", "--env-plane", "zmq", "--quiet"]


def attack(run_dir: Path, corpus: dict[str, list[bytes]], cases: int, seed: int) -> dict:
    """Start a run, send ``cases`` hostile frames spread over its sockets, wait for its end."""
    proc = subprocess.Popen([sys.executable, "-m", "agentd", "launch", "--run-dir",
                             str(run_dir), *LIVE_RUN], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        _wait(lambda: (run_dir / "metrics.jsonl").exists() and
              (run_dir / "metrics.jsonl").stat().st_size > 0, 120)
        ep = json.loads((run_dir / "endpoints.json").read_text())
        targets = {"coordinator": (ep["coordinator"]["endpoint"], "control", -1),
                   "envserver": (ep["envserver"]["endpoint"], "env", -2),
                   **{f"agent {i}": (a["endpoint"], "peer", int(i))
                      for i, a in ep["agents"].items()}}
        sent = _send(targets, corpus, cases, seed)
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    summary = json.loads((run_dir / "summary.json").read_text())
    rejected = {"coordinator": summary["coordinator"]["rejected"],
                "envserver": (summary["envserver"] or {}).get("rejected", {}),
                **{f"agent {i}": a.get("rejected", {}) for i, a in summary["agents"].items()}}
    return {"cases": cases, "sent": sent, "exit_code": proc.returncode,
            "status": summary["status"], "steps_done": summary["steps_done"],
            "rejected": rejected, "disconnects": {
                "coordinator": summary["coordinator"]["planes"]["control"].get("disconnects")},
            "tail": out.decode(errors="replace").splitlines()[-3:]}


def _send(targets: dict[str, tuple[str, str, int]], corpus: dict[str, list[bytes]], cases: int,
          seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    mutator = Mutator(rng, [f for frames in corpus.values() for f in frames])
    ctx = zmq.Context()
    socks: dict[str, Any] = {}
    sent = dict.fromkeys(targets, 0)
    try:
        for name, (endpoint, _, _) in targets.items():
            sock = ctx.socket(zmq.DEALER)
            sock.linger = 0
            sock.sndtimeo = 1000
            sock.routing_id = b"x-stranger-" + name.encode()   # nobody the run knows
            sock.connect(endpoint)
            socks[name] = sock
        time.sleep(0.5)
        for i in range(cases):
            name = rng.choice(sorted(targets))
            _, plane, me = targets[name]
            frame = rng.choice(corpus.get(plane) or mutator.corpus)
            if rng.random() < 0.7:      # addressed to it, from someone it knows by number
                frame = retarget(frame, rng.choice([0, 1, 2, 3, -2]), me)
            frame = mutator.structured(frame) if rng.random() < 0.5 else \
                mutator.bytes_level(frame)
            try:
                socks[name].send(frame)
                sent[name] += 1
            except zmq.Again:
                pass
            if i % 200 == 199:
                time.sleep(0.01)      # a flood, not a wall: the run must go on meanwhile
    finally:
        ctx.destroy(linger=0)
    return sent


def _wait(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise TimeoutError("the live run did not start")
