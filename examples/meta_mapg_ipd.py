"""Meta-MAPG vs Meta-PG on ipd tasks with payoff noise (Kim et al. 2021, Fig. 3).

Two meta-agents of the same algorithm meta-train their initial logits on the ``meta-train``
tasks (payoff noise U(-0.25, 0.25), chain of L inner steps per task, exact gradients), then
both start from what they learned on the 20 ``meta-test`` tasks (each once, meta-learning
frozen: ``lr = 0``) and adapt with their inner loop only. Reported: the reward per step at
each chain step j = 0..L on the meta-test tasks (mean over tasks and both agents, then a 95%
t-interval over seeds), for the private opponent model and for shared logits (the published
full-information version), plus the same inner loop from untrained random logits.

The seed's claim: Meta-MAPG cooperates (about -1 per step) within one inner step, Meta-PG
does not (about -2). Runs are in one process (``ipd_runs``); see the README.

    python examples/meta_mapg_ipd.py                     # 5 seeds, 200 meta-training tasks
    python examples/meta_mapg_ipd.py --from-runs RUN...  # the same table from live runs
"""

from __future__ import annotations

import argparse
import json
import time
import tomllib
from pathlib import Path

import numpy as np
from ipd_runs import ci95, new_pair, p_cooperate, play

ALGOS = ("meta-pg", "meta-mapg")
N_TEST = 20


def meta_test(algo: str, mode: str, seed: int, thetas: list[np.ndarray] | None,
              args: argparse.Namespace) -> np.ndarray:
    """(L + 1,) reward per step at each chain step on the meta-test tasks."""
    env, learners = new_pair(algo, 1000 + seed, {**common(mode, args), "lr": 0.0},
                             env_args=env_args(args, "meta-test"))
    if thetas is not None:
        for learner, theta in zip(learners, thetas):
            learner.load_state_dict({"theta": theta, "phi": theta})
    per_agent = play(env, learners, N_TEST * (args.chain + 1), seed)
    return np.array([[np.mean([s[f"reward_chain{j}"] for s in agent if f"reward_chain{j}" in s])
                      for j in range(args.chain + 1)] for agent in per_agent]).mean(0)


def common(mode: str, args: argparse.Namespace) -> dict:
    return {"opponent": mode, "chain": args.chain}


def env_args(args: argparse.Namespace, tasks: str) -> dict:
    return {"payoff_noise": args.noise, "tasks": tasks, "episodes_per_task": args.chain + 1}


def one(algo: str, mode: str, seed: int, args: argparse.Namespace) -> dict:
    env, learners = new_pair(algo, seed, common(mode, args),
                             env_args=env_args(args, "meta-train"))
    per_agent = play(env, learners, args.tasks * (args.chain + 1), seed)
    last = f"reward_chain{args.chain}"
    train = np.array([[s[last] for s in agent if last in s] for agent in per_agent]).mean(0)
    thetas = [lr.theta.copy() for lr in learners]
    return {"train": train, "test": meta_test(algo, mode, seed, thetas, args),
            "policy": p_cooperate(thetas[0])}


def from_run(run_dir: Path) -> str:
    """Reward per step at each chain step of a live run, from the env server's episode returns
    (all K copies play the same task, so episode e is at chain step (e - 1) mod (L + 1))."""
    config = tomllib.loads((run_dir / "config.toml").read_text())
    per_task, k = config["env_args"]["episodes_per_task"], config["num_envs"]
    returns = [json.loads(line)["return"] for line in
               (run_dir / "metrics.jsonl").read_text().splitlines() if '"return"' in line]
    steps = np.arange(len(returns)) // k % per_task
    cells = "  ".join(f"j={j}: {np.mean(np.array(returns)[steps == j]) / config['episode_len']:6.3f}"
                      for j in range(per_task))
    tasks = len(returns) // (k * per_task)
    return f"{run_dir.name} ({config['algo']}, {tasks} tasks):  {cells}"


def report(name: str, tests: list[np.ndarray], extra: str = "") -> str:
    mean, half = ci95(tests)
    cells = "  ".join(f"j={j}: {m:6.3f} ± {h:5.3f}" for j, (m, h) in
                      enumerate(zip(mean, np.broadcast_to(half, mean.shape))))
    return f"{name:<22} {cells}{extra}"


