"""HAPPO: heterogeneous-agent PPO as an agent-to-agent protocol (Kuba et al. 2022).
NOT private: the factor and the shared advantage reveal policy information.

Each agent's actor pi^i(a^i|o^i) lives in its own process. Per iteration (one rollout) the
agents update one after another in a random order i_1, ..., i_n; agent i_m maximises

    E[ min(rho M A(s), clip(rho, 1 - eps, 1 + eps) M A(s)) ],   rho = pi^{i_m}_new / pi^{i_m}_old

with M = prod_{k<m} pi^{i_k}_new / pi^{i_k}_old over the batch (1 for i_1), received from
i_{m-1} as a ``happo_factor`` message; after its epochs it sends M * pi^{i_m}_new / pi^{i_m}_old
to i_{m+1}.

* The order is drawn from the run seed every agent shares, seeded by the iteration: every agent
  draws the same permutation, as if the coordinator had broadcast it, without a message.
* The factor goes straight to the next agent, so every pair of agents may have to talk: HAPPO
  runs on the complete graph (``check_run`` says so). Relaying it through other agents would
  disclose it to them; relaying it through the coordinator would move learner data outside
  the peer guard and the audit. Both are refused on purpose.
* The critic V(s) and the advantage A(s) come from the centralised mode: the env
  server sends every agent the joint observation and all rewards. Each agent keeps a replica
  of the one centralised critic — initialised from the shared run seed and trained on the same
  joint data with the same minibatches — so all agents hold the same A(s) without sending it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from agentd.algorithms.base import LearnerConfigError, LearnerSpec, Outgoing
from agentd.algorithms.onpolicy.central import PerAgent, same_space
from agentd.algorithms.onpolicy.ippo import IppoParams
from agentd.algorithms.onpolicy.learner import OnPolicyLearner
from agentd.algorithms.onpolicy.losses import ppo_clip_loss

log = logging.getLogger("agentd.happo")


@dataclass
class HappoParams(IppoParams):
    """IPPO's parameters (the same core defaults and clip range)."""


def happo_order(shared_seed: int, iteration: int, n: int) -> list[int]:
    """The agents' update order of an iteration: the same in every agent."""
    return np.random.default_rng([shared_seed, iteration, 0x4A990]).permutation(n).tolist()


def next_factor(factor: np.ndarray, logp_new: np.ndarray, logp_old: np.ndarray) -> np.ndarray:
    """M * pi_new(a|o) / pi_old(a|o) per sample: the compound factor the next agent uses."""
    return (factor * np.exp(np.asarray(logp_new, np.float64) - logp_old)).astype(np.float32)


