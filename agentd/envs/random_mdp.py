"""The built-in "random-mdp" of Li & Jia 2021 (§V): M states, N agents, a random joint-action MDP.

P(s, a, ·) ~ U(0, 1) normalised over next states and R(s, a) ~ N(0, 1), where a is the JOINT
action; the reward is shared by all agents and every agent observes the global state. See
``joint_mdp`` for how rows are generated lazily so any N works.
"""

from __future__ import annotations

import numpy as np

from agentd.envs.joint_mdp import CACHE_LIMIT, JointActionMDP

__all__ = ["CACHE_LIMIT", "RandomMDP"]


class RandomMDP(JointActionMDP):
    """K copies of one random MDP (fixed by model_seed) with a shared N(0, 1) reward table."""

    env_id = "random-mdp"

    def __init__(self, n_agents: int, num_envs: int, episode_len: int, model_seed: int,
                 n_states: int = 100, n_actions: int = 3) -> None:
        super().__init__(n_agents, num_envs, episode_len, model_seed, n_states, n_actions,
                         shared_reward=True)

    def model_reward(self, rng: np.random.Generator) -> float:
        return float(rng.standard_normal())          # R(s, a) ~ N(0, 1)

    def rewards(self, parts: list[float]) -> np.ndarray:
        return np.broadcast_to(np.asarray(parts), (self.n_agents, self.num_envs)).copy()
