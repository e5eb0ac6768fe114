"""agentd's joint-step throughput next to its ceilings, measured in one interleaved run.

For each (n agents, K env copies) in {(5, 1), (5, 16), (16, 1), (16, 16)}, with algo dac on
random-mdp, this measures:

* agentd   -- ``agentd launch`` in a subprocess (one OS process per agent + env server +
  coordinator); its rate is the env server's, first to last step, so start-up is excluded.
  A round is one message exchange; it carries K transitions.
* single   -- the same learners and env in ONE Python process, a plain loop (all act,
  env.step, all observe + update): what the work costs with no transport at all.
* raw      -- ``raw_loops.py`` at the same n: a bare pyzmq joint step (sync sockets, and
  zmq.asyncio on uvloop) and a ring exchange, with no learner, guard, codec or log.
* before   -- ``agentd launch`` of an earlier commit (``--baseline REV``, by default the last
  commit before the hot-path work of 2026-12-03), exported with ``git archive`` into a
  temporary directory and run from there: today's code against yesterday's in the same run.

Each variant runs once per repeat, the variants interleaved so machine noise hits them
alike; the table shows the median of the repeats.

Reading the ratios (all are agentd rounds/s divided by the other's rounds/s):
* agentd / raw-asyncio -- the share of the transport's ceiling agentd keeps (the target: at
  least 60% at n = 5, K = 1); the gap is agentd's own per-message work (codec, guard, log,
  learner, polling).
* agentd / raw-sync    -- the same against the faster sync-socket ceiling.
* agentd / single      -- above 1: processes pay off (work runs in parallel); below 1: the
  messaging costs more than the learning it spreads out.
The CPU columns (from the run summaries; the CPU of a 20-step run of the same shape is
subtracted so start-up does not count) show where the time goes: compare "all procs" with
the wall time per round times the number of cores.

``--scale N`` instead runs one ``agentd launch --n N --steps 1000`` and reports its rate,
wall time, summed agent RSS and start-up time.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import raw_loops

from agentd.algorithms import load_learner_class
from agentd.algorithms.base import LearnerSpec
from agentd.envs import make_env

CONFIGS: tuple[tuple[int, int], ...] = ((5, 1), (5, 16), (16, 1), (16, 16))
# Joint steps per run, chosen so each agentd run steps for ~5-10 s on a 2-core machine.
LAUNCH_STEPS: dict[tuple[int, int], int] = {(5, 1): 4000, (5, 16): 3000,
                                            (16, 1): 1000, (16, 16): 800}
RAW_STEPS: dict[int, int] = {5: 5000, 16: 2000}
EPISODE_LEN = 50
BASE_STEPS = 20         # the start-up-cost runs
TARGET = 0.60            # agentd / raw-asyncio at n = 5, K = 1
Samples = dict[str, list[float]]


# ---- one measurement each ----------------------------------------------------------------

BASELINE_REV = "9caa88b"   # main before the hot-path work (fixed layouts, solo waits)
CONFIG_NAMES = {f"{n}x{k}": (n, k) for n, k in CONFIGS}


def export_tree(rev: str, into: Path) -> Path:
    """The agentd sources of commit ``rev`` of this checkout, written under ``into``."""
    repo = Path(__file__).resolve().parent.parent
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(repo), "archive", rev, "agentd", "coordinator",
                              "protocols", "topologies"], capture_output=True, check=False)
    if archive.returncode != 0:
        raise SystemExit(f"--baseline {rev}: git archive failed: "
                         f"{archive.stderr.decode().strip()} (run from a git checkout, or "
                         "pass --baseline none)")
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    check_tree(into)
    return into


def check_tree(tree: Path) -> None:
    """Refuse to go on unless a launch with ``tree`` really runs that tree's code."""
    code = ("import agentd, coordinator.envserver as e, topologies as t; "
            "print(agentd.__file__, e.__file__, t.__file__)")
    probe = subprocess.run([sys.executable, "-c", code],
                           env={**os.environ, "PYTHONPATH": str(tree)}, cwd=tree.parent,
                           capture_output=True, text=True, check=False)
    files = probe.stdout.split()
    if probe.returncode != 0 or not files or not all(Path(f).is_relative_to(tree)
                                                      for f in files):
        raise SystemExit(f"the baseline tree {tree} is not what Python imports with "
                         f"PYTHONPATH={tree} (got {files or probe.stderr.strip()}): the "
                         "comparison would measure the current code against itself")


