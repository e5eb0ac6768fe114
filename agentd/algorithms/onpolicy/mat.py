"""MAT: the multi-agent transformer (Wen et al. 2022). NOT private: one centralised
process, like ``maddpg``, in the centralised mode.

An encoder over the agents' observations gives per-agent values V(o^i | o); a decoder chooses
the actions one agent after another, agent i seeing every observation and the actions of
agents 0..i-1 (``MatNet``). Training is teacher-forced (the taken actions are the decoder's
input) with PPO's clipped surrogate per agent and the value loss on one network and one
optimiser, as in the paper's code:

    L = -E_i E[ min(rho^i A^i, clip(rho^i, 1 - eps, 1 + eps) A^i) ] + c_v L_V - c_ent H,
    rho^i = pi(a^i | o, a^{<i}) / pi_old(a^i | o, a^{<i}),   A^i from GAE on V(o^i | o)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from agentd.algorithms.base import LearnerConfigError, param
from agentd.algorithms.onpolicy.central import CentralisedOnPolicy
from agentd.algorithms.onpolicy.losses import ppo_clip_loss, value_loss
from agentd.algorithms.onpolicy.mappo import MappoParams


@dataclass
class MatParams(MappoParams):
    """MAPPO's parameters (``share_params`` does not apply: MAT is one network) plus its own."""

    heads: int = param(1, ge=1)
    """attention heads"""
    blocks: int = param(1, ge=1)
    """encoder and decoder blocks (the paper's MPE setting)"""
    width: int = 64
    """token width (the paper's n_embd on MPE)"""
    value_coef: float = 1.0
    """weight of the value loss in the one loss"""

    def check(self) -> None:
        super().check()
        if self.width % self.heads:
            raise LearnerConfigError(f"mat: width ({self.width}) must be divisible by heads "
                                     f"({self.heads})")


class MAT(CentralisedOnPolicy):
    """Encoder-decoder policy and values over all agents, in one process."""

    name = "mat"
    Params = MatParams
    value_shape = property(lambda self: (self.m,))

    def build_networks(self, act_space: dict) -> tuple[Any, Any]:
        from agentd.algorithms.onpolicy.mat_model import MatNet

        p = self.params
        net = MatNet(self.m, self.obs_dim, int(act_space["n"]), p.width, p.heads, p.blocks)
        self.mat = net
        return net, net          # one network: the core's two optimisers become one below

    def __init__(self, spec) -> None:
        super().__init__(spec)
        self.opt_critic = self.opt_actor

    def values(self, x: np.ndarray) -> np.ndarray:
        with self.torch.no_grad():
            v = self.mat.encode(self.torch.as_tensor(x))[1].numpy().astype(np.float64)
        return self.vnorm.denormalise(v) if self.vnorm is not None else v

    def act_eval(self, obs: np.ndarray) -> np.ndarray:
        return self.act(obs)      # decoded agent by agent as in training

    def act(self, obs: np.ndarray) -> np.ndarray:
        x = self.encode(obs)
        with self.torch.no_grad():
            a, dist = self.mat.sample(self.torch.as_tensor(x),
                                      lambda logits: self.head.sample(logits, self.gen))
            logp = self.head.log_prob(dist, a)
        self.pending = {"obs": x, "act": a.numpy(), "logp": logp.numpy(),
                        "dist": dist.numpy(), "value": self.value_of(x, a)}
        return a.numpy()

    def step_minibatch(self, mb: dict[str, Any]) -> dict[str, float]:
        p = self.params
        rep, v = self.mat.encode(mb["obs"])
        dist = self.mat.decode(rep, self.mat.tokens(mb["act"]))
        logp = self.head.log_prob(dist, mb["act"])
        entropy = self.head.entropy(dist).mean()
        pi_loss = ppo_clip_loss(logp, mb["logp"], mb["adv"], p.clip)
        v_loss = value_loss(v, mb["value_n"], mb["ret_n"], p.value_clip)
        self._step(self.opt_actor, self.mat, pi_loss + p.value_coef * v_loss
                   - p.ent_coef * entropy)
        return {"policy_loss": pi_loss.item(), "value_loss": v_loss.item(),
                "entropy": entropy.item()}

    def batch_kl(self, t: dict[str, Any]) -> float:
        with self.torch.no_grad():
            dist = self.mat(t["obs"], t["act"])
            return float(self.head.kl(t["dist"], dist).mean())
