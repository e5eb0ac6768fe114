"""DPO: fully decentralized policy optimisation (seed 003; Su & Lu, TMLR 2024).

Each agent maximises its share of a lower bound on the joint improvement:

    pi^i_new = argmax  scale * L^i(pi^i) - beta_1 * sqrt-KL - beta_2 * KL,
    L^i(pi^i) = E[ pi^i(a|o)/pi^i_old(a|o) * A^i ],  KL = KL(pi^i_old || pi^i)

no clipping; A^i from GAE on the agent's own critic. After each rollout's update, with
D = D_KL^avg(pi_old || pi_new) over the rollout's batch (the slides' rule):

    D > d_target * delta  ->  beta_j <- beta_j * omega   (j = 1, 2)
    D < d_target / delta  ->  beta_j <- beta_j / omega

Choices the slides leave open (all parameters; defaults from the reference code, research
notes §3): ``div_n`` (the 1/N factor on L^i) is off, as in the code (the slides have it on);
``sqrt_of = "sample"`` takes E[sqrt(KL)] per sample as the code does (``"mean"``: the slides'
sqrt(E[KL])); betas start at 1 and stay in [1e-3, 1e3]; both betas adapt on the KL itself (the
code adapts beta_1 on its sqrt-KL term against sqrt(d_target)); each agent keeps its own betas
(the code's default averages the KL over agents, which a decentralised agent cannot see);
KL is exact for Discrete actions, sampled for Box (``policy.GaussianHead.kl``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from agentd.algorithms.base import param
from agentd.algorithms.onpolicy.learner import OnPolicyLearner, OnPolicyParams
from agentd.algorithms.onpolicy.losses import dpo_loss

BETA_BOUNDS = (1e-3, 1e3)


@dataclass
class DpoParams(OnPolicyParams):
    beta_sqrt: float = param(1.0, ge=BETA_BOUNDS[0], le=BETA_BOUNDS[1])
    """beta_1, initial weight of the sqrt-KL penalty"""
    beta_kl: float = param(1.0, ge=BETA_BOUNDS[0], le=BETA_BOUNDS[1])
    """beta_2, initial weight of the KL penalty"""
    d_target: float = param(0.01, gt=0.0)
    """target KL per update"""
    delta: float = param(1.5, gt=1.0)
    """tolerance factor around d_target"""
    omega: float = param(2.0, gt=1.0)
    """beta multiplier when the KL leaves the tolerance band"""
    div_n: bool = False
    """multiply L^i by 1/N (the slides; off in the reference code)"""
    sqrt_of: str = param("sample", choices=("sample", "mean"))
    """sample: E[sqrt(KL)] (the code) | mean: sqrt(E[KL]) (the slides)"""


def adapt_betas(betas: np.ndarray, kl: float, d_target: float, delta: float, omega: float
                ) -> np.ndarray:
    """The slides' rule: both betas times omega when KL > d_target * delta, divided by omega
    when KL < d_target / delta, unchanged in between; kept within BETA_BOUNDS."""
    if kl > d_target * delta:
        betas = betas * omega
    elif kl < d_target / delta:
        betas = betas / omega
    return np.clip(betas, *BETA_BOUNDS)


class DPO(OnPolicyLearner):
    """Decentralised policy optimisation: the penalised surrogate with adaptive betas."""

    name = "dpo"
    Params = DpoParams

    def __init__(self, spec) -> None:
        super().__init__(spec)
        self.betas = np.array([self.params.beta_sqrt, self.params.beta_kl])

    def policy_loss(self, mb: dict[str, Any], dist: Any, logp: Any
                    ) -> tuple[Any, dict[str, float]]:
        p = self.params
        kl = self.head.kl(mb["dist"], dist, logp - mb["logp"])
        scale = 1.0 / self.spec.n_agents if p.div_n else 1.0
        loss = dpo_loss(logp, mb["logp"], mb["adv"], kl, float(self.betas[0]),
                        float(self.betas[1]), scale, p.sqrt_of)
        return loss, {}

    def after_update(self, kl: float) -> dict[str, float]:
        p = self.params
        self.betas = adapt_betas(self.betas, kl, p.d_target, p.delta, p.omega)
        return {"beta_sqrt": float(self.betas[0]), "beta_kl": float(self.betas[1])}

    def state_dict(self) -> dict[str, np.ndarray]:
        return {**super().state_dict(), "betas": self.betas.copy()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        super().load_state_dict(state)
        self.betas = np.array(state["betas"], dtype=np.float64)
