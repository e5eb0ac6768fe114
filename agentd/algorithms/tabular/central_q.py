"""Centralised Q-learning baseline (Li & Jia 2021, §V): one learner acting for all N agents.

The N agents are merged into one "global agent" whose action is the joint action, so the
table is Q[S, |A^1| x ... x |A^N|] and grows exponentially with N. This is a non-private
baseline: it needs the joint observation and the joint action (``centralised = True``).
The Q update is IQL's, applied to the joint action.

Joint index <-> per-agent actions: mixed radix with agent 0 the least significant digit,
the same order random-mdp uses for its joint index.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agentd.algorithms.base import LearnerConfigError, LearnerSpec
from agentd.algorithms.tabular.iql import IQL, QParams, epsilon_greedy

MAX_TABLE_ENTRIES = 50_000_000


@dataclass
class CentralQParams(QParams):
    """IQL's parameters with defaults tuned for the joint table on random-mdp (N = 4, 5).

    alpha = 1 suits random-mdp, whose reward is a deterministic function of (s, joint a):
    each of the many joint entries is visited rarely, so it should learn from one visit.
    """

    alpha: float = 1.0
    """step size of the Q update"""
    epsilon: float = 0.1
    """probability of a uniformly random joint action (exploration)"""


class CentralQ(IQL):
    """Epsilon-greedy Q-learning over the joint action of every env agent."""

    name = "central-q"
    greedy_q = False    # one table over joint actions, not one per agent
    centralised = True
    Params = CentralQParams

    def table_shape(self, spec: LearnerSpec) -> tuple[int, int]:
        """(|S|, prod_i |A^i|): the joint action table, refused when too large."""
        spaces = list(spec.obs_spaces) + list(spec.act_spaces)
        if not spaces or any(sp.get("type") != "discrete" for sp in spaces):
            raise LearnerConfigError(
                "central-q needs Discrete observation and action spaces (e.g. env random-mdp)")
        # Every controlled agent observes the global state (random-mdp); agent 0's is used.
        n_states = int(spec.obs_spaces[0]["n"])
        self.radices = np.array([int(sp["n"]) for sp in spec.act_spaces], dtype=np.int64)
        n_joint = 1
        for n in self.radices.tolist():
            n_joint *= n                      # Python int: 3**64 must not overflow
        if n_states * n_joint > MAX_TABLE_ENTRIES:
            raise LearnerConfigError(
                f"central-q: the joint action space is too large for a central table "
                f"({n_states} states x {n_joint} joint actions > {MAX_TABLE_ENTRIES:.0e} "
                "entries); use fewer agents or a decentralized algo such as dac or iql")
        self.places = np.concatenate(([1], np.cumprod(self.radices[:-1]))).astype(np.int64)
        return n_states, n_joint

    # ---- joint action encoding ----------------------------------------------------------

    def joint_index(self, actions: np.ndarray) -> np.ndarray:
        """(K, m) per-agent actions -> (K,) joint indices (agent 0 least significant)."""
        return np.asarray(actions, dtype=np.int64) @ self.places

    def joint_actions(self, index: np.ndarray) -> np.ndarray:
        """(K,) joint indices -> (K, m) per-agent actions."""
        return (np.asarray(index, dtype=np.int64)[:, None] // self.places) % self.radices

    # ---- Learner ------------------------------------------------------------------------

    def act(self, obs: np.ndarray) -> np.ndarray:
        joint = epsilon_greedy(self.rng, self.q[obs[:, 0]], self.params.epsilon)
        return self.joint_actions(joint)

    def act_eval(self, obs: np.ndarray) -> np.ndarray:
        return self.joint_actions(self.q[obs[:, 0]].argmax(axis=1))

    def observe(self, obs: np.ndarray, action: np.ndarray, reward: np.ndarray,
                next_obs: np.ndarray, terminated: np.ndarray, truncated: np.ndarray) -> None:
        team_reward = reward[:, 0] if self.spec.shared_reward else reward.mean(axis=1)
        super().observe(obs[:, 0], self.joint_index(action), team_reward, next_obs[:, 0],
                        terminated, truncated)
