"""A sweep's results from its finished runs: one table (IQM, 95% CI, per-seed values) and one
figure (return over training, IQM with 95% CI bands), by rliable.

Per row of the table (a configuration at a grid point) the score of each seed is a key of its
run's ``summary.json`` (the spec's ``metric``, default ``final_return``: the mean return of the
last 10% of episodes). The interquartile mean (25% trimmed mean) and its 95% percentile
stratified-bootstrap interval are rliable's (``get_interval_estimates``, seeded, so a report
is reproducible). The curves bin each run's episode returns (``metrics.jsonl``) into
``BINS`` equal spans of the run's steps and take the IQM and its interval per bin.

Written to the report directory: ``results.md`` (the table), ``results.csv`` (one row per
seed), ``results.json`` (everything, spec and budget included) and ``curves.png``.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agentd.tools.sweep_run import MARKER, finished
from agentd.tools.sweep_spec import Cell, Spec

BINS = 20
REPS = 5_000           # bootstrap replications for the table
CURVE_REPS = 2_000     # ... and per bin of the curves
BOOT_SEED = 0


@dataclass
class Row:
    group: str
    config: str
    grid: dict[str, Any]
    seeds: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)      # the metric, per seed
    wall_s: list[float] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)       # seeds not finished (or no value)
    curves: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # steps, returns
    steps: int = 0
    iqm: float | None = None
    ci: tuple[float, float] | None = None
    mean: float | None = None


def _interval_estimates(scores: np.ndarray, func: Any, reps: int, seed: int
                        ) -> tuple[np.ndarray, np.ndarray]:
    """rliable's point estimate and 95% percentile stratified-bootstrap CI (lower, upper) of
    ``func`` over ``scores`` (runs x tasks [x time]), seeded; its log lines and arch's
    deprecation warning about ``random_state`` kept quiet."""
    import logging
    import warnings

    from rliable import library as rly

    logging.getLogger("absl").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        point, interval = rly.get_interval_estimates(
            {"x": scores}, func, reps=reps, random_state=np.random.RandomState(seed))
    return point["x"], interval["x"]


def iqm_ci(values: list[float] | np.ndarray, reps: int = REPS, seed: int = BOOT_SEED
           ) -> tuple[float, float, float]:
    """IQM of one configuration's seeds and its 95% stratified-bootstrap CI (rliable)."""
    from rliable import metrics

    scores = np.asarray(values, dtype=float).reshape(-1, 1)      # runs x tasks (one task)
    point, interval = _interval_estimates(
        scores, lambda x: np.array([metrics.aggregate_iqm(x)]), reps, seed)
    return float(point[0]), float(interval[0, 0]), float(interval[1, 0])


def curve_bands(curves: list[tuple[np.ndarray, np.ndarray]], steps: int, bins: int = BINS
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(bin centres, IQM, CI low, CI high) of the runs' episode returns, binned over steps.
    A bin a run has no episode in takes that run's previous bin (its first: the next one)."""
    from scipy import stats

    edges = np.linspace(0, steps, bins + 1)
    table = np.full((len(curves), bins), np.nan)
    for r, (x, y) in enumerate(curves):
        idx = np.clip(np.searchsorted(edges, x, side="left") - 1, 0, bins - 1)
        for b in range(bins):
            if (idx == b).any():
                table[r, b] = y[idx == b].mean()
        table[r] = _fill(table[r])
    keep = ~np.isnan(table).any(axis=1)
    table = table[keep]
    centres = (edges[:-1] + edges[1:]) / 2
    if not len(table):
        nan = np.full(bins, np.nan)
        return centres, nan, nan, nan
    # rliable's aggregate_iqm per bin (a 25% trimmed mean over runs), all bins in one call
    point, interval = _interval_estimates(
        table[:, None, :], lambda s: stats.trim_mean(s.reshape(-1, s.shape[-1]), 0.25, axis=0),
        CURVE_REPS, BOOT_SEED)
    return centres, point, interval[0], interval[1]


def _fill(row: np.ndarray) -> np.ndarray:
    out = row.copy()
    for b in range(1, len(out)):
        if np.isnan(out[b]):
            out[b] = out[b - 1]
    for b in range(len(out) - 2, -1, -1):
        if np.isnan(out[b]):
            out[b] = out[b + 1]
    return out


def collect(spec: Spec, cells: list[Cell], runs_dir: Path) -> list[Row]:
    """The finished runs of each row, in spec order."""
    rows: dict[str, Row] = {}
    for cell in cells:
        row = rows.setdefault(cell.group, Row(cell.group, cell.config_name, dict(cell.grid),
                                              steps=cell.config.steps))
        cell_dir = runs_dir / cell.rel_dir
        value = None
        if finished(cell, runs_dir):
            summary = json.loads((cell_dir / "summary.json").read_text())
            value = summary.get(spec.metric)
        if not isinstance(value, (int, float)) or isinstance(value, bool) \
                or not math.isfinite(value):
            row.missing.append(cell.seed)
            continue
        row.seeds.append(cell.seed)
        row.values.append(float(value))
        row.wall_s.append(json.loads((cell_dir / MARKER).read_text())["wall_s"])
        row.curves.append(_episodes(cell_dir / "metrics.jsonl"))
    for row in rows.values():
        if row.values:
            row.iqm, lo, hi = iqm_ci(row.values)
            row.ci, row.mean = (lo, hi), float(np.mean(row.values))
    return list(rows.values())


def _episodes(path: Path) -> tuple[np.ndarray, np.ndarray]:
    steps, returns = [], []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if "return" in record and "step" in record:
            steps.append(record["step"])
            returns.append(record["return"])
    return np.array(steps, dtype=float), np.array(returns, dtype=float)


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4g}"


