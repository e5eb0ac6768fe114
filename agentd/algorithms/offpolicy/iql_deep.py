"""Deep independent Q-learning: a private double DQN per agent, for Discrete actions.

Agent i keeps Q_theta(o, .) over its own actions, a target copy Q_bar, an Adam optimiser and
a replay buffer of its own (o, a^i, r, o', terminated). Per joint step, once ``start`` entries
are stored (and every ``train_every`` steps), one minibatch of ``batch`` entries:

    a*  = argmax_a Q_theta(o', a)                              double DQN: the online net picks
    y   = r + gamma (1 - terminated) Q_bar(o', a*)             ... and the target net values it
    loss = mean Huber(Q_theta(o, a^i) - y)

and every ``target_every`` updates Q_bar <- Q_theta. Behaviour is epsilon-greedy, epsilon
falling linearly from ``eps_start`` to ``eps_end`` over ``eps_steps`` joint steps. No messages.

Observations: the core's encoder (a Box vector flattened, a Discrete one one-hot, an image
through a small CNN in front of Q). Truncation bootstraps (a time limit is not the end of the
MDP). The checkpoint holds the networks, Adam's moments, the filled buffer and its write
position, the counters and the RNG states, so a restored learner continues exactly where it
was. ``ma2ql-deep`` and ``i2q-deep`` build on this class; the replay buffer, the encoder and the
checkpoints are the off-policy core's (``agentd.algorithms.offpolicy.core``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from agentd.algorithms.base import LearnerConfigError, LearnerSpec, param
from agentd.algorithms.offpolicy.buffer import Fields
from agentd.algorithms.offpolicy.core import OffPolicyLearner
from agentd.algorithms.tabular.iql import epsilon_greedy


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


class IqlDeep(OffPolicyLearner):
    """Agent i's private double DQN on its own action."""

    name = "iql-deep"
    Params = DqnParams
    action_type = "discrete"
    act_ahead = True
    act_ahead_why = ("off-policy double DQN without messages: epsilon-greedy on a Q one update "
                     "older is still a behaviour policy the replay buffer's TD update allows")

    def __init__(self, spec: LearnerSpec) -> None:
        self.n_actions = 0
        super().__init__(spec)
        self.updates = 0          # gradient steps taken

    def check_spaces(self, spec: LearnerSpec) -> None:
        super().check_spaces(spec)
        act = spec.act_spaces[0]
        if act.get("type") != "discrete":
            raise LearnerConfigError(
                f"{self.name} needs a Discrete action space, got {act.get('type')} (for MPE "
                "envs leave continuous_actions unset)")
        self.n_actions = int(act["n"])

    def build_networks(self) -> None:
        """Q, its target and the optimiser (subclasses add their own networks after these)."""
        p, nets, torch, enc = self.params, self.nets, self.torch, self.encoder
        self.obs_dim, self.encode = enc.width, enc.prepare
        self.q = enc.wrap(nets.mlp([enc.width, p.hidden, p.hidden, self.n_actions]))
        self.q_bar = enc.wrap(nets.mlp([enc.width, p.hidden, p.hidden, self.n_actions]))
        self.q_bar.load_state_dict(self.q.state_dict())
        self.opt = torch.optim.Adam(self.q.parameters(), lr=p.lr)

    def buffer_fields(self) -> Fields:
        row = (self.encoder.row_shape, self.encoder.row_dtype)
        return {"s": row, "s2": row, "a": ((), np.int64), "r": ((), np.float32),
                "done": ((), np.float32)}

    # -- acting and storing ----------------------------------------------------------------
    def epsilon(self) -> float:
        p = self.params
        frac = min(1.0, self.steps / p.eps_steps)
        return p.eps_start + frac * (p.eps_end - p.eps_start)

    def act(self, obs: np.ndarray) -> np.ndarray:
        with self.torch.no_grad():
            q = self.q(self.torch.as_tensor(self.encode(obs))).numpy()
        return epsilon_greedy(self.rng, q, self.epsilon())

    def act_eval(self, obs: np.ndarray) -> np.ndarray:
        with self.torch.no_grad():
            q = self.q(self.torch.as_tensor(self.encode(obs))).numpy()
        return q.argmax(axis=1)

    def entry(self, obs, action, reward, next_obs, terminated) -> dict[str, np.ndarray]:
        return {"s": self.encode(obs), "s2": self.encode(next_obs),
                "a": np.asarray(action, np.int64).reshape(-1),
                "r": np.asarray(reward, np.float32), "done": np.asarray(terminated, np.float32)}

    # -- learning --------------------------------------------------------------------------
    def ready(self) -> bool:
        return super().ready() and self.steps % self.params.train_every == 0

    def sample(self) -> tuple[Any, ...]:
        """A uniform minibatch (s, a, r, s', terminated) as tensors."""
        b = self.batch(self.buf.sample(self.params.batch))
        return b["s"], b["a"], b["r"], b["s2"], b["done"]

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
        s, a, r, s2, done = self.sample()
        out["q_loss"] = self.q_step(s, a, self.td_target(s2, r, done))
        return out

    # -- checkpoints -----------------------------------------------------------------------
    def modules(self) -> dict[str, Any]:
        return {"q": self.q, "q_bar": self.q_bar}

    def optimisers(self) -> dict[str, Any]:
        return {"opt": self.opt}

    def state_dict(self) -> dict[str, np.ndarray]:
        return {**super().state_dict(), "updates": np.array(self.updates)}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        super().load_state_dict(state)
        self.updates = int(state["updates"])
