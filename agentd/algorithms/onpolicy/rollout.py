"""Rollout storage, GAE and value-target normalisation for the on-policy learners (numpy only).

A rollout holds T joint steps of K vectorised env copies for one agent: row t is what the
agent saw, did and got at joint step t in each copy. Each row keeps both V(s_t) and
V(s'_t) — the value of the observation that *ends* the transition (``final_obs`` from the env
server, before any auto-reset) — so an episode cut by a time limit (truncation) bootstraps
from its true last observation, while a terminated one does not bootstrap at all.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


class RolloutStore:
    """Fixed-size (T, K, ...) arrays filled one joint step at a time."""

    def __init__(self, steps: int, num_envs: int,
                 fields: dict[str, tuple[tuple[int, ...], type | np.dtype]]) -> None:
        self.steps, self.num_envs = int(steps), int(num_envs)
        self.data = {name: np.zeros((self.steps, self.num_envs, *shape), dtype)
                     for name, (shape, dtype) in fields.items()}
        self.t = 0

    @property
    def full(self) -> bool:
        return self.t == self.steps

    def add(self, **row: np.ndarray) -> None:
        """Store one joint step (every field, each of shape (K, ...))."""
        if self.full:
            raise RuntimeError("rollout is full: train on it and reset before adding")
        missing = set(self.data) - set(row)
        if missing:
            raise KeyError(f"rollout row lacks fields {sorted(missing)}")
        for name, value in row.items():
            self.data[name][self.t] = value
        self.t += 1

    def reset(self) -> None:
        self.t = 0

    def flat(self, name: str) -> np.ndarray:
        """Field ``name`` of the filled steps with (T, K) merged into one batch axis."""
        arr = self.data[name][:self.t]
        return arr.reshape(self.t * self.num_envs, *arr.shape[2:])


def gae(reward: np.ndarray, value: np.ndarray, next_value: np.ndarray,
        terminated: np.ndarray, done: np.ndarray, gamma: float, lam: float
        ) -> tuple[np.ndarray, np.ndarray]:
    """Generalised advantage estimates and returns of a (T, K) rollout.

    delta_t = r_t + gamma (1 - terminated_t) V(s'_t) - V(s_t)
    A_t     = delta_t + gamma lambda (1 - done_t) A_{t+1},    done = terminated or truncated
    returns = A + V. ``next_value`` is V(s'_t) of the transition's own next observation, so
    a truncated step bootstraps from it and the last row needs nothing beyond the rollout.
    """
    adv = np.zeros(np.shape(reward), dtype=np.float64)
    running = np.zeros(np.shape(reward)[1:], dtype=np.float64)
    not_term = 1.0 - np.asarray(terminated, dtype=np.float64)
    not_done = 1.0 - np.asarray(done, dtype=np.float64)
    for t in reversed(range(len(reward))):
        delta = reward[t] + gamma * not_term[t] * next_value[t] - value[t]
        running = delta + gamma * lam * not_done[t] * running
        adv[t] = running
    return adv, adv + value


def normalise(x: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """(x - mean) / (std + eps) over the whole batch (advantage normalisation)."""
    return (x - x.mean()) / (x.std() + eps)


def minibatches(n: int, count: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """``count`` disjoint random index sets covering range(n) (sizes differ by at most one)."""
    yield from np.array_split(rng.permutation(n), count)


class RunningNorm:
    """Running mean and variance of value targets (the critic learns (G - mean) / std).

    Exponentially weighted with a debiasing term, as the value normaliser of the MAPPO code
    base that DPO's reference implementation builds on; ``decay`` close to 1 is a long memory.
    """

    def __init__(self, decay: float = 0.99999, eps: float = 1e-5) -> None:
        self.decay, self.eps = decay, eps
        self.mean = np.zeros(1)
        self.mean_sq = np.zeros(1)
        self.debias = np.zeros(1)

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64)
        d = self.decay
        self.mean[:] = d * self.mean + (1 - d) * x.mean()
        self.mean_sq[:] = d * self.mean_sq + (1 - d) * (x * x).mean()
        self.debias[:] = d * self.debias + (1 - d)

    def stats(self) -> tuple[float, float]:
        debias = max(float(self.debias[0]), self.eps)
        mean = float(self.mean[0]) / debias
        var = max(float(self.mean_sq[0]) / debias - mean * mean, 1e-2)
        return mean, float(np.sqrt(var))

    def normalise(self, x: np.ndarray) -> np.ndarray:
        mean, std = self.stats()
        return (x - mean) / std

    def denormalise(self, x: np.ndarray) -> np.ndarray:
        mean, std = self.stats()
        return x * std + mean
