"""Log-ratio consensus over aligned replay buffers (Li & Jia 2021, §IV-A, eqs. 39–46).

Every agent's buffer holds the same global steps at the same positions. For entry e, agent i
knows only its own log-ratio beta^i_e = log pi_theta^i(a^i|s) - log pi_old^i(a^i|s) and keeps an
estimate x^i_e. Per update step, for a set E of entries:

    x^i_e <- x^i_e + (beta^i_e - beta_hat^i_e)          (eq. 45, after beta is recomputed, eq. 44)
    x^i_e <- sum_j W_ij x^j_e    (R gossip rounds)      (eq. 46, neighbours' x via messages)

W is doubly stochastic, so sum_i x^i_e = sum_i beta^i_e holds at every moment, and the rounds
drive every x^i_e toward the average: N x^i_e estimates sum_j beta^j_e and
c^i_e = N x^i_e - beta^i_e (eq. 40) estimates the other agents' log-ratio.

Modes: ``full`` is the paper's (E = the whole buffer, every step, one round: O(buffer) bytes
per edge per step); ``batch`` (default) gossips only on the update batch, whose indices every
agent draws from the same per-step seed (O(batch x rounds) bytes per edge per step). Entries
left out of a step keep their x and beta, so the invariant above still holds for them.

This module is numpy only and socket-free: the learner feeds it messages and sends what
``pending_messages`` returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Round:
    """The gossip of one step: which entries, which round, what came in."""

    t: int
    idx: np.ndarray                     # buffer positions of E
    prefix: bool                        # E = positions 0..len-1 (sent with an empty idx)
    rounds: int
    r: int = 0                          # the round in progress
    sent: int = 0                       # rounds sent so far
    got: dict[int, dict[int, np.ndarray | None]] = field(default_factory=dict)  # r -> j -> x


class LogRatioConsensus:
    """Agent i's beta and x for every buffer position, and its part of the gossip."""

    def __init__(self, capacity: int, n_agents: int, weights: dict[int, float],
                 me: int) -> None:
        self.beta = np.zeros(capacity)
        self.x = np.zeros(capacity)
        self.n = n_agents
        self.me = me
        self.w_self = float(weights[me])
        self.w = {int(j): float(wj) for j, wj in weights.items() if int(j) != me}
        self.round: Round | None = None
        self.early: dict[tuple[int, int], dict[int, np.ndarray | None]] = {}
        self.rejected = 0               # neighbour messages that did not fit (ignored)

    # -- local part (eqs. 44-45) -----------------------------------------------------------
    def reset_entries(self, idx: np.ndarray) -> None:
        """New experiences: beta = x = 0 (Algorithm 2; the behaviour policy is the current)."""
        self.beta[idx] = 0.0
        self.x[idx] = 0.0

    def local_update(self, idx: np.ndarray, beta_new: np.ndarray) -> None:
        self.x[idx] += beta_new - self.beta[idx]
        self.beta[idx] = beta_new

    def c(self, idx: np.ndarray) -> np.ndarray:
        """c^i_e = N x^i_e - beta^i_e (eq. 40)."""
        return self.n * self.x[idx] - self.beta[idx]

    # -- gossip (eq. 46) -------------------------------------------------------------------
    def start(self, t: int, idx: np.ndarray, rounds: int, prefix: bool = False) -> None:
        self.round = Round(t, np.asarray(idx, dtype=np.int64), prefix, rounds if self.w else 0)
        for key in [k for k in self.early if k[0] < t]:
            del self.early[key]
        for r in range(rounds):
            self.round.got[r] = self.early.pop((t, r), {})

    def receive(self, src: int, t: int, r: int, idx: np.ndarray, x: np.ndarray) -> None:
        """A neighbour's x for (t, r). One that does not fit is stored as None (its weight
        then stays with this agent) and counted, so a bad neighbour cannot stall the step."""
        if src not in self.w:
            self.rejected += 1
            return
        rnd = self.round
        if rnd is None or t > rnd.t:
            self.early.setdefault((t, r), {})[src] = x.astype(np.float64)  # checked at start
            return
        if t < rnd.t or not 0 <= r < rnd.rounds or src in rnd.got[r]:
            self.rejected += 1            # stale, out of range or a duplicate
            return
        fits = x.ndim == 1 and len(x) == len(rnd.idx) and np.all(np.isfinite(x)) and (
            len(idx) == 0 if rnd.prefix else np.array_equal(idx, rnd.idx))
        if not fits:
            self.rejected += 1
        rnd.got[r][src] = x.astype(np.float64) if fits else None

    def pending_messages(self) -> list[tuple[int, int, np.ndarray, np.ndarray]]:
        """Advance as far as the messages allow; returns (t, r, idx, x) bodies to send to every
        neighbour (one per round started)."""
        rnd, out = self.round, []
        while rnd is not None and rnd.r < rnd.rounds:
            if rnd.sent == rnd.r:
                wire_idx = np.zeros(0, np.int32) if rnd.prefix else rnd.idx.astype(np.int32)
                out.append((rnd.t, rnd.r, wire_idx, self.x[rnd.idx].copy()))
                rnd.sent += 1
            got = rnd.got[rnd.r]
            if len(got) < len(self.w):
                break
            self._mix(got)
        return out

    def waiting_for(self) -> frozenset[int]:
        rnd = self.round
        if rnd is None or rnd.r >= rnd.rounds:
            return frozenset()
        return frozenset(j for j in self.w if j not in rnd.got[rnd.r])

    def finish(self) -> int:
        """Complete the step's remaining rounds with what arrived (a missing neighbour's
        weight stays with this agent: only when a replay cut the stream); returns how many
        neighbour contributions were missing."""
        rnd, missing = self.round, 0
        while rnd is not None and rnd.r < rnd.rounds:
            missing += len(self.w) - sum(v is not None for v in rnd.got[rnd.r].values())
            self._mix(rnd.got[rnd.r])
        self.round = None
        return missing

    def _mix(self, got: dict[int, np.ndarray | None]) -> None:
        rnd = self.round
        assert rnd is not None
        own = self.x[rnd.idx]
        mixed = self.w_self * own
        for j, wj in self.w.items():
            xj = got.get(j)
            mixed += wj * (own if xj is None else xj)
        self.x[rnd.idx] = mixed
        rnd.r += 1
