"""The deep Q-learners (IQL, MA2QL, I2Q) on MPE simple_spread with discrete actions (n = 3, ring).

``iql-deep``, ``ma2ql-deep`` and ``i2q-deep`` (and ``random`` for scale), a few seeds each, at
the small budget a shared 2-core machine allows (``--steps`` joint steps of 25-step episodes).
The settings are the learners' defaults except: epsilon decays over the first half of the run,
one update every 2 joint steps (``train_every = 2``, to fit the budget),
``ma2ql-deep`` turns last ``--turn-len`` steps, and i2q-deep observes the global state (its
default, the theory needs it) while the others see their local observations. The score of a run
is the mean episode return (mean over agents, mpe2 units) over its last 20% of episodes,
still with epsilon = 0.05 exploration; the first 20% (mostly random) are shown for reference.

Runs use ``agentd.launch.inprocess`` (the agents' own learners, live order, no sockets); the live
equivalent is ``agentd launch --algo iql-deep --env mpe2.simple_spread_v3:parallel_env``.

Usage::

    python examples/dqn_spread.py --jobs 2 --seeds 0 1 2 --steps 100000 --turn-len 2500 \
        --out docs/dqn_spread
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from pathlib import Path

import numpy as np

from agentd.launch.inprocess import build_env, make_learners, run_in_process

ENV = "mpe2.simple_spread_v3:parallel_env"
ALGOS = ("random", "iql-deep", "ma2ql-deep", "i2q-deep")


def run_one(algo: str, seed: int, steps: int, turn_len: int) -> dict:
    from agentd.algorithms import load_learner_class

    obs_mode = "state" if load_learner_class(algo).wants_state else "local"
    env = build_env(ENV, 3, episode_len=25, seed=seed, obs_mode=obs_mode)
    params = {} if algo == "random" else {"eps_steps": steps // 2, "train_every": 2}
    if algo == "ma2ql-deep":
        params["turn_len"] = turn_len
    learners = make_learners(algo, env, 3, topology="ring", seed=seed, params=params)
    t0 = time.time()
    res = run_in_process(env, learners, steps, reset_seed=seed)
    returns = [v for _, v in res.returns]
    fifth = max(1, len(returns) // 5)
    return {"algo": algo, "seed": seed, "steps": steps, "returns": res.returns,
            "first": float(np.mean(returns[:fifth])), "last": float(np.mean(returns[-fifth:])),
            "seconds": time.time() - t0}


def run_job(job: tuple) -> dict:
    return run_one(*job)


def plot(runs: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    colours = dict(zip(ALGOS, ("grey", "tab:red", "tab:blue", "tab:green")))
    for algo in ALGOS:
        for r in (r for r in runs if r["algo"] == algo):
            x = np.array([s for s, _ in r["returns"]])
            y = np.array([v for _, v in r["returns"]])
            w = max(1, min(20, len(y)))           # episodes per moving average (fewer: all)
            smooth = np.convolve(y, np.ones(w) / w, mode="valid")
            ax.plot(x[w - 1:], smooth, color=colours[algo], alpha=0.7,
                    label=algo if r["seed"] == runs[0]["seed"] else None)
    ax.set_xlabel("joint steps")
    ax.set_ylabel("episode return (20-episode mean, or fewer)")
    ax.set_title("MPE simple_spread, 3 agents, discrete actions, ring")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=90)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=4_000)
    ap.add_argument("--turn-len", type=int, default=1_000)
    ap.add_argument("--algos", nargs="+", default=list(ALGOS))
    ap.add_argument("--jobs", type=int, default=1, help="runs in parallel (processes)")
    ap.add_argument("--out", type=Path, default=Path("docs/dqn_spread"))
    args = ap.parse_args()
    jobs = [(algo, seed, args.steps, args.turn_len) for seed in args.seeds for algo in args.algos]
    runs = []
    with open(args.out.with_suffix(".jsonl"), "w") as f, \
            multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        for r in pool.imap(run_job, jobs):
            f.write(json.dumps(r) + "\n")
            f.flush()
            print(f"{r['algo']:10s} seed {r['seed']}: first 20% {r['first']:8.2f}  last 20% "
                  f"{r['last']:8.2f}  [{r['seconds']:.0f} s]", flush=True)
            runs.append(r)
    for algo in args.algos:
        last = [r["last"] for r in runs if r["algo"] == algo]
        print(f"{algo:10s} last-20% return over {len(last)} seeds: {np.mean(last):.2f} "
              f"(min {np.min(last):.2f}, max {np.max(last):.2f})")
    plot(runs, args.out)


if __name__ == "__main__":
    main()
