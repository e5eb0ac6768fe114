"""Seed 002 Fig. 1(c): dac-deep vs isac vs maddpg on cooperative navigation, n = 3 on a ring.

Every run is a real ``agentd launch`` (3 agent processes for dac-deep and isac, one centralised
non-private process for maddpg), same env, seeds and budget. For each algorithm it reports the
mean return of the first and last 10% of episodes (mean ± sd over seeds) and, for dac-deep,
the consensus bytes per edge per step, and draws the learning curves (20-episode average,
mean ± sd over seeds).

The env defaults to ``spread``, Li & Jia's variant (each agent its own landmark, shared reward =
mean over agents of minus the distance to its landmark, minus 1 per collision). ``--env
mpe2.simple_spread_v3:parallel_env`` runs the original MPE task instead.

Usage (about 3 minutes per run on 2 cores at the default budget)::

    python examples/fig1c_spread.py --seeds 0 1 2 --out docs/fig1c_spread.png
    python examples/fig1c_spread.py --algos dac-deep dac-deep:full isac --steps 10000
    python examples/fig1c_spread.py --algos isac isac+pr0.3 --env mpe2.simple_spread_v3:parallel_env

``ALGO:full`` runs dac-deep's full-buffer consensus; ``ALGO+prW`` enables the deep
policy-reciprocity plug-in with weight W (Wang et al. 2023, Algorithm 2).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

WINDOW = 20


def algo_args(algo: str) -> list[str]:
    """'dac-deep' -> --algo dac-deep; 'dac-deep:full' adds --param mode=full; 'isac+pr0.3'
    adds --pr-weight 0.3 (the deep policy-reciprocity plug-in)."""
    name, _, weight = algo.partition("+pr")
    name, _, mode = name.partition(":")
    return (["--algo", name] + (["--param", f"mode={mode}"] if mode else [])
            + (["--pr-weight", weight] if weight else []))


def launch(run_dir: Path, algo: str, env: str, seed: int, steps: int,
           params: list[str]) -> None:
    extra = algo_args(algo)
    for p in params:
        extra += ["--param", p]
    cmd = [sys.executable, "-m", "agentd", "launch", "--quiet", "--run-dir", str(run_dir),
           "--env", env, "--n", "3", "--topology", "ring", "--seed", str(seed),
           "--steps", str(steps), *extra]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def one(tmp: Path, algo: str, env: str, seed: int, steps: int, params: list[str]) -> dict:
    run_dir = tmp / f"{algo.replace(':', '-').replace('+', '-')}-s{seed}"
    started = time.monotonic()
    launch(run_dir, algo, env, seed, steps, params)
    summary = json.loads((run_dir / "summary.json").read_text())
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    returns = np.array([r["return"] for r in records if "return" in r])
    tenth = max(1, len(returns) // 10)
    return {"returns": returns, "first": float(returns[:tenth].mean()),
            "last": float(returns[-tenth:].mean()), "wall": time.monotonic() - started,
            "bytes_edge_step": summary["peer_bytes_per_edge_per_step"],
            "bytes_edge_last": summary.get("peer_bytes_per_edge_last_step", 0.0),
            "private": summary["private"]}


def report(algo: str, runs: list[dict]) -> str:
    first = [r["first"] for r in runs]
    last = [r["last"] for r in runs]
    tag = "" if runs[0]["private"] else "  (centralised, non-private)"
    return (f"{algo:<14} first 10% {np.mean(first):7.2f} ± {np.std(first):4.2f}   last 10% "
            f"{np.mean(last):7.2f} ± {np.std(last):4.2f}   gain {np.mean(last) - np.mean(first):+6.2f}"
            f"   peer bytes/edge/step {runs[0]['bytes_edge_step']:7.0f} (last step "
            f"{runs[0]['bytes_edge_last']:.0f})   {np.mean([r['wall'] for r in runs]):4.0f} s/run"
            f"{tag}")


def plot(results: dict[str, list[dict]], env: str, steps: int, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for algo, runs in results.items():
        length = min(len(r["returns"]) for r in runs)
        sm = np.array([np.convolve(r["returns"][:length], np.ones(WINDOW) / WINDOW,
                                   mode="valid") for r in runs])
        x = np.arange(sm.shape[1]) + WINDOW
        mean, sd = sm.mean(axis=0), sm.std(axis=0)
        ax.plot(x, mean, label=f"{algo} ({len(runs)} seeds)")
        ax.fill_between(x, mean - sd, mean + sd, alpha=0.2)
    ax.set(xlabel="episode", ylabel=f"return ({WINDOW}-episode average)",
           title=f"{env.split(':')[0]}, n = 3 ring, {steps} steps\nmean ± sd over seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algos", nargs="+", default=["dac-deep", "isac", "maddpg"],
                        help="learners; dac-deep:full = the paper's full-buffer consensus; "
                             "isac+pr0.3 = isac with the deep PR plug-in, weight 0.3")
    parser.add_argument("--env", default="spread")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--param", action="append", default=[],
                        help="KEY=VALUE passed to every learner (e.g. buffer=20000)")
    parser.add_argument("--out", type=Path, default=Path("fig1c_spread.png"))
    args = parser.parse_args()
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:               # interleaved: machine drift hits every algo
            for algo in args.algos:
                run = one(Path(tmp), algo, args.env, seed, args.steps, args.param)
                results.setdefault(algo, []).append(run)
                print(f"  {algo} seed {seed}: first {run['first']:.2f} last {run['last']:.2f} "
                      f"({run['wall']:.0f} s)", flush=True)
    print(f"\n{args.env}, n = 3 ring, {args.steps} steps, seeds {args.seeds}")
    for algo, runs in results.items():
        print(report(algo, runs))
    plot(results, args.env, args.steps, args.out)
    print(f"plot: {args.out}")


if __name__ == "__main__":
    main()
