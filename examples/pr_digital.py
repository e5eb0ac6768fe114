"""Policy reciprocity (Wang et al. 2023) on the Digital env: IQL vs IQL + PR, through real agent
processes.

IQL here is ``--algo pr --param beta=0`` (PR with beta = 0 is IQL exactly, same alpha, gamma,
epsilon), so the only difference between the curves is the reciprocity pull. For each setting
and seed it runs ``agentd launch`` with periodic checkpoints and reports

* final_return (mean of the last 10% of episodes) and the episodes needed to reach 95% of the
  run's own improvement (first episode whose 20-episode average reaches
  initial + 0.95 (final - initial); Digital's returns start high — every reward has mean ~0.5 —
  so "95% of the final return" alone would be met at once); a run of fewer than 20 episodes
  is too short for that measure, and the report says so;
* the policy-consensus MSE curve (Wang et al. 2023, Fig. 2), computed offline from the checkpoints.

Usage (the full study is long on 2 cores; --quick is a first look of about 1.5 min of CPU: the
n = 5 ring, 2 seeds, 2,000 steps)::

    python examples/pr_digital.py --quick --out pr_digital.png
    python examples/pr_digital.py --n 5 --seeds 0 1 2 --out docs/pr_digital_n5.png
    python examples/pr_digital.py --n 5 10 --seeds 0 1 2 3 4 --betas 0 0.05 --topologies ring
    python examples/pr_digital.py --n 5 --betas 0 0.02 0.05 0.1 --topologies line ring complete
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from agentd.tools.diagnostics import policy_consensus


def launch(run_dir: Path, n: int, topology: str, beta: float, seed: int, steps: int) -> None:
    cfg = run_dir.parent / f"{run_dir.name}.toml"
    cfg.write_text(f"checkpoint_every = {max(steps // 20, 1)}\n")
    cmd = [sys.executable, "-m", "agentd", "launch", "--quiet", "--config", str(cfg),
           "--run-dir", str(run_dir), "--algo", "pr", "--env", "digital", "--n", str(n),
           "--topology", topology, "--seed", str(seed), "--steps", str(steps),
           "--param", f"beta={beta}"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


WINDOW = 20    # episodes averaged for the episodes-to-95% measure and the plot


def episodes_to_95(returns: np.ndarray, window: int = WINDOW) -> int | None:
    """Episodes until the ``window``-episode average first reaches 95% of the run's own
    improvement; None when the run has fewer than ``window`` episodes (too short to say) or
    the average never gets there (the last episodes alone can lift the goal above it)."""
    if len(returns) < window:
        return None
    smooth = np.convolve(returns, np.ones(window) / window, mode="valid")
    tenth = max(1, len(returns) // 10)
    initial, final = returns[:tenth].mean(), returns[-tenth:].mean()
    goal = initial + 0.95 * (final - initial)
    reached = np.nonzero(smooth >= goal)[0] if final > initial else np.array([len(smooth)])
    return int(reached[0]) + window if len(reached) else None


def one(tmp: Path, n: int, topology: str, beta: float, seed: int, steps: int) -> dict:
    run_dir = tmp / f"n{n}-{topology}-b{beta}-s{seed}"
    launch(run_dir, n, topology, beta, seed, steps)
    summary = json.loads((run_dir / "summary.json").read_text())
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    returns = np.array([r["return"] for r in records if "return" in r])
    return {"returns": returns, "final": summary["final_return"],
            "to95": episodes_to_95(returns), "consensus": policy_consensus(run_dir),
            "bytes_edge_step": summary["peer_bytes_per_edge_per_step"]}


def report(key: tuple, runs: list[dict]) -> str:
    n, topology, beta = key
    finals = [r["final"] for r in runs]
    to95 = [r["to95"] for r in runs if r["to95"] is not None]
    cons = [r["consensus"][-1]["mse"] for r in runs if r["consensus"]]
    shortest = min(len(r["returns"]) for r in runs)
    speed = (f"{np.mean(to95):6.1f} ± {np.std(to95):5.1f}" if len(to95) == len(runs) else
             f"n/a (a run of {shortest} episodes; needs {WINDOW})" if shortest < WINDOW else
             f"n/a (not reached in {len(runs) - len(to95)} of {len(runs)} runs)")
    consensus = f"{np.mean(cons):.4f}" if cons else "n/a (no checkpoints)"
    return (f"n={n:<3} {topology:<9} beta={beta:<5} final {np.mean(finals):6.2f} ± "
            f"{np.std(finals):4.2f}  episodes-to-95% {speed}"
            f"  consensus MSE (end) {consensus}  bytes/edge/step "
            f"{runs[0]['bytes_edge_step']:.0f}")


def plot(results: dict[tuple, list[dict]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for (n, topology, beta), runs in results.items():
        label = f"n={n} {topology} " + ("IQL" if beta == 0 else f"PR beta={beta}")
        length = min(len(r["returns"]) for r in runs)
        window = max(1, min(WINDOW, length))
        sm = np.array([np.convolve(r["returns"][:length], np.ones(window) / window,
                                   mode="valid") for r in runs])
        x = np.arange(sm.shape[1]) + window
        ax1.plot(x, sm.mean(axis=0), label=label)
        ax1.fill_between(x, sm.mean(axis=0) - sm.std(axis=0), sm.mean(axis=0) + sm.std(axis=0),
                         alpha=0.2)
        if all(r["consensus"] for r in runs):
            steps = [p["step"] for p in runs[0]["consensus"]]
            mse = np.mean([[p["mse"] for p in r["consensus"]] for r in runs], axis=0)
            ax2.plot(steps, mse, label=label)
    ax1.set(xlabel="episode", ylabel=f"return ({WINDOW}-episode average, or fewer)",
            title="Digital: mean ± sd over seeds")
    ax2.set(xlabel="joint step", ylabel="MSE to the average Boltzmann policy",
            title="policy consensus")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[5, 10])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--betas", type=float, nargs="+", default=[0.0, 0.05])
    parser.add_argument("--topologies", nargs="+", default=["ring"])
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--quick", action="store_true",
                        help="a first look (about 1.5 min of CPU): n=5 ring, 2 seeds, 2000 steps")
    parser.add_argument("--out", type=Path, default=Path("pr_digital.png"))
    args = parser.parse_args()
    if args.quick:
        args.n, args.seeds, args.topologies, args.steps = [5], [0, 1], ["ring"], 2000
    results: dict[tuple, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.n:
            for topology in args.topologies:
                for beta in args.betas:
                    key = (n, topology, beta)
                    results[key] = [one(Path(tmp), n, topology, beta, s, args.steps)
                                    for s in args.seeds]
                    print(report(key, results[key]), flush=True)
    plot(results, args.out)
    print(f"plot: {args.out}")


if __name__ == "__main__":
    main()
