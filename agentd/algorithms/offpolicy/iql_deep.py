"""Deep independent Q-learning: a private double DQN per agent, for Discrete actions.

Agent i keeps Q_theta(o, .) over its own actions, a target copy Q_bar, an Adam optimiser and
a replay buffer of its own (o, a^i, r, o', terminated). Per joint step, once ``start`` entries
are stored (and every ``train_every`` steps), one minibatch of ``batch`` entries:

    a*  = argmax_a Q_theta(o', a)                              double DQN: the online net picks
    y   = r + gamma (1 - terminated) Q_bar(o', a*)             ... and the target net values it
    loss = mean Huber(Q_theta(o, a^i) - y)

and every ``target_every`` updates Q_bar <- Q_theta. Behaviour is epsilon-greedy, epsilon
falling linearly from ``eps_start`` to ``eps_end`` over ``eps_steps`` joint steps. No messages.

Observations: a Box is flattened; a Discrete one is one-hot encoded. Truncation bootstraps
(a time limit is not the end of the MDP). The recovery checkpoint holds the networks, Adam's
moments, the filled buffer and its write position, the counters and the RNG state, so a restored
learner continues exactly where it was. ``ma2ql-deep`` and ``i2q-deep`` build on this class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from agentd.algorithms.base import Learner, LearnerConfigError, LearnerSpec, param
from agentd.algorithms.offpolicy.buffer import ReplayBuffer, rng_state, set_rng_state
from agentd.algorithms.tabular.iql import epsilon_greedy

MAX_ONE_HOT = 4096          # a larger Discrete observation is a job for the tabular learners


@dataclass
class DqnParams:
    """Hyper-parameters of a per-agent double DQN."""

    gamma: float = param(0.95, ge=0.0, lt=1.0)
    """discount factor"""
    lr: float = param(5e-4, gt=0.0, le=1.0)
    """Adam step size"""
    batch: int = param(64, ge=1)
    """experiences per update"""
    buffer: int = param(50_000, ge=1)
    """replay buffer capacity (entries; K per joint step)"""
    start: int = 1_000
    """entries in the buffer before updates begin"""
    hidden: int = param(64, ge=1)
    """units in each of the two hidden layers"""
    eps_start: float = param(1.0, ge=0.0, le=1.0)
    """epsilon at step 0"""
    eps_end: float = param(0.05, ge=0.0, le=1.0)
    """epsilon after eps_steps joint steps"""
    eps_steps: int = param(20_000, ge=1)
    """joint steps of the linear epsilon decay"""
    target_every: int = param(200, ge=1)
    """updates between copies of the online network into the target"""
    train_every: int = param(1, ge=1)
    """joint steps between updates"""
    threads: int = param(1, ge=1)
    """torch intra-op threads in this process (N agent processes share the cores)"""

    def check(self) -> None:
        if not self.batch <= self.start <= self.buffer:
            raise LearnerConfigError(f"need batch <= start <= buffer, got {self.batch}, "
                                     f"{self.start}, {self.buffer}")


def double_dqn_target(q_online_next: Any, q_target_next: Any, r: Any, done: Any,
                      gamma: float) -> Any:
    """y = r + gamma (1 - done) Q_bar(o', argmax_a Q(o', a)) (torch tensors, no gradient)."""
    best = q_online_next.argmax(dim=1, keepdim=True)
    return r + gamma * (1.0 - done) * q_target_next.gather(1, best).squeeze(1)


class _Flatten:
    """Box observations as float32 rows (a copy: obs may be read-only); a class, not a
    closure, so a learner holding it pickles into its recovery checkpoint."""

    def __init__(self, width: int) -> None:
        self.width = width

    def __call__(self, o: Any) -> np.ndarray:
        return np.array(o, np.float32).reshape(len(o), self.width)


class _OneHot:
    """Discrete observations as one-hot float32 rows."""

    def __init__(self, n: int) -> None:
        self.eye = np.eye(n, dtype=np.float32)

    def __call__(self, o: Any) -> np.ndarray:
        return self.eye[np.asarray(o, np.int64).reshape(-1)]


def encoder(space: dict, algo: str) -> tuple[int, Any]:
    """(input width, obs -> float32 rows) for a Box (flattened) or Discrete (one-hot) space."""
    if space.get("type") == "box":
        width = int(np.prod(space["shape"]))
        return width, _Flatten(width)
    if space.get("type") == "discrete":
        n = int(space["n"])
        if n > MAX_ONE_HOT:
            raise LearnerConfigError(f"{algo}: a Discrete observation of {n} values is one-hot "
                                     f"encoded and must have at most {MAX_ONE_HOT} (use the "
                                     "tabular learner)")
        return n, _OneHot(n)
    raise LearnerConfigError(f"{algo} needs Box or Discrete observations, got {space}")


class IqlDeep(Learner):
    """Agent i's private double DQN on its own action."""

    name = "iql-deep"
    Params = DqnParams
    needs_torch = True
    action_type = "discrete"
    act_ahead = True
    act_ahead_why = ("off-policy double DQN without messages: epsilon-greedy on a Q one update "
                     "older is still a behaviour policy the replay buffer's TD update allows")

    def __init__(self, spec: LearnerSpec) -> None:
        super().__init__(spec)
        import torch

        from agentd.algorithms import nets

        self.torch, self.nets = torch, nets
        if len(spec.controls) != 1:
            raise LearnerConfigError(f"{self.name} controls exactly one env agent")
        act = spec.act_spaces[0]
        if act.get("type") != "discrete":
            raise LearnerConfigError(
                f"{self.name} needs a Discrete action space, got {act.get('type')} (for MPE "
                "envs leave continuous_actions unset)")
        p = self.params
        self.n_actions = int(act["n"])
        self.obs_dim, self.encode = encoder(spec.obs_spaces[0], self.name)
        self.gen = nets.setup_torch(spec.seed, p.threads)
        self.build_networks()
        self.buf = ReplayBuffer(p.buffer, self.obs_dim)
        self.steps = 0            # joint steps observed
        self.updates = 0          # gradient steps taken

    def build_networks(self) -> None:
        """Q, its target and the optimiser (subclasses add their own networks after these)."""
        p, nets, torch = self.params, self.nets, self.torch
        self.q = nets.mlp([self.obs_dim, p.hidden, p.hidden, self.n_actions])
        self.q_bar = nets.mlp([self.obs_dim, p.hidden, p.hidden, self.n_actions])
        self.q_bar.load_state_dict(self.q.state_dict())
        self.opt = torch.optim.Adam(self.q.parameters(), lr=p.lr)

    # -- acting and storing ----------------------------------------------------------------
    def epsilon(self) -> float:
        p = self.params
        frac = min(1.0, self.steps / p.eps_steps)
        return p.eps_start + frac * (p.eps_end - p.eps_start)

    def act(self, obs: np.ndarray) -> np.ndarray:
        with self.torch.no_grad():
            q = self.q(self.torch.as_tensor(self.encode(obs))).numpy()
        return epsilon_greedy(self.rng, q, self.epsilon())

    def observe(self, obs, action, reward, next_obs, terminated, truncated) -> None:
        self.buf.add(self.encode(obs), np.asarray(action, np.int64).reshape(-1),
                     np.asarray(reward, np.float32), self.encode(next_obs),
                     np.asarray(terminated, np.float32))
        self.steps += 1

    # -- learning --------------------------------------------------------------------------
    def ready(self) -> bool:
        p = self.params
        return self.buf.size >= p.start and self.steps % p.train_every == 0

    def batch(self) -> tuple[Any, ...]:
        """A uniform minibatch (s, a, r, s', terminated) as tensors."""
        idx = self.buf.sample(self.rng, self.params.batch)
        b, t = self.buf, self.torch
        return (t.as_tensor(b.s[idx]), t.as_tensor(b.a[idx]), t.as_tensor(b.r[idx]),
                t.as_tensor(b.s2[idx]), t.as_tensor(b.done[idx]))

    def td_target(self, s2: Any, r: Any, done: Any) -> Any:
        with self.torch.no_grad():
            return double_dqn_target(self.q(s2), self.q_bar(s2), r, done, self.params.gamma)

    def q_step(self, s: Any, a: Any, y: Any) -> float:
        """One Adam step on mean Huber(Q(s, a) - y); the target copy when due."""
        q_sa = self.q(s).gather(1, a.unsqueeze(1)).squeeze(1)
        loss = self.torch.nn.functional.smooth_l1_loss(q_sa, y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        self.updates += 1
        if self.updates % self.params.target_every == 0:
            self.q_bar.load_state_dict(self.q.state_dict())
        return loss.item()

    def update(self) -> dict[str, float]:
        out = {"epsilon": self.epsilon()}
        if not self.ready():
            return out
        s, a, r, s2, done = self.batch()
        out["q_loss"] = self.q_step(s, a, self.td_target(s2, r, done))
        return out

    # -- checkpoints -----------------------------------------------------------------------
    def modules(self) -> dict[str, Any]:
        return {"q": self.q, "q_bar": self.q_bar}

    def optimisers(self) -> dict[str, Any]:
        return {"opt": self.opt}

    def state_dict(self) -> dict[str, np.ndarray]:
        nets = self.nets
        out: dict[str, np.ndarray] = {}
        for name, module in self.modules().items():
            out.update(nets.module_arrays(name, module))
        for name, opt in self.optimisers().items():
            out.update(nets.optimizer_arrays(name, opt))
        return {**out, **self.buf.state_dict(), "steps": np.array(self.steps),
                "updates": np.array(self.updates), "rng": rng_state(self.rng)}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        nets = self.nets
        for name, module in self.modules().items():
            nets.load_module_arrays(name, module, state)
        for name, opt in self.optimisers().items():
            nets.load_optimizer_arrays(name, opt, state)
        self.buf.load_state_dict(state)
        self.steps, self.updates = int(state["steps"]), int(state["updates"])
        set_rng_state(self.rng, state["rng"])
