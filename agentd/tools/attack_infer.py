"""Reward / preference inference, observation reconstruction and membership inference on the
messages of one edge i -> j (the attacker is the receiver j; see ``agentd.tools.attack``).

* reward, structural (``pr_values``): the value i sent for the state j saw, max_a Q_i(s_t, a),
  as a score of i's reward r_t for its action at t; rank correlation (Spearman) with the true
  rewards against the same scores shuffled. Needs no labels.
* reward, learned: ridge regression of i's rewards on the raw arrays of its message, fitted on
  the first half of the run (an attacker that learned i's rewards there: an upper bound), R² on
  the second half against the first half's mean reward.
  Both apply only where rewards are individual: with a shared reward j already holds r_t.
* observation reconstruction (``latent``): a ridge decoder from the latent z that i sent about
  its observation of step t to j's own observation of step t (data j holds), fitted on the
  first half, scored (R²) against i's true observations on the second half. Baseline: the better
  of j's own observation and the first half's mean, used as the guess.
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
from agentd.tools.attack_membership import pr_query_membership
from agentd.tools.attack_stats import r2, r2_advantage, rank_advantage, sklearn


def _rewards(logs: RunLogs, agent: int, s: Samples) -> np.ndarray:
    return np.array([float(logs.rewards[agent][int(t) + 1][int(c)])
                     for t, c in zip(s.steps, s.copies, strict=True)])


def shared_reward(logs: RunLogs, src: int, dst: int) -> bool:
    """Whether j received the same reward as i at every step both logged."""
    a, b = logs.rewards.get(src, {}), logs.rewards.get(dst, {})
    common = sorted(set(a) & set(b))
    return bool(common) and all(np.array_equal(a[t], b[t]) for t in common)


def reward_structural(logs: RunLogs, s: Samples) -> dict[str, Any] | str:
    if "pr_values" not in logs.kinds((s.src, s.dst)):
        return "no message carries the sender's values of the state it acted in"
    score = np.full(len(s), np.nan)
    for n, (t, c) in enumerate(zip(s.steps, s.copies, strict=True)):
        body = message_for(logs, s.src, s.dst, int(t), "pr_values")
        row = None if body is None else pr_row(body, attacker_state(logs, s.dst, int(t),
                                                                     int(c)))
        if row is not None and len(row):
            score[n] = row.max()
    live = np.isfinite(score)
    if live.sum() < MIN_SAMPLES:
        return f"fewer than {MIN_SAMPLES} messages with a row of the attacker's state"
    cut = s.split()
    test = live & (np.arange(len(s)) >= cut)
    if test.sum() < MIN_SAMPLES:
        return f"fewer than {MIN_SAMPLES} such messages in the second half"
    out = rank_advantage(score[test], _rewards(logs, s.src, s)[test])
    return {**out, "metric": "Spearman rho", "baseline": "the same scores shuffled",
            "method": "max of the sent Q row at j's state vs i's reward"}


def reward_learned(logs: RunLogs, s: Samples) -> dict[str, Any] | str:
    x = raw_features(logs, s)
    if x.shape[1] == 0:
        return "the messages carry no floats"
    y, cut = _rewards(logs, s.src, s), s.split()
    sk = sklearn()
    model = sk.pipeline.make_pipeline(sk.preprocessing.StandardScaler(),
                                      sk.linear_model.Ridge(alpha=1.0)).fit(x[:cut], y[:cut])
    out = r2_advantage(y[cut:], model.predict(x[cut:]), np.full(len(y) - cut, y[:cut].mean()))
    return {**out, "metric": "R2", "baseline": "the first half's mean reward",
            "method": f"ridge regression on the raw arrays ({x.shape[1]} features), fitted on "
                      "the first half with i's rewards (an upper bound)"}


def reward_attacks(logs: RunLogs, s: Samples) -> list[tuple[str, dict[str, Any] | str]]:
    if shared_reward(logs, s.src, s.dst):
        why = "rewards are shared: the neighbour already receives the same reward"
        return [("reward / structural", why), ("reward / learned", why)]
    if len(s) < 2 * MIN_SAMPLES:
        why = f"fewer than {2 * MIN_SAMPLES} steps with a reward and a message"
        return [("reward / structural", why), ("reward / learned", why)]
    return [("reward / structural", reward_structural(logs, s)),
            ("reward / learned", reward_learned(logs, s))]


def reconstruction(logs: RunLogs, s: Samples) -> dict[str, Any] | str:
    """Decode i's observation of step t from the latent it sent at t + 1."""
    if "latent" not in logs.kinds((s.src, s.dst)):
        return "no latent messages on this edge (mdpo with share_latent sends them)"
    z, own, truth = [], [], []
    for t, c in zip(s.steps, s.copies, strict=True):
        body = message_for(logs, s.src, s.dst, int(t), "latent")
        zz = None if body is None else np.asarray(body.get("z"))
        if zz is None or zz.ndim != 2 or int(c) >= len(zz):
            continue
        z.append(zz[int(c)].astype(np.float64))
        own.append(logs.obs[s.dst][int(t)][int(c)].astype(np.float64))
        truth.append(logs.obs[s.src][int(t)][int(c)].astype(np.float64))
    if len(z) < 2 * MIN_SAMPLES:
        return f"fewer than {2 * MIN_SAMPLES} latents with an observation"
    if own[0].shape != truth[0].shape:
        return "the attacker's observations differ in shape from the sender's"
    z_arr, own_arr, truth_arr = np.array(z), np.array(own), np.array(truth)
    if np.array_equal(own_arr, truth_arr):
        return "j observes exactly what i observes (a fully observed env): nothing to decode"
    cut = len(z_arr) // 2
    sk = sklearn()
    decoder = sk.linear_model.Ridge(alpha=1.0).fit(z_arr[:cut], own_arr[:cut])
    pred, test = decoder.predict(z_arr[cut:]), truth_arr[cut:]
    guesses = {"j's own observation": own_arr[cut:],
               "the first half's mean": np.tile(own_arr[:cut].mean(0), (len(test), 1))}
    name = max(guesses, key=lambda k: np.nan_to_num(r2(test, guesses[k]), nan=-np.inf))
    out = r2_advantage(test, pred, guesses[name])
    return {**out, "metric": "R2", "baseline": name,
            "method": "ridge decoder from i's latent to j's own observation, fitted on the "
                      "first half, scored against i's observation"}


def membership(logs: RunLogs, s: Samples) -> dict[str, Any] | str:
    """Deep PR's queries reveal buffer contents (``attack_membership``); why no other kind
    does."""
    kinds = logs.kinds((s.src, s.dst))
    if "pr_query" in kinds:
        return pr_query_membership(logs, s.src, s.dst)
    why = {"pr_values": "the answers carry values, not buffer contents (tabular pr keeps no "
                        "replay buffer)",
           "latent": "on-policy rollouts; a latent is of the current observation only",
           "consensus": "buffers are aligned by the global step: which steps a "
                        "buffer holds is common knowledge"}
    return "; ".join(f"{k}: {why.get(k, 'no replay buffer content in the message')}"
                     for k in kinds)
