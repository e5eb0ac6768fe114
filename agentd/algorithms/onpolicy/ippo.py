"""IPPO: PPO-clip per agent on its own observation (or, with ``--obs state``, the global
state); no messages. Seed 003 / de Witt et al. 2020. The whole algorithm is its loss:

    L(theta) = -E[ min(rho A, clip(rho, 1 - eps, 1 + eps) A) ],  rho = pi_theta(a|o) / pi_old(a|o)

with A from GAE on the agent's own critic V(o) (``OnPolicyLearner`` does the rest).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agentd.algorithms.base import param
from agentd.algorithms.onpolicy.learner import OnPolicyLearner, OnPolicyParams
from agentd.algorithms.onpolicy.losses import ppo_clip_loss


@dataclass
class IppoParams(OnPolicyParams):
    clip: float = param(0.2, gt=0.0, lt=1.0)
    """PPO clip range epsilon"""


class IPPO(OnPolicyLearner):
    """Independent PPO."""

    name = "ippo"
    Params = IppoParams

    def policy_loss(self, mb: dict[str, Any], dist: Any, logp: Any
                    ) -> tuple[Any, dict[str, float]]:
        loss = ppo_clip_loss(logp, mb["logp"], mb["adv"], self.params.clip)
        ratio = (logp - mb["logp"]).exp().detach()
        clip_frac = ((ratio - 1.0).abs() > self.params.clip).float().mean().item()
        return loss, {"clip_frac": clip_frac}
