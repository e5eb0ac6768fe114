"""Deep decentralized off-policy actor-critic with log-ratio consensus (seed 002, Algorithm 2).

Agent i keeps, privately: a squashed-Gaussian actor pi_theta^i(a^i|s) (eq. 59), a critic
Q_phi^i(s, a^i) and its Polyak-averaged target, and a replay buffer D^i of
e_t = (s_t, a^i_t, r_t, s_{t+1}) plus the behaviour log-density log pi_old^i(a^i_t|s_t). The
buffers of all agents are aligned by the global step (the joint step is synchronous), so a
buffer position names the same experience in every agent.

Per joint step, after storing the new experiences:
  consensus   beta^i_e recomputed for the step's entries E (eq. 44), x^i_e += beta - beta_hat
              (eq. 45), then R gossip rounds x^i_e <- sum_j W_ij x^j_e with the neighbours'
              ``consensus`` messages (eq. 46); see ``agentd.algorithms.plugins.consensus``.
  critic      minimise mean_B w_e (Q_phi(s,a^i) - (r + gamma Q_phi_bar(s', a~)))^2, a~ ~ pi_theta(s')
              (eqs. 55-56), w_e from c^i_e = N x^i_e - beta^i_e (eq. 40).
  actor       maximise mean_B Q_phi(s, f_theta(xi, s)) (eq. 62), minus ``ent`` x log pi.
  target      phi_bar <- (1 - tau) phi_bar + tau phi.
The paper's order is critic, actor, consensus; here the consensus of the policy updated at
step t-1 runs at the start of step t, before the critic — the same sequence of operations.

Choices the paper leaves open (documented, all parameters):
* Importance weights: ``weights = "selfnorm"`` (default) uses w_e = exp(clip(c_e, ±c_clip)),
  divided by its batch mean (self-normalised importance sampling: the loss scale stays that of
  an unweighted batch); ``"clip"`` the clipped weights alone; ``"none"`` w = 1.
* beta uses the Gaussian density of the pre-tanh action u stored with the experience: the
  tanh and the Box rescaling Jacobians are the same for both policies at the same action and
  cancel in the log-ratio.
* ``ent`` > 0 adds SAC's entropy term to eq. 62's objective. The paper has none (ent = 0); without
  it sigma collapses, the log-ratios of two narrow Gaussians explode, and every weight hits
  the clip. The default is small.
* Consensus ``mode``: ``batch`` (default; O(batch) bytes per edge per step), ``full`` (the
  paper: every buffer entry every step) or ``off``.

``isac`` is this learner with consensus and importance weights off (no peer messages at all).
Both take the deep policy-reciprocity plug-in (``pr_weight`` > 0, ``agentd.algorithms.plugins.deep_pr``):
the TD target then mixes in the neighbours' target values of the batch's next states.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from agentd.algorithms.base import Learner, LearnerConfigError, LearnerSpec, Outgoing, param
from agentd.algorithms.plugins.consensus import LogRatioConsensus
from agentd.algorithms.plugins.consensus_sums import RunningSumConsensus
from agentd.algorithms.plugins.deep_pr import PR_KINDS, DeepPR

MODES = ("batch", "full", "off")
WEIGHTS = ("selfnorm", "clip", "none")


@dataclass
class IsacParams:
    """Hyper-parameters shared by dac-deep and isac."""

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


@dataclass
class DacDeepParams(IsacParams):
    """isac's parameters plus the consensus and the importance weights."""

    mode: str = param("batch", choices=MODES)
    """consensus: batch (gossip on the shared update batch) | full (whole buffer) | off"""
    rounds: int = param(1, ge=1)
    """gossip rounds per step (batch mode; full mode always runs the paper's one round)"""
    weights: str = param("selfnorm", choices=WEIGHTS)
    """importance weights exp(c): selfnorm | clip | none"""
    c_clip: float = param(2.0, gt=0.0)
    """|c| is clipped to this before exp (weights within e^-2..e^2 by default)"""
    running_sums: bool = False
    """consensus by running sums (mass conserved when messages are lost; on by default with
    --peer-timeout or --link-schedule, see agentd.algorithms.plugins.consensus_sums)"""


