"""The naive learner (NL): policy gradient on its own return, the opponent held fixed.

At each episode's end (Kim et al. 2021, eq. 1; LOLA's "NL")

    theta <- theta + lr * grad_theta V_self(theta, theta_other)

with V in closed form on the fitted payoffs (``estimator = exact``, LOLA's NL-Ex) or the DiCE
surrogate of the K episodes just played (``estimator = dice``: first-order DiCE is REINFORCE
with a leave-one-out baseline). theta_other is the private opponent model, or the opponent's
true logits with ``opponent = shared``; the sampled gradient does not depend on it.
"""

from __future__ import annotations

import numpy as np

from agentd.algorithms.shaping.core import ShapingLearner
from agentd.algorithms.shaping.observed import Episode


class NaivePG(ShapingLearner):
    """The naive policy-gradient learner."""

    name = "naive-pg"

    def learn(self, ep: Episode, theta_other: np.ndarray) -> dict[str, float]:
        g = self.game
        theta, other = g.tensor(self.theta, grad=True), g.tensor(theta_other, grad=True)
        step = g.naive_step(self.values(ep), theta, other).numpy()
        self.theta += self.params.lr * step
        return {"grad_norm": float(np.linalg.norm(step))}
