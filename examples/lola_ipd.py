"""LOLA vs naive learners on the iterated prisoner's dilemma (LOLA, Foerster et al. 2018).

Two agents of the same algorithm play the standard ipd (horizon 150, gamma 0.96) and learn
once per episode. For each opponent mode -- ``model`` (private: each agent fits a model of
the other's policy to its observed actions) and ``shared`` (NOT private: the agents exchange
their logits, the published full-information setting) -- and each seed it reports the mean
reward per step over the last 10% of episodes, with a 95% t-interval over seeds, the episode
at which the seed-mean first reaches -1.1 per step, and seed 0's learned policy.

Every hyper-parameter is the learners' default (the official exact LOLA setting,
alshedivat/lola: lr 1, lr_correction 1, gamma 0.96, N(0, 1) initial logit differences,
translated to two logits per state) unless ``--lr`` / ``--eta`` say otherwise; 200 updates.
Runs are in one process (``ipd_runs``); see the README.

    python examples/lola_ipd.py                                  # exact, 10 seeds
    python examples/lola_ipd.py --estimator dice --num-envs 64 --seeds 0 1 2 3 4 \\
        --out docs/lola_ipd_dice.png
    python examples/lola_ipd.py --estimator dice --num-envs 64 --seeds 0 1 2 3 4 \\
        --lr 0.1 --eta 0.15 --out docs/lola_ipd_dice_small_steps.png
    python examples/lola_ipd.py --estimator dice --num-envs 64 --seeds 0 1 2 3 4 \\
        --modes model --param model_decay=0.5 --out /tmp/lola_decay.png
"""

from __future__ import annotations

import argparse
import time
import tomllib
from pathlib import Path

import numpy as np
from ipd_runs import ci95, new_pair, p_cooperate, play

ALGOS = ("naive-pg", "lola")


def one(algo: str, mode: str, seed: int, args: argparse.Namespace) -> dict:
    params = {"opponent": mode, "estimator": args.estimator, **steps(args, algo),
              **dict(parse_param(kv) for kv in args.param)}
    env, learners = new_pair(algo, seed, params, num_envs=args.num_envs)
    per_agent = play(env, learners, args.episodes, seed)
    rewards = np.array([[s["reward_per_step"] for s in agent] for agent in per_agent])
    out = {"rewards": rewards, "policy": p_cooperate(learners[0].theta)}
    if mode == "shared":
        out["model_error"] = float(np.mean([s["model_error"] for s in per_agent[0][-20:]]))
    return out


def parse_param(item: str) -> tuple[str, object]:
    """KEY=VALUE with a TOML value (a number stays a number)."""
    key, _, raw = item.partition("=")
    try:
        return key, tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return key, raw


def steps(args: argparse.Namespace, algo: str) -> dict:
    """The step sizes given on the command line (the learners' defaults otherwise)."""
    given = {"lr": args.lr, "eta": args.eta if algo == "lola" else None}
    return {k: v for k, v in given.items() if v is not None}


def step_sizes(args: argparse.Namespace) -> str:
    """'lr X, eta Y' as the lola runs use them."""
    from agentd.algorithms import load_learner_class

    p = load_learner_class("lola").Params(**steps(args, "lola"))
    return f"lr {p.lr}, eta {p.eta}"


def summarise(name: str, runs: list[dict], episodes: int) -> str:
    tail = max(1, episodes // 10)
    final = [r["rewards"][:, -tail:].mean() for r in runs]
    agents = [np.mean([r["rewards"][a, -tail:].mean() for r in runs]) for a in (0, 1)]
    mean, half = ci95(final)
    curve = np.mean([r["rewards"].mean(0) for r in runs], axis=0)
    reached = np.nonzero(curve >= -1.1)[0]
    when = f"episode {reached[0] + 1:3d}" if len(reached) else "never    "
    cooperating = sum(f > -1.1 for f in final)
    line = (f"{name:<16} final {mean:6.3f} ± {half:5.3f} (agents {agents[0]:6.3f}, "
            f"{agents[1]:6.3f})  seeds above -1.1: {cooperating}/{len(final)}  "
            f"range {min(final):6.3f} .. {max(final):6.3f}  "
            f"mean reaches -1.1 at {when}  seed-0 P(C|s0,CC,CD,DC,DD) {runs[0]['policy']}")
    if "model_error" in runs[0]:
        err = np.mean([r["model_error"] for r in runs])
        line += f"\n{'':<16} (private model's mean |P(C) error| at the end: {err:.3f})"
    return line


def plot(results: dict[tuple[str, str], list[dict]], args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(args.modes), figsize=(5.2 * len(args.modes), 3.8),
                             sharey=True, squeeze=False)
    for ax, mode in zip(axes[0], args.modes):
        for algo in ALGOS:
            runs = results[(algo, mode)]
            mean, half = ci95([r["rewards"].mean(0) for r in runs])
            x = np.arange(1, len(mean) + 1)
            ax.plot(x, mean, label=f"{algo} ({len(runs)} seeds)")
            ax.fill_between(x, mean - half, mean + half, alpha=0.25)
        private = "private opponent model" if mode == "model" else "shared logits (NOT private)"
        ax.set(title=f"opponent = {mode}: {private}", xlabel="episode (one update each)")
        ax.axhline(-1, color="grey", lw=0.6, ls=":")
        ax.axhline(-2, color="grey", lw=0.6, ls=":")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("reward per step (both agents)")
    fig.suptitle(f"ipd, {args.estimator} gradients, K = {args.num_envs}, {step_sizes(args)}: "
                 "mean and 95% CI over seeds", fontsize=10)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--modes", nargs="+", default=["model", "shared"])
    parser.add_argument("--estimator", default="exact", choices=["exact", "dice"])
    parser.add_argument("--num-envs", type=int, default=1)
    parser.add_argument("--lr", type=float, help="step size (both algorithms; default: the "
                        "learners')")
    parser.add_argument("--eta", type=float, help="LOLA's look-ahead step size (default: the "
                        "learner's)")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="another learner parameter for both algorithms (repeatable)")
    parser.add_argument("--out", type=Path, default=Path("docs/lola_ipd.png"))
    args = parser.parse_args()
    results: dict[tuple[str, str], list[dict]] = {}
    started = time.monotonic()
    for seed in args.seeds:
        for mode in args.modes:
            for algo in ALGOS:
                results.setdefault((algo, mode), []).append(one(algo, mode, seed, args))
        print(f"  seed {seed} done ({time.monotonic() - started:.0f} s)", flush=True)
    print(f"\nipd, {args.estimator} gradients, K = {args.num_envs}, {step_sizes(args)}, "
          f"{args.episodes} episodes of 150 steps, seeds {args.seeds}; final = mean reward per "
          "step over the last 10% of episodes, ± 95% CI over seeds")
    for (algo, mode), runs in results.items():
        print(summarise(f"{algo} {mode}", runs, args.episodes))
    plot(results, args)
    print(f"plot: {args.out}  ({time.monotonic() - started:.0f} s in all)")


if __name__ == "__main__":
    main()
