"""IA2C: independent advantage actor-critic per agent on its own observation; no messages
(the independent baseline of Papoudakis et al. 2021). The whole algorithm is its loss:

    L(theta) = -E[ log pi_theta(a|o) A ]

with A from GAE on the agent's own critic V(o); one gradient step per rollout (``epochs = 1``),
as in A2C, where PPO-style learners take several clipped ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agentd.algorithms.onpolicy.learner import OnPolicyLearner, OnPolicyParams
from agentd.algorithms.onpolicy.losses import a2c_loss


@dataclass
class A2cParams(OnPolicyParams):
    """The core's parameters with A2C's single on-policy step (EPyMARL's A2C settings)."""

    epochs: int = 1
    """passes over the batch per iteration (A2C: one; several would be off-policy)"""
    value_clip: float = 0.0
    """PPO-style value clipping (A2C: off)"""


class IA2C(OnPolicyLearner):
    """Independent A2C."""

    name = "ia2c"
    Params = A2cParams

    def policy_loss(self, mb: dict[str, Any], dist: Any, logp: Any
                    ) -> tuple[Any, dict[str, float]]:
        return a2c_loss(logp, mb["adv"]), {}
