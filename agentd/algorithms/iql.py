"""Independent Q-learning (seed 003's IQL baseline): each agent learns Q^i[S, A^i] alone.

    Q(s, a^i) += alpha [ r + gamma max_a' Q(s', a') - Q(s, a^i) ]     (no bootstrap if terminal)

The other agents are part of the environment; no messages are exchanged. Behaviour is
epsilon-greedy with ties between greedy actions broken at random.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agentd.algorithms.base import LearnerConfigError, LearnerSpec, param
from agentd.algorithms.tabular import TabularLearner, discrete_sizes


@dataclass
class QParams:
    """Hyper-parameters of tabular epsilon-greedy Q-learning (defaults tuned on random-mdp)."""

    gamma: float = param(0.95, ge=0.0, le=1.0)
    """discount factor (1 only on envs whose episodes terminate: lstage, matrix)"""
    alpha: float = param(0.5, gt=0.0, le=1.0)
    """step size of the Q update"""
    epsilon: float = param(0.05, ge=0.0, le=1.0)
    """probability of a uniformly random action (exploration)"""


def epsilon_greedy(rng: np.random.Generator, q_rows: np.ndarray, epsilon: float) -> np.ndarray:
    """One action per row of q_rows (K, A): greedy with random tie-breaks, else uniform."""
    k, n = q_rows.shape
    best = q_rows == q_rows.max(axis=1, keepdims=True)
    greedy = np.argmax(best + rng.random((k, n)), axis=1)     # uniform among tied maxima
    explore = rng.random(k) < epsilon
    return np.where(explore, rng.integers(n, size=k), greedy).astype(np.int64)


TERMINATING_ENVS = ("lstage", "matrix")      # every episode ends in a terminal state


class IQL(TabularLearner):
    """Agent i's private epsilon-greedy Q-learner on its own action."""

    name = "iql"
    Params = QParams
    greedy_q = True     # its greedy policy is the argmax of its q table (scored in the summary)

    @classmethod
    def check_run(cls, run: dict) -> dict:
        """gamma = 1 only where every episode terminates (else Q grows without bound)."""
        if float(run.get("params", {}).get("gamma", 0.0)) >= 1.0 \
                and run.get("env") not in TERMINATING_ENVS:
            raise LearnerConfigError(
                f"{cls.name}: gamma = 1 needs an env whose episodes terminate "
                f"({', '.join(TERMINATING_ENVS)}); env {run.get('env')!r} only truncates")
        return {}

    def __init__(self, spec: LearnerSpec) -> None:
        super().__init__(spec)
        self.q = np.zeros(self.table_shape(spec))

    def table_shape(self, spec: LearnerSpec) -> tuple[int, int]:
        """(|S|, |A|) of the Q table: this agent's own actions."""
        return discrete_sizes(spec, self.name)

    def act(self, obs: np.ndarray) -> np.ndarray:
        return epsilon_greedy(self.rng, self.q[obs], self.params.epsilon)

    def update(self) -> dict[str, float]:
        if self._batch is None:
            return {}
        p, q = self.params, self.q
        td_abs = []
        for s, a, r, s_next, done in zip(*self._batch):
            target = r if done else r + p.gamma * q[s_next].max()
            td = target - q[s, a]
            q[s, a] += p.alpha * td
            td_abs.append(abs(td))
        self._batch = None
        return {"td_abs": float(np.mean(td_abs)), "epsilon": p.epsilon}

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"q": self.q}
