"""The audit's privacy section: ε per directed edge and per agent, recomputed from the message
logs alone (``agentd.privacy.accountant.from_logs``) and set against what the run reported."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agentd.privacy.accountant import from_logs


def _figures(block: dict[str, Any]) -> dict[str, Any]:
    return {"edges": {(e["src"], e["dst"]): (e["releases"], e["epsilon"]) for e in block["edges"]},
            "agents": {a["agent"]: (a["releases"], a["epsilon"]) for a in block["agents"]}}


def dp_audit(run_dir: Path) -> dict[str, Any] | None:
    """The recomputed DP block, plus ``matches_run``: whether summary.json's figures are the
    same (None when the run wrote none). None when the run had no DP."""
    recomputed = from_logs(run_dir)
    if recomputed is None:
        return None
    try:
        reported = json.loads((run_dir / "summary.json").read_text()).get("dp")
    except (OSError, ValueError, AttributeError):
        reported = None
    matches = None if not reported else _figures(reported) == _figures(recomputed)
    return {**recomputed, "matches_run": matches}


def dp_blocks(d: dict[str, Any] | None) -> list[tuple]:
    """Headings, paragraphs and tables for ``agentd.tools.audit_report.render``."""
    if d is None:
        off = "off in this run (no log carries DP settings): no epsilon to report"
        return [("h", "Differential privacy"), ("p", off)]
    match = {None: "summary.json has no DP figures to compare",
             True: "the same as summary.json's", False: "DIFFERENT from summary.json's"}
    exact = ", ".join(f"{k} ({n} messages)" for k, n in d["exact_fields"].items()) or "none"
    title = (f"Differential privacy (epsilon at delta {d['delta']:g}, {d['accountant']} "
             "accountant, recomputed from the logs)")
    verdict = (f"recomputed figures: {match[d['matches_run']]}. Kinds with fields sent as they "
               f"are (not covered): {exact}.")
    return [
        ("h", title),
        ("table", ["src", "dst", "releases", "epsilon"],
         [[e["src"], e["dst"], e["releases"], e["epsilon"]] for e in d["edges"]]),
        ("table", ["agent", "releases", "epsilon (all out-edges)"],
         [[a["agent"], a["releases"], a["epsilon"]] for a in d["agents"]]),
        ("p", verdict),
        ("p", f"What the epsilon assumes: {d['assumptions']}"),
    ]
