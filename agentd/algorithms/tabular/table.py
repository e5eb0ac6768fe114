"""What the tabular learners share: Discrete spaces, and the step's transitions kept as lists."""

from __future__ import annotations

import numpy as np

from agentd.algorithms.base import Learner, LearnerConfigError, LearnerSpec


def discrete_sizes(spec: LearnerSpec, algo: str) -> tuple[int, int]:
    """(|S|, |A^i|) of a single-agent learner on Discrete spaces, else LearnerConfigError."""
    if len(spec.controls) != 1:
        raise LearnerConfigError(f"{algo} controls exactly one env agent, got {spec.controls}")
    obs, act = spec.obs_spaces[0], spec.act_spaces[0]
    if obs.get("type") != "discrete" or act.get("type") != "discrete":
        raise LearnerConfigError(
            f"{algo} needs Discrete observation and action spaces (e.g. env random-mdp), "
            f"got observation {obs.get('type')} and action {act.get('type')}")
    return int(obs["n"]), int(act["n"])


class TabularLearner(Learner):
    """Keeps the K transitions of the step for ``update`` (as Python lists: the per-copy
    loops of tabular updates are faster on scalars than on 0-d arrays)."""

    action_type = "discrete"
    obs_type = "discrete"
    _batch: tuple[list, ...] | None = None

    def observe(self, obs: np.ndarray, action: np.ndarray, reward: np.ndarray,
                next_obs: np.ndarray, terminated: np.ndarray, truncated: np.ndarray) -> None:
        # Truncation is a time limit, not an end of the MDP: only termination stops bootstrapping.
        self._batch = (obs.tolist(), action.tolist(), reward.tolist(), next_obs.tolist(),
                       terminated.tolist())