def table_md(spec: Spec, rows: list[Row]) -> str:
    lines = [f"| configuration | seeds | {spec.metric} IQM | 95% CI | mean | per seed |",
             "|---|---:|---:|---|---:|---|"]
    for r in rows:
        n = f"{len(r.values)}" + (f" (missing {r.missing})" if r.missing else "")
        ci = "n/a" if r.ci is None else f"[{_fmt(r.ci[0])}, {_fmt(r.ci[1])}]"
        per = ", ".join(f"{s}: {v:.4g}" for s, v in zip(r.seeds, r.values, strict=True))
        lines.append(f"| {r.group} | {n} | {_fmt(r.iqm)} | {ci} | {_fmt(r.mean)} | {per} |")
    return "\n".join(lines)


def write_report(spec: Spec, rows: list[Row], report_dir: Path, command: str) -> list[Path]:
    report_dir.mkdir(parents=True, exist_ok=True)
    md = report_dir / "results.md"
    header = [f"# {spec.name}", "", f"Spec: `{spec.path}`. Command: `{command}`."]
    if spec.claim:
        header += ["", f"Claim ({spec.source or 'source not given'}): {spec.claim}"]
    if spec.note:
        header += ["", spec.note]
    header += ["", (f"{len(spec.configs)} configuration(s) x "
                    f"{len(rows) // max(1, len(spec.configs))} grid point(s) x "
                    f"{len(spec.seeds)} seeds; backend {spec.backend}; IQM and 95% "
                    f"stratified-bootstrap CI (rliable, {REPS} replications)."), "", ""]
    md.write_text("\n".join(header) + table_md(spec, rows) + "\n")
    with open(report_dir / "results.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["configuration", "config", *spec.grid, "seed", spec.metric, "wall_s"])
        for r in rows:
            for s, v, t in zip(r.seeds, r.values, r.wall_s, strict=True):
                w.writerow([r.group, r.config, *r.grid.values(), s, v, t])
    (report_dir / "results.json").write_text(json.dumps({
        "name": spec.name, "spec": str(spec.path), "command": command, "metric": spec.metric,
        "backend": spec.backend, "claim": spec.claim, "source": spec.source,
        "configurations": spec.configs, "grid": spec.grid, "seeds": spec.seeds,
        "bootstrap": {"method": "percentile, stratified (rliable)", "reps": REPS,
                      "seed": BOOT_SEED},
        "rows": [{"group": r.group, "config": r.config, "grid": r.grid, "steps": r.steps,
                  "seeds": r.seeds, "values": r.values, "missing": r.missing,
                  "iqm": r.iqm, "ci95": r.ci, "mean": r.mean,
                  "wall_s_total": round(sum(r.wall_s), 1)} for r in rows]},
        indent=1) + "\n")
    figure = report_dir / "curves.png"
    plot_curves(spec, rows, figure)
    return [md, report_dir / "results.csv", report_dir / "results.json", figure]


def plot_curves(spec: Spec, rows: list[Row], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(dict.fromkeys(json.dumps(r.grid, sort_keys=True) for r in rows))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        for r in (r for r in rows if json.dumps(r.grid, sort_keys=True) == panel):
            if not r.curves:
                continue
            x, mid, lo, hi = curve_bands(r.curves, r.steps)
            line, = ax.plot(x, mid, label=f"{r.config} ({len(r.curves)} seeds)")
            ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2)
        grid = json.loads(panel)
        ax.set_title(", ".join(f"{k} = {v}" for k, v in grid.items()) or spec.name,
                     fontsize=9)
        ax.set_xlabel("joint steps per env copy")
        ax.set_ylabel("episode return (IQM, 95% CI)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
