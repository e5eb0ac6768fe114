"""The IPD as a differentiable game, and the update rules of the opponent-shaping family.

Imported only from inside a shaping learner's ``__init__`` (torch is loaded there, never at
registry or config time). Everything is float64 on the CPU, so a replay is bit for bit.

A policy is a 5 x 2 table of logits over (state, action), states coded from the agent's own
seat (``agentd.envs.ipd``): pi(a | s) = softmax(theta[s])[a]. A *value function* is a
callable ``values(theta_self, theta_other) -> (V_self, V_other)`` giving both agents'
discounted returns; two are built here:

* ``exact_values``: the 5-state Markov chain in closed form (LOLA's exact setting),
      V = x0^T (I - gamma P)^-1 R,
  x0 the distribution of the first joint action, P the 4 x 4 transition matrix between joint
  actions, R the payoff of each joint action.
* ``dice_values``: the DiCE surrogate on K logged episodes (Foerster et al. 2018): its value
  is the mean discounted return, and its derivatives of every order are estimates of V's.

The rules (Kim et al. 2021, eq. 3, 6, 7) take a value function, so the exact and the sampled learners
share them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from agentd.envs.ipd import SWAP

Tensor = torch.Tensor
Values = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]
_SWAP = torch.as_tensor(SWAP)


def tensor(x: np.ndarray, grad: bool = False) -> Tensor:
    """A float64 leaf tensor (a copy) of x."""
    return torch.tensor(np.asarray(x, dtype=np.float64), requires_grad=grad)


def outcome_probs(theta_self: Tensor, theta_other: Tensor) -> Tensor:
    """(5, 4): from each of my states, P(joint action CC, CD, DC, DD), own letter first."""
    p = torch.softmax(theta_self, dim=-1)[:, 0]                 # P(I cooperate | s)
    q = torch.softmax(theta_other, dim=-1)[_SWAP, 0]            # P(other cooperates | s)
    return torch.stack([p * q, p * (1 - q), (1 - p) * q, (1 - p) * (1 - q)], dim=1)


def chain_value(theta_self: Tensor, theta_other: Tensor, payoff: Tensor, gamma: float
                ) -> Tensor:
    """My discounted return sum_t gamma^t r_t = x0^T (I - gamma P)^-1 R, in closed form."""
    out = outcome_probs(theta_self, theta_other)
    x0, transitions = out[0], out[1:]            # state 1 + o follows joint action o
    eye = torch.eye(4, dtype=out.dtype)
    return x0 @ torch.linalg.solve(eye - gamma * transitions, payoff.reshape(4))


def exact_values(payoff_self: np.ndarray, payoff_other: np.ndarray, gamma: float) -> Values:
    """Both agents' values in closed form; each payoff is that agent's own-seat 2 x 2 table."""
    r_self, r_other = tensor(payoff_self), tensor(payoff_other)

    def values(theta_self: Tensor, theta_other: Tensor) -> tuple[Tensor, Tensor]:
        return (chain_value(theta_self, theta_other, r_self, gamma),
                chain_value(theta_other, theta_self, r_other, gamma))
    return values


def magic_box(x: Tensor) -> Tensor:
    """DiCE's operator: equals 1, and its derivative is x's derivative times itself."""
    return torch.exp(x - x.detach())


def dice_values(batch: dict[str, np.ndarray], gamma: float, baseline: bool = True) -> Values:
    """Both agents' DiCE surrogates on a batch of K logged episodes (arrays (H, K)):
    ``state`` (my seat), ``own``/``other`` actions, ``reward``/``reward_other``.

    With ``baseline`` the objective also gets Mao et al.'s (2019) DiCE baseline term

        sum_t (1 - box(w_t)) * box(W_{<t}) * b_t,

    w_t the step's own log-probabilities, W_{<t} all those before it, b_t the leave-one-out
    mean (over the other K - 1 episodes) of the discounted reward-to-go. Its value is 0 and it
    leaves every expectation unchanged; the box(W_{<t}) factor makes it a control variate of
    the second-order terms too (LOLA's shaping term), not only of the first-order gradient as
    the original DiCE baseline (1 - box(w_t)) * b_t is."""
    state, own = torch.as_tensor(batch["state"]), torch.as_tensor(batch["own"])
    other = torch.as_tensor(batch["other"])
    horizon, k = state.shape
    disc = gamma ** torch.arange(horizon, dtype=torch.float64)[:, None]
    rewards = [tensor(batch["reward"]), tensor(batch["reward_other"])]

    def surrogate(nodes: Tensor, reward: Tensor) -> Tensor:
        deps = torch.cumsum(nodes, dim=0)                 # all log-probs up to and incl. t
        objective = (magic_box(deps) * disc * reward).sum(0).mean()
        if baseline and k > 1:
            to_go = torch.flip(torch.cumsum(torch.flip(disc * reward, [0]), 0), [0])
            loo = (to_go.sum(1, keepdim=True) - to_go) / (k - 1)
            before = deps - nodes                         # log-probs strictly before t
            term = (1 - magic_box(nodes)) * magic_box(before) * loo
            objective = objective + term.sum(0).mean()
        return objective

    def values(theta_self: Tensor, theta_other: Tensor) -> tuple[Tensor, Tensor]:
        logp_self = torch.log_softmax(theta_self, -1)[state, own]
        logp_other = torch.log_softmax(theta_other, -1)[_SWAP[state], other]
        nodes = logp_self + logp_other
        return surrogate(nodes, rewards[0]), surrogate(nodes, rewards[1])
    return values


# -- the update rules ---------------------------------------------------------------------
def gradient(f: Tensor, x: Tensor) -> np.ndarray:
    """df/dx as a numpy array."""
    return torch.autograd.grad(f, x)[0].numpy()


def naive_step(values: Values, theta_self: Tensor, theta_other: Tensor) -> Tensor:
    """The naive learner's direction: grad_self V_self, the opponent held fixed (eq. 1)."""
    v_self, _ = values(theta_self, theta_other)
    return torch.autograd.grad(v_self, theta_self)[0]


def lola_step(values: Values, theta_self: Tensor, theta_other: Tensor, eta: float) -> Tensor:
    """LOLA's direction (seed eq. 6, LOLA's first-order Taylor look-ahead):

        grad_self V_self + eta * grad_self( stop(grad_other V_self) . grad_other V_other )

    i.e. the opponent's predicted step Delta theta_other = eta grad_other V_other (a naive
    learner's step), and how my parameters shape it. Stopping the gradient through
    grad_other V_self is the official exact LOLA (``pseudo=False``)."""
    v_self, v_other = values(theta_self, theta_other)
    g_self, g_other_self = torch.autograd.grad(v_self, (theta_self, theta_other),
                                               retain_graph=True)
    g_other = torch.autograd.grad(v_other, theta_other, create_graph=True)[0]
    coupling = (g_other_self.detach() * g_other).sum()
    shaping = torch.autograd.grad(coupling, theta_self)[0]
    return g_self + eta * shaping


def meta_value(values: Values, theta_self: Tensor, theta_other: Tensor, inner_lr: float,
               chain: int, shape_opponent: bool) -> Tensor:
    """The meta-value (1/L) sum_{j=1..L} V_self(phi_j) along the inner-loop chain (eq. 2, 3)

        phi_0 = theta,  phi_{j+1}^i = phi_j^i + inner_lr * grad_i V_i(phi_j)  (both agents).

    Its gradient in theta_self flows through my own adapted parameters (the self-shaping term
    of eq. 4 and 7) and, with ``shape_opponent``, through the opponent's adapted parameters
    too (eq. 7's opponent-shaping term: Meta-MAPG). Without it the opponent's chain sees my
    parameters as constants (Meta-PG, Al-Shedivat et al.): it still reacts to me, but the
    meta-gradient ignores that it does."""
    phi_self, phi_other, total = theta_self, theta_other, theta_self.new_zeros(())
    for _ in range(chain):
        v_self, _ = values(phi_self, phi_other)
        g_self = torch.autograd.grad(v_self, phi_self, create_graph=True)[0]
        seen = phi_self if shape_opponent else phi_self.detach()
        _, v_other = values(seen, phi_other)
        g_other = torch.autograd.grad(v_other, phi_other, create_graph=True)[0]
        phi_self, phi_other = phi_self + inner_lr * g_self, phi_other + inner_lr * g_other
        total = total + values(phi_self, phi_other)[0]
    return total / chain
