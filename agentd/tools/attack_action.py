"""Action inference: neighbour j guesses agent i's action at step t from the messages i sent
it (its own log) and its own observation of step t. Scored against i's actions as i sent them
to the env server (i's log: the truth, which j does not hold), on the second half of the run.

* structural (``pr_values``): i pushes its Q rows of the state it acted in, before its own
  update, so the row j receives for its own (identical, fully observed) state is the row i's
  epsilon-greedy choice read: guess its argmax. No fitting.
* learned: a scikit-learn classifier on the raw arrays of i's message (every float it
  carries; for ``pr_values`` the row of j's state first), fitted on the first half of the run
  with i's actions as labels (an attacker that once learned i's actions, e.g. by watching a
  shared environment), scored on the second half. The classifier is chosen among logistic
  regression and a random forest by 3-fold cross-validation on the first half only.

Baseline of both: the first half's most common action, guessed every time (what j can do with
no messages). Chance (1 / actions seen) is reported beside it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from agentd.tools.attack_data import RunLogs
from agentd.tools.attack_features import (
    MIN_SAMPLES,
    Samples,
    attacker_state,
    message_for,
    pr_row,
    raw_features,
)
from agentd.tools.attack_stats import accuracy_advantage, sklearn


def _labels(logs: RunLogs, s: Samples) -> np.ndarray:
    return np.array([int(np.asarray(logs.actions[s.src][int(t)])[int(c)])
                     for t, c in zip(s.steps, s.copies, strict=True)])


def _scored(y: np.ndarray, pred: np.ndarray, cut: int) -> dict[str, Any]:
    train, test = y[:cut], y[cut:]
    classes, counts = np.unique(train, return_counts=True)
    majority = classes[np.argmax(counts)]
    out = accuracy_advantage(pred[cut:] == test, test == majority)
    return {**out, "baseline": "the first half's most common action, every time",
            "chance": round(1.0 / len(np.unique(y)), 4)}


def structural_pr(logs: RunLogs, s: Samples) -> dict[str, Any] | str:
    """Argmax of the Q row i sent for the state j saw; a str says why it does not apply."""
    if len(s) < MIN_SAMPLES:
        return f"fewer than {MIN_SAMPLES} steps with an action and a message"
    y = _labels(logs, s)
    pred = np.full(len(s), -1)
    for n, (t, c) in enumerate(zip(s.steps, s.copies, strict=True)):
        body = message_for(logs, s.src, s.dst, int(t), "pr_values")
        row = None if body is None else pr_row(body, attacker_state(logs, s.dst, int(t),
                                                                     int(c)))
        if row is not None and len(row):
            pred[n] = int(np.argmax(row))
    if np.all(pred < 0):
        return "no message carries a row of the state the attacker observed"
    return {**_scored(y, pred, s.split()), "method": "argmax of the sent Q row at j's state"}


def _classifier(x: np.ndarray, y: np.ndarray) -> tuple[Any, str]:
    sk = sklearn()
    if len(np.unique(y)) < 2:
        return sk.dummy.DummyClassifier(strategy="most_frequent").fit(x, y), "constant (one class)"
    candidates = {
        "logistic regression": sk.pipeline.make_pipeline(
            sk.preprocessing.StandardScaler(),
            sk.linear_model.LogisticRegression(max_iter=2000)),
        "random forest": sk.ensemble.RandomForestClassifier(
            n_estimators=50, min_samples_leaf=2, random_state=0, n_jobs=1),
    }
    folds = min(3, int(np.bincount(np.unique(y, return_inverse=True)[1]).min()))
    if folds < 2:
        name = "logistic regression"
    else:
        cv = {name: sk.model_selection.cross_val_score(m, x, y, cv=folds).mean()
              for name, m in candidates.items()}
        name = max(cv, key=cv.get)
    return candidates[name].fit(x, y), name


def learned(logs: RunLogs, s: Samples) -> dict[str, Any] | str:
    if len(s) < MIN_SAMPLES:
        return f"fewer than {MIN_SAMPLES} steps with an action and a message"
    x = raw_features(logs, s)
    if x.shape[1] == 0:
        return "the messages carry no floats"
    y, cut = _labels(logs, s), s.split()
    model, name = _classifier(x[:cut], y[:cut])
    pred = model.predict(x)
    return {**_scored(y, pred, cut), "method": f"{name} on the raw arrays ({x.shape[1]} "
                                               "features), fitted on the first half"}


NOT_STRUCTURAL = {
    "latent": "a learned latent has no fixed relation to the action (the learned attack "
              "reads it)",
    "pr_query": "a query carries next states drawn from the sender's buffer, no value of its "
                "policy",
    "consensus": "no fixed reading for discrete actions: beta's sign says only whether the "
                 "updated policy made the logged action more likely",
}


def action_attacks(logs: RunLogs, src: int, dst: int, s: Samples
                   ) -> list[tuple[str, dict[str, Any] | str]]:
    """(attack name, result or why not applicable) for the edge src -> dst."""
    if src in logs.continuous:
        why = ("continuous (Box) actions: the classification attacks need discrete actions"
               + ("; beta's sign says only whether the updated policy made the logged action "
                  "more likely, not which action it was"
                  if "consensus" in logs.kinds((src, dst)) else ""))
        return [("action / structural", why), ("action / learned", why)]
    kinds = logs.kinds((src, dst))
    out: list[tuple[str, dict[str, Any] | str]] = []
    if "pr_values" in kinds:
        out.append(("action / structural", structural_pr(logs, s)))
    else:
        out.append(("action / structural", "; ".join(
            f"{k}: {NOT_STRUCTURAL.get(k, 'no structural reading known')}" for k in kinds)))
    out.append(("action / learned", learned(logs, s)))
    return out
