"""Membership inference on deep PR's ``pr_query``: was this transition in agent i's replay buffer?

Threat model: neighbour j receives i's queries; each carries the next states of a batch i drew
from its replay buffer (sent exact: DP noises the answers' values, never the query's states).
As in the membership-inference literature, j is handed candidate records and must tell members
from non-members: here i's own transitions (their next states s', from i's log: j does not hold
them). Members: transitions of the first half of the run, in i's buffer when i sent the queries
j scores with (those of the first half; a buffer smaller than half the run evicts some, which
only makes members look like non-members). Non-members: transitions of the second half, which
had not happened yet. Score of a candidate: minus its distance to the nearest queried state.
Reported: AUC (baseline 0.5, a coin) with a 95% bootstrap CI of AUC - 0.5, and the TPR at an FPR
of 1% (baseline 0.01).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from agentd.tools.attack_data import RunLogs
from agentd.tools.attack_stats import bootstrap_ci, roc

MIN_CANDIDATES = 20


def _queried(logs: RunLogs, src: int, dst: int, until: int) -> np.ndarray | None:
    rows = [np.asarray(body["states"], np.float32).reshape(len(body["states"]), -1)
            for t, msgs in logs.received[(src, dst)].items() if t <= until
            for kind, body in msgs
            if kind == "pr_query" and isinstance(body.get("states"), np.ndarray)
            and len(body["states"])]
    if not rows or len({r.shape[1] for r in rows}) != 1:
        return None
    return np.concatenate(rows)


def pr_query_membership(logs: RunLogs, src: int, dst: int) -> dict[str, Any] | str:
    truth = logs.final_obs.get(src, {})
    steps = sorted(truth)[1:]           # the first reply ends no transition
    if len(steps) < 2 * MIN_CANDIDATES:
        return f"fewer than {2 * MIN_CANDIDATES} transitions of the sender"
    half = steps[len(steps) // 2]
    queried = _queried(logs, src, dst, half)
    if queried is None:
        return "no queries in the first half of the run"
    cand = np.concatenate([truth[t] for t in steps]).astype(np.float32)
    members = np.concatenate([np.full(len(truth[t]), t <= half) for t in steps])
    if cand.shape[1] != queried.shape[1]:
        return "the queried states differ in shape from the sender's observations"
    dist = np.full(len(cand), np.inf)
    for lo in range(0, len(queried), 512):       # nearest queried state, in chunks
        block = queried[lo:lo + 512]
        d = ((cand[:, None, :] - block[None]) ** 2).sum(-1).min(1)
        dist = np.minimum(dist, d)
    score = -dist
    auc, tpr = roc(score, members)
    ci = bootstrap_ci(lambda i: roc(score[i], members[i])[0] - 0.5, len(score))
    return {"metric": "AUC", "score": round(auc, 4), "baseline_score": 0.5,
            "advantage": round(auc - 0.5, 4), "ci": ci, "samples": len(score),
            "tpr_at_fpr_1pct": round(tpr, 4), "baseline": "a coin (AUC 0.5, TPR 0.01 at FPR 1%)",
            "method": "minus the distance of i's transition to the nearest state i queried in "
                      "the first half; members: first-half transitions"}
