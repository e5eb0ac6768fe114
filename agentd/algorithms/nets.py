"""Torch building blocks of the deep learners: MLPs, the squashed-Gaussian actor, a critic.

Imported only from inside a deep learner's ``__init__`` (never at registry or config time), so
a tabular agent, the coordinator and the env server never load torch.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from protocols import spaces

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def setup_torch(seed: int, threads: int) -> torch.Generator:
    """One process's torch: ``threads`` intra-op threads, seeded; returns a private generator
    for the learner's own sampling (so its draws do not depend on anything else in-process)."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)          # network initialisation happens right after this
    gen = torch.Generator()
    gen.manual_seed(seed + 1)
    return gen


def mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for k in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[k], sizes[k + 1]))
        if k < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class SquashedGaussianActor(nn.Module):
    """a = tanh(u), u = mu(s) + sigma(s) * xi, xi ~ N(0, I) (seed 002 eq. 59, SAC's actor)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int) -> None:
        super().__init__()
        self.body = mlp([obs_dim, hidden, hidden, 2 * act_dim])
        self.act_dim = act_dim

    def dist(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_std = self.body(s).split(self.act_dim, dim=-1)
        return mu, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def sample(self, s: torch.Tensor, gen: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(u, a = tanh(u), log pi(a|s)) with the reparameterisation (gradients flow to theta).

        log pi(a|s) includes the tanh change of variables; ``log_prob_u`` does not (it cancels
        in a log-ratio of two policies at the same action)."""
        mu, log_std = self.dist(s)
        xi = torch.randn(mu.shape, generator=gen)
        u = mu + log_std.exp() * xi
        a = torch.tanh(u)
        logp = gaussian_logp(u, mu, log_std) - tanh_log_jacobian(u)
        return u, a, logp

    def log_prob_u(self, s: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """log N(u; mu(s), sigma(s)) summed over action dims."""
        mu, log_std = self.dist(s)
        return gaussian_logp(u, mu, log_std)


def gaussian_logp(u: torch.Tensor, mu: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    z = (u - mu) / log_std.exp()
    return (-0.5 * z * z - log_std - _LOG_SQRT_2PI).sum(-1)


def tanh_log_jacobian(u: torch.Tensor) -> torch.Tensor:
    """sum log(1 - tanh(u)^2), written stably as 2 (log 2 - u - softplus(-2u))."""
    return (2.0 * (math.log(2.0) - u - nn.functional.softplus(-2.0 * u))).sum(-1)


class Critic(nn.Module):
    """Q(s, a) for a (squashed) action vector a; s may be the global state."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int) -> None:
        super().__init__()
        self.body = mlp([obs_dim + act_dim, hidden, hidden, 1])

    def forward(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return self.body(torch.cat([s, a], dim=-1)).squeeze(-1)


@torch.no_grad()
def polyak(target: nn.Module, source: nn.Module, tau: float) -> None:
    """target <- (1 - tau) target + tau source."""
    for t, s in zip(target.parameters(), source.parameters()):
        t.mul_(1.0 - tau).add_(s, alpha=tau)


def module_arrays(prefix: str, module: nn.Module) -> dict[str, np.ndarray]:
    return {f"{prefix}.{k}": v.detach().numpy().copy() for k, v in module.state_dict().items()}


def load_module_arrays(prefix: str, module: nn.Module, state: dict[str, np.ndarray]) -> None:
    own = module.state_dict()
    missing = [k for k in own if f"{prefix}.{k}" not in state]
    if missing:
        raise KeyError(f"checkpoint lacks {prefix} arrays {missing}")
    module.load_state_dict({k: torch.as_tensor(np.asarray(state[f"{prefix}.{k}"]))
                            for k in own})


def box_bounds(space: dict) -> tuple[np.ndarray, np.ndarray]:
    return spaces.box_bounds(space, np.float32)


def optimizer_arrays(prefix: str, opt: torch.optim.Optimizer) -> dict[str, np.ndarray]:
    """An optimiser's per-parameter state (Adam's step and moments) as named arrays."""
    out = {}
    for idx, state in opt.state_dict()["state"].items():
        for key, value in state.items():
            out[f"{prefix}.{idx}.{key}"] = torch.as_tensor(value).detach().numpy().copy()
    return out


def load_optimizer_arrays(prefix: str, opt: torch.optim.Optimizer,
                          state: dict[str, np.ndarray]) -> None:
    """Restore what ``optimizer_arrays`` saved (a fresh optimiser has no state yet)."""
    per_param: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in state.items():
        if name.startswith(prefix + "."):
            idx, key = name[len(prefix) + 1:].split(".", 1)
            per_param.setdefault(int(idx), {})[key] = torch.as_tensor(np.array(value))
    if per_param:
        opt.load_state_dict({"state": per_param,
                             "param_groups": opt.state_dict()["param_groups"]})
