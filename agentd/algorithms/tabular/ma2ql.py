"""MA2QL, multi-agent alternate Q-learning (Su et al. 2022): IQL in turns.

    repeat: for i = 1..n: all agents interact with the environment; agent i updates by Q-learning

Every agent keeps acting all the time; only the agent on turn applies its Q-learning update,
so it learns a best response to the others' current, fixed policies. Off turn an agent acts
greedily (the default): the others' policies during a turn are then exactly the greedy
policies pi_j(s) = argmax_a Q_j(s, a) of the theorem, and the best response the agent on turn
learns is the one a Nash check against those greedy policies asks for
(``explore_off_turn = true``: epsilon-greedily, like the agent on turn). With each turn's Q-iteration eps-converged, the joint policy converges to a Nash
equilibrium (which need not be optimal). The turn schedule is the coordinator's
(``agentd.algorithms.plugins.turns``: ``turn_len`` steps per turn, ``turn_order``); the update itself is
IQL's, tabular (``ma2ql``) or double DQN (``ma2ql-deep``): variants by composition, not copies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agentd.algorithms.base import LearnerConfigError, param
from agentd.algorithms.offpolicy.iql_deep import DqnParams, IqlDeep
from agentd.algorithms.plugins.turns import ORDERS, TakesTurns
from agentd.algorithms.tabular.iql import IQL, QScheduleParams, epsilon_at, epsilon_greedy


@dataclass
class Ma2qlParams(QScheduleParams):
    """Tabular Q-learning's parameters and schedules plus the turn schedule. The defaults
    are the setting that settles at a checked equilibrium on the stochastic game (README):
    a visit-count step size restarted at each of the agent's turns, so each turn is a fresh
    stochastic approximation of the best response, and greedy agents off turn."""

    epsilon: float = param(0.1, ge=0.0, le=1.0)
    """probability of a uniformly random action on turn (exploration)"""
    alpha_omega: float = param(0.7, ge=0.0, le=1.0)
    """visit-count decay of the step size, alpha (1 + n(s, a))^-alpha_omega, n counted
    within the turn (0: constant alpha)"""

    turn_len: int = param(20_000, ge=1)
    """joint steps per turn (MA2QL's truncation bound, see agentd.algorithms.plugins.turns)"""
    turn_order: str = param("round-robin", choices=ORDERS)
    """round-robin (agent 0, 1, ..., n-1) or random (a permutation drawn from the run seed)"""
    explore_off_turn: bool = param(False, choices=(True, False))
    """off turn, act greedily, holding the fixed policy (false), or epsilon-greedily (true)"""


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

    def act(self, obs: np.ndarray) -> np.ndarray:
        if self.params.explore_off_turn or self.acts_on_turn():
            return super().act(obs)
        self.act_step += 1
        return epsilon_greedy(self.rng, self.q[obs], 0.0)

    def acts_on_turn(self) -> bool:
        """Whether the joint step about to be acted is in this agent's turn (the update of
        the step before has advanced ``turn_step`` to it; after a gap, ``on_gap`` has)."""
        if self.schedule is None:
            raise LearnerConfigError(f"{self.name} learns in turns but received no turn "
                                     "schedule from the coordinator")
        return self.schedule.agent_at(self.turn_step) == self.spec.agent_id

    def on_gap(self, steps: int) -> None:
        super().on_gap(steps)
        self.turn_step += steps       # the turn clock is the joint step too

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
    act_ahead_why = ("off-policy like iql-deep, and it explores on and off turn alike; the turn "
                     "clock counts updates, not acts, so acting before the update moves no turn "
                     "(the agent on turn still learns against the others' fixed Q)")

    def ready(self) -> bool:
        learns = self.on_turn()
        self.turn_step += 1
        return learns and super().ready()

    def on_gap(self, steps: int) -> None:
        super().on_gap(steps)
        self.turn_step += steps       # the turn clock is the joint step too

    def update(self) -> dict[str, float]:
        out = super().update()
        return {**out, "on_turn": float(self.schedule.agent_at(self.turn_step - 1)
                                        == self.spec.agent_id)}

    def state_dict(self) -> dict[str, np.ndarray]:
        return {**super().state_dict(), "turn_step": np.array(self.turn_step)}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        super().load_state_dict(state)
        self.turn_step = int(state["turn_step"])
