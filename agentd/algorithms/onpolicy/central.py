"""The centralised on-policy learners' shared part (MAA2C, MAPPO, COMA, MAT). NOT private.

One process acts for all m env agents: the one centralised mode, the same one
``maddpg`` uses (the env server sends this process every agent's observation and reward, and
it returns the joint action). It keeps per-agent actors pi^i(a|o^i) — executed on each agent's
own observation — and a critic on the joint observation s = (o^1, ..., o^m). A rollout row is
one joint step: obs (m, d), actions (m,), log-probs (m,), one team reward (the env's shared
reward, or the mean of the agents' rewards) and the critic's value(s).

Everything else — GAE, value normalisation, minibatch epochs, gradient clipping, checkpoints —
is ``OnPolicyLearner``'s; each algorithm is its loss (and COMA its critic).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from agentd.algorithms.base import LearnerConfigError, LearnerSpec
from agentd.algorithms.onpolicy.learner import OnPolicyLearner, OnPolicyParams


def same_space(a: dict, b: dict) -> bool:
    """Two space dicts describe the same space (a bound may be a number or an array)."""
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


class PerAgent:
    """Encode (K, m, ...) observations agent by agent into (K, m, d) rows (a class, not a
    closure: the recovery checkpoint records it by its class name)."""

    def __init__(self, encode_one: object, m: int) -> None:
        self.encode_one, self.m = encode_one, m

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return self.encode_one(obs).reshape(len(obs), self.m, -1)


@dataclass
class CentralParams(OnPolicyParams):
    share_params: bool = False
    """one actor for all agents, with a one-hot agent id input (off: one actor per agent)"""


class CentralisedOnPolicy(OnPolicyLearner):
    """Per-agent actors and a critic on the joint observation, in one process."""

    Params = CentralParams
    centralised = True
    action_type = "discrete"
    takes_images = False        # the critic reads the m encoded observations side by side

    def _spaces(self, spec: LearnerSpec) -> tuple[dict, dict]:
        self.m = len(spec.controls)
        obs, act = spec.obs_spaces, spec.act_spaces
        if not all(same_space(sp, obs[0]) for sp in obs) or \
                not all(same_space(sp, act[0]) for sp in act):
            raise LearnerConfigError(f"{self.name}: every agent needs the same observation and "
                                     "action spaces")
        if act[0].get("type") != "discrete" or obs[0].get("type") not in ("discrete", "box"):
            raise LearnerConfigError(f"{self.name} needs Discrete actions and Discrete or Box "
                                     f"observations, got {obs[0]} / {act[0]}")
        return obs[0], act[0]

    def __init__(self, spec: LearnerSpec) -> None:
        super().__init__(spec)
        self.encode = PerAgent(self.encode, self.m)

    def build_networks(self, act_space: dict) -> tuple[Any, Any]:
        from agentd.algorithms.onpolicy import central_nets as cn

        p = self.params
        actors = cn.AgentActors(self.m, self.obs_dim, act_space, p.share_params, p.hidden,
                                p.layers, p.activation, p.layer_norm, p.log_std_init)
        return actors, self.build_critic(act_space)

    def build_critic(self, act_space: dict) -> Any:
        """V(s) on the joint observation (COMA overrides with its Q)."""
        from agentd.algorithms.onpolicy import central_nets as cn

        p = self.params
        return cn.JointValue(self.m, self.obs_dim, p.hidden, p.layers, p.activation,
                             p.layer_norm)

    value_shape: tuple[int, ...] = ()
    """shape of the critic's value per row: () for V(s), (m,) for per-agent values"""

    def rollout_fields(self) -> dict[str, tuple[tuple[int, ...], Any]]:
        m, vs = self.m, self.value_shape
        return {"obs": ((m, self.obs_dim), np.float32), "act": ((m,), np.int64),
                "logp": ((m,), np.float32), "dist": ((m, self.head.dist_dim), np.float32),
                "value": (vs, np.float64), "next_value": (vs, np.float64),
                "reward": ((), np.float64), "terminated": ((), bool), "done": ((), bool)}

    def observe(self, obs, action, reward, next_obs, terminated, truncated) -> None:
        reward = np.asarray(reward, np.float64)
        team = reward[:, 0] if self.spec.shared_reward else reward.mean(axis=1)
        super().observe(obs, action, team, next_obs, terminated, truncated)

    def joint_adv(self, mb: dict[str, Any]) -> Any:
        """The minibatch's advantages with the agents' axis: a shared A(s) for every agent."""
        adv = mb["adv"]
        return adv[:, None] if adv.dim() == 1 else adv
