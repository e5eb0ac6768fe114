"""The loss terms of the on-policy family, each a plain function of tensors.

An algorithm's ``policy_loss`` composes these; the value loss is shared by all of them.
Sign convention: every function returns a quantity to *minimise*.
"""

from __future__ import annotations

import torch

SQRT_EPS = 1e-12      # inside sqrt(KL): the gradient of sqrt at 0 is infinite


def ppo_clip_loss(logp: torch.Tensor, logp_old: torch.Tensor, adv: torch.Tensor,
                  clip: float) -> torch.Tensor:
    """PPO's clipped surrogate:  -E[ min(rho A, clip(rho, 1 - eps, 1 + eps) A) ],
    rho = pi(a|o) / pi_old(a|o)."""
    ratio = torch.exp(logp - logp_old)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - clip, 1.0 + clip) * adv
    return -torch.min(unclipped, clipped).mean()


def value_loss(value: torch.Tensor, value_old: torch.Tensor, target: torch.Tensor,
               clip: float) -> torch.Tensor:
    """0.5 E[(V - target)^2]; with clip > 0 PPO's clipped variant, the elementwise max of the
    plain error and that of V_old + clip(V - V_old, +-clip)."""
    err = (value - target) ** 2
    if clip > 0:
        clipped = value_old + torch.clamp(value - value_old, -clip, clip)
        err = torch.max(err, (clipped - target) ** 2)
    return 0.5 * err.mean()


def dpo_loss(logp: torch.Tensor, logp_old: torch.Tensor, adv: torch.Tensor, kl: torch.Tensor,
             beta_sqrt: float, beta_kl: float, scale: float, sqrt_of: str) -> torch.Tensor:
    """DPO's decentralised surrogate (Su & Lu 2022), negated:

        -( scale * E[rho A] - beta_1 * sqrt-KL term - beta_2 * E[KL] )

    rho = pi/pi_old, no clipping; ``kl`` is KL(pi_old || pi) per sample; ``scale`` is 1/N or
    1. The sqrt-KL term is E[sqrt(KL)] per sample (``sqrt_of = "sample"``, the reference code)
    or sqrt(E[KL]) (``"mean"``, the slides' sqrt(D_KL^avg))."""
    ratio = torch.exp(logp - logp_old)
    surrogate = scale * (ratio * adv).mean()
    return -surrogate + beta_sqrt * sqrt_kl_term(kl, sqrt_of) + beta_kl * kl.mean()


def sqrt_kl_term(kl: torch.Tensor, sqrt_of: str) -> torch.Tensor:
    """DPO's sqrt-KL term: E[sqrt(KL)] per sample (``"sample"``) or sqrt(E[KL]) (``"mean"``)."""
    if sqrt_of == "sample":
        return torch.sqrt(kl.clamp_min(0.0) + SQRT_EPS).mean()
    return torch.sqrt(kl.mean().clamp_min(0.0) + SQRT_EPS)


def a2c_loss(logp: torch.Tensor, adv: torch.Tensor) -> torch.Tensor:
    """The advantage actor-critic (REINFORCE with a baseline) loss:  -E[ log pi(a|o) A ]."""
    return -(logp * adv).mean()


def coma_advantage(q: torch.Tensor, pi: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    """COMA's counterfactual advantage per agent (Foerster et al. 2018, eq. 4):

        A^i(s, u) = Q(s, u) - sum_{u'} pi^i(u'|tau^i) Q(s, (u^{-i}, u'))

    ``q`` (..., m, n_actions) holds Q(s, (u^{-i}, u')) for every own action u' of agent i,
    ``pi`` (..., m, n_actions) the agents' policies, ``act`` (..., m) the actions taken."""
    taken = q.gather(-1, act.long().unsqueeze(-1)).squeeze(-1)
    return taken - (pi * q).sum(-1)
