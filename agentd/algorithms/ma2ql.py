"""MA2QL, multi-agent alternate Q-learning (seed 003): IQL in turns.

    repeat: for i = 1..n: all agents interact with the environment; agent i updates by Q-learning

Every agent keeps acting (epsilon-greedy on its own Q) all the time; only the agent on turn
applies its Q-learning update, so it learns a best response to the others' current, fixed
policies. With each turn's Q-iteration eps-converged, the joint policy converges to a Nash
equilibrium (which need not be optimal). The turn schedule is the coordinator's
(``agentd.algorithms.turns``: ``turn_len`` steps per turn, ``turn_order``); the update itself is
IQL's, tabular (``ma2ql``) or double DQN (``ma2ql-deep``): variants by composition, not copies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agentd.algorithms.base import param
from agentd.algorithms.iql import IQL, QScheduleParams, epsilon_at
from agentd.algorithms.iql_deep import DqnParams, IqlDeep
from agentd.algorithms.turns import ORDERS, TakesTurns


@dataclass
class Ma2qlParams(QScheduleParams):
    """Tabular Q-learning's parameters and schedules plus the turn schedule (with
    alpha_omega > 0 the visit counts restart at each of the agent's turns)."""

    turn_len: int = param(20_000, ge=1)
    """joint steps per turn (seed 003's truncation bound, see agentd.algorithms.turns)"""
    turn_order: str = param("round-robin", choices=ORDERS)
    """round-robin (agent 0, 1, ..., n-1) or random (a permutation drawn from the run seed)"""


@dataclass
class Ma2qlDeepParams(DqnParams):
    """Double DQN's parameters plus the turn schedule."""

    turn_len: int = param(5_000, ge=1)
    """joint steps per turn"""
    turn_order: str = param("round-robin", choices=ORDERS)
    """round-robin or random (a permutation drawn from the run seed)"""


class MA2QL(TakesTurns, IQL):
    """Tabular IQL that applies its update only on its turn."""

    name = "ma2ql"
    Params = Ma2qlParams
    visits_turn: int = -1       # the turn (joint step // turn_len) the visit counts belong to

    def update(self) -> dict[str, float]:
        learns = self.on_turn()
        turn = self.turn_step // self.schedule.turn_len      # type: ignore[union-attr]
        self.turn_step += 1
        if not learns:
            self._batch = None              # the others' experience of this step is not used
            return {"on_turn": 0.0, "epsilon": epsilon_at(self.params, max(self.act_step - 1, 0))}
        if self.scheduled() and turn != self.visits_turn:
            self.visits[...] = 0            # a new turn: a fresh stochastic approximation
            self.visits_turn = turn
        return {**super().update(), "on_turn": 1.0}

    def state_dict(self) -> dict[str, np.ndarray]:
        return {**super().state_dict(), "turn_step": np.array(self.turn_step),
                **({"visits_turn": np.array(self.visits_turn)} if self.has_schedule() else {})}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        super().load_state_dict(state)
        self.turn_step = int(state["turn_step"])
        if "visits_turn" in state:
            self.visits_turn = int(state["visits_turn"])


class Ma2qlDeep(TakesTurns, IqlDeep):
    """iql-deep that takes gradient steps only on its turn (it stores every transition)."""

    name = "ma2ql-deep"
    Params = Ma2qlDeepParams

    def ready(self) -> bool:
        learns = self.on_turn()
        self.turn_step += 1
        return learns and super().ready()

    def update(self) -> dict[str, float]:
        out = super().update()
        return {**out, "on_turn": float(self.schedule.agent_at(self.turn_step - 1)
                                        == self.spec.agent_id)}

    def state_dict(self) -> dict[str, np.ndarray]:
        return {**super().state_dict(), "turn_step": np.array(self.turn_step)}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        super().load_state_dict(state)
        self.turn_step = int(state["turn_step"])