def run_launch(n: int, k: int, steps: int, timeout: float, pin: bool = False,
               extra: tuple[str, ...] = (), tree: Path | None = None) -> dict[str, Any]:
    """Run ``agentd launch`` to completion in a temporary run directory; its summary.json.
    With ``tree``, the agentd of that source tree (an exported earlier commit)."""
    with tempfile.TemporaryDirectory(prefix="agentd-bench-") as tmp:
        run_dir = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "agentd", "launch", "--quiet", "--run-dir", str(run_dir),
               "--n", str(n), "--num-envs", str(k), "--steps", str(steps),
               "--episode-len", str(EPISODE_LEN), "--algo", "dac", "--env", "random-mdp",
               "--seed", "0", *(["--pin-cpus"] if pin else []), *extra]
        env = None if tree is None else {**os.environ, "PYTHONPATH": str(tree)}
        # cwd: ``python -m`` puts the working directory first on sys.path, so from a checkout's
        # root the checkout's agentd would win over the exported tree (and the baseline would
        # silently be today's code)
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env=env, cwd=tmp)
        try:
            output, _ = proc.communicate(timeout=timeout)
        finally:
            end_process(proc)
        if proc.returncode != 0:
            raise RuntimeError(f"agentd launch --n {n} --num-envs {k} exited "
                               f"{proc.returncode}:\n{output[-3000:]}")
        return json.loads((run_dir / "summary.json").read_text())


def end_process(proc: subprocess.Popen) -> None:
    """Stop a launch we started, by its PID: SIGTERM (it stops its run in order), then kill."""
    if proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def single_process(n: int, k: int, steps: int) -> float:
    """Joint steps/s of the same dac learners and random-mdp env in one plain Python loop."""
    env = make_env("random-mdp", n_agents=n, num_envs=k, episode_len=EPISODE_LEN, seed=0,
                   env_kwargs={})
    learner_cls = load_learner_class("dac")
    learners = [learner_cls(LearnerSpec(
        agent_id=i, n_agents=n, neighbours=[], weights={}, obs_spaces=[env.obs_spaces[i]],
        act_spaces=[env.act_spaces[i]], controls=[i], num_envs=k, seed=i)) for i in range(n)]
    obs = env.reset(0)
    actions = [np.asarray(lr.act(o)) for lr, o in zip(learners, obs)]
    start = time.perf_counter()
    for _ in range(steps):
        res = env.step(actions)
        for i, lr in enumerate(learners):   # the agent loop's order: observe, update, act
            lr.observe(obs[i], actions[i], res.reward[i], res.final_obs[i], res.terminated,
                       res.truncated)
            lr.update()
        obs = res.obs
        actions = [np.asarray(lr.act(o)) for lr, o in zip(learners, obs)]
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate


# ---- the interleaved schedule ------------------------------------------------------------

def one_repeat(samples: Samples, summaries: dict[str, list[dict]], scale: float,
               configs: tuple[tuple[int, int], ...], before: Path | None) -> None:
    """Every variant once, in a fixed interleaved order; appends to samples and summaries."""
    for n in sorted({n for n, _ in configs}):
        raw_steps = max(200, int(RAW_STEPS[n] * scale))
        for name, fn in (("raw_sync", raw_loops.joint_step_sync),
                         ("raw_asyncio", raw_loops.joint_step_asyncio),
                         ("raw_ring", raw_loops.ring_exchange)):
            samples[f"{name} n={n}"].append(fn(n, raw_steps))
        for k in sorted(k for m, k in configs if m == n):
            steps = max(100, int(LAUNCH_STEPS[(n, k)] * scale))
            if before is not None:
                old = run_launch(n, k, steps, timeout=120 + steps / 10, tree=before)
                samples[f"before {key(n, k)}"].append(old["steps_per_s"])
                summaries[f"before {key(n, k)}"].append(old)
            summary = run_launch(n, k, steps, timeout=120 + steps / 10)
            summaries[key(n, k)].append(summary)
            samples[f"agentd {key(n, k)}"].append(summary["steps_per_s"])
            pinned = run_launch(n, k, steps, timeout=120 + steps / 10, pin=True)
            samples[f"pinned {key(n, k)}"].append(pinned["steps_per_s"])
            samples[f"single {key(n, k)}"].append(single_process(n, k, steps))
            was = (f", before {samples[f'before {key(n, k)}'][-1]:,.0f}"
                   if before is not None else "")
            print(f"  {key(n, k)}: agentd {summary['steps_per_s']:,.0f} rounds/s "
                  f"(pinned {pinned['steps_per_s']:,.0f}{was}), "
                  f"single {samples[f'single {key(n, k)}'][-1]:,.0f} steps/s", flush=True)