class HAPPO(OnPolicyLearner):
    """One agent of HAPPO's sequential update."""

    name = "happo"
    Params = HappoParams
    joint_view = True
    peer_kinds = frozenset({"happo_factor"})
    takes_images = False        # the critic reads the n encoded observations side by side

    @classmethod
    def non_private_reason(cls, params: dict[str, Any]) -> str:
        return ("'happo' runs in the centralised mode (every agent is sent the joint "
                "observation and all rewards) and its agents send each other happo_factor "
                "messages, products of their policy ratios: both reveal policy information.")

    @classmethod
    def check_run(cls, run: dict[str, Any]) -> dict[str, Any]:
        if run.get("topology") != "complete" and int(run.get("n", 0)) > 2:
            raise LearnerConfigError(
                "'topology': happo passes its factor to the next agent of a random order, "
                "so any two agents may have to talk; run it with --topology complete")
        return {}

    def _spaces(self, spec: LearnerSpec) -> tuple[dict, dict]:
        self.n, me = len(spec.seen), spec.seen.index(spec.controls[0])
        if len(spec.controls) != 1 or \
                not all(same_space(sp, spec.obs_spaces[0]) for sp in spec.obs_spaces):
            raise LearnerConfigError("happo: one env agent per process, and every agent with "
                                     "the same observation space")
        if set(spec.neighbours) != set(range(self.n)) - {spec.agent_id}:
            raise LearnerConfigError("happo needs every other agent as a neighbour "
                                     "(--topology complete)")
        self.me = me
        return super()._spaces(LearnerSpec(**{**spec.__dict__,
                                              "obs_spaces": [spec.obs_spaces[me]]}))

    def __init__(self, spec: LearnerSpec) -> None:
        super().__init__(spec)
        self.encode = PerAgent(self.encode, self.n)
        # the same minibatches in every agent: the critic replicas stay identical
        self.rng = np.random.default_rng([spec.shared_seed, 0x4A991])
        self.factors: dict[int, np.ndarray] = {}     # iteration -> factor received
        self.ignored = 0
        self.trained: dict[str, float] | None = None

    def build_networks(self, act_space: dict) -> tuple[Any, Any]:
        from agentd.algorithms.onpolicy import central_nets as cn

        torch, p = self.torch, self.params
        actor = cn.OwnActor(self.me, self.policy.Actor(
            self.obs_dim, act_space, p.hidden, p.layers, p.activation, p.layer_norm,
            p.log_std_init))
        with torch.random.fork_rng():
            torch.manual_seed(self.spec.shared_seed)
            critic = cn.JointValue(self.n, self.obs_dim, p.hidden, p.layers, p.activation,
                                   p.layer_norm)
        return actor, critic

    def rollout_fields(self) -> dict[str, tuple[tuple[int, ...], Any]]:
        return {**super().rollout_fields(), "obs": ((self.n, self.obs_dim), np.float32)}

    def peer_shapes(self) -> dict[str, dict[str, tuple[tuple[int, ...], str]]]:
        """Exactly one float32 factor per sample of the batch (rollout x K)."""
        size = self.params.rollout * self.spec.num_envs
        return {"happo_factor": {"factor": ((size,), "float32")}}

    def observe(self, obs, action, reward, next_obs, terminated, truncated) -> None:
        reward = np.asarray(reward, np.float64)
        team = reward[:, 0] if self.spec.shared_reward else reward.mean(axis=1)
        super().observe(obs, action, team, next_obs, terminated, truncated)

    # -- the protocol ----------------------------------------------------------------------
    def order(self) -> list[int]:
        return happo_order(self.spec.shared_seed, self.iteration, self.n)

    def predecessor(self) -> int | None:
        order = self.order()
        pos = order.index(self.spec.agent_id)
        return order[pos - 1] if pos > 0 else None

    def awaiting(self) -> frozenset[int]:
        prev = self.predecessor()
        if self.store.full and prev is not None and self.iteration not in self.factors:
            return frozenset({prev})
        return frozenset()

    def inbox(self, src: int, kind: str, body: dict[str, Any]) -> None:
        it = int(body["it"])
        order = happo_order(self.spec.shared_seed, it, self.n)
        pos = order.index(self.spec.agent_id)
        if kind != "happo_factor" or it < self.iteration or it in self.factors or pos == 0 \
                or src != order[pos - 1]:
            self.ignored += 1                 # not from this iteration's predecessor: counted
            log.warning("happo agent %d ignored a %s from %d for iteration %d",
                        self.spec.agent_id, kind, src, it)
            return
        self.factors[it] = np.asarray(body["factor"], np.float64)

    def outbox(self) -> list[Outgoing]:
        if not self.store.full or self.awaiting():
            return []
        order = self.order()
        it, pos = self.iteration, order.index(self.spec.agent_id)
        factor = self.factors.pop(it, np.ones(self.store.t * self.store.num_envs))
        batch = {**self.training_batch(), "factor": factor.astype(np.float32)}
        self.trained = self.update_on(batch)
        with self.torch.no_grad():
            logp_new = self.head.log_prob(self.actor(self.torch.as_tensor(batch["obs"])),
                                          self.torch.as_tensor(batch["act"])).numpy()
        self.trained.update(happo_position=float(pos), factor_mean=float(factor.mean()),
                            factor_ignored=float(self.ignored))
        if pos == len(order) - 1:
            return []
        body = {"it": it, "factor": next_factor(factor, logp_new, batch["logp"])}
        return [Outgoing("happo_factor", order[pos + 1], body)]

    def update(self) -> dict[str, float]:
        out, self.trained = self.trained or {}, None
        return out

    def policy_loss(self, mb: dict[str, Any], dist: Any, logp: Any
                    ) -> tuple[Any, dict[str, float]]:
        return ppo_clip_loss(logp, mb["logp"], mb["factor"] * mb["adv"], self.params.clip), {}
