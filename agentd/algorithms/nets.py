"""Torch building blocks of the deep learners: the observation encoder every deep learner picks
from its space (``obs_encoder``), MLPs, the squashed-Gaussian actor, a critic, checkpoint arrays.

Imported only from inside a deep learner's ``__init__`` (never at registry or config time), so
a tabular agent, the coordinator and the env server never load torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from agentd.algorithms.base import LearnerConfigError
from protocols import spaces

MAX_ONE_HOT = 4096          # a larger Discrete observation is a job for the tabular learners

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


# -- observation encoders ------------------------------------------------------------------
def is_image(space: dict) -> bool:
    """An image observation: a uint8 Box of shape H x W x C."""
    return (space.get("type") == "box" and space.get("dtype") == "uint8"
            and len(space["shape"]) == 3)


@dataclass(frozen=True)
class ObsEncoder:
    """How a deep learner reads one observation space.

    ``prepare`` turns observations as they arrive, ``(K, *shape)``, into the rows the learner
    stores (``row_shape``, ``row_dtype``); ``wrap`` puts the encoder's torso in front of a
    network that reads ``width`` features. Vectors: the rows are the features (flat float32, or
    one-hot for Discrete) and the network's own MLP reads them, no torso. Images: the rows stay
    uint8 (a replay buffer of pixels is 4x smaller) and a small CNN (``ImageTorso``) scales them
    to [0, 1], puts channels first and hands ``width`` features on."""

    kind: str                                 # "vector" | "image"
    width: int                                # features the network after the torso reads
    row_shape: tuple[int, ...]
    row_dtype: Any
    prepare: Any                              # (K, *shape) observations -> (K, *row_shape)

    @property
    def image(self) -> bool:
        return self.kind == "image"

    def torso(self) -> nn.Module | None:
        """A fresh torso (each network owns its own): None for vectors, the CNN for images."""
        return ImageTorso(self.row_shape, self.width) if self.image else None

    def wrap(self, net: nn.Module) -> nn.Module:
        """``net`` reading encoded observations: itself for vectors, torso -> net for images."""
        torso = self.torso()
        return net if torso is None else nn.Sequential(torso, net)


def obs_encoder(space: dict, algo: str, features: int = 64, images: bool = True) -> ObsEncoder:
    """The encoder for ``space``: one-hot rows (Discrete), flat float32 rows (Box vectors), or,
    for images (``is_image``), uint8 rows and a CNN torso of ``features`` outputs. ``images``
    False: the learner cannot take image observations (a clear error instead)."""
    kind = space.get("type")
    if kind == "discrete":
        n = int(space["n"])
        if n > MAX_ONE_HOT:
            raise LearnerConfigError(f"{algo}: a Discrete observation of {n} values is one-hot encoded "
                             f"and must have at most {MAX_ONE_HOT} (use a tabular learner)")
        return ObsEncoder("vector", n, (n,), np.float32, OneHot(n))
    if kind != "box":
        raise LearnerConfigError(f"{algo} needs Box or Discrete observations, got {space}")
    if is_image(space):
        if not images:
            raise LearnerConfigError(f"{algo} does not take image observations (a uint8 Box "
                             f"{list(space['shape'])}); ippo, iql-deep and isac do")
        shape = tuple(int(d) for d in space["shape"])
        return ObsEncoder("image", features, shape, np.uint8, Pixels(shape))
    width = int(np.prod(space["shape"]))
    return ObsEncoder("vector", width, (width,), np.float32, Flat(width))


class Flat:
    """Box observations as flat float32 rows (a copy: observations may be read-only). A
    class, not a closure, so the recovery checkpoint records it by its class name."""

    def __init__(self, width: int) -> None:
        self.width = width

    def __call__(self, obs: Any) -> np.ndarray:
        return np.array(obs, np.float32).reshape(-1, self.width)


class OneHot:
    """Discrete observations as one-hot float32 rows."""

    def __init__(self, n: int) -> None:
        self.eye = np.eye(n, dtype=np.float32)

    def __call__(self, obs: Any) -> np.ndarray:
        return self.eye[np.asarray(obs, np.int64).reshape(-1)]


class Pixels:
    """Image observations as uint8 H x W x C rows, unchanged (the torso scales them)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape

    def __call__(self, obs: Any) -> np.ndarray:
        return np.array(obs, np.uint8).reshape(-1, *self.shape)


class ImageTorso(nn.Module):
    """A small CNN: uint8 H x W x C -> [0, 1], channels first, two strided convolutions (the
    first two of the Nature DQN's, padded so images from 2 x 2 up fit), an average pool to
    4 x 4 (any image size gives the same width) and a linear layer to ``features``."""

    def __init__(self, shape: tuple[int, ...], features: int) -> None:
        super().__init__()
        channels = int(shape[2])
        self.conv = nn.Sequential(
            nn.Conv2d(channels, 16, 8, stride=4, padding=3), nn.ReLU(),
            nn.Conv2d(16, 32, 4, stride=2, padding=2), nn.ReLU(),
            nn.AdaptiveAvgPool2d((4, 4)), nn.Flatten())
        self.out = nn.Sequential(nn.Linear(32 * 4 * 4, features), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.float32).div(255.0).permute(0, 3, 1, 2)
        return self.out(self.conv(x))


# -- networks --------------------------------------------------------------------------------
def mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for k in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[k], sizes[k + 1]))
        if k < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class SquashedGaussianActor(nn.Module):
    """a = tanh(u), u = mu(s) + sigma(s) * xi, xi ~ N(0, I) (Li & Jia 2021, eq. 59; SAC's actor)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int,
                 torso: nn.Module | None = None) -> None:
        super().__init__()
        self.body = mlp([obs_dim, hidden, hidden, 2 * act_dim])
        self.torso = torso if torso is not None else nn.Identity()
        self.act_dim = act_dim

    def dist(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_std = self.body(self.torso(s)).split(self.act_dim, dim=-1)
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

    def __init__(self, obs_dim: int, act_dim: int, hidden: int,
                 torso: nn.Module | None = None) -> None:
        super().__init__()
        self.body = mlp([obs_dim + act_dim, hidden, hidden, 1])
        self.torso = torso if torso is not None else nn.Identity()

    def forward(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return self.body(torch.cat([self.torso(s), a], dim=-1)).squeeze(-1)


def step(opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    """One optimiser step on ``loss``."""
    opt.zero_grad()
    loss.backward()
    opt.step()


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
