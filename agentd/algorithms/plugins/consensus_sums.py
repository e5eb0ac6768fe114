"""Log-ratio consensus that conserves mass when messages are lost: running sums.

Plain gossip (``consensus.py``) computes x^i <- sum_j W_ij x^j from the neighbours' x of the
round. A message that never arrives leaves its weight with the receiver, so the receiver's new
x no longer pairs with what the sender gave away: sum_i x^i drifts from sum_i beta^i, and the
importance weights c = N x - beta are biased for good.

Here every agent *pushes* shares instead, and sends them as running sums (the scheme of
robust push-sum / ratio consensus over lossy links):

    at round start   sigma_ij[e] += W_ji(t) x^i[e]   for each live neighbour j (cumulative)
                     x^i[e]      <- W_ii(t) x^i[e]   (the share it keeps)
    message i -> j   (t, r, idx, s = sigma_ij[idx], w = W_ij(t))
    on receipt       x^j[e] += s[e] - rho_ji[e];  rho_ji[e] = s[e]

Mass is conserved at every moment: sum_i x^i + sum over edges (sigma - rho) = sum_i beta^i.
A lost message only leaves its mass *in flight* (sigma - rho > 0): the next message on that
edge carries the cumulative sum and delivers it, so nothing is lost for good and once the link
is back and has carried a message for an entry, sum_i x^i_e = sum_i beta^i_e again. With W(t)
symmetric (Metropolis-Hastings on the live graph, ``topologies.live``) this is the same average
as plain gossip when no message is lost.

A silent live neighbour (``peer_timeout``) ends the round's wait for it: the agent goes ahead
with what it has; its late or next message is applied whenever it arrives (per-edge order is
kept by the transport, so cumulative sums are never applied out of order). A buffer entry that
is overwritten starts over (sigma, rho = 0) at both ends at the same step; a message about it
sent before that step is ignored for it.
"""

from __future__ import annotations

import numpy as np

from agentd.algorithms.plugins.consensus import LogRatioConsensus, Round
from topologies.live import LiveGraph


class RunningSumConsensus(LogRatioConsensus):
    """Agent i's beta, x, and running sums per neighbour, over buffer positions."""

    def __init__(self, capacity: int, n_agents: int, weights: dict[int, float], me: int,
                 live: LiveGraph | None) -> None:
        super().__init__(capacity, n_agents, weights, me)
        self.live = live
        self.sent = {j: np.zeros(capacity) for j in self.w}     # sigma_ij
        self.recv = {j: np.zeros(capacity) for j in self.w}     # rho_ij (last received)
        self.born = np.zeros(capacity, np.int64)                # step an entry was written
        self.t_now = 0
        self.row: dict[int, float] = {}                         # W(t) row in use
        self.heard: dict[tuple[int, int], set[int]] = {}        # (t, r) -> who was heard
        self.silent: set[int] = set()                           # gave up on, this round
        self.deferred: list[tuple] = []     # messages of a step this agent has not reached

    def reset_entries(self, idx: np.ndarray) -> None:
        super().reset_entries(idx)
        for j in self.w:
            self.sent[j][idx] = 0.0
            self.recv[j][idx] = 0.0
        self.born[idx] = self.t_now

    def start(self, t: int, idx: np.ndarray, rounds: int, prefix: bool = False) -> None:
        self.row = self.live.weights(self.me, t) if self.live is not None else \
            {self.me: self.w_self, **self.w}
        live = [j for j in self.row if j != self.me]
        self.round = Round(t, np.asarray(idx, dtype=np.int64), prefix, rounds if live else 0)
        self.heard = {k: v for k, v in self.heard.items() if k[0] >= t}
        self.silent = set()
        ready = [m for m in self.deferred if m[1] <= t]
        self.deferred = [m for m in self.deferred if m[1] > t]
        for msg in ready:
            self.receive(*msg)

    def receive(self, src: int, t: int, r: int, idx: np.ndarray, s: np.ndarray) -> None:
        """Apply a neighbour's running sums now, late or on time; a message of a step this
        agent has not reached waits for it (its entries may be overwritten on the way)."""
        if src not in self.w:
            self.rejected += 1
            return
        if t > self.t_now:
            self.deferred.append((src, t, r, idx, s))
            return
        entries = np.arange(len(s)) if len(idx) == 0 else idx.astype(np.int64)
        if s.ndim != 1 or len(s) != len(entries) or not np.all(np.isfinite(s)) or \
                (len(entries) and (entries.min() < 0 or entries.max() >= len(self.x))):
            self.rejected += 1
            return
        valid = self.born[entries] <= t       # not overwritten since the sender summed it
        e, s = entries[valid], s[valid].astype(np.float64)
        self.x[e] += s - self.recv[src][e]
        self.recv[src][e] = s
        self.heard.setdefault((t, r), set()).add(src)

    def pending_messages(self) -> list[tuple[int, int, int, np.ndarray, np.ndarray, float]]:
        """(dst, t, r, idx, s, w) for every round that can start now."""
        rnd, out = self.round, []
        while rnd is not None and rnd.r < rnd.rounds:
            if rnd.sent == rnd.r:
                idx = rnd.idx
                wire_idx = np.zeros(0, np.int32) if rnd.prefix else idx.astype(np.int32)
                share = self.x[idx].copy()
                for j, wj in self.row.items():
                    if j != self.me:
                        self.sent[j][idx] += wj * share
                        out.append((j, rnd.t, rnd.r, wire_idx, self.sent[j][idx].copy(), wj))
                self.x[idx] = self.row[self.me] * share
                rnd.sent += 1
                self.silent = set()
            if self.waiting_for():
                break
            rnd.r += 1
        return out

    def waiting_for(self) -> frozenset[int]:
        rnd = self.round
        if rnd is None or rnd.r >= rnd.rounds or rnd.sent <= rnd.r:
            return frozenset()
        heard = self.heard.get((rnd.t, rnd.r), set())
        return frozenset(j for j in self.row if j != self.me and j not in heard
                         and j not in self.silent)

    def give_up(self, silent: frozenset[int]) -> None:
        """These neighbours stayed silent past peer_timeout: go ahead without them."""
        self.silent |= set(silent)

    def finish(self) -> int:
        """End the step; returns how many (round, neighbour) contributions never came."""
        rnd, missing = self.round, 0
        if rnd is not None:
            for r in range(rnd.sent):
                heard = self.heard.get((rnd.t, r), set())
                missing += sum(j not in heard for j in self.row if j != self.me)
        self.round = None
        return missing