def key(n: int, k: int) -> str:
    return f"n={n} K={k}"


def cpu_per_round(summaries: list[dict], base: dict) -> dict[str, float]:
    """Median CPU microseconds per round (env server, mean agent, all), start-up removed.

    ``base`` is the summary of a tiny run of the same shape: subtracting its CPU and rounds
    leaves the marginal cost of a round, without imports and connection set-up.
    """
    def cpu(s: dict) -> tuple[float, float]:
        agents = [a["cpu_s"] for a in s["agents"].values()]
        return s["envserver"]["cpu_s"], statistics.fmean(agents)

    env, agent, total = [], [], []
    base_env, base_agent = cpu(base)
    n = len(base["agents"])
    for s in summaries:
        rounds = s["envserver"]["steps"] - base["envserver"]["steps"]
        env_s, agent_s = cpu(s)
        env.append((env_s - base_env) / rounds)
        agent.append((agent_s - base_agent) / rounds)
        total.append(env[-1] + n * agent[-1])
    return {name: 1e6 * statistics.median(v)
            for name, v in (("env_us", env), ("agent_us", agent), ("all_us", total))}


def medians(samples: Samples, summaries: dict[str, list[dict]],
            configs: tuple[tuple[int, int], ...]) -> dict[str, dict[str, float]]:
    """One row of medians and ratios per (n, K)."""
    rows = {}
    for n, k in configs:
        med = {name: statistics.median(samples[f"{name} n={n}"])
               for name in ("raw_sync", "raw_asyncio", "raw_ring")}
        med["agentd_rounds"] = statistics.median(samples[f"agentd {key(n, k)}"])
        med["agentd_transitions"] = med["agentd_rounds"] * k
        med["single"] = statistics.median(samples[f"single {key(n, k)}"])
        med["vs_asyncio"] = med["agentd_rounds"] / med["raw_asyncio"]
        med["pinned_rounds"] = statistics.median(samples[f"pinned {key(n, k)}"])
        med["pinned_vs_asyncio"] = med["pinned_rounds"] / med["raw_asyncio"]
        med["vs_sync"] = med["agentd_rounds"] / med["raw_sync"]
        med["vs_single"] = med["agentd_rounds"] / med["single"]
        if samples.get(f"before {key(n, k)}"):
            med["before_rounds"] = statistics.median(samples[f"before {key(n, k)}"])
            med["vs_before"] = med["agentd_rounds"] / med["before_rounds"]
            old = cpu_per_round(summaries[f"before {key(n, k)}"],
                                summaries[f"base before {key(n, k)}"][0])
            med.update({f"before_{name}": v for name, v in old.items()})
        med.update(cpu_per_round(summaries[key(n, k)], summaries[f"base {key(n, k)}"][0]))
        rows[key(n, k)] = med
    return rows


# ---- reporting ---------------------------------------------------------------------------

