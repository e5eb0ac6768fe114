"""I2Q vs IQL on the deterministic L-stage game of I2Q (Jiang & Lu 2022), ten games per L.

Each game is an ``lstage`` env with its own seed (node rewards U(-1, 1) drawn from it). Both
algorithms are the ``i2q`` learner with its defaults -- the official code's tabular settings:
alpha 0.1, epsilon 0.5 (fixed), gamma 1, each agent backing up from its own replay buffer (10
minibatches of 100 every 50 stored transitions, from 10k on), Q and Q_ss initialised
U(-0.5, 0.5) -- and IQL is that learner with ``ideal = false`` (Q on the sampled s', the
official code's IQL switch). ``--param KEY=VALUE`` changes a setting for both (e.g.
``--param replay_batches=0 --param q_init=0``: one online backup per transition from zero
tables). 100k env transitions (``--transitions``), taken as K = 4 env copies per joint step.
Every ``--every`` transitions the agents' greedy joint policy is rolled out from the root (the
game is deterministic, so one rollout is exact) and divided by the game's optimum (exhaustive
recursion); a run's score is the mean of its last 10 evaluations, as in the official code's
curves.

Runs use ``agentd.launch.inprocess`` (the agents' own learners, live order, no sockets). ``--check
RUN_DIR`` scores a live run instead (``agentd launch --n 2 --algo i2q --env lstage ...``): the
greedy joint policy of its agents' final Q tables, divided by the optimum (the run's own
summary shows the return of its epsilon = 0.5 behaviour, which is not the greedy one).

Usage::

    python examples/i2q_lstage.py --L 3 4 5 --games 10 --out docs/i2q_lstage
    python examples/i2q_lstage.py --param replay_batches=0 --param q_init=0 --L 4 --games 10 \
        --out /tmp/i2q_online
    python examples/i2q_lstage.py --check RUN_DIR
    python examples/i2q_lstage.py --report docs/i2q_lstage.jsonl     # table + plot again (of a run above)
"""

from __future__ import annotations

import argparse
import json
import time
import tomllib
from pathlib import Path

import numpy as np

from agentd.launch.inprocess import build_env, make_learners, run_in_process


def greedy_return(env, tables: list[np.ndarray]) -> float:
    """The exact return of the agents' greedy joint policy (the game's own scorer, the one
    the launch summary uses for ``greedy_return``)."""
    return env.greedy_return([q.argmax(axis=1) for q in tables])


