"""Gossip Q-learning: tabular Q-learning whose agents average their Q tables with their
neighbours' every few steps, through a message kind of its own (``gossip_q``).

Agent i keeps Q^i[S, A^i]. Each joint step it makes the Q-learning update on its K
transitions; every ``every`` steps it first sends its table to each neighbour and waits for
theirs, then mixes them with its row of the mixing matrix W:

    Q^i <- sum_j W_ij Q^j          (j: i and its neighbours)

A plug-in learner uses only the public API: ``Learner`` and its declared attributes,
``Outgoing`` and ``peer_kind`` from ``agentd.algorithms.base``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from agentd.algorithms.base import (
    FLOATS,
    Arr,
    Int,
    Learner,
    LearnerConfigError,
    LearnerSpec,
    Outgoing,
    param,
    peer_kind,
)

# Registered when this module is imported: in the launcher, in every agent, in a replay.
# The guard admits it only on the run's graph edges, only in runs of this learner; a DP run
# clips and noises each row of q (``released``).
GOSSIP_Q = peer_kind("gossip_q", {"t": Int(0), "q": Arr(FLOATS, (2,), 1 << 20)},
                     doc="gossip-q: the sender's Q table at its step t, to be averaged",
                     released={"q": "row"})


@dataclass
class GossipParams:
    """Hyper-parameters of gossip Q-learning."""

    gamma: float = param(0.9, ge=0.0, lt=1.0)
    """discount factor"""
    alpha: float = param(0.3, gt=0.0, le=1.0)
    """step size of the Q update"""
    epsilon: float = param(0.1, ge=0.0, le=1.0)
    """probability of a uniformly random action"""
    every: int = param(10, ge=1)
    """joint steps between two gossip rounds"""


class GossipQ(Learner):
    """Agent i: epsilon-greedy tabular Q-learning, its table averaged with its neighbours'."""

    name = "gossip-q"
    Params = GossipParams
    peer_kinds = frozenset({"gossip_q"})
    action_type = "discrete"
    obs_type = "discrete"

    def __init__(self, spec: LearnerSpec) -> None:
        super().__init__(spec)
        obs, act = spec.obs_spaces[0], spec.act_spaces[0]
        if obs.get("type") != "discrete" or act.get("type") != "discrete":
            raise LearnerConfigError("gossip-q needs Discrete observations and actions")
        self.q = np.zeros((int(obs["n"]), int(act["n"])))
        self.t = np.zeros((), np.int64)          # joint steps observed (state: checkpointed)
        self.neighbours = list(spec.neighbours)
        self.received: dict[int, dict[int, np.ndarray]] = {}   # step -> neighbour -> table
        self.sent_at = -1
        self._batch: tuple[np.ndarray, ...] | None = None

    def act(self, obs: np.ndarray) -> np.ndarray:
        q = self.q[obs]                                           # (K, A)
        greedy = np.argmax(q + 1e-9 * self.rng.random(q.shape), axis=1)
        explore = self.rng.random(len(obs)) < self.params.epsilon
        return np.where(explore, self.rng.integers(q.shape[1], size=len(obs)), greedy)

    def observe(self, obs, action, reward, next_obs, terminated, truncated) -> None:
        self._batch = (obs, action, reward, next_obs, terminated)
        self.t += 1

    def _gossip_step(self) -> bool:
        """A step observed, not yet updated, whose update mixes the neighbours' tables."""
        return (self._batch is not None and bool(self.neighbours)
                and int(self.t) % self.params.every == 0)

    def outbox(self) -> list[Outgoing]:
        if not self._gossip_step() or self.sent_at == int(self.t):
            return []
        self.sent_at = int(self.t)
        body = {"t": int(self.t), "q": self.q.copy()}
        return [Outgoing("gossip_q", j, body) for j in self.neighbours]

    def inbox(self, src: int, kind: str, body: dict[str, Any]) -> None:
        # a neighbour one step ahead may send before this agent has observed that step
        if kind == "gossip_q" and body["t"] >= int(self.t) and body["q"].shape == self.q.shape:
            self.received.setdefault(int(body["t"]), {})[src] = body["q"]

    def awaiting(self) -> frozenset[int]:
        if not self._gossip_step():
            return frozenset()
        got = self.received.get(int(self.t), {})
        return frozenset(j for j in self.neighbours if j not in got)

    def update(self) -> dict[str, float]:
        if self._batch is None:
            return {}
        if self._gossip_step():              # average with the tables that arrived
            w, got = self.spec.weights, self.received.pop(int(self.t), {})
            mixed = w[self.spec.agent_id] * self.q
            for j in self.neighbours:       # a missing table (a perturbed replay): its own
                mixed += w[j] * got.get(j, self.q)
            self.q = mixed
        p = self.params
        s, a, r, s2, done = self._batch
        target = r + p.gamma * np.where(done, 0.0, self.q[s2].max(axis=1))
        td = target - self.q[s, a]
        np.add.at(self.q, (s, a), p.alpha * td)
        self._batch = None
        return {"td_abs": float(np.abs(td).mean())}

    def on_gap(self, steps: int) -> None:
        """Restored from a recovery checkpoint after the run went on ``steps`` joint steps
        without this agent: its step counter (the messages' t) skips them, so it gossips at
        the step its neighbours are at."""
        self.t += max(steps, 0)
        self._batch = None
        self.received = {t: got for t, got in self.received.items() if t >= int(self.t)}

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"q": self.q, "t": self.t}
