"""MADDPG (Lowe et al. 2017), the centralised baseline of Li & Jia 2021, Fig. 1(c). NOT private.

One process acts for every env agent (``centralised = True``): the env server hands it the
joint observation, it chooses the joint action, and it trains, per agent i, a deterministic
actor mu_i(o_i) and a critic Q_i(o_1..o_N, a_1..a_N) that sees everyone's observations and
actions (centralised training, decentralised execution):

    critic  Q_i(o, a) -> r_i + gamma Q_i'(o', mu_1'(o_1'), ..., mu_N'(o_N'))
    actor   maximise Q_i(o, a_1, ..., mu_i(o_i), ..., a_N)
    targets Polyak-averaged actors and critics; exploration: Gaussian noise on the squashed
            action (``noise``), clipped to [-1, 1].

Runs of this learner are labelled non-private in config.toml, summary.json and the logs. The
replay buffer (of joint entries) and the checkpoints are the off-policy core's; observations are
vectors (no CNN torso for images).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from agentd.algorithms.base import LearnerConfigError, LearnerSpec, param
from agentd.algorithms.offpolicy.buffer import Fields
from agentd.algorithms.offpolicy.core import OffPolicyLearner


@dataclass
class MaddpgParams:
    gamma: float = param(0.95, ge=0.0, lt=1.0)
    """discount factor"""
    lr_critic: float = 1e-3
    """critic step size"""
    lr_actor: float = 3e-4
    """actor step size"""
    tau: float = param(0.01, gt=0.0, le=1.0)
    """Polyak step of the target networks"""
    batch: int = param(128, ge=1)
    """experiences per update"""
    buffer: int = 100_000
    """replay buffer capacity (joint entries)"""
    start: int = 1_000
    """entries before updates begin"""
    hidden: int = 64
    """units in each of the two hidden layers"""
    noise: float = param(0.1, ge=0.0)
    """std of the exploration noise on the squashed action"""
    threads: int = 1
    """torch intra-op threads"""

    def check(self) -> None:
        if self.start < self.batch or self.buffer < self.start:
            raise LearnerConfigError("maddpg: need batch <= start <= buffer, got "
                                     f"{self.batch}, {self.start}, {self.buffer}")


class Maddpg(OffPolicyLearner):
    """N deterministic actors and N centralised critics in one process."""

    name = "maddpg"
    Params = MaddpgParams
    centralised = True
    action_type = "box"
    obs_type = "box"
    takes_images = False

    def check_spaces(self, spec: LearnerSpec) -> None:
        for sp in list(spec.obs_spaces) + list(spec.act_spaces):
            if sp.get("type") != "box":
                raise LearnerConfigError("maddpg needs Box observation and action spaces (for "
                                         "MPE envs pass --env-arg continuous_actions=true)")
        self.m = len(spec.act_spaces)
        self.obs_dims = [int(np.prod(sp["shape"])) for sp in spec.obs_spaces]
        self.act_dims = [int(np.prod(sp["shape"])) for sp in spec.act_spaces]
        self.bounds = [self.nets.box_bounds(sp) for sp in spec.act_spaces]
        if len(set(self.obs_dims)) != 1 or len(set(self.act_dims)) != 1:
            raise LearnerConfigError("maddpg: all agents must have the same observation and "
                                     "action shapes")
        self.last_squashed: np.ndarray | None = None

    def build_networks(self) -> None:
        p, nets, torch = self.params, self.nets, self.torch
        od, ad, m = self.obs_dims[0], self.act_dims[0], self.m
        self.actors = [nets.mlp([od, p.hidden, p.hidden, ad]) for _ in range(m)]
        self.critics = [nets.Critic(m * od, m * ad, p.hidden) for _ in range(m)]
        self.t_actors = [nets.mlp([od, p.hidden, p.hidden, ad]) for _ in range(m)]
        self.t_critics = [nets.Critic(m * od, m * ad, p.hidden) for _ in range(m)]
        for src, dst in zip(self.actors + self.critics, self.t_actors + self.t_critics):
            dst.load_state_dict(src.state_dict())
        self.opt_a = [torch.optim.Adam(a.parameters(), lr=p.lr_actor) for a in self.actors]
        self.opt_c = [torch.optim.Adam(c.parameters(), lr=p.lr_critic) for c in self.critics]

    def buffer_fields(self) -> Fields:
        m, od, ad = self.m, self.obs_dims[0], self.act_dims[0]
        return {"o": ((m, od), np.float32), "o2": ((m, od), np.float32),
                "a": ((m, ad), np.float32), "r": ((m,), np.float32), "done": ((), np.float32)}

    def act(self, obs: np.ndarray) -> np.ndarray:
        torch = self.torch
        o = torch.tensor(np.asarray(obs, np.float32).reshape(self.k, self.m, -1))
        with torch.no_grad():
            a = torch.stack([torch.tanh(self.actors[i](o[:, i])) for i in range(self.m)], 1)
            a = (a + self.params.noise * torch.randn(a.shape, generator=self.gen)).clamp(-1, 1)
        sq = a.numpy()
        self.last_squashed = sq
        out = np.empty_like(sq)
        for i, (low, high) in enumerate(self.bounds):
            out[:, i] = low + 0.5 * (sq[:, i] + 1.0) * (high - low)
        return out.reshape((self.k, self.m, *np.shape(self.bounds[0][0])))

    def entry(self, obs, action, reward, next_obs, terminated) -> dict[str, np.ndarray]:
        return {"o": np.asarray(obs, np.float32).reshape(self.k, self.m, -1),
                "o2": np.asarray(next_obs, np.float32).reshape(self.k, self.m, -1),
                "a": self.last_squashed, "r": reward, "done": terminated}

    def update(self) -> dict[str, float]:
        p, torch = self.params, self.torch
        if not self.ready():
            return {}
        b = self.batch(self.buf.sample(p.batch))
        o, o2, a, r, done = b["o"], b["o2"], b["a"], b["r"], b["done"]
        flat_o, flat_o2 = o.flatten(1), o2.flatten(1)
        with torch.no_grad():
            a2 = torch.stack([torch.tanh(self.t_actors[i](o2[:, i])) for i in range(self.m)], 1)
        c_losses, qs = [], []
        for i in range(self.m):
            with torch.no_grad():
                y = r[:, i] + p.gamma * (1.0 - done) * self.t_critics[i](flat_o2, a2.flatten(1))
            loss = ((self.critics[i](flat_o, a.flatten(1)) - y) ** 2).mean()
            self.opt_c[i].zero_grad()
            loss.backward()
            self.opt_c[i].step()
            mine = torch.tanh(self.actors[i](o[:, i]))
            joint = torch.cat([a[:, :i], mine[:, None], a[:, i + 1:]], 1)
            q = self.critics[i](flat_o, joint.flatten(1))
            self.opt_a[i].zero_grad()
            (-q.mean()).backward()
            self.opt_a[i].step()
            c_losses.append(loss.item())
            qs.append(q.mean().item())
        for src, dst in zip(self.actors + self.critics, self.t_actors + self.t_critics):
            self.nets.polyak(dst, src, p.tau)
        return {"critic_loss": float(np.mean(c_losses)), "q": float(np.mean(qs))}

    def modules(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for i in range(self.m):
            out.update({f"actor{i}": self.actors[i], f"critic{i}": self.critics[i],
                        f"target_actor{i}": self.t_actors[i],
                        f"target_critic{i}": self.t_critics[i]})
        return out

    def optimisers(self) -> dict[str, Any]:
        return {**{f"opt_actor{i}": o for i, o in enumerate(self.opt_a)},
                **{f"opt_critic{i}": o for i, o in enumerate(self.opt_c)}}