def run_one(algo: str, L: int, game: int, transitions: int, k: int, every: int,
            extra: dict | None = None) -> dict:
    env = build_env("lstage", 2, num_envs=k, episode_len=L, seed=game, env_args={"L": L})
    params = {**(extra or {}), "ideal": algo == "i2q"}     # IQL is i2q's ideal = false
    learners = make_learners("i2q", env, 2, topology="line", seed=game, params=params)
    opt = env.known_returns()["optimal_return"]
    curve: list[tuple[int, float]] = []

    def on_step(t: int) -> None:
        if (t * k) % every == 0:
            curve.append((t * k, greedy_return(env, [lr.q for lr in learners]) / opt))

    t0 = time.time()
    run_in_process(env, learners, transitions // k, reset_seed=game, on_step=on_step)
    score = float(np.mean([v for _, v in curve[-10:]]))
    return {"algo": algo, "L": L, "game": game, "score": score, "curve": curve, "params": params,
            "optimal_return": opt, "seconds": time.time() - t0}


def check_run(run_dir: Path) -> None:
    cfg = tomllib.loads((run_dir / "config.toml").read_text())
    # the env server builds the game from the run's derived env seed, not --seed itself
    model_seed = json.loads((run_dir / "seeds.json").read_text())["env_model"]
    env = build_env("lstage", 2, episode_len=cfg["episode_len"], seed=model_seed,
                    env_args=cfg.get("env_args", {}))
    tables = []
    for i in range(2):
        with np.load(run_dir / "checkpoints" / f"agent-{i}.npz") as saved:
            tables.append(saved["q"])
    opt, got = env.known_returns()["optimal_return"], greedy_return(env, tables)
    print(f"{run_dir}: {cfg['algo']}, L = {env.L}, seed {cfg['seed']}: greedy return "
          f"{got:.4f} / optimum {opt:.4f} = {got / opt:.3f}")


def report(runs: list[dict]) -> str:
    lines = ["| L | games | IQL mean (min) | I2Q mean (min) | IQL at optimum | I2Q at optimum |",
             "|---|---|---|---|---|---|"]
    for L in sorted({r["L"] for r in runs}):
        cell = {}
        for algo in ("iql", "i2q"):
            s = np.array([r["score"] for r in runs if r["L"] == L and r["algo"] == algo])
            cell[algo] = (f"{s.mean():.3f} ({s.min():.3f})", f"{int((s > 0.9999).sum())}/{len(s)}")
        n = len([r for r in runs if r["L"] == L and r["algo"] == "i2q"])
        lines.append(f"| {L} | {n} | {cell['iql'][0]} | {cell['i2q'][0]} | {cell['iql'][1]} | "
                     f"{cell['i2q'][1]} |")
    return "\n".join(lines)


def plot(runs: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = sorted({r["L"] for r in runs})
    fig, axes = plt.subplots(1, len(levels), figsize=(5 * len(levels), 3.8), squeeze=False)
    for ax, L in zip(axes[0], levels):
        for algo, colour in (("i2q", "tab:blue"), ("iql", "tab:red")):
            curves = [r["curve"] for r in runs if r["L"] == L and r["algo"] == algo]
            if not curves:
                continue
            x = [c[0] for c in curves[0]]
            y = np.array([[v for _, v in c] for c in curves])
            ax.plot(x, y.mean(axis=0), color=colour, label=f"{algo} (mean of {len(y)})")
            ax.fill_between(x, y.min(axis=0), y.max(axis=0), color=colour, alpha=0.15)
        ax.set_title(f"L-stage game, L = {L}")
        ax.set_xlabel("env transitions")
        ax.set_ylabel("greedy return / optimum")
        ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=90)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--L", type=int, nargs="+", default=[3, 4, 5])
    ap.add_argument("--games", type=int, default=10)
    ap.add_argument("--transitions", type=int, default=100_000)
    ap.add_argument("--num-envs", type=int, default=4)
    ap.add_argument("--every", type=int, default=1_000)
    ap.add_argument("--out", type=Path, default=Path("docs/i2q_lstage"))
    ap.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                    help="an i2q parameter for both algorithms (repeatable)")
    ap.add_argument("--check", type=Path, help="score a live run directory instead")
    ap.add_argument("--report", type=Path,
                    help="only print the table and plot of a saved .jsonl (beside it)")
    args = ap.parse_args()
    if args.check:
        check_run(args.check)
        return
    if args.report:
        runs = [json.loads(line) for line in args.report.read_text().splitlines()]
        print(report(runs))
        plot(runs, args.report)
        return
    extra = {k: tomllib.loads(f"v = {v}")["v"] for k, v in
             (kv.split("=", 1) for kv in args.param)}
    runs = []
    with open(args.out.with_suffix(".jsonl"), "w") as f:
        for L in args.L:
            for game in range(args.games):
                for algo in ("i2q", "iql"):
                    r = run_one(algo, L, game, args.transitions, args.num_envs, args.every,
                                extra)
                    f.write(json.dumps(r) + "\n")
                    f.flush()
                    print(f"L={L} game {game} {algo}: {r['score']:.3f} [{r['seconds']:.0f} s]",
                          flush=True)
                    runs.append(r)
    print(report(runs))
    plot(runs, args.out)


if __name__ == "__main__":
    main()
