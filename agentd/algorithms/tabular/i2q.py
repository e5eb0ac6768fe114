"""I2Q, ideal independent Q-learning (Jiang & Lu, NeurIPS 2022), tabular form.

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

Two ways to learn (parameters below). Replay (the default, the official code's tabular
setting: ``replay_batches = 10``, ``replay_start = 10000``, ``q_init = 0.5``; with the online
default it had before, 6 of 10 L = 4 games ended at the optimum, and the four that missed
reached it with replay): every transition goes into the agent's own buffer
(its own (s, a_i, r, s'), never shared) and updates N, M and the last-seen reward at once; the
backups come only from the buffer: each time another ``replay_every`` transitions have been
stored (from ``replay_start`` on), ``replay_batches`` minibatches of ``replay_batch``
transitions, drawn uniformly with replacement. A minibatch is backed up as one synchronous
step, as the official code's array update does: (1) for all its transitions from the Q_ss of
before the minibatch, then (2) on the new Q_ss and (3) from the Q of before the minibatch (a
pair drawn twice is set once, by its last draw). ``q_init`` > 0 draws Q, and each Q_ss entry
when its transition is first observed, from U(-q_init, q_init). ``ideal = false`` turns (2)
off: Q learns on the sampled s', which is IQL with the same buffer and schedule (the official
code's IQL baseline is this switch too); with replay, Q_ss is then not learned at all. Online
(``replay_batches = 0``): each transition is backed up once, when it happens, in (1)-(3)
order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agentd.algorithms.base import LearnerConfigError, LearnerSpec, param
from agentd.algorithms.tabular.iql import IQL, QParams


@dataclass
class I2qParams(QParams):
    """Tabular Q-learning's parameters with the official code's L-stage settings as defaults
    (alpha 0.1, epsilon 0.5, gamma 1; its replay: replay_batches 10, replay_batch 100,
    replay_every 50, replay_start 10000, q_init 0.5)."""

    gamma: float = param(1.0, ge=0.0, le=1.0)
    """discount factor (I2Q's envs are deterministic and episodic: lstage, matrix)"""
    alpha: float = param(0.1, gt=0.0, le=1.0)
    """step size of the Q and Q_ss updates"""
    epsilon: float = param(0.5, ge=0.0, le=1.0)
    """probability of a uniformly random action (exploration)"""

    ideal: bool = param(True, choices=(True, False))
    """learn Q on the ideal next state s'* (false: on the sampled s', i.e. IQL)"""
    q_init: float = param(0.5, ge=0.0)
    """half-width of the uniform initial values of Q and of new Q_ss entries (0: zeros)"""
    replay_batches: int = param(10, ge=0)
    """minibatches replayed per replay round (0: no buffer, one online backup per transition)"""
    replay_batch: int = param(100, ge=1)
    """transitions per replayed minibatch"""
    replay_every: int = param(50, ge=1)
    """a replay round each time this many more transitions have been stored"""
    replay_start: int = param(10_000, ge=0)
    """no replay round before this many transitions have been stored"""
    replay_capacity: int = param(100_000, ge=1)
    """transitions the private buffer keeps (the oldest are overwritten)"""


class I2Q(IQL):
    """Agent i's QSS table, its successor masks and its Q-table on the ideal next state."""

    name = "i2q"
    Params = I2qParams

    @classmethod
    def check_run(cls, run: dict) -> dict:
        from agentd.envs import DETERMINISTIC_ENVS

        if run.get("env") not in DETERMINISTIC_ENVS:
            raise LearnerConfigError(
                f"i2q (tabular) needs a deterministic env ({', '.join(DETERMINISTIC_ENVS)}); "
                f"env {run.get('env')!r} is not known to be deterministic (for Box states use "
                "i2q-deep)")
        return super().check_run(run)

    def __init__(self, spec: LearnerSpec) -> None:
        super().__init__(spec)
        p = self.params
        if p.q_init > 0:
            self.q[...] = self.rng.uniform(-p.q_init, p.q_init, self.q.shape)
        self.qs: dict[int, dict[int, float]] = {}        # s -> {s': Q_ss(s, s')}, keys N(s)
        self.pairs: list[tuple[int, int]] = []            # the (s, s') in observation order
        self.rss: dict[tuple[int, int], float] = {}
        self.mask: dict[tuple[int, int], list[int]] = {}  # M(s, a_i)
        # the private replay buffer (s, a_i, r, s', terminated): a ring, ``stored`` ever added
        cap = p.replay_capacity if p.replay_batches > 0 else 0
        self.buf_s, self.buf_a, self.buf_s2 = (np.zeros(cap, np.int64) for _ in range(3))
        self.buf_r, self.buf_done = np.zeros(cap, np.float64), np.zeros(cap, bool)
        self.stored = 0

    @property
    def qss(self) -> dict[tuple[int, int], float]:
        """Q_ss as one {(s, s'): value} dict, in observation order (a copy, to read)."""
        return {(s, s2): self.qs[s][s2] for s, s2 in self.pairs}

    @property
    def succ(self) -> dict[int, list[int]]:
        """N(s) for every s with an observed successor."""
        return {s: list(row) for s, row in self.qs.items()}

    def record(self, s: int, a: int, r: float, s2: int) -> None:
        row = self.qs.setdefault(s, {})
        if s2 not in row:
            q_init = self.params.q_init
            row[s2] = float(self.rng.uniform(-q_init, q_init)) if q_init > 0 else 0.0
            self.pairs.append((s, s2))
        self.rss[(s, s2)] = r
        seen = self.mask.setdefault((s, a), [])
        if s2 not in seen:
            seen.append(s2)

    def v_ss(self, s: int) -> float:
        """max_{s'' in N(s)} Q_ss(s, s''), 0 if no successor of s has been observed."""
        row = self.qs.get(s)
        return max(row.values()) if row else 0.0

    def ideal(self, s: int, a: int) -> int:
        """s'* = argmax over M(s, a) of Q_ss(s, .) (the first observed among ties)."""
        seen = self.mask[(s, a)]
        return max(seen, key=self.qs[s].__getitem__)

    def update(self) -> dict[str, float]:
        if self._batch is None:
            return {}
        if self.params.replay_batches > 0:
            return self.store_and_replay()
        p, q = self.params, self.q
        td_abs, ideal_differs = [], 0
        for s, a, r, s2, done in zip(*self._batch):
            self.record(s, a, r, s2)
            boot = 0.0 if done else p.gamma * self.v_ss(s2)                     # (1)
            row = self.qs[s]
            row[s2] += p.alpha * (r + boot - row[s2])
            star = self.ideal(s, a) if p.ideal else s2                          # (2)
            ideal_differs += star != s2
            target = self.rss[(s, star)] + (0.0 if done else p.gamma * q[star].max())
            td = target - q[s, a]                                               # (3)
            q[s, a] += p.alpha * td
            td_abs.append(abs(td))
        n = len(td_abs)
        self._batch = None
        return {"td_abs": float(np.mean(td_abs)), "epsilon": p.epsilon,
                "ideal_differs": ideal_differs / n}

    # -- replay ---------------------------------------------------------------------------
    def store_and_replay(self) -> dict[str, float]:
        """Store the step's transitions (N, M and the rewards learn at once), then run the
        replay rounds that fell due."""
        p = self.params
        cap = p.replay_capacity
        before = self.stored
        for s, a, r, s2, done in zip(*self._batch):
            self.record(s, a, r, s2)
            i = self.stored % cap
            self.buf_s[i], self.buf_a[i], self.buf_r[i] = s, a, r
            self.buf_s2[i], self.buf_done[i] = s2, done
            self.stored += 1
        self._batch = None
        first = max(before // p.replay_every + 1, -(-p.replay_start // p.replay_every))
        rounds = max(0, self.stored // p.replay_every - first + 1)
        if rounds == 0:
            return {"epsilon": p.epsilon}
        td_abs, ideal_differs = [], 0
        for _ in range(rounds * p.replay_batches):
            td, differs = self.replay_minibatch()
            td_abs += td
            ideal_differs += differs
        return {"td_abs": float(np.mean(td_abs)), "epsilon": p.epsilon,
                "ideal_differs": ideal_differs / len(td_abs)}

    def replay_minibatch(self) -> tuple[list[float], int]:
        """One synchronous backup of a uniformly drawn minibatch (see the module docstring)."""
        p, q, qs = self.params, self.q, self.qs
        idx = self.rng.integers(0, min(self.stored, p.replay_capacity), p.replay_batch)
        s_b, a_b, s2_b = self.buf_s[idx], self.buf_a[idx], self.buf_s2[idx]
        r_b, done_b = self.buf_r[idx], self.buf_done[idx]
        batch = list(zip(s_b.tolist(), a_b.tolist(), r_b.tolist(), s2_b.tolist(),
                         done_b.tolist()))
        if p.ideal:
            # (1), synchronous: every new value from the Q_ss of before the minibatch
            new_ss = [(s, s2, qs[s][s2] + p.alpha * (
                r + (0.0 if done else p.gamma * self.v_ss(s2)) - qs[s][s2]))
                for s, _, r, s2, done in batch]
            for s, s2, value in new_ss:
                qs[s][s2] = value
            stars = np.array([self.ideal(s, a) for s, a, _, _, _ in batch])   # (2)
            rewards = np.array([self.rss[(s, star)] for (s, *_), star
                                in zip(batch, stars.tolist())])
        else:
            stars, rewards = s2_b, r_b
        boot = np.where(done_b, 0.0, p.gamma * q[stars].max(axis=1))
        td = rewards + boot - q[s_b, a_b]                                        # (3)
        q[s_b, a_b] += p.alpha * td       # a pair drawn twice: set once (the last draw)
        return np.abs(td).tolist(), int((stars != s2_b).sum())

    # -- checkpoints: the sparse tables as arrays, in insertion order; the buffer ----------
    def state_dict(self) -> dict[str, np.ndarray]:
        keys = np.array(self.pairs, dtype=np.int64).reshape(-1, 2)
        own = [(s, a, c) for (s, a), seen in self.mask.items() for c in seen]
        state = {"q": self.q, "qss_keys": keys,
                 "qss": np.array([self.qs[s][s2] for s, s2 in self.pairs], dtype=np.float64),
                 "rss": np.array([self.rss[k] for k in self.pairs], dtype=np.float64),
                 "mask": np.array(own, dtype=np.int64).reshape(-1, 3)}
        if self.params.replay_batches > 0:
            n = min(self.stored, self.params.replay_capacity)
            state.update({"buf_s": self.buf_s[:n].copy(), "buf_a": self.buf_a[:n].copy(),
                          "buf_r": self.buf_r[:n].copy(), "buf_s2": self.buf_s2[:n].copy(),
                          "buf_done": self.buf_done[:n].copy(),
                          "stored": np.array(self.stored, dtype=np.int64)})
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.q[...] = state["q"]
        if self.params.replay_batches > 0:
            n = len(state["buf_a"])
            if n > self.params.replay_capacity:
                raise LearnerConfigError(f"i2q checkpoint holds {n} buffered transitions, "
                                         f"replay_capacity is {self.params.replay_capacity}")
            for name in ("buf_s", "buf_a", "buf_r", "buf_s2", "buf_done"):
                getattr(self, name)[:n] = state[name]
            self.stored = int(state["stored"])
        self.qs, self.pairs, self.rss, self.mask = {}, [], {}, {}
        for (s, s2), v, r in zip(state["qss_keys"].tolist(), state["qss"].tolist(),
                                 state["rss"].tolist()):
            self.qs.setdefault(s, {})[s2], self.rss[(s, s2)] = v, r
            self.pairs.append((s, s2))
        for s, a, c in state["mask"].tolist():
            self.mask.setdefault((s, a), []).append(c)