def print_report(rows: dict[str, dict[str, float]], repeats: int, load: tuple,
                 baseline: str | None) -> None:
    print(f"\nMedians of {repeats} interleaved repeat(s); {os.cpu_count()} cores; "
          f"load average before/after: {load[0]:.2f} / {load[1]:.2f}")
    print("Rates are rounds/s (one message round = one joint step of K env copies) unless "
          "marked trans/s.")
    if baseline:
        print(f"'before' is agentd at commit {baseline}, run in the same repeats.")
    head = (f"{'n':>3} {'K':>3} | {'agentd':>7} {'trans/s':>8} {'pinned':>7} {'before':>7} | "
            f"{'single':>7} | {'raw sync':>8} {'raw aio':>8} {'raw ring':>8} | "
            f"{'/aio':>5} {'pin/aio':>7} {'/sync':>5} {'/single':>7} {'/before':>7}")
    print(head + "\n" + "-" * len(head))
    for name, r in rows.items():
        n, k = (int(x.split("=")[1]) for x in name.split())
        old = (f"{r['before_rounds']:>7,.0f}", f"{r['vs_before']:>7.2f}") if "vs_before" in r \
            else (f"{'-':>7}", f"{'-':>7}")
        print(f"{n:>3} {k:>3} | {r['agentd_rounds']:>7,.0f} {r['agentd_transitions']:>8,.0f} "
              f"{r['pinned_rounds']:>7,.0f} {old[0]} | {r['single']:>7,.0f} | "
              f"{r['raw_sync']:>8,.0f} {r['raw_asyncio']:>8,.0f} {r['raw_ring']:>8,.0f} | "
              f"{r['vs_asyncio']:>5.2f} {r['pinned_vs_asyncio']:>7.2f} {r['vs_sync']:>5.2f} "
              f"{r['vs_single']:>7.2f} {old[1]}")
    print_cpu(rows)
    for (n, k), field, goal, what in (
            ((5, 1), "vs_asyncio", TARGET, "of the raw asyncio joint-step loop"),
            ((5, 1), "pinned_vs_asyncio", TARGET, "of the raw asyncio loop with --pin-cpus"),
            ((5, 1), "vs_before", 2.0, f"of the rounds/s of commit {baseline}"),
            ((16, 1), "vs_asyncio", 0.5, "of the raw asyncio joint-step loop")):
        r = rows.get(key(n, k), {})
        if field in r:
            verdict = "MET" if r[field] >= goal else "NOT MET"
            print(f"Target: at n={n}, K={k} agentd reaches >= {goal:.0%} {what}. "
                  f"Measured {r[field]:.0%}: {verdict}.")
    r = rows.get(key(5, 1))
    if r is not None:
        verdict = "MET" if r["env_us"] <= 400 else "NOT MET"
        print(f"Target: at n=5, K=1 the env server uses <= 400 us of CPU per round. "
              f"Measured {r['env_us']:,.0f} us: {verdict}.")


def print_cpu(rows: dict[str, dict[str, float]]) -> None:
    """Where an agentd round's time goes: CPU per process kind against the wall time."""
    print(f"\nagentd CPU per round, microseconds (start-up CPU removed using a {BASE_STEPS}-step "
          "run of each shape);\nbusy cores = all procs CPU / wall time per round:")
    head = (f"{'n':>3} {'K':>3} | {'env server':>10} {'mean agent':>10} {'all procs':>10} | "
            f"{'wall/round':>10} {'busy cores':>10}")
    print(head + "\n" + "-" * len(head))
    for name, r in rows.items():
        n, k = (int(x.split("=")[1]) for x in name.split())
        wall_us = 1e6 / r["agentd_rounds"]
        print(f"{n:>3} {k:>3} | {r['env_us']:>10,.0f} {r['agent_us']:>10,.0f} "
              f"{r['all_us']:>10,.0f} | {wall_us:>10,.0f} {r['all_us'] / wall_us:>10.2f}")
        if "before_env_us" in r:
            wall_us = 1e6 / r["before_rounds"]
            print(f"{'before':>7} | {r['before_env_us']:>10,.0f} {r['before_agent_us']:>10,.0f} "
                  f"{r['before_all_us']:>10,.0f} | {wall_us:>10,.0f} "
                  f"{r['before_all_us'] / wall_us:>10.2f}")


