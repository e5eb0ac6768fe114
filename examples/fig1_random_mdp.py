"""Seed 002, Fig. 1(a)/(b): decentralized actor-critic vs centralized and independent
Q-learning on random-mdp, as learning curves (mean and spread over seeds).

Each run is a real ``agentd launch`` (one process per agent for dac/iql, one process for
central-q). Usage::

    python examples/fig1_random_mdp.py --n 5 --seeds 0 1 2 --steps 20000 --out fig1_n5.png

Prints one row per algorithm: final_return mean ± sd over seeds, and writes the plot.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ALGOS = ("dac", "central-q", "iql")


def run(algo: str, n: int, seed: int, steps: int, run_dir: Path) -> tuple[np.ndarray, dict]:
    cmd = [sys.executable, "-m", "agentd", "launch", "--quiet", "--algo", algo, "--n", str(n),
           "--seed", str(seed), "--steps", str(steps), "--run-dir", str(run_dir)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((run_dir / "summary.json").read_text())
    return np.array([r["return"] for r in records if "return" in r]), summary


def smooth(x: np.ndarray, window: int = 20) -> np.ndarray:
    return np.convolve(x, np.ones(window) / window, mode="valid")


def plot(curves: dict[str, list[np.ndarray]], n: int, episode_len: int, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for algo, runs in curves.items():
        length = min(len(r) for r in runs)
        sm = np.array([smooth(r[:length]) for r in runs])
        steps = (np.arange(sm.shape[1]) + 20) * episode_len
        mean, sd = sm.mean(axis=0), sm.std(axis=0)
        ax.plot(steps, mean, label=f"{algo} ({len(runs)} seeds)")
        ax.fill_between(steps, mean - sd, mean + sd, alpha=0.2)
    ax.set_xlabel("joint step")
    ax.set_ylabel("episode return (20-episode average)")
    ax.set_title(f"random-mdp, n={n}, ring: mean ± sd over seeds")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--algos", nargs="+", default=list(ALGOS))
    parser.add_argument("--out", type=Path, default=Path("fig1_random_mdp.png"))
    args = parser.parse_args()
    curves: dict[str, list[np.ndarray]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for algo in args.algos:
            finals = []
            for seed in args.seeds:
                returns, summary = run(algo, args.n, seed, args.steps,
                                       Path(tmp) / f"{algo}-{seed}")
                curves.setdefault(algo, []).append(returns)
                finals.append(summary["final_return"])
                print(f"  {algo} seed {seed}: final_return {summary['final_return']:.2f} "
                      f"(initial {summary['initial_return']:.2f})", flush=True)
            print(f"{algo:>10}: final_return {np.mean(finals):6.2f} ± {np.std(finals):.2f} "
                  f"over seeds {args.seeds}", flush=True)
    plot(curves, args.n, 50, args.out)
    print(f"plot: {args.out}")


if __name__ == "__main__":
    main()
