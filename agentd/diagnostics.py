"""Offline diagnostics over the agents' own checkpoints, after a run (never at run time:
agents share no private values while they learn).

``policy_consensus``: the seed-000 Fig. 2 measure — the mean squared error between each agent's
Boltzmann policy softmax(Q / temperature) and the agents' average policy, at every step for
which all agents saved a checkpoint (``checkpoint_every``).
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


def policy_consensus(run_dir: Path, temperature: float = 1.0) -> list[dict[str, float]]:
    """[{step, mse}] over the snapshots all agents took; needs tables named ``q``."""
    snaps = snapshot_steps(run_dir)
    n_agents = max((len(p) for p in snaps.values()), default=0)
    curve = []
    for step in sorted(snaps):
        paths = snaps[step]
        if len(paths) < max(n_agents, 2):
            continue
        policies = []
        for path in paths:
            with np.load(path) as state:
                if "q" not in state.files:
                    raise ValueError(f"{path} has no Q table (arrays: {state.files})")
                policies.append(boltzmann(state["q"], temperature))
        pi = np.stack(policies)
        curve.append({"step": step, "mse": float(((pi - pi.mean(axis=0)) ** 2).mean())})
    return curve


def write_consensus(run_dir: Path, temperature: float = 1.0) -> list[dict[str, float]]:
    """Write RUN/consensus.jsonl and RUN/consensus.png; returns the curve."""
    curve = policy_consensus(run_dir, temperature)
    with open(run_dir / "consensus.jsonl", "w") as f:
        f.writelines(json.dumps(point) + "\n" for point in curve)
    if curve:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot([p["step"] for p in curve], [p["mse"] for p in curve])
        ax.set_xlabel("joint step")
        ax.set_ylabel("MSE to the average policy")
        ax.set_title(f"policy consensus (Boltzmann, T={temperature:g})")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(run_dir / "consensus.png", dpi=110)
        plt.close(fig)
    return curve
