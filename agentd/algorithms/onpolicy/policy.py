"""Torch parts of the on-policy learners: MLPs, policy heads, the value net (observation
encoders are ``agentd.algorithms.nets.obs_encoder``'s, shared with the off-policy core).

A policy head turns the actor body's features into a distribution and keeps everything about
that distribution in one place: the parameters a rollout stores (``dist``: logits, or mean and
log-std), sampling, log-probabilities, entropy and the KL from an old distribution to a new one.

* ``CategoricalHead`` (Discrete actions): logits; KL exact, sum_a p_old (log p_old - log p_new).
* ``GaussianHead`` (Box actions): a diagonal Gaussian over the *unsquashed* action u with a
  state-independent log-std; the env receives u clipped to [-1, 1] and mapped affinely onto the
  Box (``BoxMap``), and log-probabilities are of u (as in CleanRL / SB3). KL exact, the
  closed form of two diagonal Gaussians summed over the action's dimensions (as DPO's
  reference code takes it, ``torch.distributions.kl_divergence`` per dimension, summed).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from protocols.spaces import box_bounds

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def ortho_linear(n_in: int, n_out: int, gain: float) -> nn.Linear:
    """A linear layer with orthogonal weights (scaled by gain) and zero bias."""
    layer = nn.Linear(n_in, n_out)
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


def body(n_in: int, hidden: int, layers: int, activation: str, layer_norm: bool) -> nn.Module:
    """[LayerNorm] -> (Linear -> act [-> LayerNorm]) x layers, orthogonally initialised.

    The layer norms (input and hidden) are the feature normalisation of the MAPPO code base
    DPO's reference code uses; they spare the learner an observation normaliser."""
    act = {"relu": nn.ReLU, "tanh": nn.Tanh}[activation]
    gain = nn.init.calculate_gain(activation)
    mods: list[nn.Module] = [nn.LayerNorm(n_in)] if layer_norm else []
    width = n_in
    for _ in range(layers):
        mods += [ortho_linear(width, hidden, gain), act()]
        if layer_norm:
            mods.append(nn.LayerNorm(hidden))
        width = hidden
    return nn.Sequential(*mods)


def with_torso(torso: nn.Module | None, net: nn.Module) -> nn.Module:
    """``net`` behind an observation encoder's torso (the CNN of image observations), or
    ``net`` itself (vectors: no torso)."""
    return net if torso is None else nn.Sequential(torso, net)


