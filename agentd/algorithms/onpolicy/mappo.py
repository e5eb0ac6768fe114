"""MAPPO: PPO-clip with per-agent actors and a centralised critic V(s) on the joint
observation (Yu et al. 2022). NOT private: it runs in the centralised mode. The loss:

    L(theta) = -E_i E[ min(rho^i A(s), clip(rho^i, 1 - eps, 1 + eps) A(s)) ],
    rho^i = pi^i_theta(a^i|o^i) / pi^i_old(a^i|o^i),   A(s) from GAE on V(s)

(``IPPO`` is the same loss on each agent's own V(o).) The paper shares one actor among
agents on MPE; here that is ``share_params = true``, off by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agentd.algorithms.base import param
from agentd.algorithms.onpolicy.central import CentralisedOnPolicy, CentralParams
from agentd.algorithms.onpolicy.losses import ppo_clip_loss


@dataclass
class MappoParams(CentralParams):
    clip: float = param(0.2, gt=0.0, lt=1.0)
    """PPO clip range epsilon"""


class MAPPO(CentralisedOnPolicy):
    """Multi-agent PPO with a centralised V(s)."""

    name = "mappo"
    Params = MappoParams

    def policy_loss(self, mb: dict[str, Any], dist: Any, logp: Any
                    ) -> tuple[Any, dict[str, float]]:
        return ppo_clip_loss(logp, mb["logp"], self.joint_adv(mb), self.params.clip), {}
