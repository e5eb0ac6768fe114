"""What a shaping agent learns from its own env traffic alone: the episode, the opponent's
policy and the payoffs (numpy only).

The opponent's action at step t is in the next observation (the previous joint action), and
its state is mine seen from its seat (``SWAP``). So a private agent can fit

* a model of the opponent's policy: per-state counts of its actions, forgotten by a factor
  ``decay`` per episode (1: plain maximum likelihood over everything seen; 0: the last
  episode only), with logits log(count + prior); and
* the payoff table of the current task from its own rewards; the opponent's table follows
  because every ipd task is a symmetric game (the opponent's own-seat table is mine).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agentd.envs.ipd import N_ACTIONS, N_STATES, SWAP


@dataclass
class Episode:
    """K logged episodes of length H, from my seat; every array is (H, K)."""

    state: np.ndarray        # my observation when I acted
    own: np.ndarray          # my action
    other: np.ndarray        # the opponent's action (read off the next observation)
    reward: np.ndarray       # my reward

    @classmethod
    def from_steps(cls, steps: list[tuple[np.ndarray, ...]]) -> Episode:
        """From per-step (state, own action, reward, next state) tuples of (K,) arrays."""
        state, own, reward, nxt = (np.stack(x) for x in zip(*steps))
        own_seen, other = np.divmod(nxt - 1, 2)
        if (nxt < 1).any() or (own_seen != own).any():
            raise ValueError("ipd: the next observation does not show my own last action; is "
                             "this the ipd env?")
        return cls(state.astype(np.int64), own.astype(np.int64), other.astype(np.int64),
                   reward.astype(np.float64))

    def as_batch(self, payoff: np.ndarray) -> dict[str, np.ndarray]:
        """The arrays of ``game.dice_values``; the opponent's rewards come from ``payoff``
        (its own-seat table, indexed [its action, my action])."""
        return {"state": self.state, "own": self.own, "other": self.other,
                "reward": self.reward, "reward_other": payoff[self.other, self.own]}


class OpponentModel:
    """Per-state logits of the opponent's policy, fitted to its observed actions."""

    def __init__(self, decay: float, prior: float = 0.5) -> None:
        self.decay, self.prior = decay, prior
        self.counts = np.zeros((N_STATES, N_ACTIONS))

    def fit(self, ep: Episode) -> None:
        """Forget by ``decay``, then count the opponent's actions in its own states."""
        self.counts *= self.decay
        np.add.at(self.counts, (SWAP[ep.state].ravel(), ep.other.ravel()), 1.0)

    def logits(self) -> np.ndarray:
        """(5, 2) logits, in the opponent's own state coding (log of smoothed counts)."""
        return np.log(self.counts + self.prior)


class PayoffFit:
    """My own-seat payoff table of the current task, from the rewards I received."""

    def __init__(self) -> None:
        self.table = np.zeros((N_ACTIONS, N_ACTIONS))
        self.seen = np.zeros((N_ACTIONS, N_ACTIONS), dtype=bool)

    def fit(self, ep: Episode) -> None:
        """Each joint action seen this episode gets its mean reward (an ipd task's payoffs
        are deterministic); one not seen since the last task switch keeps its old value, and
        one never seen takes the mean of the others."""
        sums, counts = np.zeros_like(self.table), np.zeros_like(self.table)
        np.add.at(sums, (ep.own.ravel(), ep.other.ravel()), ep.reward.ravel())
        np.add.at(counts, (ep.own.ravel(), ep.other.ravel()), 1.0)
        hit = counts > 0
        self.table[hit] = sums[hit] / counts[hit]
        self.seen |= hit
        self.table[~self.seen] = self.table[self.seen].mean() if self.seen.any() else 0.0

    def opponent_table(self) -> np.ndarray:
        """The opponent's own-seat table: the same as mine in a symmetric game."""
        return self.table.copy()