class CategoricalHead(nn.Module):
    """Logits over n actions; ``dist`` is the logits."""

    discrete = True

    def __init__(self, n_in: int, n_actions: int) -> None:
        super().__init__()
        self.out = ortho_linear(n_in, n_actions, 0.01)
        self.dist_dim = n_actions
        self.act_shape: tuple[int, ...] = ()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.out(h)

    def sample(self, dist: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """One action per row of logits, any leading shape ((K,) or (K, m) for a joint act)."""
        probs = dist.softmax(-1).reshape(-1, dist.shape[-1])
        return torch.multinomial(probs, 1, generator=gen).reshape(dist.shape[:-1])

    def mode(self, dist: torch.Tensor) -> torch.Tensor:
        """The most likely action of each row (greedy evaluation)."""
        return dist.argmax(-1)

    def log_prob(self, dist: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return dist.log_softmax(-1).gather(-1, a.long().unsqueeze(-1)).squeeze(-1)

    def entropy(self, dist: torch.Tensor) -> torch.Tensor:
        logp = dist.log_softmax(-1)
        return -(logp.exp() * logp).sum(-1)

    def kl(self, old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        """KL(pi_old(.|s) || pi_new(.|s)) per sample, exact."""
        logp_old, logp_new = old.log_softmax(-1), new.log_softmax(-1)
        return (logp_old.exp() * (logp_old - logp_new)).sum(-1)


class GaussianHead(nn.Module):
    """Diagonal Gaussian with state-independent log-std; ``dist`` is [mean, log_std]."""

    discrete = False

    def __init__(self, n_in: int, act_dim: int, log_std_init: float) -> None:
        super().__init__()
        self.out = ortho_linear(n_in, act_dim, 0.01)
        self.log_std = nn.Parameter(torch.full((act_dim,), float(log_std_init)))
        self.dist_dim = 2 * act_dim
        self.act_shape = (act_dim,)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        mean = self.out(h)
        return torch.cat([mean, self.log_std.expand_as(mean)], -1)

    def _split(self, dist: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return dist.chunk(2, -1)

    def sample(self, dist: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        mean, log_std = self._split(dist)
        return mean + log_std.exp() * torch.randn(mean.shape, generator=gen)

    def mode(self, dist: torch.Tensor) -> torch.Tensor:
        """The mean action (greedy evaluation)."""
        return self._split(dist)[0]

    def log_prob(self, dist: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        mean, log_std = self._split(dist)
        z = (a - mean) / log_std.exp()
        return (-0.5 * z * z - log_std - _LOG_SQRT_2PI).sum(-1)

    def entropy(self, dist: torch.Tensor) -> torch.Tensor:
        _, log_std = self._split(dist)
        return (log_std + 0.5 + _LOG_SQRT_2PI).sum(-1)

    def kl(self, old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        """KL(pi_old(.|s) || pi_new(.|s)) per sample, exact: summed over dimensions,
        log(s1/s0) + (s0^2 + (m0 - m1)^2) / (2 s1^2) - 1/2."""
        (m0, log_s0), (m1, log_s1) = self._split(old), self._split(new)
        var_ratio = torch.exp(2.0 * (log_s0 - log_s1))
        mean_term = ((m0 - m1) * torch.exp(-log_s1)) ** 2
        return (log_s1 - log_s0 + 0.5 * (var_ratio + mean_term - 1.0)).sum(-1)


class Actor(nn.Module):
    """pi(a|o): an MLP body and a policy head."""

    def __init__(self, obs_dim: int, act_space: dict, hidden: int, layers: int,
                 activation: str, layer_norm: bool, log_std_init: float,
                 torso: nn.Module | None = None) -> None:
        super().__init__()
        self.body = with_torso(torso, body(obs_dim, hidden, layers, activation, layer_norm))
        if act_space["type"] == "discrete":
            self.head: CategoricalHead | GaussianHead = CategoricalHead(hidden, int(act_space["n"]))
        else:
            self.head = GaussianHead(hidden, int(np.prod(act_space["shape"])), log_std_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class ValueNet(nn.Module):
    """V(o) (normalised units when the learner normalises value targets)."""

    def __init__(self, obs_dim: int, hidden: int, layers: int, activation: str,
                 layer_norm: bool, torso: nn.Module | None = None) -> None:
        super().__init__()
        self.body = with_torso(torso, body(obs_dim, hidden, layers, activation, layer_norm))
        self.out = ortho_linear(hidden, 1, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x)).squeeze(-1)


def discrete_to_env(a: np.ndarray) -> np.ndarray:
    """Sampled Discrete actions as the env's int64."""
    return a.astype(np.int64)


class BoxMap:
    """Unsquashed Gaussian actions u -> the env's Box: clip u to [-1, 1], map affinely onto
    [low, high]; an unbounded dimension gets u itself."""

    def __init__(self, space: dict) -> None:
        shape = tuple(space["shape"])
        self.low, self.high = box_bounds(space, np.float32)
        self.bounded = np.isfinite(self.low) & np.isfinite(self.high)
        self.shape = shape

    def __call__(self, u: np.ndarray) -> np.ndarray:
        u = u.reshape(len(u), *self.shape)
        mapped = self.low + 0.5 * (np.clip(u, -1.0, 1.0) + 1.0) * (self.high - self.low)
        return np.where(self.bounded, mapped, u).astype(np.float32)
