"""Privacy-utility curves: the best return each learner reaches at a per-agent ε <= 10 and
<= 1 (δ = 1e-5, PLD), against its return without DP and without communication, with the
strongest attack of ``agentd attack`` beside it; every point a real ``agentd launch``.

The configurations are fixed here, before any run (``docs/privacy.md`` lists them too):

* learners (each with the learner that does not communicate as its reference):
  ``pr`` on ``digital`` (n = 5 ring; reference IQL, pr with beta = 0), ``dac-deep`` on
  ``spread`` (n = 3 ring, batch consensus; reference isac), ``mdpo`` with
  ``share_latent=true`` on ``stochastic-game`` (n = 3 ring; reference mdpo without it);
* budgets: pr 2,000 steps; dac-deep 1,000 steps (updates from step 400); mdpo 300 steps x 4
  env copies (rollout 30, model_steps 20, pred_steps 10); seeds 0, 1, 2;
* per learner and seed, in this order (pr all six; dac-deep all but levers+q; mdpo no DP,
  reference and the two levers rows; the machine's budget allows no more):

  ``no DP``             the learner as it is;
  ``reference``         the learner that sends nothing;
  ``plain, eps<=10``    every copy noised on its own, q = 1, C the a-priori bound;
  ``levers, eps<=10``   dp_broadcast on, C the scale the values have, q = 1;
  ``levers+q, eps<=10`` as levers, with dp_sample_rate q = 0.1;
  ``levers, eps<=1``    as levers, for ε <= 1;

* σ of each DP configuration: the smallest (within 1 %) whose per-agent ε over the run reaches
  the target, from the accountant and the release counts the same seed's ``no DP`` run logged
  (every message of the released kind; with broadcast one release per step and kind);
* C "the scale the values have": the 90th percentile of the released units' L2 norms in a
  pilot ``no DP`` run of seed 99 (not one of the scored seeds); the a-priori bound: pr
  sqrt(2) x max|r| / (1 - gamma) = 10.6, dac-deep the learner's c_clip = 2, mdpo 3 x the scale
  (the latent has no bound);
* the attack: ``agentd attack`` on every run; per learner the attack with the largest mean
  advantage (over the directed edges) in the no-DP runs is plotted for every configuration.

Usage (nice -n 19; two launches at a time; the CPU budget and --stop-at stop it launching
more runs once spent)::

    nice -n 19 python examples/privacy_utility.py --out docs/privacy_utility.png --stop-at 01:40
    python examples/privacy_utility.py --plot-only --out docs/privacy_utility.png
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from agentd.privacy.accountant import epsilon
from agentd.privacy.dp import units
from agentd.runtime.msglog import open_log
from agentd.tools.attack import attack_run
from protocols.kinds import REGISTRY

DELTA = 1e-5
PILOT_SEED = 99
STUDIES = {
    "pr": {"args": ["--algo", "pr", "--env", "digital", "--n", "5", "--steps", "2000"],
           "reference": ["--algo", "pr", "--env", "digital", "--n", "5", "--steps", "2000",
                         "--param", "beta=0"],
           "kind": "pr_values", "field": "values", "bound": math.sqrt(2) * 1.5 / (1 - 0.8),
           "configs": ("no DP", "reference", "plain, eps<=10", "levers, eps<=10",
                       "levers+q, eps<=10", "levers, eps<=1")},
    "dac-deep": {"args": ["--algo", "dac-deep", "--env", "spread", "--n", "3", "--steps",
                          "1000", "--param", "start=400"],
                 "reference": ["--algo", "isac", "--env", "spread", "--n", "3", "--steps",
                               "1000", "--param", "start=400"],
                 "kind": "consensus", "field": "x", "bound": 2.0,
                 "configs": ("no DP", "reference", "plain, eps<=10", "levers, eps<=10",
                             "levers, eps<=1")},
    "mdpo": {"args": ["--algo", "mdpo", "--env", "stochastic-game", "--n", "3", "--steps", "300",
                      "--num-envs", "4", "--param", "rollout=30", "--param", "model_steps=20",
                      "--param", "pred_steps=10", "--param", "share_latent=true"],
             "reference": ["--algo", "mdpo", "--env", "stochastic-game", "--n", "3", "--steps",
                           "300", "--num-envs", "4", "--param", "rollout=30", "--param",
                           "model_steps=20", "--param", "pred_steps=10"],
             "kind": "latent", "field": "z", "bound": None,
             "configs": ("no DP", "reference", "levers, eps<=10", "levers, eps<=1")},
}
# (name, target epsilon, broadcast, clip rule, q); None: no DP
CONFIGS = [("no DP", None, False, None, 1.0), ("reference", None, False, None, 1.0),
           ("plain, eps<=10", 10.0, False, "bound", 1.0),
           ("levers, eps<=10", 10.0, True, "scale", 1.0),
           ("levers+q, eps<=10", 10.0, True, "scale", 0.1),
           ("levers, eps<=1", 1.0, True, "scale", 1.0)]


def cpu_of_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def launch(run_dir: Path, args: list[str], seed: int, dp: list[str]) -> None:
    """One ``agentd launch`` (its processes' CPU time counts in ``cpu_of_children``)."""
    cmd = [sys.executable, "-m", "agentd", "launch", "--quiet", "--run-dir", str(run_dir),
           *args, "--topology", "ring", "--seed", str(seed), *dp]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def released(run_dir: Path, kind: str, field: str) -> tuple[dict[int, Counter], list[float]]:
    """Per agent, its messages of ``kind`` per destination, and the L2 norms of every unit
    they released (a no-DP run: the values as they are)."""
    counts: dict[int, Counter] = {}
    norms: list[float] = []
    unit = REGISTRY[kind].released[field]
    for path in sorted((run_dir / "logs").glob("agent-*.log")):
        me = int(path.stem.removeprefix("agent-"))
        counts[me] = Counter()
        for rec in open_log(path):
            if rec.direction == "out" and rec.kind == kind:
                counts[me][rec.header["d"]] += 1
                value = rec.body[field]
                if value.size:
                    norms.extend(np.linalg.norm(units(value, unit), axis=1).tolist())
    return counts, norms


def sigma_for(target: float, n: int, q: float) -> float:
    """The smallest σ (within 1 %) whose ε over ``n`` releases at rate q is <= target."""
    lo, hi = 0.05, 1e4
    with warnings.catch_warnings():     # PLD overflows harmlessly far below the target's σ
        warnings.simplefilter("ignore", RuntimeWarning)
        while hi / lo > 1.01:
            mid = math.sqrt(lo * hi)
            lo, hi = (mid, hi) if epsilon({(mid, q): n}, DELTA) > target else (lo, mid)
    return hi


def attacks(run_dir: Path) -> dict[str, float]:
    """Mean advantage over the directed edges, per attack that applied."""
    by: dict[str, list[float]] = {}
    for r in attack_run(run_dir)["results"]:
        if r["advantage"] is not None and not math.isnan(r["advantage"]):
            by.setdefault(r["attack"], []).append(r["advantage"])
    return {k: float(np.mean(v)) for k, v in by.items()}


class Budget:
    """The limits after which no run starts: CPU seconds of the launches, a clock time."""

    def __init__(self, cpu: float, stop_at: float | None) -> None:
        self.start, self.limit, self.stop_at = cpu_of_children(), cpu, stop_at

    @property
    def cpu(self) -> float:
        return cpu_of_children() - self.start

    def spent(self) -> bool:
        late = self.stop_at is not None and time.time() > self.stop_at
        return self.cpu > self.limit or late


def pilot_clip(tmp: Path, study: str, budget: Budget) -> tuple[float, float]:
    """C at the scale the values have (from the pilot run) and the a-priori bound."""
    s = STUDIES[study]
    pilot = tmp / f"{study}-pilot"
    launch(pilot, s["args"], PILOT_SEED, [])
    _, norms = released(pilot, s["kind"], s["field"])
    scale = float(np.quantile(norms, 0.9))
    bound = s["bound"] if s["bound"] is not None else 3 * scale
    print(f"# {study}: clip scale {scale:.4g} (pilot seed {PILOT_SEED}), bound {bound:.4g}",
          flush=True)
    return scale, bound


def run_seed(tmp: Path, study: str, seed: int, clips: Future, budget: Budget) -> list[dict]:
    """Every configuration of the study for one seed, no DP first (its counts set σ)."""
    s = STUDIES[study]
    rows: list[dict] = []
    counts = None
    for name, target, broadcast, clip_rule, q in CONFIGS:
        if name not in s["configs"]:
            continue
        if budget.spent():
            print(f"# budget spent (CPU {budget.cpu:.0f} s): {study} {name} seed {seed} "
                  "not run", flush=True)
            continue
        run_dir = tmp / f"{study}-{name.replace(' ', '').replace(',', '-')}-{seed}"
        args = s["reference"] if name == "reference" else s["args"]
        dp, sigma, clip = [], None, None
        if target is not None:
            if counts is None:
                continue        # its no-DP run was not made
            scale, bound = clips.result()
            per_agent = max(max(c.values()) if broadcast else sum(c.values())
                            for c in counts.values())
            sigma = sigma_for(target, per_agent, q)
            clip = scale if clip_rule == "scale" else bound
            dp = ["--dp-sigma", f"{sigma:.4g}", "--dp-clip", f"{clip:.4g}",
                  "--dp-sample-rate", str(q), "--dp-broadcast", "on" if broadcast else "off"]
        t0 = time.monotonic()
        launch(run_dir, args, seed, dp)
        if name == "no DP":
            counts, _ = released(run_dir, s["kind"], s["field"])
        summary = json.loads((run_dir / "summary.json").read_text())
        row = {"study": study, "config": name, "seed": seed, "target": target,
               "sigma": sigma, "clip": clip, "q": q, "broadcast": broadcast,
               "final_return": summary["final_return"],
               "epsilon": summary["dp"]["max_epsilon"] if summary.get("dp") else None,
               "edge_epsilon": (summary["dp"]["max_edge_epsilon"]
                                if summary.get("dp") else None),
               "attacks": attacks(run_dir) if name != "reference" else {},
               "wall_s": round(time.monotonic() - t0, 1)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def headline(rows: list[dict], study: str) -> str | None:
    """The attack with the largest mean advantage in the study's no-DP runs."""
    means: dict[str, list[float]] = {}
    for r in rows:
        if r["study"] == study and r["config"] == "no DP":
            for k, v in r["attacks"].items():
                means.setdefault(k, []).append(v)
    return max(means, key=lambda k: np.mean(means[k])) if means else None


def _stat(v: list[float]) -> str:
    return f"{np.mean(v):8.3f} ± {np.std(v):6.3f}" if v else f"{'-':>17}"


def table(rows: list[dict]) -> str:
    lines = []
    for study in STUDIES:
        att = headline(rows, study)
        lines.append(f"{study}: attack shown = {att}")
        for name, *_ in CONFIGS:
            pick = [r for r in rows if r["study"] == study and r["config"] == name]
            if not pick:
                continue
            eps = [r["epsilon"] for r in pick if r["epsilon"] is not None]
            sig = pick[0]["sigma"]
            lines.append(
                f"  {name:18s} sigma {'-' if sig is None else f'{sig:7.3g}':>7}  epsilon "
                f"{f'{max(eps):7.2f}' if eps else '    inf':>7}  return "
                f"{_stat([r['final_return'] for r in pick])}  attack "
                f"{_stat([r['attacks'][att] for r in pick if att in r['attacks']])}  "
                f"seeds {len(pick)}")
    return "\n".join(lines)


def plot(rows: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    studies = [s for s in STUDIES if any(r["study"] == s for r in rows)]
    fig, axes = plt.subplots(2, len(studies), figsize=(5 * len(studies), 7.5), squeeze=False)
    for col, study in enumerate(studies):
        att = headline(rows, study)
        mine = [r for r in rows if r["study"] == study]
        finite = [r["epsilon"] for r in mine if r["epsilon"]]
        edge = 10 * max(finite) if finite else 100.0       # where ε = ∞ (no DP) is drawn
        for row_i, (key, label) in enumerate([("final_return", "final return"),
                                              ("attack", f"attack advantage\n({att})")]):
            ax = axes[row_i][col]
            for i, (name, *_) in enumerate(CONFIGS):
                pick = [r for r in mine if r["config"] == name]
                if not pick:
                    continue
                if name == "reference" and key == "final_return":
                    ax.axhline(np.mean([r["final_return"] for r in pick]), ls="--", c="grey",
                               label="reference (no messages)")
                    continue
                if name == "reference":
                    continue
                ys = [r["final_return"] if key == "final_return" else r["attacks"].get(att)
                      for r in pick]
                ys = [y for y in ys if y is not None]
                if not ys:
                    continue
                x = np.mean([r["epsilon"] or edge for r in pick]) * 1.07 ** (i - 3)   # apart
                ax.errorbar([x], [np.mean(ys)], yerr=[np.std(ys)], marker="o", capsize=3,
                            label=name)
            for eps in (1, 10):
                ax.axvline(eps, c="k", lw=0.5, alpha=0.4)
            if key == "attack":
                ax.axhline(0, c="k", lw=0.5)
                if att is None:
                    ax.text(0.5, 0.5, "no attack of agentd attack applies\n(see docs/privacy.md)",
                            ha="center", va="center", transform=ax.transAxes)
            ax.set(xscale="log", xlabel="ε per agent (δ = 1e-5, PLD; right edge: no DP)",
                   ylabel=label, title=study if row_i == 0 else "")
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
    fig.suptitle("Privacy-utility: mean ± sd over seeds (examples/privacy_utility.py)")
    fig.tight_layout()
    fig.savefig(out, dpi=100)


def lever_table(releases_per_edge: int, degree: int) -> str:
    """What each lever buys in σ at a per-agent ε target, from the accountant alone: the
    noise multiplier an agent needs, and σ/q, the noise per unit of signal a receiver sees
    (a release carries the values with probability q, so their expected size is q·C)."""
    lines = [f"releases per edge {releases_per_edge}, degree {degree}, delta {DELTA:g}"]
    for target in (10.0, 1.0):
        for name, n, q in [("per-copy noise, q = 1", releases_per_edge * degree, 1.0),
                           ("broadcast, q = 1", releases_per_edge, 1.0),
                           ("broadcast, q = 0.5", releases_per_edge, 0.5),
                           ("broadcast, q = 0.1", releases_per_edge, 0.1),
                           ("broadcast, q = 0.02", releases_per_edge, 0.02)]:
            sigma = sigma_for(target, n, q)
            lines.append(f"  eps <= {target:4g}  {name:22s} sigma {sigma:8.2f}  "
                         f"sigma/q {sigma / q:8.2f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--studies", nargs="+", choices=sorted(STUDIES), default=list(STUDIES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--cpu-budget", type=float, default=2100.0,
                        help="CPU seconds of launches after which no further run starts "
                             "(default 35 min; the attacks add ~5)")
    parser.add_argument("--stop-at", metavar="HH:MM", help="UTC time after which no run starts")
    parser.add_argument("--jobs", type=int, default=2, help="launches at a time (default 2)")
    parser.add_argument("--plot-only", action="store_true", help="redraw from the .jsonl")
    parser.add_argument("--out", type=Path, required=True, help="figure (rows go to .jsonl)")
    parser.add_argument("--levers", type=int, nargs=2, metavar=("RELEASES", "DEGREE"),
                        help="only print what each lever buys in sigma for RELEASES per edge "
                             "and DEGREE neighbours (the accountant alone, no runs)")
    args = parser.parse_args()
    if args.levers:
        print(lever_table(*args.levers))
        return
    rows_file = args.out.with_suffix(".jsonl")
    if not args.plot_only:
        rows: list[dict] = []
        stop_at = None
        if args.stop_at:
            hh, mm = map(int, args.stop_at.split(":"))
            now = time.gmtime()
            stop_at = time.time() + ((hh - now.tm_hour) * 60 + mm - now.tm_min) * 60
        budget = Budget(args.cpu_budget, stop_at)
        with tempfile.TemporaryDirectory(prefix="privacy-utility-") as tmp, \
                ThreadPoolExecutor(args.jobs) as pool:
            clips = {st: pool.submit(pilot_clip, Path(tmp), st, budget) for st in args.studies}
            tasks = [pool.submit(run_seed, Path(tmp), st, seed, clips[st], budget)
                     for seed in args.seeds for st in args.studies]
            for task in tasks:
                rows += task.result()
                rows_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
        print(f"# CPU used by the launches: {budget.cpu:.0f} s", flush=True)
    rows = [json.loads(x) for x in rows_file.read_text().splitlines()]
    print(table(rows))
    plot(rows, args.out)


if __name__ == "__main__":
    main()
