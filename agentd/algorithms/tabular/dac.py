"""Tabular decentralized actor-critic (Li & Jia 2021, Algorithm 1).

Agent i keeps a critic Q^i[S, A^i] and action preferences zeta^i[S, A^i] with
pi^i(s, ·) = softmax(zeta^i(s, ·)) (eq. 6). After each joint transition (s, a, r, s'):

    critic (eq. 7):   Q(s, a^i) += alpha [ r + gamma Q(s', ã^i) - Q(s, a^i) ],  ã^i ~ pi(s', ·)
    actor (eq. 32):   v = sum_a pi(s, a) Q(s, a)
          (eq. 33):   zeta(s, ·) += beta pi(s, ·) ⊙ (Q(s, ·) - v)
          (eq. 34):   zeta(s, ·) = clip(zeta(s, ·), T_m, T_M)

alpha >> beta gives the two time scales (the critic tracks the slowly moving policy). The
tabular algorithm needs no communication: every agent sees the global state and shared reward.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agentd.algorithms.base import LearnerConfigError, LearnerSpec, param
from agentd.algorithms.tabular.table import TabularLearner, discrete_sizes


@dataclass
class DACParams:
    """Hyper-parameters of tabular DAC (Li & Jia 2021, Algorithm 1).

    The paper gives no step sizes. alpha = 0.5, beta = 0.1 learned fastest on random-mdp with
    N = 4 and 5 agents (episode return ~0 -> ~70 within 20k joint steps); alpha = 0.1,
    beta = 0.01 barely moves the policy in 40k steps.
    """

    gamma: float = param(0.95, ge=0.0, lt=1.0)
    """discount factor"""
    alpha: float = param(0.5, gt=0.0, le=1.0)
    """critic step size alpha (fast time scale)"""
    beta: float = param(0.1, gt=0.0, le=1.0)
    """actor step size beta (slow time scale, beta <= alpha)"""
    t_min: float = -10.0
    """lower clip T_m for the preferences zeta (keeps every action's probability > 0)"""
    t_max: float = 10.0
    """upper clip T_M for the preferences zeta"""

    def check(self) -> None:
        if self.beta > self.alpha:
            raise LearnerConfigError(
                f"dac: beta ({self.beta}) must be <= alpha ({self.alpha}): the actor runs on "
                "the slower time scale so the critic can track the policy")
        if not self.t_min < self.t_max:
            raise LearnerConfigError(
                f"dac: t_min ({self.t_min}) must be < t_max ({self.t_max})")


def softmax(z: np.ndarray) -> np.ndarray:
    """Softmax over the last axis (eq. 6)."""
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class DAC(TabularLearner):
    """Agent i of Algorithm 1: a private critic Q^i and softmax actor zeta^i."""

    name = "dac"
    Params = DACParams

    def __init__(self, spec: LearnerSpec) -> None:
        super().__init__(spec)
        n_states, n_actions = discrete_sizes(spec, self.name)
        self.q = np.zeros((n_states, n_actions))       # critic Q^i[S, A^i]
        self.zeta = np.zeros((n_states, n_actions))    # preferences; pi^i starts uniform
        # pi = softmax(zeta) and its CDF, kept per state: an update changes one row only
        self._pi = softmax(self.zeta)
        self._cdf = self._pi.cumsum(axis=1)

    def policy(self, states: np.ndarray | int) -> np.ndarray:
        """pi^i(s, ·) for one state (A,) or a batch of states (K, A), eq. 6."""
        return self._pi[states]

    def act(self, obs: np.ndarray) -> np.ndarray:
        # a_t^i ~ pi^i(s_t, ·) for each of the K copies (inverse CDF, one uniform per copy)
        u = self.rng.random((len(obs), 1))
        index = (self._cdf[obs] <= u).sum(axis=1)
        return np.minimum(index, self.q.shape[1] - 1)

    def act_eval(self, obs: np.ndarray) -> np.ndarray:
        return self._pi[obs].argmax(axis=1)     # the softmax policy's most likely action

    def _sample(self, s: int) -> int:
        index = int(np.searchsorted(self._cdf[s], self.rng.random(), side="right"))
        return min(index, self.q.shape[1] - 1)

    def update(self) -> dict[str, float]:
        if self._batch is None:
            return {}
        p, q, zeta = self.params, self.q, self.zeta
        td_abs, entropy = [], []
        for s, a, r, s_next, done in zip(*self._batch):
            # ---- policy evaluation (eq. 7), ã ~ pi(s', ·) freshly sampled
            a_tilde = self._sample(s_next)
            target = r if done else r + p.gamma * q[s_next, a_tilde]
            td = target - q[s, a]
            q[s, a] += p.alpha * td

            # ---- policy improvement (eqs. 32-34) with the critic just updated
            pi = self._pi[s]
            v = pi @ q[s]                                          # eq. 32
            zeta[s] += p.beta * pi * (q[s] - v)                    # eq. 33
            np.clip(zeta[s], p.t_min, p.t_max, out=zeta[s])        # eq. 34

            td_abs.append(abs(td))
            entropy.append(float(-(pi * np.log(pi)).sum()))
            self._pi[s] = softmax(zeta[s])                         # eq. 6, for the new zeta
            np.cumsum(self._pi[s], out=self._cdf[s])
        self._batch = None
        return {"td_abs": float(np.mean(td_abs)), "entropy": float(np.mean(entropy))}

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"q": self.q, "zeta": self.zeta}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        super().load_state_dict(state)
        self._pi[...] = softmax(self.zeta)
        self._cdf[...] = self._pi.cumsum(axis=1)
