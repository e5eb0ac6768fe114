"""MAA2C: A2C with per-agent actors and a centralised critic V(s) on the joint observation
(Papoudakis et al. 2021). NOT private: it runs in the centralised mode. The loss:

    L(theta) = -E_i E[ log pi^i_theta(a^i|o^i) A(s) ],   A(s) from GAE on V(s)

one gradient step per rollout, as A2C (``IA2C`` is the same loss on each agent's own V(o)).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agentd.algorithms.onpolicy.central import CentralisedOnPolicy, CentralParams
from agentd.algorithms.onpolicy.losses import a2c_loss


@dataclass
class Maa2cParams(CentralParams):
    """The centralised core's parameters with A2C's single on-policy step."""

    epochs: int = 1
    """passes over the batch per iteration (A2C: one)"""
    value_clip: float = 0.0
    """PPO-style value clipping (A2C: off)"""


class MAA2C(CentralisedOnPolicy):
    """Multi-agent A2C with a centralised V(s)."""

    name = "maa2c"
    Params = Maa2cParams

    def policy_loss(self, mb: dict[str, Any], dist: Any, logp: Any
                    ) -> tuple[Any, dict[str, float]]:
        return a2c_loss(logp, self.joint_adv(mb)), {}
