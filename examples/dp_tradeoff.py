"""The privacy-utility trade-off of DP on peer messages: final return and the leakage probe
against ε, over a grid of noise multipliers σ, through real ``agentd launch`` runs.

Two studies (one figure each):

* ``pr``: ``--algo pr --env digital``, n = 5 ring. Released: the Q rows of ``pr_values``, one
  unit per row, clipped to C = 5 (a row holds 2 values of about mean reward / (1 - gamma) =
  2.5 each, norm ~3.5; C is fixed a priori, not tuned). Leakage: the audit's nearest-centroid
  probe of an agent's action from the peer messages it sent (accuracy minus the blank-message
  baseline, mean over agents).
* ``dac-deep``: batch consensus on ``spread``, n = 3 ring; each log-ratio entry is a unit,
  clipped to C = 2 (the learner's own c_clip bounds |c| by 2). Its actions are continuous, where the audit's probe does not apply; this script
  scores the same per-step message features with least squares onto the action (fit on the
  first half of the steps, R^2 on the second half). Consensus: the log-ratio error at the
  end (``agentd consensus``'s max_i |N x^i - sum_j beta^j|, from periodic checkpoints); for
  pr the policy-consensus MSE.

σ = 0 is the run without DP (ε = ∞, drawn at the right edge). ``--reference`` adds the
learner without what the messages bring (IQL for pr, isac for dac-deep) as a dashed line. ε is the largest per-agent ε
(all out-edges composed, PLD, δ = 1e-5) from summary.json.

Usage (one run at a time; about 30-60 s per run on 2 cores at these budgets)::

    python examples/dp_tradeoff.py --study pr --out docs/dp_pr_digital.png
    python examples/dp_tradeoff.py --study pr --reference --out docs/dp_pr_digital.png
    python examples/dp_tradeoff.py --study dac-deep --out docs/dp_dac_deep_spread.png
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from agentd.tools.audit import _features, audit_run, collect

# "reference": the same learner without what the messages add (pr with beta = 0 is IQL
# exactly; isac is dac-deep without consensus): noise has broken the algorithm where it does
# worse than that.
STUDIES = {
    "pr": {"args": ["--algo", "pr", "--env", "digital", "--n", "5", "--dp-clip", "5"],
           "reference": ["--algo", "pr", "--env", "digital", "--n", "5", "--param", "beta=0"],
           "steps": 5000, "sigmas": [0.0, 1.0, 4.0, 16.0, 64.0]},
    "dac-deep": {"args": ["--algo", "dac-deep", "--env", "spread", "--n", "3", "--dp-clip", "2"],
                 "reference": ["--algo", "isac", "--env", "spread", "--n", "3"],
                 "steps": 3000, "sigmas": [0.0, 4.0, 16.0, 64.0]},
}


def launch(run_dir: Path, study: str, sigma: float | None, seed: int, steps: int) -> None:
    what = (STUDIES[study]["reference"] if sigma is None else
            [*STUDIES[study]["args"], "--dp-sigma", str(sigma)])
    cmd = [sys.executable, "-m", "agentd", "launch", "--quiet", "--run-dir", str(run_dir),
           *what, "--topology", "ring", "--seed", str(seed), "--steps", str(steps),
           "--checkpoint-every", str(max(steps // 5, 1))]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def continuous_probe(run_dir: Path) -> float:
    """Mean over agents of the held-out R^2 of a least-squares fit of the action (copy 0) on
    the step's peer-message features; <= 0 means the messages predict nothing."""
    c = collect(run_dir)
    scores = []
    for agent, actions in c.actions.items():
        steps = sorted(actions)
        y = np.array([actions[t] for t in steps])
        x = np.array([_features(c.peer_values.get(agent, {}).get(t, {})) for t in steps])
        x = np.hstack([x, np.ones((len(x), 1))])
        half = len(steps) // 2
        coef, *_ = np.linalg.lstsq(x[:half], y[:half], rcond=None)
        resid = ((x[half:] @ coef - y[half:]) ** 2).sum()
        total = ((y[half:] - y[:half].mean(0)) ** 2).sum()
        scores.append(1.0 - resid / total)
    return float(np.mean(scores))


def _consensus(point: dict) -> float | None:
    return point.get("max_err", point.get("mse"))


def one(tmp: Path, study: str, sigma: float | None, seed: int, steps: int) -> dict:
    run_dir = tmp / f"{study}-s{sigma}-seed{seed}"
    launch(run_dir, study, sigma, seed, steps)
    summary = json.loads((run_dir / "summary.json").read_text())
    row = {"study": study, "sigma": sigma, "seed": seed, "steps": steps,
           "final_return": summary["final_return"],
           "epsilon": summary["dp"]["max_epsilon"] if summary.get("dp") else None,
           "consensus": _consensus(summary.get("consensus") or {})}
    if study == "pr":
        probe = audit_run(run_dir)["probe"]["agents"]
        row["leakage"] = float(np.mean([a["accuracy"] - a["baseline"] for a in probe]))
    else:
        row["leakage"] = continuous_probe(run_dir)
    return row


