"""Start-up: a one-step ``agentd launch`` against spawning its processes bare, in one run.

Each repeat runs, interleaved so machine noise hits them alike:

* bare     -- n + 2 Python processes started at once, each ``import zmq, numpy, msgpack``
  (the coordinator, the env server and n agents, doing nothing but what every agentd
  process must import), waited for: the floor of any multi-process launch in Python;
* agentd   -- ``agentd launch --n N --steps 1`` (dac on random-mdp), wall time of the whole
  command, from exec to exit;
* before   -- the same launch with the agentd of ``--baseline REV`` (exported with
  ``git archive``), when given;

and, with ``--deep``, the same three for ``dac-deep`` on ``spread`` (n = 3), where the bare
agents ``import torch`` as well. Medians and ratios at the end; the target is agentd within
1.5x of bare. Phases of each agentd launch come from the run directory's files: the
coordinator is up (``coordinator.json``), the run is over (``summary.json``), the plot is drawn
(``learning_curve.png``), the launcher has exited.

Peak RSS (VmHWM) of each process of the run is sampled from /proc every 20 ms while it lives
(the last sample before it exits is its peak, up to 20 ms of growth); ``--rss-steps`` adds one
longer run of each kind, so the agents' peak covers learning, not only start-up.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from throughput import export_tree

BARE = "import zmq, numpy, msgpack"
BARE_DEEP = "import zmq, numpy, msgpack, torch"
TARGET = 1.5
RSS_TARGET_MB = {"coordinator": 120, "envserver": 100, "agent (tabular)": 100,
                 "agent (deep)": 400}


def bare(n_plain: int, n_deep: int) -> float:
    start = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-c", BARE]) for _ in range(n_plain)]
    procs += [subprocess.Popen([sys.executable, "-c", BARE_DEEP]) for _ in range(n_deep)]
    for p in procs:
        if p.wait() != 0:
            raise SystemExit(f"the bare process {p.args} failed")
    return time.perf_counter() - start


def role(pid: int) -> str | None:
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    for name in ("coordinator", "envserver", "agent"):
        if name.encode() in args:
            return name
    return None


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def peak_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def launch(args: list[str], tmp: Path, tree: Path | None) -> tuple[float, dict, dict]:
    """Wall time, phases (s from exec) and peak RSS in MB per role of one launch."""
    run_dir = tmp / f"run-{time.monotonic_ns()}"
    cmd = [sys.executable, "-m", "agentd", "launch", "--quiet", "--run-dir", str(run_dir), *args]
    env = None if tree is None else {**os.environ, "PYTHONPATH": str(tree)}
    wall0, start = time.time(), time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                            cwd=tmp)
    peaks: dict[int, tuple[str, int]] = {}
    while proc.poll() is None:
        for pid in children(proc.pid):
            kb, name = peak_kb(pid), peaks.get(pid, (None, 0))[0] or role(pid)
            if kb and name:
                peaks[pid] = (name, max(kb, peaks.get(pid, (name, 0))[1]))
        time.sleep(0.02)
    wall = time.perf_counter() - start
    out = proc.stdout.read().decode()
    proc.stdout.close()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{out[-3000:]}")
    phases = {}
    for name, file in (("coordinator up", "coordinator.json"), ("run over", "summary.json"),
                       ("plot drawn", "learning_curve.png")):
        path = run_dir / file
        phases[name] = path.stat().st_mtime - wall0 if path.exists() else float("nan")
    phases["exit"] = wall
    rss: dict[str, float] = {}
    for name, kb in peaks.values():
        rss[name] = max(rss.get(name, 0.0), kb / 1024)
    return wall, phases, rss


def median_phases(runs: list[dict]) -> str:
    return ", ".join(f"{k} {statistics.median(r[k] for r in runs):.2f}" for k in runs[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--n", type=int, default=5)
    parser.add_argument("--deep", action="store_true", help="also dac-deep on spread, n = 3")
    parser.add_argument("--only-deep", action="store_true", help="only dac-deep on spread")
    parser.add_argument("--baseline", default=None, metavar="REV",
                        help="also launch the agentd of commit REV, interleaved")
    parser.add_argument("--rss-steps", type=int, default=0,
                        help="one longer run of each kind for the peak RSS table")
    args = parser.parse_args()
    kinds = {} if args.only_deep else {
        "tabular": (["--n", str(args.n), "--steps", "1"], args.n + 2, 0)}
    if args.deep or args.only_deep:
        kinds["deep"] = (["--n", "3", "--algo", "dac-deep", "--env", "spread", "--steps", "1"],
                         2, 3)
    times: dict[str, list[float]] = {}
    phases: dict[str, list[dict]] = {}
    rss: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="agentd-startup-") as tmp_name:
        tmp = Path(tmp_name)
        tree = export_tree(args.baseline, tmp / "baseline") if args.baseline else None
        sides = [("agentd", None)] + ([("before", tree)] if tree else [])
        for r in range(args.repeats):
            for kind, (launch_args, n_plain, n_deep) in kinds.items():
                times.setdefault(f"{kind} bare", []).append(bare(n_plain, n_deep))
                for side, t in sides:
                    wall, ph, peak = launch(launch_args, tmp, t)
                    times.setdefault(f"{kind} {side}", []).append(wall)
                    phases.setdefault(f"{kind} {side}", []).append(ph)
                    if side == "agentd":
                        for name, mb in peak.items():
                            key = "agent (deep)" if name == "agent" and kind == "deep" else \
                                "agent (tabular)" if name == "agent" else name
                            rss[key] = max(rss.get(key, 0.0), mb)
            print(f"repeat {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in times.items()),
                  flush=True)
        if args.rss_steps:
            for kind, (launch_args, _, _) in kinds.items():
                steps = launch_args.index("--steps") + 1
                longer = [*launch_args[:steps], str(args.rss_steps), *launch_args[steps + 1:]]
                for name, mb in launch(longer, tmp, None)[2].items():
                    key = "agent (deep)" if name == "agent" and kind == "deep" else \
                        "agent (tabular)" if name == "agent" else name
                    rss[key] = max(rss.get(key, 0.0), mb)
    load = os.getloadavg()
    print(f"\nmedians of {args.repeats} interleaved repeats, seconds (load {load[0]:.1f} at the "
          "end)")
    for kind in kinds:
        b = statistics.median(times[f"{kind} bare"])
        line = f"  {kind:<8} bare {b:6.2f} | agentd {statistics.median(times[f'{kind} agentd']):6.2f}"
        line += f" ({statistics.median(times[f'{kind} agentd']) / b:.2f}x bare)"
        if tree:
            before = statistics.median(times[f"{kind} before"])
            line += f" | before {before:6.2f} ({before / b:.2f}x bare)"
        print(line)
        for side, _ in sides:
            print(f"    {side} phases: {median_phases(phases[f'{kind} {side}'])}")
    print("\npeak RSS per process (MB), max over the runs, against its target:")
    for name, mb in sorted(rss.items()):
        target = RSS_TARGET_MB.get(name)
        verdict = "" if target is None else f"  target <= {target}: " + \
            ("met" if mb <= target else "NOT MET")
        print(f"  {name:<16} {mb:7.1f}{verdict}")
    print()
    for kind in kinds:
        ratio = statistics.median(times[f"{kind} agentd"]) / statistics.median(
            times[f"{kind} bare"])
        print(f"Target: {kind} launch --steps 1 within {TARGET}x of bare processes. Measured "
              f"{ratio:.2f}x: {'met' if ratio <= TARGET else 'NOT MET'}.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
