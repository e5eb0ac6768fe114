"""``OnPolicyLearner``: the agent-loop side every on-policy learner shares.

Per joint step the agent loop calls act -> observe -> update. ``act`` samples from pi(.|o) for
the K env copies and remembers what the rollout needs (log-prob, the distribution's parameters,
V(o)); ``observe`` stores the row with V(s') of the transition's own next observation; once T
rows are in, ``update`` trains and empties the store:

    batch  = self.training_batch()        # GAE on the real rollout (MDPO: model rollouts)
    for epoch in range(epochs): for each minibatch:
        actor  <- minimise self.policy_loss(...) - ent_coef * entropy   (the algorithm's loss)
        critic <- minimise value_loss(...)                              (shared, optional clip)
        (gradient norms clipped to max_grad_norm, separate Adam optimisers)
    self.after_update(kl)                 # DPO adapts its betas here

Subclasses override ``policy_loss`` (and ``training_batch`` / ``after_update`` if they need to).
It stays whole past ~300 lines: it is the on-policy family's one core.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from agentd.algorithms.base import Learner, LearnerConfigError, LearnerSpec, keepalive, param
from agentd.algorithms.onpolicy.rollout import (
    RolloutStore,
    RunningNorm,
    gae,
    minibatches,
    normalise,
)


@dataclass
class OnPolicyParams:
    """Shared hyper-parameters; defaults follow DPO's reference code (PKU-RL/DPO)."""

    rollout: int = param(200, ge=1)
    """joint steps per iteration (the batch is rollout x num_envs transitions)"""
    epochs: int = param(15, ge=1)
    """passes over the batch per iteration"""
    minibatches: int = param(1, ge=1)
    """minibatches per pass"""
    lr: float = param(5e-4, gt=0.0, le=1.0)
    """actor step size (Adam, eps 1e-5)"""
    critic_lr: float = param(5e-4, gt=0.0, le=1.0)
    """critic step size"""
    gamma: float = param(0.99, ge=0.0, lt=1.0)
    """discount factor"""
    lam: float = param(0.95, ge=0.0, le=1.0)
    """GAE lambda"""
    ent_coef: float = param(0.01, ge=0.0)
    """entropy bonus weight"""
    max_grad_norm: float = param(10.0, ge=0.0)
    """gradient-norm clip of each network (0: off)"""
    value_clip: float = param(0.2, ge=0.0)
    """PPO-style value clipping range in normalised units (0: off)"""
    norm_adv: bool = True
    """normalise advantages over the batch"""
    value_norm: bool = True
    """the critic learns running-normalised value targets"""
    hidden: int = param(128, ge=1)
    """units per hidden layer"""
    layers: int = param(2, ge=1)
    """hidden layers of the actor and critic bodies"""
    activation: str = param("relu", choices=("relu", "tanh"))
    """relu | tanh"""
    layer_norm: bool = True
    """LayerNorm on the input and after each hidden layer"""
    log_std_init: float = -0.5
    """initial log-std of the Gaussian head (Box actions)"""
    threads: int = param(1, ge=1)
    """torch intra-op threads in this process"""

    def check(self) -> None:
        """No constraint between fields; kept because the learners on this core call it."""


