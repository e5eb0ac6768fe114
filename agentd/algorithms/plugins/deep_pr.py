"""Deep policy reciprocity plug-in (Wang et al. 2023, §IV, Algorithm 2).

A learner that enables it (``pr_weight`` w > 0) mixes its neighbours' target values into its
TD target:

    y = r + gamma (1 - done) [ (1 - w) Q_bar^i(s', a~) + w mean_{j in N_i} V_bar^j(adj(s')) ]

Per update step the learner sends each neighbour a ``pr_query`` with the batch's next states
(and, with ``pr_samples`` m > 0, m adjacency states per next state drawn uniformly from the
L-inf ball of radius ``pr_eps`` around it, the continuous reading of the paper's adjacency
space); each neighbour answers with ``pr_values``: its target value of each state. The
querier averages the answers over the adjacency states and over the neighbours.

Timing does not change answers: a neighbour answers a query of step t with the networks it had
*before* its own update of step t (it keeps a one-step-old copy), whether the query arrives
before or after that update. So a run's outcome does not depend on message timing, and a
replay reproduces it.

This module is the protocol half (numpy only); the learner supplies ``values(states, old)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from agentd.algorithms.base import Outgoing

PR_KINDS = frozenset({"pr_query", "pr_values"})


class DeepPR:
    """One agent's side of the value exchange: queries, answers, the mixed next value."""

    def __init__(self, neighbours: list[int], weight: float, eps: float, samples: int,
                 rng: np.random.Generator) -> None:
        self.neighbours = list(neighbours)
        self.weight, self.eps, self.samples = weight, eps, samples
        self.rng = rng
        self.t = -1                                    # the step of the latest query
        self.open = False                              # ... and whether it awaits answers
        self.n_states = 0
        self.got: dict[int, np.ndarray | None] = {}    # neighbour -> values (None: unusable)
        self.early: dict[tuple[int, int], np.ndarray | None] = {}
        self.answers: list[Outgoing] = []
        self.rejected = 0

    # -- asking ----------------------------------------------------------------------------
    def query(self, t: int, next_states: np.ndarray) -> list[Outgoing]:
        """Open the step's query; returns the messages (one per neighbour)."""
        states = np.asarray(next_states, np.float32)
        if self.samples:
            noise = self.rng.uniform(-self.eps, self.eps,
                                     (self.samples, *states.shape)).astype(np.float32)
            states = np.concatenate([states[None], states[None] + noise]).reshape(
                -1, *states.shape[1:])
        self.t, self.n_states, self.open = t, len(states), True
        self.got = {j: v for (tt, j), v in self.early.items() if tt == t}
        self.early.clear()
        for j, v in list(self.got.items()):
            if v is not None and len(v) != self.n_states:
                self.got[j] = None
                self.rejected += 1
        body = {"qid": t, "states": states}
        return [Outgoing("pr_query", j, body) for j in self.neighbours]

    def waiting_for(self) -> frozenset[int]:
        if not self.open:
            return frozenset()
        return frozenset(j for j in self.neighbours if j not in self.got)

    def mixed(self, own: np.ndarray) -> tuple[np.ndarray, int]:
        """(1 - w) own + w mean_j V_bar^j(adj(s')), per batch entry; closes the query.
        Returns the mixed values and how many neighbours' answers were missing or unusable
        (their share then goes to the agent's own value)."""
        answers = [v for j in self.neighbours if (v := self.got.get(j)) is not None]
        missing = len(self.neighbours) - len(answers)
        self.open = False
        if not answers:
            return own, missing
        per = np.mean([a.reshape(1 + self.samples, -1).mean(axis=0) for a in answers], axis=0)
        return (1.0 - self.weight) * own + self.weight * per, missing

    # -- answering and receiving -------------------------------------------------------------
    def receive(self, src: int, kind: str, body: dict[str, Any],
                values: Callable[[np.ndarray, int], np.ndarray | None]) -> None:
        """A query gets an answer (queued for ``outbox``); values are stored for the step.
        ``values(states, qid)`` evaluates the learner's target values as of step qid, or
        returns None when the states do not fit its networks."""
        if src not in self.neighbours:
            self.rejected += 1
            return
        if kind == "pr_query":
            v = values(body["states"], body["qid"])
            if v is None:
                self.rejected += 1
                v = np.zeros(0, np.float32)          # an empty answer: "cannot evaluate"
            self.answers.append(Outgoing("pr_values", src, {
                "qid": body["qid"], "states": np.zeros(0, np.int64), "values": v}))
            return
        qid, v = body["qid"], body["values"]
        fits = v.ndim == 1 and np.all(np.isfinite(v))
        if qid == self.t and self.open and src not in self.got:
            ok = fits and len(v) == self.n_states
            self.got[src] = v.astype(np.float64) if ok else None
            self.rejected += not ok
        elif qid > self.t:
            self.early[qid, src] = v.astype(np.float64) if fits else None
        else:
            self.rejected += 1                         # stale or a duplicate

    def outbox(self) -> list[Outgoing]:
        out, self.answers = self.answers, []
        return out
