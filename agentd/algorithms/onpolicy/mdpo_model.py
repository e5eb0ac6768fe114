"""MDPO's private model (Luo et al. 2023): latent functions psi, a transition-and-reward model, and
the latent predictor f_zeta. Torch only; the learner (``mdpo``) decides what data it sees.

* ``psi_1 .. psi_l`` (``encoders``): z ~ psi_j(o) = N(tanh(mu_j(o)), sigma_j(o)), one latent
  function per remembered iteration; only the newest, psi_l, is trained (eq. 1 of Algorithm 1),
  the older ones are frozen copies of what psi_l was at earlier iterations (``shift``).
* ``P_theta(o'|o, a, z)``, ``R_phi(o, a, z)``: one trunk, two heads. Discrete observations: the
  next-state head gives logits (log-likelihood = -cross-entropy); Box observations: the mean of
  o' - o with unit variance (log-likelihood = -squared error / 2 + const). The model input is
  [o, a, z, z_neighbours] (z_neighbours: the neighbours' shared latents, width 0 without them).
* ``f_zeta(z^l | z^1 .. z^{l-1})`` (``predictor``): a Gaussian over the newest latent given the
  older ones; in model rollouts it is applied to (z^2 .. z^l) to extrapolate one iteration ahead.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from agentd.algorithms.onpolicy.policy import body, ortho_linear

LOG_STD_RANGE = (-5.0, 0.0)
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def gaussian_nll(x: torch.Tensor, mu: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """-log N(x; mu, exp(log_std)), summed over the last axis."""
    z = (x - mu) / log_std.exp()
    return (0.5 * z * z + log_std + _LOG_SQRT_2PI).sum(-1)


class GaussianMLP(nn.Module):
    """x -> (mu, log_std) of a diagonal Gaussian; ``squash`` bounds mu to [-1, 1]."""

    def __init__(self, n_in: int, n_out: int, hidden: int, squash: bool) -> None:
        super().__init__()
        self.body = body(n_in, hidden, 2, "relu", False)
        self.out = ortho_linear(hidden, 2 * n_out, 1.0)
        self.squash = squash

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_std = self.out(self.body(x)).chunk(2, -1)
        return (torch.tanh(mu) if self.squash else mu), log_std.clamp(*LOG_STD_RANGE)


class LatentModel(nn.Module):
    """psi_1..psi_l, P_theta / R_phi and f_zeta of one agent."""

    def __init__(self, obs_dim: int, act_in: int, latent_dim: int, nb_dim: int, history: int,
                 hidden: int, discrete_obs: bool) -> None:
        super().__init__()
        self.latent_dim, self.history, self.discrete_obs = latent_dim, history, discrete_obs
        self.encoders = nn.ModuleList(GaussianMLP(obs_dim, latent_dim, hidden, True)
                                      for _ in range(history))
        self.trunk = body(obs_dim + act_in + latent_dim + nb_dim, hidden, 2, "relu", False)
        self.next_head = ortho_linear(hidden, obs_dim, 1.0)
        self.reward_head = ortho_linear(hidden, 1, 1.0)
        self.predictor = GaussianMLP((history - 1) * latent_dim, latent_dim, hidden, True)

    def model_parameters(self) -> list[nn.Parameter]:
        """What step 1 trains: theta, phi and the newest latent function omega_l."""
        return [*self.trunk.parameters(), *self.next_head.parameters(),
                *self.reward_head.parameters(), *self.encoders[-1].parameters()]

    def latent(self, j: int, o: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        """z ~ psi_j(o) (reparameterised), or its mean when gen is None."""
        mu, log_std = self.encoders[j](o)
        if gen is None:
            return mu
        return mu + log_std.exp() * torch.randn(mu.shape, generator=gen)

    def heads(self, o: torch.Tensor, a: torch.Tensor, z: torch.Tensor, z_nb: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(torch.cat([o, a, z, z_nb], -1))
        return self.next_head(h), self.reward_head(h).squeeze(-1)

    def model_loss(self, o, a, z, z_nb, o_next, r) -> tuple[torch.Tensor, torch.Tensor]:
        """(-log P_theta(o'|o,a,z) per sample mean, (R_phi(o,a,z) - r)^2 mean) — eq. 1."""
        out, r_hat = self.heads(o, a, z, z_nb)
        if self.discrete_obs:
            trans = nn.functional.cross_entropy(out, o_next.argmax(-1))
        else:
            trans = 0.5 * ((out - (o_next - o)) ** 2).sum(-1).mean()
        return trans, ((r_hat - r) ** 2).mean()

    def predictor_loss(self, z_prev: torch.Tensor, z_last: torch.Tensor) -> torch.Tensor:
        """-log f_zeta(z^l | z^1..z^{l-1}), batch mean — eq. 2."""
        mu, log_std = self.predictor(z_prev)
        return gaussian_nll(z_last, mu, log_std).mean()

    def predicted_latent(self, o: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        """z ~ f_zeta(. | z^2 ~ psi_2(o), .., z^l ~ psi_l(o)) — eq. 3 (means when gen is None)."""
        z_prev = torch.cat([self.latent(j, o, gen) for j in range(1, self.history)], -1)
        mu, log_std = self.predictor(z_prev)
        if gen is None:
            return mu
        return mu + log_std.exp() * torch.randn(mu.shape, generator=gen)

    @torch.no_grad()
    def step(self, o, a, z, z_nb, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One imagined transition: o' ~ P_theta (Box: its mean), r_hat = R_phi."""
        out, r_hat = self.heads(o, a, z, z_nb)
        if not self.discrete_obs:
            return o + out, r_hat
        idx = torch.multinomial(out.softmax(-1), 1, generator=gen).squeeze(-1)
        return nn.functional.one_hot(idx, o.shape[-1]).to(o.dtype), r_hat

    @torch.no_grad()
    def shift(self) -> None:
        """psi_j <- psi_{j+1} for j < l (Algorithm 1, lines 8-9); psi_l keeps training from
        where it is (a warm start for the next iteration's latent function)."""
        for j in range(self.history - 1):
            self.encoders[j].load_state_dict(self.encoders[j + 1].state_dict())
