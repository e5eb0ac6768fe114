"""Torch networks of the centralised on-policy learners (imported only when one is built).

* ``AgentActors`` — pi^i(a|o^i) for the m agents of one process: m separate actors, or one
  shared actor whose input carries a one-hot agent id (parameter sharing).
* ``JointValue`` — V(s) on the joint observation (the m encoded observations, concatenated).
* ``ComaCritic`` — COMA's Q(s, u^{-i}, .): for each agent i the values of all its actions given
  the joint observation, the others' actions and i's one-hot id (one network for all agents).
"""

from __future__ import annotations

import torch
from torch import nn

from agentd.algorithms.onpolicy import policy


class AgentActors(nn.Module):
    """(B, m, d) encoded observations -> (B, m, dist_dim): each agent's policy parameters."""

    def __init__(self, m: int, obs_dim: int, act_space: dict, share: bool, hidden: int,
                 layers: int, activation: str, layer_norm: bool, log_std_init: float) -> None:
        super().__init__()
        self.m, self.share = m, share
        n_in = obs_dim + (m if share else 0)
        self.actors = nn.ModuleList(
            policy.Actor(n_in, act_space, hidden, layers, activation, layer_norm, log_std_init)
            for _ in range(1 if share else m))
        self.head = self.actors[0].head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.share:
            ids = torch.eye(self.m).expand(*x.shape[:-2], -1, -1)
            return self.actors[0](torch.cat([x, ids], -1))
        return torch.stack([actor(x[..., i, :]) for i, actor in enumerate(self.actors)], -2)


class JointValue(nn.Module):
    """V(s) with s the m agents' encoded observations side by side."""

    def __init__(self, m: int, obs_dim: int, hidden: int, layers: int, activation: str,
                 layer_norm: bool) -> None:
        super().__init__()
        self.value = policy.ValueNet(m * obs_dim, hidden, layers, activation, layer_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.value(x.flatten(-2))


class ComaCritic(nn.Module):
    """Q(s, (u^{-i}, .)) for every agent i: (B, m, d), (B, m) actions -> (B, m, n_actions)."""

    def __init__(self, m: int, obs_dim: int, n_actions: int, hidden: int, layers: int,
                 activation: str, layer_norm: bool) -> None:
        super().__init__()
        self.m, self.n_actions = m, n_actions
        self.body = policy.body(m * obs_dim + m * n_actions + m, hidden, layers, activation,
                                layer_norm)
        self.out = policy.ortho_linear(hidden, n_actions, 1.0)

    def inputs(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """Per agent i: [s, one-hot u with agent i's own action zeroed, one-hot i]."""
        batch, m = x.shape[0], self.m
        state = x.flatten(-2)[:, None].expand(batch, m, -1)
        joint = nn.functional.one_hot(a.long(), self.n_actions).float()       # (B, m, A)
        others = joint[:, None].expand(batch, m, m, -1) * (1.0 - torch.eye(m))[None, :, :, None]
        ids = torch.eye(m).expand(batch, -1, -1)
        return torch.cat([state, others.flatten(-2), ids], -1)

    def forward(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(self.inputs(x, a)))


class OwnActor(nn.Module):
    """pi^i(a|o^i) of the one agent ``me`` of a process that is sent the joint observation
    (HAPPO): the actor reads row ``me`` of (B, n, d) and nothing else."""

    def __init__(self, me: int, actor: nn.Module) -> None:
        super().__init__()
        self.me, self.actor = me, actor
        self.head = actor.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.actor(x[..., self.me, :])