def plot(results: dict, untrained: dict, args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_test, ax_train) = plt.subplots(1, 2, figsize=(11, 4))
    j = np.arange(args.chain + 1)
    styles, colors = {"model": "-", "shared": "--"}, {"meta-pg": "C0", "meta-mapg": "C1"}
    for (algo, mode), runs in results.items():
        mean, half = ci95([r["test"] for r in runs])
        ax_test.errorbar(j + (0.04 if mode == "shared" else 0), mean, yerr=half, capsize=3,
                         ls=styles[mode], color=colors[algo], marker="o",
                         label=f"{algo}, opponent={mode}")
        curve = np.array([np.convolve(r["train"], np.ones(10) / 10, "valid") for r in runs])
        m, h = ci95(curve)
        x = np.arange(len(m)) + 10
        ax_train.plot(x, m, ls=styles[mode], color=colors[algo], label=f"{algo}, {mode}")
        ax_train.fill_between(x, m - h, m + h, color=colors[algo], alpha=0.15)
    for mode, tests in untrained.items():
        mean, half = ci95(tests)
        ax_test.errorbar(j, mean, yerr=half, capsize=3, color="grey", ls=styles[mode],
                         marker="x", label=f"untrained, {mode}")
    ax_test.set(xticks=j, xlabel="inner step j on a meta-test task",
                ylabel="reward per step (both agents)",
                title=f"meta-test ({N_TEST} tasks per seed): mean, 95% CI over seeds")
    ax_train.set(xlabel="meta-training task", ylabel=f"reward per step at j = {args.chain}",
                 title="meta-training (10-task average), 95% CI")
    for ax in (ax_test, ax_train):
        ax.axhline(-1, color="grey", lw=0.6, ls=":")
        ax.axhline(-2, color="grey", lw=0.6, ls=":")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"ipd, payoff noise U(-{args.noise}, {args.noise}), chain L = {args.chain}, "
                 f"{len(args.seeds)} seeds; opponent=shared is NOT private", fontsize=10)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(5)))
    parser.add_argument("--tasks", type=int, default=200,
                        help="meta-training tasks (chains); 200 = one pass over meta-train")
    parser.add_argument("--chain", type=int, help="L, inner steps per task (default: the "
                        "learners')")
    parser.add_argument("--noise", type=float, default=0.25, help="payoff noise half-width")
    parser.add_argument("--modes", nargs="+", default=["model", "shared"])
    parser.add_argument("--out", type=Path, default=Path("docs/meta_mapg_ipd.png"))
    parser.add_argument("--from-runs", type=Path, nargs="+", metavar="RUN",
                        help="only print the reward per chain step of these live runs")
    args = parser.parse_args()
    if args.chain is None:
        from agentd.algorithms import load_learner_class

        args.chain = load_learner_class("meta-mapg").Params().chain
    if args.from_runs:
        print("\n".join(from_run(run) for run in args.from_runs))
        return
    results: dict[tuple[str, str], list[dict]] = {}
    untrained: dict[str, list[np.ndarray]] = {}
    started = time.monotonic()
    for seed in args.seeds:
        for mode in args.modes:
            untrained.setdefault(mode, []).append(meta_test("meta-mapg", mode, seed, None, args))
            for algo in ALGOS:
                results.setdefault((algo, mode), []).append(one(algo, mode, seed, args))
        print(f"  seed {seed} done ({time.monotonic() - started:.0f} s)", flush=True)
    print(f"\nmeta-test reward per step at inner step j (mean over {N_TEST} tasks and both "
          f"agents; ± 95% CI over seeds {args.seeds}); {args.tasks} meta-training tasks, "
          f"L = {args.chain}, noise {args.noise}")
    for mode in args.modes:
        print(report(f"untrained {mode}", untrained[mode]))
        for algo in ALGOS:
            runs = results[(algo, mode)]
            tail = np.mean([r["train"][-30:].mean() for r in runs])
            print(report(f"{algo} {mode}", [r["test"] for r in runs],
                         f"   (meta-train, last 30 tasks, j={args.chain}: {tail:6.3f}; seed-0 "
                         f"theta P(C|s0,CC,CD,DC,DD) {runs[0]['policy']})"))
    plot(results, untrained, args)
    print(f"plot: {args.out}  ({time.monotonic() - started:.0f} s in all)")


if __name__ == "__main__":
    main()
