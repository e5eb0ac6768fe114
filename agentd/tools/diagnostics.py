"""Offline diagnostics over the agents' own checkpoints, after a run (never at run time:
agents share no private values while they learn).

``policy_consensus``: the measure of Wang et al. 2023, Fig. 2 — the mean squared error between each agent's
Boltzmann policy softmax(Q / temperature) and the agents' average policy, at every step for
which all agents saved a checkpoint (``checkpoint_every``).

``logratio_consensus``: for dac-deep, the consensus error max_i |N x^i_e - sum_j beta^j_e| over
the entries of each snapshot's last update batch (the same entries in every agent in the
default batch mode), next to the size of what is estimated, mean_e |sum_j beta^j_e|.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np


def boltzmann(q: np.ndarray, temperature: float) -> np.ndarray:
    z = q / temperature
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def snapshot_steps(run_dir: Path) -> dict[int, list[Path]]:
    """step -> the checkpoint files of every agent that saved one at that step."""
    found: dict[int, list[Path]] = {}
    for path in sorted((run_dir / "checkpoints").glob("agent-*/step-*.npz")):
        step = int(re.fullmatch(r"step-(\d+)\.npz", path.name).group(1))
        found.setdefault(step, []).append(path)
    return found


def complete_snapshots(run_dir: Path, need: tuple[str, ...]) -> list[tuple[int, list[dict]]]:
    """(step, every agent's arrays) for the steps at which all agents saved a checkpoint;
    ValueError naming the file when one lacks an array in ``need``."""
    snaps = snapshot_steps(run_dir)
    n_agents = max((len(p) for p in snaps.values()), default=0)
    out = []
    for step in sorted(snaps):
        paths = snaps[step]
        if len(paths) < max(n_agents, 2):
            continue
        states = []
        for path in paths:
            with np.load(path) as state:
                missing = [k for k in need if k not in state.files]
                if missing:
                    raise ValueError(f"{path} has no {missing} (arrays: {state.files})")
                states.append({k: state[k] for k in need})
        out.append((step, states))
    return out


def policy_consensus(run_dir: Path, temperature: float = 1.0) -> list[dict[str, float]]:
    """[{step, mse}] over the snapshots all agents took; needs tables named ``q``."""
    curve = []
    for step, states in complete_snapshots(run_dir, ("q",)):
        pi = np.stack([boltzmann(s["q"], temperature) for s in states])
        curve.append({"step": step, "mse": float(((pi - pi.mean(axis=0)) ** 2).mean())})
    return curve


def logratio_consensus(run_dir: Path) -> list[dict[str, float]]:
    """[{step, max_err, mean_abs_sum_beta, entries}] over the snapshots every agent took."""
    curve = []
    for step, states in complete_snapshots(run_dir, ("x", "beta", "last_idx")):
        idx = states[0]["last_idx"]
        if not all(np.array_equal(s["last_idx"], idx) for s in states) or not len(idx):
            idx = np.arange(min(len(s["x"]) for s in states))   # full mode: every entry
        x = np.stack([s["x"][idx] for s in states])
        total = np.stack([s["beta"][idx] for s in states]).sum(axis=0)
        err = np.abs(len(states) * x - total).max()
        curve.append({"step": step, "max_err": float(err), "entries": len(idx),
                      "mean_abs_sum_beta": float(np.abs(total).mean())})
    return curve


def logratio_consensus_from_logs(run_dir: Path, every: int = 1) -> list[dict[str, float]]:
    """The same error computed from the message logs alone (no private state needed).

    Round-0 ``consensus`` messages carry each agent's x after its local update (eq. 45), whose
    sum over agents equals sum_j beta^j (mixing preserves it); round r carries x after r
    mixes. So the final x^i of a step is W_i applied to the last round's messages, and the
    error is max_i |N x^i - sum_j x_0^j|. Steps are sampled every ``every`` steps."""
    from agentd.runtime.msglog import open_log

    sent: dict[int, dict[tuple[int, int], np.ndarray]] = {}   # agent -> (t, r) -> x
    weights: dict[int, dict[int, float]] = {}
    for path in sorted((run_dir / "logs").glob("agent-*.log")):
        agent = int(re.fullmatch(r"agent-(\d+)\.log", path.name).group(1))
        mine = sent.setdefault(agent, {})
        for rec in open_log(path):
            if rec.kind == "welcome" and rec.direction == "in":
                weights[agent] = {int(j): w for j, w in rec.body["info"]["weights"].items()}
            elif rec.kind == "consensus" and rec.direction == "out" and \
                    rec.body["t"] % every == 0:
                mine.setdefault((rec.body["t"], rec.body["r"]), rec.body["x"])
    n = len(sent)
    curve = []
    steps = sorted({t for per in sent.values() for t, _ in per})
    for t in steps:
        rounds = [r for r in range(1 << 16) if all((t, r) in sent[i] for i in sent)]
        if not rounds or rounds != list(range(len(rounds))):
            continue
        last = rounds[-1]
        total = sum(sent[i][t, 0] for i in sent)
        err = max(np.abs(n * sum(w * sent[j][t, last] for j, w in weights[i].items())
                         - total).max() for i in sent)
        curve.append({"step": t, "max_err": float(err), "entries": len(total),
                      "mean_abs_sum_beta": float(np.abs(total).mean())})
    return curve


def consensus_curve(run_dir: Path, temperature: float = 1.0) -> tuple[list[dict], str, str]:
    """The diagnostic that fits the run's checkpoints: (curve, y key, y label)."""
    snaps = snapshot_steps(run_dir)
    first = next(iter(snaps.values()), [])
    if first:
        with np.load(first[0]) as state:
            if "x" in state.files and "beta" in state.files:
                return logratio_consensus(run_dir), "max_err", \
                    "max_i |N x^i - sum_j beta^j|"
    return policy_consensus(run_dir, temperature), "mse", "MSE to the average policy"


def write_consensus(run_dir: Path, temperature: float = 1.0,
                    computed: tuple[list[dict], str, str] | None = None) -> list[dict[str, float]]:
    """Write RUN/consensus.jsonl and RUN/consensus.png; returns the curve. ``computed``: a
    ``consensus_curve`` result already at hand (it is not computed again)."""
    curve, key, label = computed or consensus_curve(run_dir, temperature)
    with open(run_dir / "consensus.jsonl", "w") as f:
        f.writelines(json.dumps(point) + "\n" for point in curve)
    if curve:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot([p["step"] for p in curve], [p[key] for p in curve], label=label)
        if key == "max_err":
            ax.plot([p["step"] for p in curve], [p["mean_abs_sum_beta"] for p in curve],
                    label="mean |sum_j beta^j| (the estimated quantity)", alpha=0.7)
            ax.set_yscale("symlog", linthresh=1e-6)
            ax.legend(fontsize=8)
            ax.set_title("log-ratio consensus error (last update batch)")
        else:
            ax.set_title(f"policy consensus (Boltzmann, T={temperature:g})")
        ax.set_xlabel("joint step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(run_dir / "consensus.png", dpi=110)
        plt.close(fig)
    return curve