class DacDeep(Learner):
    """Agent i of Algorithm 2 (one env agent, Box actions, global state observations)."""

    name = "dac-deep"
    Params = DacDeepParams
    peer_kinds = frozenset({"consensus"})
    needs_torch = True
    wants_state = True
    action_type = "box"
    obs_type = "box"
    follows_link_schedule = True
    act_ahead = True
    act_ahead_why = (
        "off-policy actor-critic: each transition is stored with the log-probability of the "
        "policy that acted (logp_old, the behaviour policy of beta, eq. 44), and the critic and "
        "actor steps sample the buffer, so acting with the policy one update older changes the "
        "data, not the update rule; consensus messages of a step a neighbour is ahead on wait "
        "for that step")
    act_ahead_off_with: ClassVar[dict[str, str]] = {
        "pr_weight": "deep policy reciprocity answers a neighbour's query with the networks "
                     "before this agent's update of the query's step; a neighbour acting ahead "
                     "can ask before that update has run"}

    @classmethod
    def permitted_kinds(cls, params: dict[str, Any]) -> frozenset[str]:
        kinds = set(cls.peer_kinds)
        if str(params.get("running_sums", False)).lower() in ("true", "1"):
            kinds = {"consensus_sum"}
        if params.get("mode") == "off":
            kinds.discard("consensus")
            kinds.discard("consensus_sum")
        if float(params.get("pr_weight", 0.0)) > 0:
            kinds |= PR_KINDS
        return frozenset(kinds)

    @classmethod
    def params_for_links(cls, params: dict[str, Any], links_fail: bool,
                         peer_timeout: float) -> dict[str, Any]:
        """Consensus by running sums when links may fail, unless the params say otherwise:
        plain gossip loses the mass of every lost message."""
        params = super().params_for_links(params, links_fail and not cls.follows_link_schedule,
                                          peer_timeout)
        if not cls.follows_link_schedule:
            return params
        if (links_fail or peer_timeout > 0) and "running_sums" not in params:
            params = {**params, "running_sums": True}
        if links_fail and str(params.get("running_sums")).lower() in ("false", "0"):
            raise LearnerConfigError(f"{cls.name} follows a link schedule only with "
                                     "running_sums = true")
        return params

    def __init__(self, spec: LearnerSpec) -> None:
        super().__init__(spec)
        self.peer_kinds = self.permitted_kinds(spec.params)
        from agentd.algorithms import nets

        self.nets = nets
        import torch

        self.torch = torch
        p = self.params
        obs_space, act_space = spec.obs_spaces[0], spec.act_spaces[0]
        if act_space.get("type") != "box" or obs_space.get("type") != "box":
            raise LearnerConfigError(
                f"{self.name} needs Box observation and action spaces; got observation "
                f"{obs_space.get('type')} and action {act_space.get('type')} (for MPE envs "
                "pass --env-arg continuous_actions=true)")
        self.obs_dim = int(np.prod(obs_space["shape"]))
        self.act_dim = int(np.prod(act_space["shape"]))
        self.low, self.high = nets.box_bounds(act_space)
        self.gen = nets.setup_torch(spec.seed, p.threads)
        self.actor = nets.SquashedGaussianActor(self.obs_dim, self.act_dim, p.hidden)
        self.critic = nets.Critic(self.obs_dim, self.act_dim, p.hidden)
        self.target = nets.Critic(self.obs_dim, self.act_dim, p.hidden)
        self.target.load_state_dict(self.critic.state_dict())
        self.opt_actor = torch.optim.Adam(self.actor.parameters(), lr=p.lr_actor)
        self.opt_critic = torch.optim.Adam(self.critic.parameters(), lr=p.lr_critic)
        m, K = p.buffer, spec.num_envs
        self.s = np.zeros((m, self.obs_dim), np.float32)
        self.s2 = np.zeros((m, self.obs_dim), np.float32)
        self.u = np.zeros((m, self.act_dim), np.float32)
        self.r = np.zeros(m, np.float32)
        self.done = np.zeros(m, np.float32)
        self.logp_old = np.zeros(m, np.float64)
        self.size = 0
        self.count = 0                          # entries ever stored (position = count % m)
        self.steps = 0                          # joint steps observed (the global step)
        self.k = K
        self.mode = getattr(p, "mode", "off") if spec.neighbours else "off"
        self.sums = bool(getattr(p, "running_sums", False))
        self.cons = RunningSumConsensus(m, spec.n_agents, spec.weights, spec.agent_id,
                                        spec.live) if self.sums else \
            LogRatioConsensus(m, spec.n_agents, spec.weights, spec.agent_id)
        self.batch_idx: np.ndarray | None = None
        self.last_idx = np.zeros(0, np.int64)
        self.pending_act: tuple[np.ndarray, np.ndarray] | None = None
        self.pr: DeepPR | None = None
        self.queries: list[Outgoing] = []
        if p.pr_weight > 0 and spec.neighbours:
            self.pr = DeepPR(spec.neighbours, p.pr_weight, p.pr_eps, p.pr_samples,
                             np.random.default_rng([spec.seed, 0x9E]))
            # the networks as they were before the last update (answers are timing-free)
            self.old_actor = nets.SquashedGaussianActor(self.obs_dim, self.act_dim, p.hidden)
            self.old_target = nets.Critic(self.obs_dim, self.act_dim, p.hidden)
            self.updated_at = 0                       # the step of the last update

    # -- acting and storing ----------------------------------------------------------------
    def act(self, obs: np.ndarray) -> np.ndarray:
        torch = self.torch
        with torch.no_grad():
            s = torch.tensor(np.asarray(obs, np.float32).reshape(len(obs), -1))
            mu, log_std = self.actor.dist(s)
            u = mu + log_std.exp() * torch.randn(mu.shape, generator=self.gen)
            logp = self.nets.gaussian_logp(u, mu, log_std)
        u_np = u.numpy()
        self.pending_act = (u_np, logp.numpy().astype(np.float64))
        a = np.tanh(u_np)
        return (self.low + 0.5 * (a + 1.0) * (self.high - self.low)).astype(np.float32)

    def observe(self, obs, action, reward, next_obs, terminated, truncated) -> None:
        assert self.pending_act is not None, "observe before act"
        u, logp = self.pending_act
        pos = (self.count + np.arange(self.k)) % len(self.r)
        self.s[pos] = np.asarray(obs, np.float32).reshape(self.k, -1)
        self.s2[pos] = np.asarray(next_obs, np.float32).reshape(self.k, -1)
        self.u[pos] = u
        self.r[pos] = reward
        self.done[pos] = terminated
        self.logp_old[pos] = logp
        if self.sums:
            self.cons.t_now = self.steps + 1
        self.cons.reset_entries(pos)
        self.count += self.k
        self.size = min(self.size + self.k, len(self.r))
        self.steps += 1
        self.batch_idx = None
        if self.size >= self.params.start:
            self._begin_update()

    def on_gap(self, steps: int) -> None:
        """Restored after ``steps`` joint steps without this agent: skip their buffer positions
        so the buffer stays aligned by the global step with the neighbours' (those positions
        keep this agent's older entries; their beta and x start over)."""
        if steps <= 0:
            return
        pos = (self.count + np.arange(steps * self.k)) % len(self.r)
        if self.sums:
            self.cons.t_now = self.steps + steps
        self.cons.reset_entries(pos)
        self.count += steps * self.k
        self.size = min(self.size + steps * self.k, len(self.r))
        self.steps += steps

    def _begin_update(self) -> None:
        """Choose this step's batch, ask the neighbours for their values of its next states
        (PR on) and start the gossip on it (consensus on)."""
        p = self.params
        if self.mode == "batch":
            shared = np.random.default_rng([self.spec.shared_seed, 0xDAC, self.steps])
            self.batch_idx = shared.integers(0, self.size, p.batch)
        else:
            self.batch_idx = self.rng.integers(0, self.size, p.batch)
        if self.pr is not None:
            self.queries = self.pr.query(self.steps, self.s2[self.batch_idx])
        if self.mode == "batch":
            entries, prefix, rounds = self.batch_idx, False, p.rounds
        else:
            if self.mode == "off":
                return
            entries, prefix, rounds = np.arange(self.size), True, 1
        self.cons.local_update(entries, self._beta(entries))
        self.cons.start(self.steps, entries, rounds, prefix)

    def _beta(self, idx: np.ndarray) -> np.ndarray:
        """beta^i_e = log pi_theta(u_e|s_e) - log pi_old(u_e|s_e) (eq. 44)."""
        torch = self.torch
        out = np.empty(len(idx))
        for lo in range(0, len(idx), 8192):
            part = idx[lo:lo + 8192]
            with torch.no_grad():
                logp = self.actor.log_prob_u(torch.as_tensor(self.s[part]),
                                             torch.as_tensor(self.u[part]))
            out[lo:lo + 8192] = logp.numpy().astype(np.float64) - self.logp_old[part]
        return out

    # -- messages --------------------------------------------------------------------------
    def outbox(self) -> list[Outgoing]:
        if self.sums:
            out = [Outgoing("consensus_sum", j, {"t": t, "r": r, "idx": idx, "s": s, "w": w})
                   for j, t, r, idx, s, w in self.cons.pending_messages()]
        else:
            out = [Outgoing("consensus", j, {"t": t, "r": r, "idx": idx, "x": x})
                   for t, r, idx, x in self.cons.pending_messages()
                   for j in self.spec.neighbours]
        if self.pr is not None:
            out += self.queries + self.pr.outbox()
            self.queries = []
        return out

    def inbox(self, src: int, kind: str, body: dict[str, Any]) -> None:
        if kind == "consensus" and "consensus" in self.peer_kinds:
            self.cons.receive(src, body["t"], body["r"], body["idx"], body["x"])
        elif kind == "consensus_sum" and "consensus_sum" in self.peer_kinds:
            self.cons.receive(src, body["t"], body["r"], body["idx"], body["s"])
        elif kind in PR_KINDS and self.pr is not None:
            self.pr.receive(src, kind, body, self.target_values)
        else:
            raise LearnerConfigError(f"{self.name} does not accept '{kind}' messages")

    def peers_silent(self, silent: frozenset[int]) -> bool:
        """Running sums can go ahead without a silent neighbour (its mass comes later)."""
        if not self.sums or (self.pr is not None and silent & self.pr.waiting_for()):
            return False
        self.cons.give_up(silent)
        return True

    def awaiting(self) -> frozenset[int]:
        waiting = self.cons.waiting_for()
        return waiting | self.pr.waiting_for() if self.pr is not None else waiting

    def target_values(self, states: np.ndarray, qid: int) -> np.ndarray | None:
        """V_bar(s) = Q_bar(s, tanh(mu(s))) with the networks as they were before this agent's
        update of step qid (a PR neighbour's query); None if the states do not fit."""
        if states.ndim != 2 or states.shape[1] != self.obs_dim or len(states) > 1 << 16 \
                or not np.all(np.isfinite(states)):
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
        """Importance weights w_e from c^i_e (eq. 40), as chosen by ``weights``."""
        how = getattr(self.params, "weights", "none")
        if how == "none" or self.mode == "off":
            return np.ones(len(idx))
        w = np.exp(np.clip(self.cons.c(idx), -self.params.c_clip, self.params.c_clip))
        return w / w.mean() if how == "selfnorm" else w

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

    def update(self) -> dict[str, float]:
        if self.batch_idx is None:
            return {}
        torch, p = self.torch, self.params
        missing = self.cons.finish() if self.mode != "off" else 0
        idx = self.batch_idx
        self.last_idx, self.batch_idx = idx, None
        w_np = self.weights(idx)
        s, s2 = torch.as_tensor(self.s[idx]), torch.as_tensor(self.s2[idx])
        a = torch.tanh(torch.as_tensor(self.u[idx]))
        r, done = torch.as_tensor(self.r[idx]), torch.as_tensor(self.done[idx])
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
        self.opt_critic.zero_grad()
        critic_loss.backward()
        self.opt_critic.step()
        _, a_new, logp = self.actor.sample(s, self.gen)
        q_new = self.critic(s, a_new)
        actor_loss = (p.ent * logp - q_new).mean()               # eq. 62 (+ entropy)
        self.opt_actor.zero_grad()
        actor_loss.backward()
        self.opt_actor.step()
        self.nets.polyak(self.target, self.critic, p.tau)
        c = self.cons.c(idx)
        return {"critic_loss": critic_loss.item(), "actor_loss": actor_loss.item(),
                "q": q_new.mean().item(), "entropy": -logp.mean().item(),
                "c_abs": float(np.abs(c).mean()), "w_max": float(w_np.max()),
                "neighbours_missing": float(missing + pr_missing),
                "rejected": float(self.cons.rejected + (self.pr.rejected if self.pr else 0))}

    # -- checkpoints -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Networks, the consensus estimates of the filled entries and the last batch (for
        the offline consensus diagnostic). The replay buffer itself is not checkpointed."""
        nets = self.nets
        return {**nets.module_arrays("actor", self.actor),
                **nets.module_arrays("critic", self.critic),
                **nets.module_arrays("target", self.target),
                "beta": self.cons.beta[:self.size].copy(), "x": self.cons.x[:self.size].copy(),
                "last_idx": self.last_idx.copy(), "steps": np.array(self.steps)}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        nets = self.nets
        nets.load_module_arrays("actor", self.actor, state)
        nets.load_module_arrays("critic", self.critic, state)
        nets.load_module_arrays("target", self.target, state)
        n = len(state["beta"])
        self.cons.beta[:n], self.cons.x[:n] = state["beta"], state["x"]
        self.size = max(self.size, n)
        self.last_idx = np.asarray(state["last_idx"], np.int64)
        self.steps = int(state["steps"])


class Isac(DacDeep):
    """Independent soft actor-critic: dac-deep without consensus or importance weights."""

    name = "isac"
    Params = IsacParams
    peer_kinds = frozenset()
    follows_link_schedule = False      # no consensus: nothing to keep over failing links
    act_ahead_why = ("off-policy soft actor-critic without messages: the buffer keeps the "
                     "behaviour's actions, so a one-update policy lag changes the data only")
