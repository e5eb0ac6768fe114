"""Recovery times of a local ``agentd launch`` (dac, n = 3, random-mdp, 50-step episodes),
each process killed with ``kill -9`` mid-run:

* ``coordinator`` -- the coordinator, killed after 20, 120 and 220 episodes: when the launcher
  had it resumed from its journal, when every process was heard again (the resumed
  coordinator's log), the joint steps the env server sent meanwhile (its log), and that the
  run still counted every episode once;
* ``processes`` -- agent 1 after 20 episodes and the env server after 120
  (``--recovery-every 50 --max-restarts 2``): how long after the kill the run stepped again
  (the ``restarted`` / ``env_restarted`` report reaching the coordinator).

    python benchmarks/recovery.py coordinator RUN_DIR [--steps 20000]
    python benchmarks/recovery.py processes RUN_DIR [--steps 12000]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from agentd.runtime.msglog import open_log

RUN = ["--n", "3", "--episode-len", "50", "--seed", "5", "--quiet"]


def launch(run: Path, steps: int, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "agentd", "launch", "--run-dir", str(run),
                             *RUN, "--steps", str(steps), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def episodes(run: Path) -> int:
    path = run / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def endpoints(run: Path) -> dict:
    try:
        return json.loads((run / "endpoints.json").read_text())
    except (OSError, ValueError):
        return {}


def wait_episodes(run: Path, n: int) -> None:
    while episodes(run) < n:
        time.sleep(0.05)


def coordinator(run: Path, steps: int) -> None:
    proc = launch(run, steps)
    kills = []
    for at in (20, 120, 220):
        wait_episodes(run, at)
        pid = endpoints(run)["coordinator"]["pid"]
        os.kill(pid, signal.SIGKILL)
        kills.append(time.time())
        while endpoints(run).get("coordinator", {}).get("pid") in (None, pid):
            time.sleep(0.05)
        time.sleep(3)
    out, _ = proc.communicate()
    print(out.decode()[-1500:])
    s = json.loads((run / "summary.json").read_text())
    log = list(open_log(run / "logs" / "coordinator.log"))
    env = [r.time for r in open_log(run / "logs" / "envserver.log")
           if r.direction == "out" and r.kind == "step"]
    for k, r in zip(kills, s["coordinator_restarts"]):
        first: dict[int, float] = {}
        for x in log:
            if x.direction == "in" and x.time > r["at"] and x.header:
                first.setdefault(x.header["s"], x.time)
        back = max(first.values())
        during = sum(1 for t in env if k <= t < back)
        print(f"kill at +{k - kills[0]:.1f}s: resumed (journal read, bound) {r['at'] - k:.2f} s "
              f"after the kill; down_s {r['down_s']}; every process heard again "
              f"{back - k:.2f} s after the kill; env steps meanwhile {during}")
    print("episodes", s["episodes"], "steps_done", s["steps_done"], "status", s["status"],
          "wall_s", s["wall_s"])


def processes(run: Path, steps: int) -> None:
    proc = launch(run, steps, "--recovery-every", "50", "--max-restarts", "2")
    kills = {}
    wait_episodes(run, 20)
    os.kill(endpoints(run)["agents"]["1"]["pid"], signal.SIGKILL)
    kills["restarted"] = time.time()
    wait_episodes(run, 120)
    os.kill(endpoints(run)["envserver"]["pid"], signal.SIGKILL)
    kills["env_restarted"] = time.time()
    out, _ = proc.communicate()
    print(out.decode()[-800:])
    log = list(open_log(run / "logs" / "coordinator.log"))
    for kind, k in kills.items():
        t = next(r.time for r in log if r.direction == "in" and r.kind == kind)
        print(f"{kind}: stepping again {t - k:.2f} s after the kill")
    s = json.loads((run / "summary.json").read_text())
    print("episodes", s["episodes"], "steps_done", s["steps_done"], "steps_lost",
          s["steps_lost"], "truncated", s["truncated_episodes"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["coordinator", "processes"])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--steps", type=int, default=None)
    args = parser.parse_args()
    if args.what == "coordinator":
        coordinator(args.run_dir, args.steps or 20000)
    else:
        processes(args.run_dir, args.steps or 12000)


if __name__ == "__main__":
    main()
