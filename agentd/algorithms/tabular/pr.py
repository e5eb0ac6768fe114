"""Tabular policy reciprocity, IQL + PR (Wang et al. 2023, Algorithm 1).

Each agent runs Q-learning on its own reward plus a pull toward its neighbours' values at the
visited state and its adjacency space A_eps(s) (states within digit distance eps):

    Q(s,a) += alpha [ r^i + gamma max_a' Q(s',a') - Q(s,a) ] - beta sum_{j in N_i} (Q(s,a) - Q~j(s,a))
    Q~j(s,a) = (1 - lam) Q^j(s,a) + lam mean_{s~ in A_eps(s)} Q^j(s~,a)

lam = 0 uses the exact same state only; beta = 0 is IQL exactly.

Messages: every agent observes the global state and steps are synchronous, so each agent
knows which rows its neighbours need at step t — those of s_t and A_eps(s_t). It *pushes* them
(``pr_values``: states and their Q rows) to every neighbour once per step, before its own
update, and waits for its neighbours' pushes before updating. One message per edge per step,
no request round trip; everyone uses its neighbours' pre-step values, so the result does not
depend on message timing (and a replay reproduces it). ``pr_query`` is not needed here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from agentd.algorithms.base import LearnerConfigError, LearnerSpec, Outgoing, param
from agentd.algorithms.tabular.iql import IQL, QParams


def adjacency(s: int, n_states: int, eps: int) -> list[int]:
    """A_eps(s): the states within digit distance eps of s, s itself excluded."""
    return [x for x in range(s - eps, s + eps + 1) if x != s and 0 <= x < n_states]


@dataclass
class PRParams(QParams):
    """Hyper-parameters of IQL + PR (gamma 0.8 as in the paper's Digital task)."""

    gamma: float = 0.8
    """discount factor"""
    alpha: float = 0.1
    """step size of the Q update"""
    epsilon: float = 0.1
    """probability of a uniformly random action (exploration)"""
    beta: float = param(0.05, ge=0.0, lt=1.0)
    """reciprocity coupling: pull toward the neighbours' values (0 = IQL)"""
    lam: float = param(0.5, ge=0.0, le=1.0)
    """weight of the adjacency space in Q~ (0 = exact state only)"""
    eps: int = param(1, ge=0)
    """adjacency level: states within this digit distance are adjacent"""


class PR(IQL):
    """IQL whose update is pulled toward the neighbours' (adjacency-averaged) values."""

    name = "pr"
    Params = PRParams
    peer_kinds = frozenset({"pr_values"})

    def __init__(self, spec: LearnerSpec) -> None:
        super().__init__(spec)
        p: PRParams = self.params
        if p.beta * len(spec.neighbours) >= 1.0:
            raise LearnerConfigError(
                f"pr: beta * degree = {p.beta} * {len(spec.neighbours)} must be < 1 "
                "(otherwise the pull overshoots the neighbours' values)")
        self.neighbours = list(spec.neighbours)
        self.t = 0                                          # own step counter (= qid)
        self.pushed = 0                                     # the last step pushed
        self.received: dict[int, dict[int, dict[int, np.ndarray]]] = {}   # t -> j -> s -> row
        self.silent: tuple[int, frozenset[int]] = (-1, frozenset())   # given up on at step t

    def needed_states(self, states: list[int]) -> list[int]:
        """The rows a neighbour's update reads: the visited states', and their adjacency's
        only when lam > 0 (release only what the receiver uses)."""
        out = set(states)
        if self.params.lam == 0.0:
            return sorted(out)
        for s in states:
            out.update(adjacency(s, self.q.shape[0], self.params.eps))
        return sorted(out)

    def observe(self, obs, action, reward, next_obs, terminated, truncated) -> None:
        super().observe(obs, action, reward, next_obs, terminated, truncated)
        self.t += 1

    def outbox(self) -> list[Outgoing]:
        if self._batch is None or not self.neighbours or self.pushed == self.t:
            return []
        self.pushed = self.t
        states = np.array(self.needed_states(self._batch[0]), dtype=np.int64)
        body = {"qid": self.t, "states": states, "values": self.q[states].copy()}
        return [Outgoing("pr_values", j, body) for j in self.neighbours]

    def inbox(self, src: int, kind: str, body: dict[str, Any]) -> None:
        states, values = body["states"], body["values"]
        if (kind != "pr_values" or values.ndim != 2 or len(states) != len(values)
                or values.shape[1] != self.q.shape[1] or body["qid"] < self.t):
            return   # malformed for this learner, or stale: ignored (the guard checked dtypes)
        rows = {int(s): values[k] for k, s in enumerate(states)}
        self.received.setdefault(body["qid"], {})[src] = rows

    def awaiting(self) -> frozenset[int]:
        if self._batch is None:
            return frozenset()
        got = self.received.get(self.t, {})
        gone = self.silent[1] if self.silent[0] == self.t else frozenset()
        return frozenset(j for j in self.neighbours if j not in got and j not in gone)

    def peers_silent(self, silent: frozenset[int]) -> bool:
        """Go ahead without neighbours silent past ``peer_timeout`` (one restarting): their
        pull terms are left out of this step's update."""
        self.silent = (self.t, frozenset(silent))
        return True

    def on_gap(self, steps: int) -> None:
        """Restored after ``steps`` joint steps without this agent: the step counter (the
        messages' qid) skips them, so the next push is of the neighbours' current step."""
        super().on_gap(steps)
        self.t += max(steps, 0)

    def q_tilde(self, rows: dict[int, np.ndarray], s: int, a: int) -> float:
        """Q~j(s,a) = (1 - lam) Q^j(s,a) + lam mean over A_eps(s) of Q^j(s~,a)."""
        adj = adjacency(s, self.q.shape[0], self.params.eps)
        if not adj or self.params.lam == 0.0:
            return float(rows[s][a])
        mean_adj = sum(float(rows[x][a]) for x in adj) / len(adj)
        return (1.0 - self.params.lam) * float(rows[s][a]) + self.params.lam * mean_adj

    def update(self) -> dict[str, float]:
        if self._batch is None:
            return {}
        p, q = self.params, self.q
        pushed = self.received.pop(self.t, {})
        for stale in [k for k in self.received if k < self.t]:
            del self.received[stale]
        # a neighbour missing here was cut off (a perturbed replay): its term is left out
        present = [j for j in self.neighbours if j in pushed]
        td_abs, pull_abs = [], []
        for s, a, r, s_next, done in zip(*self._batch):
            target = r if done else r + p.gamma * q[s_next].max()
            td = target - q[s, a]
            pull = sum(q[s, a] - self.q_tilde(pushed[j], s, a) for j in present)
            q[s, a] += p.alpha * td - p.beta * pull
            td_abs.append(abs(td))
            pull_abs.append(abs(pull))
        self._batch = None
        return {"td_abs": float(np.mean(td_abs)), "pull_abs": float(np.mean(pull_abs)),
                "neighbours_missing": float(len(self.neighbours) - len(present))}
