"""IPPO vs DPO (or any learners: the centralised baselines too) on one env, several seeds, equal
budget.

Sweeps run the agents' own learners in one process (``agentd.launch.inprocess``: the same learner
classes, the same agent-loop order, no sockets) so several seeds fit on a 2-core machine; a
live ``agentd launch`` of the same learners is shown in the README. Each (algo, seed) appends
its episode returns to ``OUT.jsonl`` as it finishes (a sweep can be resumed), then the script
prints first/last-10% returns (mean ± sd over seeds) and draws mean ± sd curves to ``OUT.png``.

Usage::

    python examples/onpolicy_compare.py --env mpe2.simple_spread_v3:parallel_env --n 3 \\
        --episode-len 25 --steps 20000 --num-envs 8 --seeds 0 1 2 --out docs/spread_ippo_dpo
    python examples/onpolicy_compare.py --env gymnasium_robotics.mamujoco_v1:parallel_env \\
        --env-arg scenario=HalfCheetah --env-arg agent_conf=2x3 --n 2 --episode-len 1000 \\
        --steps 50000 --num-envs 4 --param rollout=500 --out docs/halfcheetah_ippo_dpo
"""

from __future__ import annotations

import argparse
import json
import time
import tomllib
import warnings
from pathlib import Path

import numpy as np

from agentd.launch.inprocess import build_env, make_learners, run_in_process


def parse_kv(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, _, raw = item.partition("=")
        try:
            out[key] = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            out[key] = raw
    return out


def env_args_for(args: argparse.Namespace, algo: str) -> dict:
    """The env args, plus continuous actions for a Box-action learner (maddpg) on an mpe2 env
    whose actions are discrete by default — as ``agentd launch`` resolves it."""
    from agentd.algorithms import load_learner_class

    env_args = parse_kv(args.env_arg)
    if load_learner_class(algo).action_type == "box" and args.env.startswith("mpe2."):
        env_args.setdefault("continuous_actions", True)
    return env_args


def params_for(args: argparse.Namespace, algo: str) -> dict:
    """The --param values this algo's learner has (``rollout`` means nothing to maddpg); a
    value no listed algo takes is an error, not silently dropped."""
    import dataclasses

    from agentd.algorithms import load_learner_class

    def fields(name: str) -> set[str]:
        params = load_learner_class(name).Params
        return {f.name for f in dataclasses.fields(params)} if params else set()

    given = parse_kv(args.param)
    unused = set(given) - set().union(*(fields(a) for a in args.algos))
    if unused:
        raise SystemExit(f"--param {sorted(unused)}: no algo in {args.algos} takes it")
    return {k: v for k, v in given.items() if k in fields(algo)}


def run_one(args: argparse.Namespace, algo: str, seed: int) -> dict:
    env = build_env(args.env, args.n, num_envs=args.num_envs, episode_len=args.episode_len,
                    seed=seed, env_args=env_args_for(args, algo))
    learners = make_learners(algo, env, args.n, topology=args.topology, seed=seed,
                             params=params_for(args, algo))
    started = time.monotonic()
    res = run_in_process(env, learners, args.steps, reset_seed=seed)
    env.close()
    return {"algo": algo, "seed": seed, "steps": args.steps, "num_envs": args.num_envs,
            "seconds": time.monotonic() - started, "returns": res.returns,
            "env_args": env_args_for(args, algo)}


def summary(algo: str, runs: list[dict]) -> str:
    first, last = [], []
    for r in runs:
        ret = np.array([v for _, v in r["returns"]])
        k = max(1, len(ret) // 10)
        first.append(ret[:k].mean())
        last.append(ret[-k:].mean())
    return (f"{algo:10s} seeds {len(runs)}  first 10% {np.mean(first):9.2f} ± {np.std(first):6.2f}"
            f"   last 10% {np.mean(last):9.2f} ± {np.std(last):6.2f}   per seed "
            f"{', '.join(f'{v:.2f}' for v in last)}   {np.mean([r['seconds'] for r in runs]):.0f} s/run")


def curve(run: dict, grid: np.ndarray) -> np.ndarray:
    """Mean episode return of the episodes ending in each bin of the step grid."""
    steps = np.array([s for s, _ in run["returns"]])
    ret = np.array([v for _, v in run["returns"]])
    out = np.full(len(grid) - 1, np.nan)
    for b in range(len(grid) - 1):
        sel = (steps > grid[b]) & (steps <= grid[b + 1])
        if sel.any():
            out[b] = ret[sel].mean()
    return out


def plot(results: dict[str, list[dict]], title: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = max(r["steps"] for runs in results.values() for r in runs)
    grid = np.linspace(0, steps, 41)
    mid = 0.5 * (grid[1:] + grid[:-1])
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for algo, runs in results.items():
        c = np.array([curve(r, grid) for r in runs])
        with warnings.catch_warnings():          # bins in which no episode ended
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, sd = np.nanmean(c, 0), np.nanstd(c, 0)
        ax.plot(mid, mean, label=f"{algo} ({len(runs)} seeds)")
        ax.fill_between(mid, mean - sd, mean + sd, alpha=0.2)
    ax.set_xlabel("joint steps per env copy")
    ax.set_ylabel("episode return (mean ± sd over seeds)")
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--env", required=True)
    ap.add_argument("--n", type=int, default=3)
    ap.add_argument("--algos", nargs="+", default=["ippo", "dpo"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--num-envs", type=int, default=8)
    ap.add_argument("--episode-len", type=int, default=25)
    ap.add_argument("--topology", default="ring")
    ap.add_argument("--param", action="append", default=[],
                    help="KEY=VALUE for every algo that has that parameter")
    ap.add_argument("--env-arg", action="append", default=[], help="KEY=VALUE")
    ap.add_argument("--out", type=Path, required=True, help="path prefix of .jsonl and .png")
    args = ap.parse_args()
    log = args.out.with_suffix(".jsonl")
    log.parent.mkdir(parents=True, exist_ok=True)
    done = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
    results: dict[str, list[dict]] = {a: [] for a in args.algos}
    for r in done:
        if r["algo"] in results and r["steps"] == args.steps and r["seed"] in args.seeds:
            results[r["algo"]].append(r)
    for seed in args.seeds:
        for algo in args.algos:
            if any(r["seed"] == seed for r in results[algo]):
                continue
            run = run_one(args, algo, seed)
            with log.open("a") as f:
                f.write(json.dumps(run) + "\n")
            results[algo].append(run)
            print(f"  {algo} seed {seed}: {len(run['returns'])} episodes, "
                  f"{run['seconds']:.0f} s", flush=True)
    name = " ".join(v.split("=", 1)[1] for v in args.env_arg if not v.startswith(
        "continuous")) or args.env.split(":")[0].split(".")[-1]
    title = f"{name}, n = {args.n}, {args.steps} steps x {args.num_envs} copies"
    print(title)
    for algo, runs in results.items():
        print(summary(algo, runs))
    plot(results, title, args.out)


if __name__ == "__main__":
    main()