def run_benchmark(repeats: int, scale: float, out: Path | None,
                  configs: tuple[tuple[int, int], ...], baseline: str | None) -> None:
    samples: Samples = defaultdict(list)
    summaries: dict[str, list[dict]] = defaultdict(list)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="agentd-before-") as tmp:
        before = export_tree(baseline, Path(tmp)) if baseline else None
        for n, k in configs:   # tiny runs whose CPU is the start-up cost to subtract
            summaries[f"base {key(n, k)}"].append(run_launch(n, k, BASE_STEPS, timeout=120))
            if before is not None:
                summaries[f"base before {key(n, k)}"].append(
                    run_launch(n, k, BASE_STEPS, timeout=120, tree=before))
        for r in range(repeats):
            print(f"repeat {r + 1}/{repeats}", flush=True)
            one_repeat(samples, summaries, scale, configs, before)
    rows = medians(samples, summaries, configs)
    print_report(rows, repeats, (load_before, os.getloadavg()[0]), baseline)
    if out is not None:
        out.write_text(json.dumps({"repeats": repeats, "step_scale": scale, "target": TARGET,
                                   "baseline": baseline, "medians": rows, "samples": samples},
                                  indent=2))
        print(f"wrote {out}")


# ---- the 64-agent report -----------------------------------------------------------------

def run_scale(n: int) -> None:
    """One ``agentd launch --n n --steps 1000`` to completion; rate, wall, RSS, start-up."""
    print(f"agentd launch --n {n} --num-envs 1 --steps 1000 --episode-len {EPISODE_LEN} "
          "--algo dac (random-mdp)", flush=True)
    start = time.perf_counter()
    s = run_launch(n, 1, 1000, timeout=900)
    outer = time.perf_counter() - start
    env = s["envserver"]
    agents = s["agents"].values()
    print(f"  agents finished     : {len(s['agents'])}")
    print(f"  steps/s             : {s['steps_per_s']:,.1f}")
    print(f"  wall time           : {s['wall_s']:.2f} s (run summary); {outer:.2f} s "
          "including the launcher's own start")
    print(f"  start-up (+shutdown): {s['wall_s'] - env['wall_s']:.2f} s "
          "(wall_s - envserver wall_s)")
    print(f"  total agent RSS     : {sum(a['rss_mb'] for a in agents):,.0f} MB "
          f"(mean {statistics.fmean(a['rss_mb'] for a in agents):.1f} MB; env server "
          f"{env['rss_mb']:.1f} MB)")
    print(f"  CPU per step (incl. start-up): env server {1e6 * env['cpu_s'] / env['steps']:,.0f} us, "
          f"mean agent {1e6 * statistics.fmean(a['cpu_s'] for a in agents) / env['steps']:,.0f}"
          " us")


def on_sigterm(signum: int, _frame: object) -> None:
    """Turn SIGTERM into an exit that runs the finally blocks (which end our launches)."""
    for child in multiprocessing.active_children():   # raw-loop processes, by their PID
        child.terminate()
    sys.exit(128 + signum)


def main() -> int:
    signal.signal(signal.SIGTERM, on_sigterm)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="one repeat with a quarter of the steps (a smoke run)")
    parser.add_argument("--repeats", type=int, default=None, help="repeats (default 3)")
    parser.add_argument("--out", type=Path, default=None, help="write medians + samples here")
    parser.add_argument("--scale", type=int, default=None, metavar="N",
                        help="instead: one 1000-step launch with N agents (e.g. 64)")
    parser.add_argument("--configs", nargs="+", choices=sorted(CONFIG_NAMES),
                        default=sorted(CONFIG_NAMES), metavar="NxK",
                        help=f"shapes to run (default all: {' '.join(sorted(CONFIG_NAMES))})")
    parser.add_argument("--baseline", default=BASELINE_REV, metavar="REV",
                        help=f"the earlier commit to run side by side (default {BASELINE_REV}, "
                             "main before the hot-path work); 'none' to skip it")
    args = parser.parse_args()
    if args.scale is not None:
        run_scale(args.scale)
        return 0
    repeats = args.repeats or (1 if args.quick else 3)
    configs = tuple(CONFIG_NAMES[c] for c in args.configs)
    baseline = None if args.baseline.lower() == "none" else args.baseline
    run_benchmark(repeats, 0.25 if args.quick else 1.0, args.out, configs, baseline)
    return 0


if __name__ == "__main__":
    sys.exit(main())