class OnPolicyLearner(Learner):
    """One env agent's actor pi(a|o), critic V(o), rollout store and optimisers."""

    Params = OnPolicyParams
    needs_torch = True
    takes_images: ClassVar[bool] = True     # its networks can sit behind the CNN torso
    act_ahead = False
    act_ahead_why = ("on-policy: the rollout after an update must be sampled from the updated "
                     "policy (its stored log-probabilities are the ratio's denominator); acting "
                     "ahead would collect the first step of every rollout with the old one")

    def __init__(self, spec: LearnerSpec) -> None:
        super().__init__(spec)
        import torch

        from agentd.algorithms import nets
        from agentd.algorithms.onpolicy import policy

        self.torch, self.nets, self.policy, p = torch, nets, policy, self.params
        obs_space, act_space = self._spaces(spec)
        # the encoder the off-policy core picks too: vectors as rows, images through a CNN
        self.obs_enc = nets.obs_encoder(obs_space, self.name, p.hidden, self.takes_images)
        self.obs_dim, self.encode = self.obs_enc.width, self.obs_enc.prepare
        self.gen = nets.setup_torch(spec.seed, p.threads)
        self.actor, self.critic = self.build_networks(act_space)
        self.head = self.actor.head
        self.opt_actor = torch.optim.Adam(self.actor.parameters(), lr=p.lr, eps=1e-5)
        self.opt_critic = torch.optim.Adam(self.critic.parameters(), lr=p.critic_lr, eps=1e-5)
        self.to_env = policy.discrete_to_env if self.head.discrete \
            else policy.BoxMap(act_space)
        self.store = RolloutStore(p.rollout, spec.num_envs, self.rollout_fields())
        self.vnorm = RunningNorm() if p.value_norm else None
        self.iteration = 0
        self.pending: dict[str, np.ndarray] | None = None
        self._next_values: tuple[np.ndarray, np.ndarray] | None = None

    def _spaces(self, spec: LearnerSpec) -> tuple[dict, dict]:
        if len(spec.controls) != 1:
            raise LearnerConfigError(f"{self.name} controls one env agent per process")
        obs, act = spec.obs_spaces[0], spec.act_spaces[0]
        for what, space in (("observation", obs), ("action", act)):
            if space.get("type") not in ("discrete", "box"):
                raise LearnerConfigError(f"{self.name} needs a Discrete or Box {what} space, "
                                         f"got {space}")
        return obs, act

    def build_networks(self, act_space: dict) -> tuple[Any, Any]:
        """(actor, critic): pi(a|o) and V(o) on this agent's encoded observation."""
        p, policy = self.params, self.policy
        return (policy.Actor(self.obs_dim, act_space, p.hidden, p.layers, p.activation,
                             p.layer_norm, p.log_std_init, self.obs_enc.torso()),
                policy.ValueNet(self.obs_dim, p.hidden, p.layers, p.activation, p.layer_norm,
                                self.obs_enc.torso()))

    def rollout_fields(self) -> dict[str, tuple[tuple[int, ...], Any]]:
        act_dtype = np.int64 if self.head.discrete else np.float32
        return {"obs": (self.obs_enc.row_shape, self.obs_enc.row_dtype),
                "act": (self.head.act_shape, act_dtype),
                "logp": ((), np.float32), "dist": ((self.head.dist_dim,), np.float32),
                "value": ((), np.float64), "next_value": ((), np.float64),
                "reward": ((), np.float64), "terminated": ((), bool), "done": ((), bool)}

    # -- acting and storing ----------------------------------------------------------------
    def values(self, x: np.ndarray) -> np.ndarray:
        """V(o) in return units for encoded observations x."""
        with self.torch.no_grad():
            v = self.critic(self.torch.as_tensor(x)).numpy().astype(np.float64)
        return self.vnorm.denormalise(v) if self.vnorm is not None else v

    def act(self, obs: np.ndarray) -> np.ndarray:
        x = self.encode(obs)
        with self.torch.no_grad():
            dist = self.actor(self.torch.as_tensor(x))
            a = self.head.sample(dist, self.gen)
            logp = self.head.log_prob(dist, a)
        self.pending = {"obs": x, "act": a.numpy(), "logp": logp.numpy(),
                        "dist": dist.numpy(), "value": self.value_of(x, a)}
        return self.to_env(a.numpy())

    def act_eval(self, obs: np.ndarray) -> np.ndarray:
        with self.torch.no_grad():
            dist = self.actor(self.torch.as_tensor(self.encode(obs)))
        return self.to_env(self.head.mode(dist).numpy())

    def value_of(self, x: np.ndarray, a: Any) -> np.ndarray:
        """The critic's value stored with an action: V(o) (COMA: Q(s, u) of the joint u)."""
        return self._value_of_obs(x)

    def next_value_of(self, next_x: np.ndarray) -> np.ndarray:
        """The value of a transition's next observation, V(o') (COMA: Q(s', u'), u' ~ pi)."""
        return self.values(next_x)

    def _value_of_obs(self, x: np.ndarray) -> np.ndarray:
        """V(o), reusing V(s') from the last observe where no episode restarted (the same
        observation, the same critic: the critic only changes in ``update``)."""
        cached = self._next_values
        self._next_values = None
        if cached is not None and cached[0].shape == x.shape and np.array_equal(cached[0], x):
            return cached[1]
        return self.values(x)

    def observe(self, obs, action, reward, next_obs, terminated, truncated) -> None:
        assert self.pending is not None, "observe before act"
        term = np.asarray(terminated, dtype=bool)
        next_x = self.encode(next_obs)
        next_v = self.next_value_of(next_x)
        self.store.add(**self.pending, **self.extra_row(next_x),
                       reward=np.asarray(reward, np.float64), next_value=next_v,
                       terminated=term, done=term | np.asarray(truncated, dtype=bool))
        self.pending = None
        self._next_values = (next_x, next_v)

    def extra_row(self, next_x: np.ndarray) -> dict[str, np.ndarray]:
        """Fields a subclass adds to ``rollout_fields``, filled at observe time."""
        return {}

    # -- learning --------------------------------------------------------------------------
    def update(self) -> dict[str, float]:
        if not self.store.full:
            return {}
        return self.update_on(self.training_batch())

    def update_on(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        """Train one iteration on ``batch`` and empty the rollout store."""
        self._next_values = None                  # the critic is about to change
        started = time.perf_counter()
        self.store.reset()
        scalars = self.train(batch)
        self.iteration += 1
        return {**scalars, "iteration": float(self.iteration),
                "update_seconds": time.perf_counter() - started}

    def training_batch(self) -> dict[str, np.ndarray]:
        """The batch to train on: the real rollout with GAE advantages and returns."""
        return batch_with_advantages(self.store, self.params.gamma, self.params.lam)

    def policy_loss(self, mb: dict[str, Any], dist: Any, logp: Any
                    ) -> tuple[Any, dict[str, float]]:
        """The algorithm's loss on a minibatch (to minimise) and scalars to report."""
        raise NotImplementedError

    def critic_values(self, mb: dict[str, Any]) -> Any:
        """The critic's estimates for a minibatch, the quantity the value loss fits (V(o);
        COMA's Q(s, u) needs the joint action too)."""
        return self.critic(mb["obs"])

    def after_update(self, kl: float) -> dict[str, float]:
        """Called once per iteration with D_KL^avg(pi_old || pi_new) over the batch."""
        return {}

    def train(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        torch, p = self.torch, self.params
        if self.vnorm is not None:
            self.vnorm.update(batch["ret"])
        norm = self.vnorm.normalise if self.vnorm is not None else (lambda v: v)
        t = {k: torch.as_tensor(v) for k, v in batch.items()
             if k not in ("adv", "ret", "value")}
        t["adv"] = torch.as_tensor(normalise(batch["adv"]) if p.norm_adv else batch["adv"],
                                   dtype=torch.float32)
        t["ret_n"] = torch.as_tensor(norm(batch["ret"]), dtype=torch.float32)
        t["value_n"] = torch.as_tensor(norm(batch["value"]), dtype=torch.float32)
        sums: dict[str, float] = defaultdict(float)
        n = 0
        for _ in range(p.epochs):
            for idx in minibatches(len(t["adv"]), p.minibatches, self.rng):
                for key, value in self.step_minibatch({k: v[idx] for k, v in t.items()}).items():
                    sums[key] += value
                n += 1
                keepalive()     # an update takes seconds under load: heartbeats go on
        kl = self.batch_kl(t)
        return {**{k: v / n for k, v in sums.items()}, "kl": kl, **self.after_update(kl)}

    def step_minibatch(self, mb: dict[str, Any]) -> dict[str, float]:
        from agentd.algorithms.onpolicy.losses import value_loss

        p = self.params
        dist = self.actor(mb["obs"])
        logp = self.head.log_prob(dist, mb["act"])
        entropy = self.head.entropy(dist).mean()
        pi_loss, info = self.policy_loss(mb, dist, logp)
        self._step(self.opt_actor, self.actor, pi_loss - p.ent_coef * entropy)
        v_loss = value_loss(self.critic_values(mb), mb["value_n"], mb["ret_n"], p.value_clip)
        self._step(self.opt_critic, self.critic, v_loss)
        return {"policy_loss": pi_loss.item(), "value_loss": v_loss.item(),
                "entropy": entropy.item(), **info}

    def _step(self, opt: Any, module: Any, loss: Any) -> None:
        opt.zero_grad()
        loss.backward()
        if self.params.max_grad_norm > 0:
            self.torch.nn.utils.clip_grad_norm_(module.parameters(), self.params.max_grad_norm)
        opt.step()

    def batch_kl(self, t: dict[str, Any]) -> float:
        """D_KL^avg(pi_old || pi_new) over the whole batch, after the epochs."""
        with self.torch.no_grad():
            return float(self.head.kl(t["dist"], self.actor(t["obs"])).mean())

    # -- checkpoints -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Networks, optimiser moments, value-normaliser statistics, iteration count."""
        n = self.nets
        out = {**n.module_arrays("actor", self.actor), **n.module_arrays("critic", self.critic),
               **n.optimizer_arrays("opt_actor", self.opt_actor),
               **n.optimizer_arrays("opt_critic", self.opt_critic),
               "iteration": np.array(self.iteration)}
        if self.vnorm is not None:
            out["vnorm"] = np.concatenate([self.vnorm.mean, self.vnorm.mean_sq, self.vnorm.debias])
        return out

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        n = self.nets
        n.load_module_arrays("actor", self.actor, state)
        n.load_module_arrays("critic", self.critic, state)
        n.load_optimizer_arrays("opt_actor", self.opt_actor, state)
        n.load_optimizer_arrays("opt_critic", self.opt_critic, state)
        self.iteration = int(state["iteration"])
        if self.vnorm is not None:
            self.vnorm.mean[:], self.vnorm.mean_sq[:], self.vnorm.debias[:] = state["vnorm"]


def batch_with_advantages(store: RolloutStore, gamma: float, lam: float
                          ) -> dict[str, np.ndarray]:
    """Flat (T*K) training arrays of a filled store plus GAE advantages and returns."""
    d, t = store.data, store.t
    # per-agent values (COMA's Q^i) under a team reward and per-copy flags: give those the
    # agents' axis, so nothing broadcasts along the wrong one
    extra = (1,) * (d["value"].ndim - d["reward"].ndim)
    widen = {k: d[k][:t].reshape(d[k][:t].shape + extra) for k in ("reward", "terminated", "done")}
    adv, ret = gae(np.broadcast_to(widen["reward"], d["value"][:t].shape), d["value"][:t],
                   d["next_value"][:t], widen["terminated"], widen["done"], gamma, lam)
    out = {name: store.flat(name) for name in ("obs", "act", "logp", "dist", "value")}
    rows = t * store.num_envs
    return {**out, "adv": adv.reshape(rows, *adv.shape[2:]),
            "ret": ret.reshape(rows, *ret.shape[2:])}
