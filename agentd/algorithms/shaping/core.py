"""The core of the opponent-shaping family (naive-pg, lola, meta-pg, meta-mapg).

Each agent keeps a tabular softmax policy (5 x 2 logits) on the ipd, acts with it for a whole
episode (K copies at once), and at the episode's end learns once from what it saw. The loop,
the episode store, the opponent model, the payoff fit and the shared mode live here; each
algorithm only says how it turns (the episode, the opponent's logits) into a new policy.

Where the opponent's policy comes from (``opponent``):

* ``model`` (default, private): a per-state model fitted to the opponent's observed actions
  (``observed.OpponentModel``). Nothing but env traffic crosses between the agents.
* ``shared`` (NOT private, the published full-information version): at each episode's end an
  agent sends the logits it played (peer kind ``policy_params``) and waits for the
  opponent's. The kind is permitted only in this mode, so the guard refuses it in any other
  run; such runs are labelled non-private in config.toml, summary.json and every log. The
  model is still fitted, and its error against the true logits is reported (``model_error``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from agentd.algorithms.base import Learner, LearnerConfigError, LearnerSpec, Outgoing, param
from agentd.algorithms.shaping.observed import Episode, OpponentModel, PayoffFit
from agentd.envs.ipd import N_ACTIONS, N_STATES

POLICY_KIND = "policy_params"
OPPONENT_MODES = ("model", "shared")
ESTIMATORS = ("exact", "dice")


@dataclass
class ShapingParams:
    """Hyper-parameters every shaping learner has (defaults: the official exact LOLA setting,
    alshedivat/lola, translated to two logits per state; see ``lr``)."""

    gamma: float = param(0.96, ge=0.0, lt=1.0)
    """discount factor of the values the learner climbs"""
    lr: float = param(0.5, ge=0.0)
    """step size on the 5 x 2 logits (0.5 here moves the logit difference like the official
    lr = 1 on one sigmoid logit per state)"""
    opponent: str = param("model", choices=OPPONENT_MODES)
    """where the opponent's policy comes from: model (private) | shared (NOT private)"""
    estimator: str = param("exact", choices=ESTIMATORS)
    """exact: closed-form values of the 5-state chain | dice: DiCE on the K logged episodes"""
    init_std: float = param(0.7071, ge=0.0)
    """std of the initial logits (the logit difference is then N(0, 1), as officially)"""
    model_decay: float = param(0.5, ge=0.0, le=1.0)
    """opponent model: factor by which past counts are kept at each episode (0..1)"""
    threads: int = param(1, ge=1)
    """torch intra-op threads"""


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class ShapingLearner(Learner):
    """One agent of the ipd with a tabular softmax policy that learns once per episode."""

    Params: ClassVar[type] = ShapingParams
    action_type = "discrete"
    needs_torch = True

    @classmethod
    def permitted_kinds(cls, params: dict[str, Any]) -> frozenset[str]:
        return frozenset({POLICY_KIND}) if params.get("opponent") == "shared" else frozenset()

    @classmethod
    def non_private_reason(cls, params: dict[str, Any]) -> str:
        if params.get("opponent") != "shared":
            return ""
        return (f"'{cls.name}' with opponent = shared: each agent sends its policy logits to "
                "its opponent every episode (the published full-information version)")

    @classmethod
    def check_run(cls, run: dict[str, Any]) -> dict[str, Any]:
        if run["env"] != "ipd":
            raise LearnerConfigError(f"'env': {cls.name} plays the iterated prisoner's "
                                     f"dilemma; use --env ipd (got {run['env']!r})")
        if run["n"] != 2:
            raise LearnerConfigError(f"'n': {cls.name} is a two-agent learner; use --n 2 "
                                     f"(got {run['n']})")
        from agentd.envs import EnvError, make_env

        try:     # an ipd is cheap to build: bad env_args fail at start-up, not in the run
            make_env("ipd", n_agents=2, num_envs=1, episode_len=run["episode_len"], seed=0,
                     env_kwargs=run["env_args"])
        except EnvError as exc:
            raise LearnerConfigError(f"'env_args': {exc}") from None
        return {}

    def __init__(self, spec: LearnerSpec) -> None:
        super().__init__(spec)
        self._check_spaces(spec)
        p = self.params
        self.other = 1 - spec.agent_id
        self.shared = p.opponent == "shared"
        if self.shared and self.other not in spec.neighbours:
            raise LearnerConfigError(f"{self.name} with opponent=shared needs agent "
                                     f"{self.other} as a neighbour (use --topology line)")
        self.peer_kinds = self.permitted_kinds(spec.params)
        import torch

        from agentd.algorithms.shaping import game

        torch.set_num_threads(p.threads)
        self.game = game
        self.theta = self.rng.normal(0.0, p.init_std, (N_STATES, N_ACTIONS))
        self.model = OpponentModel(p.model_decay)
        self.payoff = PayoffFit()
        self.episodes = np.zeros(1, dtype=np.int64)      # episodes learned from
        self._steps: list[tuple[np.ndarray, ...]] = []
        self._ended = self._sent = False
        self._received: dict[int, np.ndarray] = {}

    def _check_spaces(self, spec: LearnerSpec) -> None:
        obs, act = spec.obs_spaces[0], spec.act_spaces[0]
        index = obs == {"type": "discrete", "n": N_STATES}
        onehot = obs.get("type") == "box" and list(obs.get("shape", [])) == [N_STATES]
        ipd_like = (len(spec.controls) == 1 and spec.n_agents == 2 and (index or onehot)
                    and act == {"type": "discrete", "n": N_ACTIONS})
        if not ipd_like:
            raise LearnerConfigError(f"{self.name} needs the two-agent ipd env (5 states, "
                                     f"2 actions), got obs {obs}, actions {act}, "
                                     f"{spec.n_agents} agents")

    # -- what subclasses define ---------------------------------------------------------------
    def policy(self) -> np.ndarray:
        """The logits the agent plays now."""
        return self.theta

    def learn(self, ep: Episode, theta_other: np.ndarray) -> dict[str, float]:
        """One learning step at an episode's end, given the opponent's (modelled or shared)
        logits; returns scalar diagnostics."""
        raise NotImplementedError

    def fit_opponent(self, ep: Episode) -> np.ndarray:
        """Update the private opponent model with this episode; its logits."""
        self.model.fit(ep)
        return self.model.logits()

    # -- helpers for subclasses ---------------------------------------------------------------
    def values(self, ep: Episode) -> Any:
        """The value function of this episode's task: closed form or DiCE on the episode."""
        g, table = self.game, self.payoff.table
        if self.params.estimator == "exact":
            return g.exact_values(table, self.payoff.opponent_table(), self.params.gamma)
        return g.dice_values(ep.as_batch(self.payoff.opponent_table()), self.params.gamma)

    def exact_value(self, theta: np.ndarray, theta_other: np.ndarray) -> float:
        """My discounted value of (theta, theta_other) on the fitted payoffs, per step."""
        g = self.game
        v = g.chain_value(g.tensor(theta), g.tensor(theta_other), g.tensor(self.payoff.table),
                          self.params.gamma)
        return float(v) * (1.0 - self.params.gamma)

    # -- the agent loop hooks -----------------------------------------------------------------
    def act(self, obs: np.ndarray) -> np.ndarray:
        states = self._states(obs)
        p_cooperate = softmax(self.policy())[states, 0]
        return (self.rng.random(len(states)) >= p_cooperate).astype(np.int64)

    def _states(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs)
        return obs.argmax(axis=-1) if obs.ndim == 2 else obs.astype(np.int64)

    def observe(self, obs, action, reward, next_obs, terminated, truncated) -> None:
        self._steps.append((self._states(obs), np.asarray(action), np.asarray(reward),
                            self._states(next_obs)))
        if np.any(terminated) or np.any(truncated):
            if not (np.all(truncated) or np.all(terminated)):
                raise LearnerConfigError(f"{self.name}: all K episodes must end together")
            self._ended, self._sent = True, False

    def outbox(self) -> list[Outgoing]:
        if not (self.shared and self._ended) or self._sent:
            return []
        self._sent = True
        return [Outgoing(POLICY_KIND, self.other, {"episode": int(self.episodes[0]),
                                                   "logits": self.policy().copy()})]

    def inbox(self, src: int, kind: str, body: dict[str, Any]) -> None:
        if kind != POLICY_KIND or src != self.other or not self.shared:
            raise LearnerConfigError(f"{self.name} does not accept '{kind}' from {src}")
        logits = np.asarray(body["logits"], dtype=np.float64)
        if logits.shape != (N_STATES, N_ACTIONS) or not np.isfinite(logits).all():
            raise LearnerConfigError(f"{self.name}: '{kind}' logits must be finite "
                                     f"({N_STATES}, {N_ACTIONS}), got shape {logits.shape}")
        self._received[int(body["episode"])] = logits

    def awaiting(self) -> frozenset[int]:
        waiting = self.shared and self._ended and int(self.episodes[0]) not in self._received
        return frozenset({self.other}) if waiting else frozenset()

    def update(self) -> dict[str, float]:
        if not self._ended:
            return {}
        ep = Episode.from_steps(self._steps)
        self._steps, self._ended = [], False
        self.payoff.fit(ep)
        modelled = self.fit_opponent(ep)
        theta_other = self._received.pop(int(self.episodes[0])) if self.shared else modelled
        stats = {"reward_per_step": float(ep.reward.mean()),
                 "cooperate": float((ep.own == 0).mean()),
                 "value_per_step": self.exact_value(self.policy(), theta_other)}
        if self.shared:   # how far the private model would have been from the truth
            stats["model_error"] = float(np.abs(softmax(modelled)[:, 0]
                                                - softmax(theta_other)[:, 0]).mean())
        stats.update(self.learn(ep, theta_other))
        self.episodes += 1
        return stats

    # -- checkpoints ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        return {"theta": self.theta, "episodes": self.episodes, "model_counts": self.model.counts,
                "payoff": self.payoff.table, "payoff_seen": self.payoff.seen}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        targets = {"model_counts": self.model.counts, "payoff": self.payoff.table,
                   "payoff_seen": self.payoff.seen}
        for key, value in state.items():
            target = targets[key] if key in targets else getattr(self, key)
            target[...] = value
