"""Scoring for the attacks: paired bootstrap confidence intervals of an attack's advantage over
its baseline, rank correlation, R², membership-inference ROC figures, and the lazy import of
scikit-learn (an optional extra: ``pip install 'agentd[attack]'``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

BOOTSTRAP = 1000        # resamples of the test samples per confidence interval
CI_LEVEL = 0.95


class MissingDependency(Exception):
    """An optional package the attack needs is not installed."""


def sklearn() -> Any:
    """scikit-learn, imported on first use, or a clear error saying how to install it."""
    try:
        import sklearn as sk
        import sklearn.dummy
        import sklearn.ensemble
        import sklearn.linear_model
        import sklearn.model_selection
        import sklearn.pipeline
        import sklearn.preprocessing
    except ImportError:
        raise MissingDependency(
            "the learned attacks need scikit-learn: pip install 'agentd[attack]' "
            "(or pip install scikit-learn)") from None
    return sk


def bootstrap_ci(stat: Callable[[np.ndarray], float], n: int, seed: int = 0
                 ) -> tuple[float, float]:
    """The 95% percentile interval of ``stat(idx)`` over resampled index sets of size n."""
    rng = np.random.default_rng(seed)
    values = np.array([stat(rng.integers(0, n, n)) for _ in range(BOOTSTRAP)])
    values = values[np.isfinite(values)]
    if not len(values):
        return (float("nan"), float("nan"))
    lo, hi = np.percentile(values, [50 * (1 - CI_LEVEL), 100 - 50 * (1 - CI_LEVEL)])
    return (round(float(lo), 4), round(float(hi), 4))


def accuracy_advantage(hit: np.ndarray, base_hit: np.ndarray) -> dict[str, Any]:
    """Accuracy of an attack and of its baseline on the same test samples, the difference,
    and the difference's paired bootstrap CI."""
    hit, base_hit = hit.astype(float), base_hit.astype(float)
    ci = bootstrap_ci(lambda i: hit[i].mean() - base_hit[i].mean(), len(hit))
    return {"score": round(float(hit.mean()), 4), "baseline_score": round(float(base_hit.mean()), 4),
            "advantage": round(float(hit.mean() - base_hit.mean()), 4), "ci": ci,
            "samples": len(hit)}


def r2(truth: np.ndarray, pred: np.ndarray) -> float:
    """Coefficient of determination over all output dimensions (1 - SSE / SST)."""
    truth, pred = truth.reshape(len(truth), -1), pred.reshape(len(pred), -1)
    sst = float(((truth - truth.mean(0)) ** 2).sum())
    sse = float(((truth - pred) ** 2).sum())
    return 1.0 - sse / sst if sst > 0 else float("nan")


def r2_advantage(truth: np.ndarray, pred: np.ndarray, base: np.ndarray) -> dict[str, Any]:
    ci = bootstrap_ci(lambda i: r2(truth[i], pred[i]) - r2(truth[i], base[i]), len(truth))
    a, b = r2(truth, pred), r2(truth, base)
    return {"score": round(a, 4), "baseline_score": round(b, 4), "advantage": round(a - b, 4),
            "ci": ci, "samples": len(truth)}


def ranks(v: np.ndarray) -> np.ndarray:
    """Ranks from 0, ties sharing their mean rank (O(n log n))."""
    _, inverse, counts = np.unique(v, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return ((ends - counts + ends - 1) / 2.0)[inverse.ravel()]


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Rank correlation (average ranks for ties)."""
    rx, ry = ranks(x), ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def rank_advantage(score: np.ndarray, truth: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """Rank correlation of a score with the truth against the same score shuffled."""
    shuffled = np.random.default_rng(seed).permutation(score)
    ci = bootstrap_ci(lambda i: spearman(score[i], truth[i]) - spearman(shuffled[i], truth[i]),
                      len(score))
    a, b = spearman(score, truth), spearman(shuffled, truth)
    return {"score": round(a, 4), "baseline_score": round(b, 4), "advantage": round(a - b, 4),
            "ci": ci, "samples": len(score)}


def roc(scores: np.ndarray, members: np.ndarray) -> tuple[float, float]:
    """(AUC, TPR at FPR <= 1%) of membership scores (higher: more likely a member). The AUC
    is the Mann-Whitney statistic: P(member scores above non-member), ties counting half."""
    pos, neg = scores[members], scores[~members]
    if not len(pos) or not len(neg):
        return (float("nan"), float("nan"))
    r = ranks(scores)[members]
    auc = (r.sum() + len(pos) - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))
    threshold = np.quantile(neg, 0.99, method="higher")
    return (float(auc), float((pos > threshold).mean()))
