"""Independent Q-learning (the IQL baseline of MA2QL and I2Q): each agent learns Q^i[S, A^i] alone.

    Q(s, a^i) += alpha [ r + gamma max_a' Q(s', a') - Q(s, a^i) ]     (no bootstrap if terminal)

The other agents are part of the environment; no messages are exchanged. Behaviour is
epsilon-greedy with ties between greedy actions broken at random.

Schedules (``iql`` and ``ma2ql`` only; their defaults keep alpha and epsilon constant):

    alpha_t(s, a) = max(alpha_min, alpha (1 + n(s, a))^-alpha_omega)

with n(s, a) the updates of (s, a) made so far (in ma2ql: so far in the current turn, so each
turn is a fresh stochastic-approximation run); alpha_omega in (0.5, 1] with alpha_min = 0
meets the Robbins-Monro conditions. epsilon falls linearly from ``epsilon`` to
``epsilon_final`` over the first ``epsilon_decay`` joint steps (0: constant).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agentd.algorithms.base import LearnerConfigError, LearnerSpec, param
from agentd.algorithms.tabular.table import TabularLearner, discrete_sizes


@dataclass
class QParams:
    """Hyper-parameters of tabular epsilon-greedy Q-learning (defaults tuned on random-mdp)."""

    gamma: float = param(0.95, ge=0.0, le=1.0)
    """discount factor (1 only on envs whose episodes terminate: lstage, matrix)"""
    alpha: float = param(0.5, gt=0.0, le=1.0)
    """step size of the Q update"""
    epsilon: float = param(0.05, ge=0.0, le=1.0)
    """probability of a uniformly random action (exploration)"""


@dataclass
class QScheduleParams(QParams):
    """Q-learning's parameters plus its step-size and exploration schedules (the defaults
    leave alpha and epsilon constant)."""

    alpha_omega: float = param(0.0, ge=0.0, le=1.0)
    """visit-count decay of the step size: alpha (1 + n(s, a))^-alpha_omega (0: constant)"""
    alpha_min: float = param(0.0, ge=0.0, le=1.0)
    """floor of the decaying step size"""
    epsilon_decay: int = param(0, ge=0)
    """joint steps over which epsilon falls linearly to epsilon_final (0: constant epsilon)"""
    epsilon_final: float = param(0.0, ge=0.0, le=1.0)
    """epsilon after epsilon_decay joint steps"""

    def check(self) -> None:
        if self.alpha_min > self.alpha:
            raise LearnerConfigError(f"parameter 'alpha_min' ({self.alpha_min}) must not "
                                     f"exceed 'alpha' ({self.alpha})")


def step_size(p: QScheduleParams, visits: int) -> float:
    """alpha of the (visits + 1)-th update of a pair: max(alpha_min, alpha (1+visits)^-omega)."""
    if p.alpha_omega == 0.0:
        return p.alpha
    return max(p.alpha_min, p.alpha * (1.0 + visits) ** -p.alpha_omega)


def epsilon_at(p: QParams, step: int) -> float:
    """epsilon at joint step ``step`` (0-based): linear from epsilon to epsilon_final."""
    if not isinstance(p, QScheduleParams) or p.epsilon_decay == 0:
        return p.epsilon
    frac = min(1.0, step / p.epsilon_decay)
    return p.epsilon + frac * (p.epsilon_final - p.epsilon)


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
    Params = QScheduleParams
    act_step: int = 0         # joint steps acted so far (the epsilon schedule's clock)
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
        # updates per (s, a): the visit-count step size's n (only with alpha_omega > 0)
        self.visits = np.zeros(self.q.shape, dtype=np.int64)

    def table_shape(self, spec: LearnerSpec) -> tuple[int, int]:
        """(|S|, |A|) of the Q table: this agent's own actions."""
        return discrete_sizes(spec, self.name)

    def act(self, obs: np.ndarray) -> np.ndarray:
        eps = epsilon_at(self.params, self.act_step)
        self.act_step += 1
        return epsilon_greedy(self.rng, self.q[obs], eps)

    def act_eval(self, obs: np.ndarray) -> np.ndarray:
        return self.q[obs].argmax(axis=1)       # the greedy policy the summary scores

    def on_gap(self, steps: int) -> None:
        # The epsilon schedule runs on the joint step. ``steps`` counts from the last step we
        # acted on to the reply we resume at, which we act on ourselves: one fewer act missed.
        self.act_step += max(steps - 1, 0)

    def scheduled(self) -> bool:
        """Whether the step size decays with visits (else the constant alpha of QParams)."""
        return isinstance(self.params, QScheduleParams) and self.params.alpha_omega > 0.0

    def update(self) -> dict[str, float]:
        if self._batch is None:
            return {}
        p, q = self.params, self.q
        td_abs = []
        decays, visits = self.scheduled(), self.visits
        for s, a, r, s_next, done in zip(*self._batch):
            target = r if done else r + p.gamma * q[s_next].max()
            td = target - q[s, a]
            if decays:
                q[s, a] += step_size(p, int(visits[s, a])) * td
                visits[s, a] += 1
            else:
                q[s, a] += p.alpha * td
            td_abs.append(abs(td))
        self._batch = None
        return {"td_abs": float(np.mean(td_abs)),
                "epsilon": epsilon_at(p, max(self.act_step - 1, 0))}

    def has_schedule(self) -> bool:
        """Whether a schedule is on (its clocks are then part of the learner's state)."""
        p = self.params
        return isinstance(p, QScheduleParams) and (p.alpha_omega > 0 or p.epsilon_decay > 0)

    def state_dict(self) -> dict[str, np.ndarray]:
        if self.has_schedule():
            return {"q": self.q, "visits": self.visits, "act_step": np.array(self.act_step)}
        return {"q": self.q}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.q[...] = state["q"]
        if "visits" in state:
            self.visits[...] = state["visits"]
            self.act_step = int(state["act_step"])
