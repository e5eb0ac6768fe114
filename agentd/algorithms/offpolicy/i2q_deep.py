"""Deep I2Q (Jiang & Lu, NeurIPS 2022): iql-deep plus a forward model and a QSS value.

Agent i keeps, privately, on top of iql-deep's Q(s, a_i), its target and its buffer:

    f(s, a_i)    a forward model of the ideal next state (predicts s + delta)
    Q_ss(s, s')  a value of transitions, with a target copy Q_ss_bar

and per update, on a minibatch (s, a_i, r, s', terminated):

  (1) f maximises  lambda Q_ss(s, f(s, a_i)) - ||f(s, a_i) - s'||^2,
      lambda = lam / mean |Q_ss(s, f(s, a_i))| (normalised, no gradient through it);
  (2) Q_ss(s, s') regresses to  r + gamma (1 - terminated) Q_ss_bar(s', f(s', argmax_a Q(s', a)));
  (3) Q(s, a_i) regresses to  r + gamma (1 - terminated) Q_bar(s^, a*)  (double DQN's target),
      s^ = f(s, a_i) where Q_ss(s, f(s, a_i)) > Q_ss(s, s'), else the real s' — the official
      code's guard: the model's state is used only where the QSS value says it is better.

The targets Q_bar and Q_ss_bar are copied every ``target_every`` updates. The theory needs the
global state, so the learner asks for it (``wants_state``; obs "auto" becomes "state"). Box (or
one-hot Discrete) states, Discrete actions, no messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agentd.algorithms.base import param
from agentd.algorithms.offpolicy.iql_deep import DqnParams, IqlDeep, double_dqn_target


@dataclass
class I2qDeepParams(DqnParams):
    """Double DQN's parameters plus the forward model's weight."""

    lam: float = param(0.01, ge=0.0)
    """alpha of lambda = alpha / mean|Q_ss(s, f)| (the official code swept 0.005..0.05)"""


class I2qDeep(IqlDeep):
    """iql-deep whose TD target looks at the ideal next state its forward model proposes."""

    name = "i2q-deep"
    Params = I2qDeepParams
    wants_state = True
    takes_images = False        # the forward model predicts next states, not next images
    act_ahead_why = ("off-policy like iql-deep: the forward model, Q_ss and Q train on replayed "
                     "transitions, whichever policy collected them")

    def build_networks(self) -> None:
        super().build_networks()
        p, nets, torch = self.params, self.nets, self.torch
        d, n = self.obs_dim, self.n_actions
        self.f = nets.mlp([d + n, p.hidden, p.hidden, d])
        self.qss = nets.mlp([2 * d, p.hidden, p.hidden, 1])
        self.qss_bar = nets.mlp([2 * d, p.hidden, p.hidden, 1])
        self.qss_bar.load_state_dict(self.qss.state_dict())
        self.opt_f = torch.optim.Adam(self.f.parameters(), lr=p.lr)
        self.opt_qss = torch.optim.Adam(self.qss.parameters(), lr=p.lr)

    def predict(self, s: Any, a: Any) -> Any:
        """f(s, a_i) = s + delta(s, a_i)."""
        one_hot = self.torch.nn.functional.one_hot(a, self.n_actions).float()
        return s + self.f(self.torch.cat([s, one_hot], dim=-1))

    def value_ss(self, net: Any, s: Any, s2: Any) -> Any:
        return net(self.torch.cat([s, s2], dim=-1)).squeeze(-1)

    def update(self) -> dict[str, float]:
        out = {"epsilon": self.epsilon()}
        if not self.ready():
            return out
        torch, p = self.torch, self.params
        s, a, r, s2, done = self.sample()
        with torch.no_grad():                                                   # (2)
            f2 = self.predict(s2, self.q(s2).argmax(dim=1))
            y_ss = r + p.gamma * (1.0 - done) * self.value_ss(self.qss_bar, s2, f2)
        qss_loss = ((self.value_ss(self.qss, s, s2) - y_ss) ** 2).mean()
        self.opt_qss.zero_grad()
        qss_loss.backward()
        self.opt_qss.step()
        pred = self.predict(s, a)                                               # (1)
        v = self.value_ss(self.qss, s, pred)
        lam = p.lam / v.detach().abs().mean().clamp_min(1e-6)
        model_err = ((pred - s2) ** 2).sum(dim=-1).mean()
        f_loss = -lam * v.mean() + model_err
        self.opt_f.zero_grad()
        f_loss.backward()
        self.opt_f.step()
        y, better = self.ideal_target(s, a, r, s2, done)                       # (3)
        out["q_loss"] = self.q_step(s, a, y)
        if self.updates % p.target_every == 0:
            self.qss_bar.load_state_dict(self.qss.state_dict())
        return {**out, "qss_loss": qss_loss.item(), "model_err": model_err.item(),
                "ideal_used": better.float().mean().item()}

    def ideal_target(self, s: Any, a: Any, r: Any, s2: Any, done: Any) -> tuple[Any, Any]:
        """(3)'s target and, per row, whether the model's state s^ = f(s, a_i) was used."""
        with self.torch.no_grad():
            pred = self.predict(s, a)
            better = self.value_ss(self.qss, s, pred) > self.value_ss(self.qss, s, s2)
            s_hat = self.torch.where(better.unsqueeze(1), pred, s2)
            y = double_dqn_target(self.q(s_hat), self.q_bar(s_hat), r, done, self.params.gamma)
        return y, better

    def modules(self) -> dict[str, Any]:
        return {**super().modules(), "f": self.f, "qss": self.qss, "qss_bar": self.qss_bar}

    def optimisers(self) -> dict[str, Any]:
        return {**super().optimisers(), "opt_f": self.opt_f, "opt_qss": self.opt_qss}
