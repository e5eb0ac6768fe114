"""The built-in "digital" env of Wang et al. 2023 (§V-A): S states, N agents with binary actions.

P(s, a, ·) ~ U(0, 1) normalised over next states, where a is the JOINT action; for each
(s, a) every agent i has its own mean reward mu_i(s, a) ~ U(0, 1), and the reward it receives
is r_i = mu_i(s, a) + e with e ~ U(-reward_noise, reward_noise). Every agent observes the
global state (a "digit" 0..S-1); digits within eps of each other are adjacent (``A_eps(s)``
in policy reciprocity).

The seed's text lost both intervals in conversion ("sampled uniformly from ," twice). We take
U(0, 1) for the means, as in random-mdp's transitions, and a symmetric noise of half-width
``reward_noise`` = 0.5 by default, so each mean stays the expectation of its rewards.

As in random-mdp the joint action space (2**N) is never tabulated (see ``joint_mdp``).
"""

from __future__ import annotations

import math

import numpy as np

from agentd.envs.base import EnvError
from agentd.envs.joint_mdp import CACHE_LIMIT, JointActionMDP

__all__ = ["CACHE_LIMIT", "Digital", "digit_adjacency"]



def digit_adjacency(s: int, n_states: int, eps: int) -> list[int]:
    """A_eps(s): the digits within eps of s, excluding s, clipped to [0, n_states)."""
    if not 0 <= s < n_states:
        raise EnvError(f"digital: state {s} is outside [0, {n_states})")
    if eps < 0:
        raise EnvError(f"digital: adjacency level eps must be >= 0, got {eps}")
    return [t for t in range(max(0, s - eps), min(n_states, s + eps + 1)) if t != s]


class Digital(JointActionMDP):
    """K copies of one Digital MDP (fixed by model_seed), individual noisy rewards."""

    env_id = "digital"

    def __init__(self, n_agents: int, num_envs: int, episode_len: int, model_seed: int,
                 n_states: int = 20, reward_noise: float = 0.5) -> None:
        if (isinstance(reward_noise, bool) or not isinstance(reward_noise, (int, float, np.number))
                or not math.isfinite(reward_noise) or reward_noise < 0):
            raise EnvError(f"digital: reward_noise must be a finite number >= 0, "
                           f"got {reward_noise!r}")
        self.reward_noise = float(reward_noise)
        super().__init__(n_agents, num_envs, episode_len, model_seed, n_states, 2,
                         shared_reward=False)

    def model_reward(self, rng: np.random.Generator) -> np.ndarray:
        return rng.random(self.n_agents)              # mu_i(s, a) ~ U(0, 1), one per agent

    def rewards(self, parts: list[np.ndarray]) -> np.ndarray:
        reward = np.stack(parts, axis=1)              # (N, K)
        if self.reward_noise > 0.0:
            reward += self._rng.uniform(-self.reward_noise, self.reward_noise, size=reward.shape)
        return reward
