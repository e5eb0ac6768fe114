"""COMA: counterfactual multi-agent policy gradients (Foerster et al. 2018). NOT
private: it runs in the centralised mode.

One centralised critic Q(s, u^{-i}, .) (agent id in its input) gives, for each agent i, the value
of each of its own actions with the others' actions held fixed; the actor of agent i follows

    L(theta) = -E_i E[ log pi^i_theta(u^i|tau^i) A^i ],
    A^i      = Q(s, u) - sum_{u'} pi^i(u'|tau^i) Q(s, (u^{-i}, u'))      (the counterfactual baseline)

The critic learns TD(lambda) targets for Q(s, u) from the shared core's GAE, with
Q(s', u') of a joint action u' drawn from the current policies bootstrapping each transition.
Q lives in the core's normalised value units, so A^i is the counterfactual advantage divided
by the running return scale (a constant factor per iteration).

Per rollout, as the paper's Algorithm 1 (and EPyMARL's ``critic_train_mode: seq``): the
critic first takes one gradient step per time step of the rollout, last step first, each on
that step's K rows, towards targets computed with the critic the rollout was collected with
(the paper's target network, here refreshed every rollout); then the actors take one step on
the whole batch with advantages from the updated critic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from agentd.algorithms.onpolicy.central import CentralisedOnPolicy, CentralParams
from agentd.algorithms.onpolicy.losses import a2c_loss, coma_advantage


@dataclass
class ComaParams(CentralParams):
    """The centralised core's parameters with A2C's single on-policy step (as COMA)."""

    epochs: int = 1
    """passes over the batch per iteration (COMA: one)"""
    value_clip: float = 0.0
    """PPO-style value clipping (COMA: off)"""
    norm_adv: bool = False
    """normalise advantages over the batch (COMA's A^i is used as it is)"""


class COMA(CentralisedOnPolicy):
    """Per-agent actors and COMA's centralised Q critic."""

    name = "coma"
    Params = ComaParams

    @property
    def value_shape(self) -> tuple[int, ...]:   # Q(s, u) as seen by each agent's critic input
        return (self.m,)

    def build_critic(self, act_space: dict) -> Any:
        from agentd.algorithms.onpolicy import central_nets as cn

        p = self.params
        return cn.ComaCritic(self.m, self.obs_dim, int(act_space["n"]), p.hidden, p.layers,
                             p.activation, p.layer_norm)

    def q_values(self, x: Any, a: Any) -> np.ndarray:
        """Q(s, u) in return units, per agent, for encoded obs x and joint actions a."""
        torch = self.torch
        with torch.no_grad():
            q = self.critic(torch.as_tensor(x), torch.as_tensor(a))
            q = q.gather(-1, torch.as_tensor(a).long().unsqueeze(-1)).squeeze(-1)
        q = q.numpy().astype(np.float64)
        return self.vnorm.denormalise(q) if self.vnorm is not None else q

    def value_of(self, x: np.ndarray, a: Any) -> np.ndarray:
        return self.q_values(x, a)

    def next_value_of(self, next_x: np.ndarray) -> np.ndarray:
        with self.torch.no_grad():
            u = self.head.sample(self.actor(self.torch.as_tensor(next_x)), self.gen)
        return self.q_values(next_x, u)

    def training_batch(self) -> dict[str, np.ndarray]:
        batch = super().training_batch()
        batch["time"] = np.repeat(np.arange(self.store.t), self.store.num_envs)
        return batch

    def step_minibatch(self, mb: dict[str, Any]) -> dict[str, float]:
        from agentd.algorithms.onpolicy.losses import value_loss

        p, step_of = self.params, mb["time"]
        v_losses = []
        for t in step_of.unique().flip(0):           # the critic: one step per time step
            rows = {k: mb[k][step_of == t] for k in ("obs", "act", "value_n", "ret_n")}
            v_loss = value_loss(self.critic_values(rows), rows["value_n"], rows["ret_n"],
                                p.value_clip)
            self._step(self.opt_critic, self.critic, v_loss)
            v_losses.append(v_loss.item())
        dist = self.actor(mb["obs"])                # then the actors, on the updated critic
        entropy = self.head.entropy(dist).mean()
        pi_loss, info = self.policy_loss(mb, dist, self.head.log_prob(dist, mb["act"]))
        self._step(self.opt_actor, self.actor, pi_loss - p.ent_coef * entropy)
        return {"policy_loss": pi_loss.item(), "value_loss": float(np.mean(v_losses)),
                "critic_steps": float(len(v_losses)), "entropy": entropy.item(), **info}

    def critic_values(self, mb: dict[str, Any]) -> Any:
        q = self.critic(mb["obs"], mb["act"])
        return q.gather(-1, mb["act"].long().unsqueeze(-1)).squeeze(-1)

    def policy_loss(self, mb: dict[str, Any], dist: Any, logp: Any
                    ) -> tuple[Any, dict[str, float]]:
        with self.torch.no_grad():
            q = self.critic(mb["obs"], mb["act"])
            adv = coma_advantage(q, dist.softmax(-1), mb["act"])
        return a2c_loss(logp, adv), {"coma_adv_abs": adv.abs().mean().item()}
