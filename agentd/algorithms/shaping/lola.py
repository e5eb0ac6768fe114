"""LOLA, Learning with Opponent-Learning Awareness (Foerster et al. 2018; seed 004 eq. 5, 6).

At each episode's end the agent climbs its value at the opponent's *predicted next* policy,
to first order in the opponent's naive step Delta theta_other = eta * grad_other V_other:

    theta <- theta + lr * [ grad_self V_self
                            + eta * grad_self( stop(grad_other V_self) . grad_other V_other ) ]

``estimator = exact`` is LOLA-Ex (values of the 5-state chain in closed form on the fitted
payoffs); ``estimator = dice`` estimates every derivative, the second-order one included,
with DiCE on the K episodes just played (one batch, no look-ahead rollouts). The opponent's
policy and its learning step come from the private opponent model (the step predicted by
applying the naive gradient to the model), or from its true logits with ``opponent = shared``.
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
