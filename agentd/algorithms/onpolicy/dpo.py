"""DPO: fully decentralized policy optimisation (Su & Lu 2022).

Each agent maximises its share of a lower bound on the joint improvement:

    pi^i_new = argmax  scale * L^i(pi^i) - beta_1 * sqrt-KL - beta_2 * KL,
    L^i(pi^i) = E[ pi^i(a|o)/pi^i_old(a|o) * A^i ],  KL = KL(pi^i_old || pi^i)

no clipping; A^i from GAE on the agent's own critic. KL is exact per sample for both action
kinds (Discrete: sum_a p_old log(p_old/p_new); Box: the closed form of two diagonal Gaussians,
summed over dimensions, as the reference code's MuJoCo branch). After each rollout's update the
betas adapt as in the reference code (PKU-RL/DPO, ``r_mappo.py``), each on its own term:

    beta_2 on D  = E[KL]:        beta_2 * omega if D  > d * delta,  / omega if D  < d / delta
    beta_1 on D' = E[sqrt(KL)]:  beta_1 * omega if D' > sqrt(d) * delta,  / omega if below
                                 sqrt(d) / delta             (d = d_target)

(the slides move both betas on KL alone); betas start at 1 and stay in [1e-3, 1e3].

Defaults from the reference code (PKU-RL/DPO):
``div_n`` (the 1/N factor on L^i) is off, as in the code (the slides have it on);
``sqrt_of = "sample"`` takes E[sqrt(KL)] per sample as the code does (``"mean"``: the slides'
sqrt(E[KL]), and beta_1 then adapts on sqrt(E[KL])). Remaining differences from the reference
code: (1) each agent keeps its own betas (the code's default averages the terms over agents,
which a decentralised agent cannot see; its ``idv_beta`` is this); (2) the terms the betas adapt
on are measured over the whole batch after the epochs, where the code keeps those of the last
minibatch of the previous update, measured before that minibatch's step; (3) the code's
MuJoCo branch measures KL against a separate target actor it copies after each update, which is
the rollout policy here (the same distribution, stored with the rollout).

``d_target`` is 0.02 (the code's default is 0.01; its README's SMAC command uses 0.02), chosen
by a stated experiment on the tabular stochastic game (0.01 / 0.02 / 0.05, README "DPO").
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
    d_target: float = param(0.02, gt=0.0)
    """target KL per update (beta_1's target is its square root)"""
    delta: float = param(1.5, gt=1.0)
    """tolerance factor around d_target"""
    omega: float = param(2.0, gt=1.0)
    """beta multiplier when the KL leaves the tolerance band"""
    div_n: bool = False
    """multiply L^i by 1/N (the slides; off in the reference code)"""
    sqrt_of: str = param("sample", choices=("sample", "mean"))
    """sample: E[sqrt(KL)] (the code) | mean: sqrt(E[KL]) (the slides)"""


def adapt_betas(betas: np.ndarray, kl: float, sqrt_kl: float, d_target: float, delta: float,
                omega: float) -> np.ndarray:
    """The reference code's rule: beta_1 (``betas[0]``) moves on the sqrt-KL term against
    sqrt(d_target), beta_2 (``betas[1]``) on the KL term against d_target; each times omega
    above target * delta, divided by omega below target / delta; kept within BETA_BOUNDS."""
    out = np.array(betas, dtype=np.float64)
    for j, (term, target) in enumerate(((sqrt_kl, np.sqrt(d_target)), (kl, d_target))):
        if term > target * delta:
            out[j] *= omega
        elif term < target / delta:
            out[j] /= omega
    return np.clip(out, *BETA_BOUNDS)


class DPO(OnPolicyLearner):
    """Decentralised policy optimisation: the penalised surrogate with adaptive betas."""

    name = "dpo"
    Params = DpoParams

    def __init__(self, spec) -> None:
        super().__init__(spec)
        self.betas = np.array([self.params.beta_sqrt, self.params.beta_kl])
        self.sqrt_kl = 0.0

    def policy_loss(self, mb: dict[str, Any], dist: Any, logp: Any
                    ) -> tuple[Any, dict[str, float]]:
        p = self.params
        kl = self.head.kl(mb["dist"], dist)
        scale = 1.0 / self.spec.n_agents if p.div_n else 1.0
        loss = dpo_loss(logp, mb["logp"], mb["adv"], kl, float(self.betas[0]),
                        float(self.betas[1]), scale, p.sqrt_of)
        return loss, {}

    def batch_kl(self, t: dict[str, Any]) -> float:
        """E[KL] over the batch after the epochs; keeps the sqrt-KL term beta_1 adapts on."""
        from agentd.algorithms.onpolicy.losses import sqrt_kl_term

        with self.torch.no_grad():
            kl = self.head.kl(t["dist"], self.actor(t["obs"]))
        self.sqrt_kl = float(sqrt_kl_term(kl, self.params.sqrt_of))
        return float(kl.mean())

    def after_update(self, kl: float) -> dict[str, float]:
        p = self.params
        self.betas = adapt_betas(self.betas, kl, self.sqrt_kl, p.d_target, p.delta, p.omega)
        return {"beta_sqrt": float(self.betas[0]), "beta_kl": float(self.betas[1]),
                "sqrt_kl": self.sqrt_kl}

    def state_dict(self) -> dict[str, np.ndarray]:
        return {**super().state_dict(), "betas": self.betas.copy()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        super().load_state_dict(state)
        self.betas = np.array(state["betas"], dtype=np.float64)
