"""I2Q, ideal independent Q-learning (Jiang & Lu, NeurIPS 2022; seed 003), tabular form.

In a deterministic env the others' best reply to a_i shows up as the best next state reachable
with a_i. Agent i learns, privately, from its own transitions (s, a_i, r, s'):

    N(s)          successors of s it has observed (after any joint action)
    M(s, a_i)     successors it has observed after its OWN action a_i in s (the mask)
    Q_ss(s, s')  += alpha [ r + gamma max_{s'' in N(s')} Q_ss(s', s'') - Q_ss(s, s') ]      (1)
    s'*           = argmax_{c in M(s, a_i)} Q_ss(s, c)          the ideal next state       (2)
    Q(s, a_i)    += alpha [ r(s, s'*) + gamma max_a' Q(s'*, a') - Q(s, a_i) ]              (3)

IQL is (3) with the sampled s' instead of s'*. (3) uses the reward last seen on the transition
s -> s'*: exact when the reward depends on the transition only, as in the L-stage game (the
official code uses the sampled r, the same there). A state with no observed successor yet
bootstraps 0 in (1) (in the L-stage game only the terminal leaves have none). Without any
messages, Q-learning on s'* converges to the optimal joint policy of a deterministic game.

Tables: Q is dense (S x A_i); Q_ss, N and M are sparse (only observed transitions), so the
L-stage tree of depth 5 (66,430 nodes) fits. A non-deterministic env is a config error: the
ideal next state of an action is not a state the agent can pick there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agentd.algorithms.base import LearnerConfigError, LearnerSpec
from agentd.algorithms.iql import IQL, QParams


@dataclass
class I2qParams(QParams):
    """Tabular Q-learning's parameters (the L-stage settings of the official code: alpha 0.1,
    epsilon 0.5, gamma 1)."""


class I2Q(IQL):
    """Agent i's QSS table, its successor masks and its Q-table on the ideal next state."""

    name = "i2q"
    Params = I2qParams

    @classmethod
    def check_run(cls, run: dict) -> dict:
        from coordinator.envs import DETERMINISTIC_ENVS

        if run.get("env") not in DETERMINISTIC_ENVS:
            raise LearnerConfigError(
                f"i2q (tabular) needs a deterministic env ({', '.join(DETERMINISTIC_ENVS)}); "
                f"env {run.get('env')!r} is not known to be deterministic (for Box states use "
                "i2q-deep)")
        return super().check_run(run)

    def __init__(self, spec: LearnerSpec) -> None:
        super().__init__(spec)
        self.qss: dict[tuple[int, int], float] = {}
        self.rss: dict[tuple[int, int], float] = {}
        self.succ: dict[int, list[int]] = {}              # N(s)
        self.mask: dict[tuple[int, int], list[int]] = {}  # M(s, a_i)

    def record(self, s: int, a: int, r: float, s2: int) -> None:
        if (s, s2) not in self.qss:
            self.qss[(s, s2)] = 0.0
            self.succ.setdefault(s, []).append(s2)
        self.rss[(s, s2)] = r
        seen = self.mask.setdefault((s, a), [])
        if s2 not in seen:
            seen.append(s2)

    def v_ss(self, s: int) -> float:
        """max_{s'' in N(s)} Q_ss(s, s''), 0 if no successor of s has been observed."""
        nxt = self.succ.get(s)
        return max(self.qss[(s, c)] for c in nxt) if nxt else 0.0

    def ideal(self, s: int, a: int) -> int:
        """s'* = argmax over M(s, a) of Q_ss(s, .) (the first observed among ties)."""
        seen = self.mask[(s, a)]
        return max(seen, key=lambda c: self.qss[(s, c)])

    def update(self) -> dict[str, float]:
        if self._batch is None:
            return {}
        p, q = self.params, self.q
        td_abs, ideal_differs = [], 0
        for s, a, r, s2, done in zip(*self._batch):
            self.record(s, a, r, s2)
            boot = 0.0 if done else p.gamma * self.v_ss(s2)                     # (1)
            self.qss[(s, s2)] += p.alpha * (r + boot - self.qss[(s, s2)])
            star = self.ideal(s, a)                                             # (2)
            ideal_differs += star != s2
            target = self.rss[(s, star)] + (0.0 if done else p.gamma * q[star].max())
            td = target - q[s, a]                                               # (3)
            q[s, a] += p.alpha * td
            td_abs.append(abs(td))
        n = len(td_abs)
        self._batch = None
        return {"td_abs": float(np.mean(td_abs)), "epsilon": p.epsilon,
                "ideal_differs": ideal_differs / n}

    # -- checkpoints: the sparse tables as arrays, in insertion order ----------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        keys = np.array(list(self.qss), dtype=np.int64).reshape(-1, 2)
        own = [(s, a, c) for (s, a), seen in self.mask.items() for c in seen]
        return {"q": self.q, "qss_keys": keys,
                "qss": np.array(list(self.qss.values()), dtype=np.float64),
                "rss": np.array([self.rss[k] for k in self.qss], dtype=np.float64),
                "mask": np.array(own, dtype=np.int64).reshape(-1, 3)}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.q[...] = state["q"]
        self.qss, self.rss, self.succ, self.mask = {}, {}, {}, {}
        for (s, s2), v, r in zip(state["qss_keys"].tolist(), state["qss"].tolist(),
                                 state["rss"].tolist()):
            self.qss[(s, s2)], self.rss[(s, s2)] = v, r
            self.succ.setdefault(s, []).append(s2)
        for s, a, c in state["mask"].tolist():
            self.mask.setdefault((s, a), []).append(c)