def plot(rows: list[dict], study: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reference = [r for r in rows if r["sigma"] is None]
    rows = [r for r in rows if r["sigma"] is not None]
    sigmas = sorted({r["sigma"] for r in rows})
    finite = [r["epsilon"] for r in rows if r["epsilon"]]
    edge = 3 * max(finite) if finite else 1.0     # where "no DP" (epsilon = inf) is drawn
    keys = [("final_return", "final return"),
            ("leakage", "probe accuracy - baseline" if study == "pr" else "probe R^2 (held out)"),
            ("consensus", "policy-consensus MSE (end)" if study == "pr"
             else "log-ratio consensus error (end)")]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, (key, label) in zip(axes, keys):
        xs, ms, sds = [], [], []
        for s in sigmas:
            pick = [r for r in rows if r["sigma"] == s]
            xs.append(np.mean([r["epsilon"] or edge for r in pick]))
            ms.append(np.mean([r[key] for r in pick]))
            sds.append(np.std([r[key] for r in pick]))
        ax.errorbar(xs, ms, yerr=sds, marker="o", capsize=3)
        for x, m, s in zip(xs, ms, sigmas):
            ax.annotate("no DP (ε = ∞)" if s == 0 else f"σ={s:g}", (x, m), textcoords="offset points",
                        xytext=(4, 4), fontsize=8)
        if reference and key == "final_return":
            ref = np.mean([r[key] for r in reference])
            ax.axhline(ref, ls="--", c="grey", label=reference_name(study))
            ax.legend(fontsize=8)
        ax.set(xscale="log", xlabel="ε per agent (δ = 1e-5, PLD)", ylabel=label)
        if key == "consensus":
            ax.set_yscale("symlog", linthresh=1e-3)
            ax.set_ylim(bottom=0)
    name = "pr on digital, n = 5 ring" if study == "pr" else "dac-deep on spread, n = 3 ring"
    fig.suptitle(f"{name}, {rows[0]['steps']} steps: mean ± sd over {len(rows) // len(sigmas)} "
                 "seeds")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def table(rows: list[dict], study: str) -> str:
    """One line per setting: ε, final return, consensus error and leakage, mean ± sd."""
    lines = []
    for sigma in sorted({r["sigma"] for r in rows}, key=lambda s: -1 if s is None else s):
        pick = [r for r in rows if r["sigma"] == sigma]
        name = reference_name(study) if sigma is None else (
            "no DP" if sigma == 0 else f"sigma = {sigma:g}")
        eps = pick[0]["epsilon"]
        eps_text = "inf" if eps is None else f"{eps:.1f}"
        lines.append(f"{name:20s} epsilon {eps_text:>8}  return "
                     f"{_stat(pick, 'final_return')}  consensus {_stat(pick, 'consensus')}  "
                     f"leakage {_stat(pick, 'leakage')}  (seeds {len(pick)})")
    return "\n".join(lines)


def _stat(rows: list[dict], key: str) -> str:
    v = [r[key] for r in rows if r[key] is not None]
    return f"{np.mean(v):7.3f} ± {np.std(v):5.3f}" if v else f"{'-':>15}"


def reference_name(study: str) -> str:
    return "IQL (pr, beta = 0)" if study == "pr" else "isac (no consensus)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--study", choices=sorted(STUDIES), required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sigmas", type=float, nargs="+", default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--reference", action="store_true",
                        help="run only the reference learner and add its rows to the .jsonl")
    parser.add_argument("--plot-only", action="store_true", help="redraw from the .jsonl")
    parser.add_argument("--out", type=Path, required=True, help="figure (rows go to .jsonl)")
    args = parser.parse_args()
    if args.plot_only:
        rows = [json.loads(x) for x in args.out.with_suffix(".jsonl").read_text().splitlines()]
        print(table(rows, args.study))
        plot(rows, args.study, args.out)
        return
    steps = args.steps or STUDIES[args.study]["steps"]
    rows_file = args.out.with_suffix(".jsonl")
    rows = ([json.loads(x) for x in rows_file.read_text().splitlines()]
            if args.reference else [])
    sigmas = [None] if args.reference else args.sigmas or STUDIES[args.study]["sigmas"]
    with tempfile.TemporaryDirectory(prefix="dp-tradeoff-") as tmp:
        for sigma in sigmas:
            for seed in args.seeds:
                row = one(Path(tmp), args.study, sigma, seed, steps)
                print(json.dumps(row), flush=True)
                rows.append(row)
    rows_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(table(rows, args.study))
    plot(rows, args.study, args.out)


if __name__ == "__main__":
    main()
