"""Independent soft actor-critic (isac): one agent's SAC on its own action, no messages. The
base dac-deep (``agentd.algorithms.offpolicy.dac_deep``) adds the log-ratio consensus to.

Agent i keeps, privately: a squashed-Gaussian actor pi_theta(a|s) (Li & Jia 2021, eq. 59), a critic
Q_phi(s, a) and its Polyak-averaged target, and the off-policy core's replay buffer of
(s, u, r, s', terminated) with the behaviour's log-density log pi_old(u|s) of the pre-tanh
action u. Per joint step, once ``start`` entries are stored, one minibatch B (drawn when the
step's entries are stored, so a plug-in can talk about it before the update):

  critic   minimise mean_B w_e (Q_phi(s,a) - (r + gamma (1 - terminated) Q_phi_bar(s', a~)))^2,
           a~ ~ pi_theta(s') (eqs. 55-56; w_e = 1 here, importance weights in dac-deep)
  actor    maximise mean_B Q_phi(s, f_theta(xi, s)) (eq. 62), minus ``ent`` x log pi
  target   phi_bar <- (1 - tau) phi_bar + tau phi

``ent`` > 0 adds SAC's entropy term (the paper's eq. 62 has none; without it sigma collapses).
Observations: the core's encoder (a vector as it is, an image through a CNN in front of the
actor and of each critic). Deep policy reciprocity (``pr_weight`` > 0, ``plugins.deep_pr``)
mixes the neighbours' target values of the batch's next states into the TD target.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from agentd.algorithms.base import LearnerConfigError, LearnerSpec, Outgoing, param
from agentd.algorithms.offpolicy.buffer import Fields
from agentd.algorithms.offpolicy.core import OffPolicyLearner
from agentd.algorithms.plugins.deep_pr import PR_KINDS, DeepPR


@dataclass
class IsacParams:
    """Hyper-parameters shared by isac and dac-deep."""

    gamma: float = param(0.95, ge=0.0, lt=1.0)
    """discount factor"""
    lr_critic: float = param(1e-3, gt=0.0, le=1.0)
    """critic step size (alpha in Algorithm 2)"""
    lr_actor: float = param(3e-4, gt=0.0, le=1.0)
    """actor step size (beta in Algorithm 2; slower than the critic)"""
    tau: float = param(0.01, gt=0.0, le=1.0)
    """target critic Polyak step (epsilon in Algorithm 2)"""
    batch: int = param(128, ge=1)
    """experiences per update"""
    buffer: int = param(100_000, ge=1)
    """replay buffer capacity (entries; K per joint step)"""
    start: int = 1_000
    """entries in the buffer before updates begin"""
    hidden: int = param(64, ge=1)
    """units in each of the two hidden layers"""
    ent: float = param(0.05, ge=0.0)
    """entropy bonus weight in the actor objective (0: the paper's eq. 62)"""
    threads: int = param(1, ge=1)
    """torch intra-op threads in this process (N agent processes share the cores)"""
    pr_weight: float = param(0.0, ge=0.0, le=1.0)
    """deep policy reciprocity: weight w of the neighbours' values in the TD target (0: off)"""
    pr_eps: float = param(0.0, ge=0.0)
    """PR adjacency level: adjacency states lie within this L-inf distance of s'"""
    pr_samples: int = param(0, ge=0)
    """PR adjacency states per next state (0: the exact next state only)"""

    def check(self) -> None:
        if self.start < self.batch:
            raise LearnerConfigError(f"parameter 'start' ({self.start}) must be >= batch "
                                     f"({self.batch})")


class Isac(OffPolicyLearner):
    """One env agent, Box actions, global state observations; no peer messages unless PR."""

    name = "isac"
    Params = IsacParams
    wants_state = True
    action_type = "box"
    obs_type = "box"
    act_ahead = True
    act_ahead_why = ("off-policy soft actor-critic without messages: the buffer keeps the "
                     "behaviour's actions, so a one-update policy lag changes the data only")
    act_ahead_off_with: ClassVar[dict[str, str]] = {
        "pr_weight": "deep policy reciprocity answers a neighbour's query with the networks "
                     "before this agent's update of the query's step; a neighbour acting ahead "
                     "can ask before that update has run"}

    @classmethod
    def permitted_kinds(cls, params: dict[str, Any]) -> frozenset[str]:
        kinds = set(cls.peer_kinds)
        if float(params.get("pr_weight", 0.0)) > 0:
            kinds |= PR_KINDS
        return frozenset(kinds)

    def __init__(self, spec: LearnerSpec) -> None:
        super().__init__(spec)
        self.peer_kinds = self.permitted_kinds(spec.params)
        p = self.params
        self.batch_idx: np.ndarray | None = None
        self.last_idx = np.zeros(0, np.int64)
        self.pending_act: tuple[np.ndarray, np.ndarray] | None = None
        self.pr: DeepPR | None = None
        self.queries: list[Outgoing] = []
        if p.pr_weight > 0 and spec.neighbours:
            if self.encoder.image:
                raise LearnerConfigError(f"{self.name}: pr_weight > 0 sends next states to the "
                                         "neighbours and needs vector observations, not images")
            self.pr = DeepPR(spec.neighbours, p.pr_weight, p.pr_eps, p.pr_samples,
                             np.random.default_rng([spec.seed, 0x9E]))
            # the networks as they were before the last update (answers are timing-free)
            self.old_actor = self.nets.SquashedGaussianActor(self.encoder.width, self.act_dim,
                                                             p.hidden)
            self.old_target = self.nets.Critic(self.encoder.width, self.act_dim, p.hidden)
            self.updated_at = 0                       # the step of the last update

    def check_spaces(self, spec: LearnerSpec) -> None:
        super().check_spaces(spec)
        obs_space, act_space = spec.obs_spaces[0], spec.act_spaces[0]
        if act_space.get("type") != "box" or obs_space.get("type") != "box":
            raise LearnerConfigError(
                f"{self.name} needs Box observation and action spaces; got observation "
                f"{obs_space.get('type')} and action {act_space.get('type')} (for MPE envs "
                "pass --env-arg continuous_actions=true)")
        self.act_dim = int(np.prod(act_space["shape"]))
        self.low, self.high = self.nets.box_bounds(act_space)

    def build_networks(self) -> None:
        p, nets, torch, enc = self.params, self.nets, self.torch, self.encoder
        self.actor = nets.SquashedGaussianActor(enc.width, self.act_dim, p.hidden, enc.torso())
        self.critic = nets.Critic(enc.width, self.act_dim, p.hidden, enc.torso())
        self.target = nets.Critic(enc.width, self.act_dim, p.hidden, enc.torso())
        self.target.load_state_dict(self.critic.state_dict())
        self.opt_actor = torch.optim.Adam(self.actor.parameters(), lr=p.lr_actor)
        self.opt_critic = torch.optim.Adam(self.critic.parameters(), lr=p.lr_critic)

    def buffer_fields(self) -> Fields:
        row = (self.encoder.row_shape, self.encoder.row_dtype)
        return {"s": row, "s2": row, "u": ((self.act_dim,), np.float32),
                "r": ((), np.float32), "done": ((), np.float32), "logp_old": ((), np.float64)}

    # -- acting and storing ----------------------------------------------------------------
    def act(self, obs: np.ndarray) -> np.ndarray:
        torch = self.torch
        with torch.no_grad():
            s = torch.as_tensor(self.encoder.prepare(obs))
            mu, log_std = self.actor.dist(s)
            u = mu + log_std.exp() * torch.randn(mu.shape, generator=self.gen)
            logp = self.nets.gaussian_logp(u, mu, log_std)
        u_np = u.numpy()
        self.pending_act = (u_np, logp.numpy().astype(np.float64))
        a = np.tanh(u_np)
        return (self.low + 0.5 * (a + 1.0) * (self.high - self.low)).astype(np.float32)

    def act_eval(self, obs: np.ndarray) -> np.ndarray:
        with self.torch.no_grad():
            mu, _ = self.actor.dist(self.torch.as_tensor(self.encoder.prepare(obs)))
        a = np.tanh(mu.numpy())                 # the squashed Gaussian's mean action
        return (self.low + 0.5 * (a + 1.0) * (self.high - self.low)).astype(np.float32)

    def entry(self, obs, action, reward, next_obs, terminated) -> dict[str, np.ndarray]:
        if self.pending_act is None:
            raise RuntimeError(f"{self.name}: observe before act")
        u, logp = self.pending_act
        return {"s": self.encoder.prepare(obs), "s2": self.encoder.prepare(next_obs), "u": u,
                "r": reward, "done": terminated, "logp_old": logp}

    def stored(self, pos: np.ndarray) -> None:
        self.batch_idx = None
        if self.ready():
            self.begin_update()

    def on_gap(self, steps: int) -> None:
        """Restored after ``steps`` joint steps away: skip their buffer positions (they keep
        older entries), so the buffer stays aligned by the global step with the neighbours'."""
        if steps <= 0:
            return
        self.skipped(self.buf.skip(steps * self.k), steps)
        self.steps += steps

    def skipped(self, pos: np.ndarray, steps: int) -> None:
        """Called by ``on_gap`` before the step count moves on (dac-deep resets consensus)."""

    def begin_update(self) -> None:
        """Choose this step's batch; PR on: ask the neighbours to value its next states."""
        self.batch_idx = self.choose_batch()
        if self.pr is not None:
            self.queries = self.pr.query(self.steps, self.buf["s2"][self.batch_idx])

    def choose_batch(self) -> np.ndarray:
        return self.buf.sample(self.params.batch)

    # -- messages (policy reciprocity) ----------------------------------------------------
    def outbox(self) -> list[Outgoing]:
        if self.pr is None:
            return []
        out, self.queries = self.queries + self.pr.outbox(), []
        return out

    def inbox(self, src: int, kind: str, body: dict[str, Any]) -> None:
        if kind in PR_KINDS and self.pr is not None:
            self.pr.receive(src, kind, body, self.target_values)
        else:
            raise LearnerConfigError(f"{self.name} does not accept '{kind}' messages")

    def awaiting(self) -> frozenset[int]:
        return self.pr.waiting_for() if self.pr is not None else frozenset()

    def target_values(self, states: np.ndarray, qid: int) -> np.ndarray | None:
        """V_bar(s) = Q_bar(s, tanh(mu(s))) with the networks as they were before this agent's
        update of step qid (a PR neighbour's query); None if the states do not fit."""
        if states.ndim != 2 or states.shape[1] != self.encoder.width \
                or len(states) > 1 << 16 or not np.all(np.isfinite(states)):
            return None
        actor, target = ((self.old_actor, self.old_target) if self.updated_at >= qid
                         else (self.actor, self.target))
        torch = self.torch
        with torch.no_grad():
            s = torch.tensor(np.asarray(states, np.float32))
            mu, _ = actor.dist(s)
            return target(s, torch.tanh(mu)).numpy().astype(np.float32)

    # -- learning --------------------------------------------------------------------------
    def weights(self, idx: np.ndarray) -> np.ndarray:
        """Importance weights w_e of the batch (1 here; dac-deep's come from the consensus)."""
        return np.ones(len(idx))

    def critic_loss(self, s, a, r, s2, done, w, mix=None):
        """mean_B w_e (Q_phi(s,a) - (r + gamma (1 - done) Q_phi_bar(s', a~)))^2, a~ ~ pi(s')
        (eqs. 55-56); ``done`` is termination only (a truncated episode bootstraps). ``mix``
        maps the own next values to the PR-mixed ones."""
        torch = self.torch
        with torch.no_grad():
            _, a2, _ = self.actor.sample(s2, self.gen)
            q2 = self.target(s2, a2)
            if mix is not None:
                q2 = torch.as_tensor(mix(q2.numpy().astype(np.float64)), dtype=torch.float32)
            y = r + self.params.gamma * (1.0 - done) * q2
        td = self.critic(s, a) - y
        return (w * td * td).mean()

    def finish_messages(self) -> int:
        """Close this step's exchange before the update; the neighbours that stayed silent."""
        return 0

    def update(self) -> dict[str, float]:
        if self.batch_idx is None:
            return {}
        torch, p = self.torch, self.params
        missing = self.finish_messages()
        idx = self.batch_idx
        self.last_idx, self.batch_idx = idx, None
        w_np = self.weights(idx)
        b = self.batch(idx)
        s, s2, r, done, a = b["s"], b["s2"], b["r"], b["done"], torch.tanh(b["u"])
        w = torch.as_tensor(w_np, dtype=torch.float32)
        pr_missing, mix = 0, None
        if self.pr is not None:
            self.old_actor.load_state_dict(self.actor.state_dict())
            self.old_target.load_state_dict(self.target.state_dict())
            self.updated_at = self.steps
            pr = self.pr

            def mix(own: np.ndarray) -> np.ndarray:
                nonlocal pr_missing
                mixed, pr_missing = pr.mixed(own)
                return mixed

        critic_loss = self.critic_loss(s, a, r, s2, done, w, mix)
        self.nets.step(self.opt_critic, critic_loss)
        _, a_new, logp = self.actor.sample(s, self.gen)
        q_new = self.critic(s, a_new)
        actor_loss = (p.ent * logp - q_new).mean()               # eq. 62 (+ entropy)
        self.nets.step(self.opt_actor, actor_loss)
        self.nets.polyak(self.target, self.critic, p.tau)
        return {"critic_loss": critic_loss.item(), "actor_loss": actor_loss.item(),
                "q": q_new.mean().item(), "entropy": -logp.mean().item(),
                **self.weight_scalars(idx, w_np),
                "neighbours_missing": float(missing + pr_missing),
                "rejected": float(self.rejected())}

    def weight_scalars(self, idx: np.ndarray, w: np.ndarray) -> dict[str, float]:
        return {}                                   # dac-deep reports its weights

    def rejected(self) -> int:
        """Neighbour messages that did not fit (ignored)."""
        return self.pr.rejected if self.pr is not None else 0

    # -- checkpoints -----------------------------------------------------------------------
    def modules(self) -> dict[str, Any]:
        own = {"actor": self.actor, "critic": self.critic, "target": self.target}
        if self.pr is not None:
            own.update(old_actor=self.old_actor, old_target=self.old_target)
        return own

    def optimisers(self) -> dict[str, Any]:
        return {"opt_actor": self.opt_actor, "opt_critic": self.opt_critic}

    def state_dict(self) -> dict[str, np.ndarray]:
        out = super().state_dict()          # networks, Adam's moments, the buffer, RNGs
        if self.pr is not None:
            out["updated_at"] = np.array(self.updated_at)
        return out

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        super().load_state_dict(state)
        if self.pr is not None:
            self.updated_at = int(state["updated_at"])
