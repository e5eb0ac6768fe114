"""Uniformly random actions: the no-learning baseline and the smoke-test learner for any env."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agentd.algorithms.base import Learner, LearnerConfigError, LearnerSpec
from protocols.spaces import box_bounds


@dataclass
class RandomParams:
    """The random policy has no parameters."""


def box_sampling_bounds(space: dict) -> tuple[np.ndarray, np.ndarray]:
    """Finite (low, high) to sample a Box from: an infinite side becomes -1 / 1 (or 2 away)."""
    low, high = box_bounds(space)
    lo = np.where(np.isfinite(low), low, -1.0)
    hi = np.where(np.isfinite(high), high, 1.0)
    # A half-bounded side such as [5, inf) must still give a non-empty interval.
    hi = np.where(np.isfinite(high) | (hi >= lo), hi, lo + 2.0)
    lo = np.where(np.isfinite(low) | (lo <= hi), lo, hi - 2.0)
    return lo, hi


class RandomPolicy(Learner):
    """Uniform over a Discrete action space, or over the (finite part of a) Box."""

    name = "random"
    Params = RandomParams

    def __init__(self, spec: LearnerSpec) -> None:
        super().__init__(spec)
        if len(spec.controls) != 1:
            raise LearnerConfigError(f"random controls exactly one env agent, got {spec.controls}")
        self.space = spec.act_spaces[0]
        kind = self.space.get("type")
        if kind == "box":
            self.low, self.high = box_sampling_bounds(self.space)
        elif kind != "discrete":
            raise LearnerConfigError(f"random: unsupported action space {self.space}")

    def act(self, obs: np.ndarray) -> np.ndarray:
        k = len(obs)
        if self.space["type"] == "discrete":
            return self.rng.integers(int(self.space["n"]), size=k, dtype=np.int64)
        u = self.rng.random((k, *self.low.shape))
        return (self.low + u * (self.high - self.low)).astype(np.float32)
