"""``agentd attack RUN``: attacks on a run's message logs that show what a neighbour learns.

Threat models (each attack names its own):

* an honest-but-curious **neighbour** j follows the protocol and reads every message agent i
  sent it (its own log), its own observations and rewards, and the run config. It attacks i's
  actions, rewards, observations and buffer contents (``attack_action``, ``attack_infer``).
* the **coordinator** sees scalar metrics only (per-episode returns, loss figures, epsilon):
  not attacked here.
* the **env server** sees every action by design: it holds the truth the action attacks are
  scored against, so there is nothing to infer.

Each result is an advantage over a stated baseline (majority action, shuffled scores, mean or
own observation) with a 95% paired bootstrap interval over the test samples (the second half
of the run). Attacks that do not apply to a learner, kind or edge are listed with the reason.
Writes RUN/attack.json; ``render`` makes the table printed on stdout.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from agentd.tools.attack_action import action_attacks
from agentd.tools.attack_data import RunLogs, read_run
from agentd.tools.attack_features import samples
from agentd.tools.attack_infer import membership, reconstruction, reward_attacks

THREATS = {
    "action": "neighbour j, from i's messages and its own observation, guesses i's action",
    "reward": "neighbour j, from i's messages and its own observation, ranks i's rewards",
    "observation": "neighbour j decodes i's observation from i's latent messages",
    "membership": "neighbour j tells whether a transition is in i's replay buffer",
    "coordinator": "sees scalar metrics only: not attacked here",
    "env server": "sees every action by design: it holds the truth these attacks are scored "
                  "against",
}
LEAK_MARGIN = 0.0   # an advantage whose CI lies above this is reported as a leak


def _verdict(r: dict[str, Any]) -> str:
    lo, hi = r["ci"]
    if math.isnan(lo):     # too few samples for an interval
        return "no interval"
    return "LEAKS" if lo > LEAK_MARGIN else "within baseline" if hi >= 0 else "below baseline"


def _edge_results(logs: RunLogs, src: int, dst: int) -> list[tuple[str, Any]]:
    s = samples(logs, src, dst)
    found = action_attacks(logs, src, dst, s)
    found += reward_attacks(logs, samples(logs, src, dst, "rewards"))
    found.append(("observation / decoder", reconstruction(logs, s)))
    found.append(("membership", membership(logs, s)))
    return found


def attack_run(run_dir: Path) -> dict[str, Any]:
    """Every attack on every peer edge of the run, as plain data (what attack.json holds)."""
    logs = read_run(run_dir)
    results, not_applicable = [], []
    for src, dst in logs.edges:
        for name, r in _edge_results(logs, src, dst):
            where = {"attack": name, "attacker": f"agent {dst}", "target": f"agent {src}",
                     "kinds": logs.kinds((src, dst))}
            if isinstance(r, str):
                not_applicable.append({**where, "why": r})
            else:
                results.append({**where, **r, "verdict": _verdict(r)})
    silent = [a for a in logs.agents if not any(e[0] == a for e in logs.edges)]
    for a in silent:
        not_applicable.append({"attack": "all", "attacker": "any neighbour",
                               "target": f"agent {a}", "kinds": [],
                               "why": f"{logs.algo} sent no peer messages: nothing to attack"})
    sigmas = sorted({s for m in logs.dp.values() for s in m.get("sigma", {}).values()})
    return {"run": str(run_dir), "algo": logs.algo, "env": logs.env,
            "dp_sigma": sigmas or None, "threat_models": THREATS, "results": results,
            "not_applicable": not_applicable, "truncated_logs": logs.truncated}


# -- the report -----------------------------------------------------------------------------
def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    if isinstance(v, tuple | list) and len(v) == 2 and all(isinstance(x, float) for x in v):
        return f"[{v[0]:+.3f}, {v[1]:+.3f}]"
    return str(v)


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    cells = [headers, *([_cell(v) for v in row] for row in rows)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in cells]


def _note(r: dict[str, Any]) -> str:
    if "chance" in r:
        return f"chance {r['chance']:.3f}"
    if "tpr_at_fpr_1pct" in r:
        return f"TPR {r['tpr_at_fpr_1pct']:.3f} at FPR 1%"
    return ""


def render(report: dict[str, Any]) -> str:
    dp = (f"DP sigma {', '.join(f'{s:g}' for s in report['dp_sigma'])}"
          if report["dp_sigma"] else "no DP")
    lines = [f"Attacks on {report['run']} (algo {report['algo']}, env {report['env']}, {dp})",
             "", "Threat models:"]
    lines += [f"  {who}: {what}" for who, what in report["threat_models"].items()]
    lines += ["", ("Results (test = second half of the run; advantage = score - baseline, "
                   "95% bootstrap CI):")]
    rows = [[r["attack"], r["attacker"], r["target"], r.get("metric", "accuracy"),
             r["score"], r["baseline_score"], r["advantage"], tuple(r["ci"]), r["samples"],
             r["verdict"], _note(r)] for r in report["results"]]
    lines += _table(["attack", "attacker", "target", "metric", "score", "baseline",
                     "advantage", "95% CI", "n", "verdict", "note"], rows) if rows else ["  none"]
    methods = {(r["attack"], r["method"], r["baseline"]) for r in report["results"]}
    lines += ["", "Methods and baselines:"]
    lines += [f"  {a}: {m}; baseline: {b}" for a, m, b in sorted(methods)]
    why = sorted({(n["attack"], ", ".join(n["kinds"]) or "-", n["why"])
                  for n in report["not_applicable"]})
    lines += ["", "Not applicable:"] + ([f"  {a} [{k}]: {w}" for a, k, w in why] or ["  none"])
    return "\n".join(lines) + "\n"


def write_report(run_dir: Path, report: dict[str, Any]) -> str:
    """Write RUN/attack.json; return the terminal report."""
    (run_dir / "attack.json").write_text(json.dumps(report, indent=2) + "\n")
    return render(report)
