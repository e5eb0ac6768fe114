"""Curves of one or more run (or replay) directories on one figure, for ``agentd plot``."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np


def load_series(run_dir: Path, agent: str | None = None) -> dict[str, tuple[list, list]]:
    """name -> (steps, values) from metrics.jsonl: the episode return, each learner scalar
    (mean over agents, or one agent's) and, for replays, the action agreement."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} has no metrics.jsonl (not a run or replay directory)")
    series: dict[str, tuple[list, list]] = defaultdict(lambda: ([], []))
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        step = rec["step"]
        for key in ("return", "action_agreement"):
            if key in rec:
                series[key][0].append(step)
                series[key][1].append(rec[key])
        point = rec.get("consensus")
        if point is not None:    # written after the run from the checkpoints
            name = "consensus_mse" if "mse" in point else "consensus_max_err"
            series[name][0].append(step)
            series[name][1].append(point.get("mse", point.get("max_err")))
        agents = rec.get("agents", {})
        chosen = [agents[agent]] if agent is not None and agent in agents else agents.values()
        values: dict[str, list[float]] = defaultdict(list)
        for scalars in chosen:
            for name, value in scalars.items():
                values[name].append(value)
        for name, vals in values.items():
            series[name][0].append(step)
            series[name][1].append(float(np.mean(vals)))
    return {name: per_step(*xy) for name, xy in series.items()}


def per_step(steps: list, values: list) -> tuple[list, list]:
    """One point per step: the mean of the values recorded at that step. With K env copies,
    K episodes end at the same joint step; drawn one by one they make a vertical zigzag."""
    sums: dict[int, list[float]] = {}
    for step, value in zip(steps, values):
        sums.setdefault(step, []).append(value)
    ordered = sorted(sums)
    return ordered, [float(np.mean(sums[s])) for s in ordered]


def label_of(run_dir: Path) -> str:
    summary = run_dir / "summary.json"
    if summary.exists():
        s = json.loads(summary.read_text())
        if s.get("kind") == "replay":
            return f"{run_dir.name} (replay of agent {s['agent']}: {s['perturbation']})"
    return run_dir.name


def _replayed_agent(run_dir: Path) -> str | None:
    summary = run_dir / "summary.json"
    if summary.exists():
        s = json.loads(summary.read_text())
        if s.get("kind") == "replay":
            return str(s["agent"])
    return None


def plot_runs(run_dirs: list[Path], out: Path, agent: str | None = None) -> list[str]:
    """Draw one panel per series name found in any run; returns the names drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if agent is None:   # a replay is one agent: compare the runs' same agent with it
        agent = next((a for a in map(_replayed_agent, run_dirs) if a is not None), None)
    loaded = [(label_of(d), load_series(d, agent)) for d in run_dirs]
    names = sorted({n for _, s in loaded for n in s}, key=lambda n: (n != "return", n))
    if not names:
        raise ValueError("no series to plot in " + ", ".join(map(str, run_dirs)))
    fig, axes = plt.subplots(len(names), 1, figsize=(8, 2.6 * len(names)), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, name in zip(axes[:, 0], names):
        for k, (label, series) in enumerate(loaded):   # one colour per run in every panel
            if name in series:
                steps, values = series[name]
                ax.plot(steps, _smooth(values), label=label, color=colours[k % len(colours)])
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    if agent is not None:
        axes[0, 0].set_title(f"agent {agent}")
    axes[-1, 0].set_xlabel("joint step")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return names


def _smooth(values: list[float]) -> np.ndarray:
    window = max(1, len(values) // 50)
    v = np.asarray(values, dtype=float)
    if window == 1:
        return v
    kernel = np.ones(window) / window
    return np.convolve(np.pad(v, (window - 1, 0), mode="edge"), kernel, mode="valid")
