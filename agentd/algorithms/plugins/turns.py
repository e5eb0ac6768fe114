"""The turn schedule of alternating learners (MA2QL, Su et al. 2022): only the agent on turn learns.

The coordinator owns the schedule. At admission it computes it from the learner's parameters
(``turn_len`` joint steps per turn, ``turn_order`` round-robin or a permutation drawn once from
the run seed) and broadcasts it to every agent as one ``turn`` control message. The message is
in each agent's log, so ``agentd replay`` hands the replayed learner the same schedule.

Which agent is on turn is a pure function of the joint step of the transition being learned,

    on_turn(t) = order[(t // turn_len) mod len(order)],

so every agent agrees on it without any further message, whatever the timing of the run.

Choosing ``turn_len`` (MA2QL's truncation bound). An agent keeps its Q-table across turns,
so each turn only has to bring its Q within eps of the best response to the others' fixed
policies. That takes t >= [log((1 - gamma) eps) - log(2R + 2 eps)] / log(gamma) Q-iteration
sweeps (``truncation_sweeps``). For the stochastic game (R = 5, eps = 1) at ma2ql's default
gamma = 0.95 that is 107 sweeps; a sweep backs up each of an agent's 30 x 5 = 150 (s, a_i)
pairs once, so a sample-based turn needs at least 107 x 150 = 16,050 transitions, more where
visits are uneven. ma2ql's default turn is 20,000 joint steps (one env copy: 20,000
transitions); with K env copies, turn_len = 20,000 / K keeps the same number of backups (the
README's reproduction, ``examples/ma2ql_stochastic_game.py``, runs K = 4 with turn_len = 10,000:
40,000 transitions per turn, twice the bound's minimum; it settles at a checked equilibrium on 5
of 5 games in 10 rounds). The paper's own value is not known.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from agentd.algorithms.base import LearnerConfigError

ORDERS = ("round-robin", "random")


def truncation_sweeps(gamma: float, reward_bound: float, eps: float) -> int:
    """Q-iteration sweeps that bring Q within eps of its fixed point (Su et al. 2022, MA2QL)."""
    return math.ceil((math.log((1 - gamma) * eps) - math.log(2 * reward_bound + 2 * eps))
                     / math.log(gamma))


@dataclass(frozen=True)
class TurnSchedule:
    """Agent ``order[k]`` learns during joint steps [k L, (k + 1) L), round after round."""

    order: tuple[int, ...]
    turn_len: int

    @classmethod
    def build(cls, n_agents: int, turn_len: int, how: str, seed: int) -> TurnSchedule:
        if how not in ORDERS:
            raise LearnerConfigError(f"parameter 'turn_order' must be one of {ORDERS}, "
                                     f"got {how!r}")
        order = list(range(n_agents))
        if how == "random":
            order = np.random.default_rng([seed, 0x7A2]).permutation(n_agents).tolist()
        return cls(tuple(order), int(turn_len))

    @classmethod
    def from_body(cls, body: dict[str, Any], n_agents: int) -> TurnSchedule:
        """The schedule of a ``turn`` message, checked: every agent exactly once, L >= 1."""
        order, turn_len = body.get("order"), body.get("turn_len")
        if (not isinstance(order, list) or sorted(order) != list(range(n_agents))
                or not isinstance(turn_len, int) or turn_len < 1):
            raise LearnerConfigError(f"bad turn schedule {body!r} for {n_agents} agents")
        return cls(tuple(order), turn_len)

    def body(self) -> dict[str, Any]:
        return {"order": list(self.order), "turn_len": self.turn_len}

    def agent_at(self, step: int) -> int:
        return self.order[(step // self.turn_len) % len(self.order)]


class TakesTurns:
    """Mixin of a Q-learner that learns only on its turn. The learner counts the joint steps
    it has learned from (``turn_step``) and asks ``on_turn()`` before each update."""

    takes_turns: ClassVar[bool] = True
    schedule: TurnSchedule | None = None
    turn_step: int = 0

    @classmethod
    def turn_schedule(cls, params: dict[str, Any], n_agents: int, seed: int
                      ) -> dict[str, Any] | None:
        defaults = cls.Params()            # type: ignore[attr-defined]
        turn_len = int(params.get("turn_len", defaults.turn_len))
        how = str(params.get("turn_order", defaults.turn_order))
        return TurnSchedule.build(n_agents, turn_len, how, seed).body()

    def set_turns(self, body: dict[str, Any]) -> None:
        self.schedule = TurnSchedule.from_body(body, self.spec.n_agents)  # type: ignore

    def on_turn(self) -> bool:
        """Whether this agent learns from the current joint step's transitions."""
        if self.schedule is None:
            raise LearnerConfigError(f"{self.name} learns in turns but received no turn "  # type: ignore
                                     "schedule from the coordinator")
        return self.schedule.agent_at(self.turn_step) == self.spec.agent_id  # type: ignore
