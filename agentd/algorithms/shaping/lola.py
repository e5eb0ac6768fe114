"""LOLA, Learning with Opponent-Learning Awareness (Foerster et al. 2018; eq. 5, 6 of Kim et al. 2021).

At each episode's end the agent climbs its value at the opponent's *predicted next* policy,
to first order in the opponent's naive step Delta theta_other = eta * grad_other V_other:

    theta <- theta + lr * [ grad_self V_self
                            + eta * grad_self( stop(grad_other V_self) . grad_other V_other ) ]

``estimator = exact`` is LOLA-Ex (values of the 5-state chain in closed form on the fitted
payoffs); ``estimator = dice`` estimates every derivative, the second-order one included,
with DiCE on the K episodes just played (one batch; Mao et al.'s baseline, ``game``). The
opponent's policy and its learning step come from the private opponent model (the step
predicted by applying the naive gradient to the model), or from its true logits with
``opponent = shared``.

Not done: the official LOLA-DiCE look-ahead, which re-samples episodes under the opponent's
predicted parameters theta_2' = theta_2 + eta grad_2 V_2 and takes the outer gradient there.
In a live run both agents play the real env with their real policies, so an agent cannot
sample episodes against theta_2' (the opponent would have to play extra episodes with it, a
second protocol); a private agent could only re-sample in its fitted model of the game, whose
values the exact estimator already gives in closed form. The first-order form above is the
LOLA paper's own (its eq. for LOLA-PG), estimated on the episodes actually played.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agentd.algorithms.base import param
from agentd.algorithms.shaping.core import ShapingLearner, ShapingParams
from agentd.algorithms.shaping.observed import Episode


@dataclass
class LolaParams(ShapingParams):
    """LOLA's settings (official exact: lr 1, lr_correction 1 on one sigmoid logit per state)."""

    eta: float = param(0.5, ge=0.0)
    """the opponent's assumed step size in the look-ahead (official lr_correction 1)"""
    model_decay: float = param(0.0, ge=0.0, le=1.0)
    """opponent model: factor by which past counts are kept at each episode (0: re-fitted to
    the last episode alone; a longer memory lags the opponent's policy, which moves every
    episode: with DiCE, K 64, 5 seeds, 0 / 0.25 / 0.5 cooperated in 3 / 2 / 1, README)"""


class Lola(ShapingLearner):
    """The LOLA learner (exact or DiCE-sampled)."""

    name = "lola"
    Params = LolaParams

    def learn(self, ep: Episode, theta_other: np.ndarray) -> dict[str, float]:
        g = self.game
        theta, other = g.tensor(self.theta, grad=True), g.tensor(theta_other, grad=True)
        step = g.lola_step(self.values(ep), theta, other, self.params.eta).numpy()
        self.theta += self.params.lr * step
        return {"grad_norm": float(np.linalg.norm(step))}
