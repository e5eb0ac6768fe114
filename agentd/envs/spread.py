"""The built-in "spread" env of Li & Jia 2021 (§V): cooperative navigation, one target per agent.

N agents and N landmarks on the plane, built on mpe2's world physics (``SimpleEnv``); agent i's
target is landmark i. After each joint step agent i earns

    r_i = -||p_i - l_i|| - (number of other agents colliding with i)

(two agents collide when their discs, radius 0.15 each, overlap), and every agent RECEIVES the
team reward mean_i r_i (the paper's "global reward"), so the VecEnv has ``shared_reward``.

Actions are MPE's continuous 5-vector in [0, 1]^5 ([no-op, left, right, down, up]; the force
is (right - left, up - down)), or Discrete(5) with ``continuous_actions=False``.

Observations:

* local, agent i (4N + 2 floats): [own vel (2), own pos (2), own target - own pos (2),
  other landmarks - own pos (2 (N-1), landmark order), other agents - own pos (2 (N-1), agent
  order)];
* ``state()`` (6N floats): [all agent positions (2N), all agent velocities (2N), all landmark
  positions (2N)], each block in index order as (x, y) pairs; ``state_space`` matches.

Positions start U(-1, 1)^2, velocities at 0. An episode lasts ``max_cycles`` = 25 steps
(truncation; there is no termination), or less if the run's ``episode_len`` is shorter.

This module imports mpe2 (and so pygame) at the top: ``agentd.envs`` imports it only when
the env is built.
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces
from mpe2._mpe_utils.core import Agent, Landmark, World
from mpe2._mpe_utils.scenario import BaseScenario
from mpe2._mpe_utils.simple_env import SimpleEnv, make_env
from pettingzoo.utils.conversions import parallel_wrapper_fn

AGENT_SIZE = 0.15          # disc radius, as in MPE simple_spread
COLLISION_PENALTY = 1.0    # per other agent in contact


class SpreadScenario(BaseScenario):
    """World, reset, rewards and observations of Li & Jia's spread variant."""

    def make_world(self, n: int = 3) -> World:
        world = World()
        world.agents = [Agent() for _ in range(n)]
        for i, agent in enumerate(world.agents):
            agent.name = f"agent_{i}"
            agent.collide = True
            agent.silent = True
            agent.size = AGENT_SIZE
        world.landmarks = [Landmark() for _ in range(n)]
        for i, landmark in enumerate(world.landmarks):
            landmark.name = f"landmark {i}"
            landmark.collide = False
            landmark.movable = False
        return world

    def reset_world(self, world: World, np_random: np.random.Generator) -> None:
        for agent in world.agents:
            agent.color = np.array([0.35, 0.35, 0.85])
            agent.state.p_pos = np_random.uniform(-1, +1, world.dim_p)
            agent.state.p_vel = np.zeros(world.dim_p)
            agent.state.c = np.zeros(world.dim_c)
        for landmark in world.landmarks:
            landmark.color = np.array([0.25, 0.25, 0.25])
            landmark.state.p_pos = np_random.uniform(-1, +1, world.dim_p)
            landmark.state.p_vel = np.zeros(world.dim_p)

    def individual_rewards(self, world: World) -> np.ndarray:
        """r_i for every agent, (N,): minus the distance to its target, minus its collisions."""
        pos = np.array([a.state.p_pos for a in world.agents])
        targets = np.array([lm.state.p_pos for lm in world.landmarks])
        size = np.array([a.size for a in world.agents])
        dist = np.linalg.norm(pos[:, None, :] - pos[None, :, :], axis=-1)
        touching = dist < size[:, None] + size[None, :]
        np.fill_diagonal(touching, False)
        return (-np.linalg.norm(pos - targets, axis=-1)
                - COLLISION_PENALTY * touching.sum(axis=1))

    def reward(self, agent: Agent, world: World) -> float:
        # The agent's own r_i; SimpleEnv weighs it 0 (local_ratio = 0), see global_reward.
        return float(self.individual_rewards(world)[world.agents.index(agent)])

    def global_reward(self, world: World) -> float:
        # What every agent receives: the team mean of r_i.
        return float(self.individual_rewards(world).mean())

    def observation(self, agent: Agent, world: World) -> np.ndarray:
        i = world.agents.index(agent)
        me = agent.state.p_pos
        target = world.landmarks[i].state.p_pos - me
        landmarks = [lm.state.p_pos - me for j, lm in enumerate(world.landmarks) if j != i]
        others = [a.state.p_pos - me for a in world.agents if a is not agent]
        return np.concatenate([agent.state.p_vel, me, target, *landmarks, *others])

    def state(self, world: World) -> np.ndarray:
        """[agent positions, agent velocities, landmark positions], 6N floats."""
        return np.concatenate([*(a.state.p_pos for a in world.agents),
                               *(a.state.p_vel for a in world.agents),
                               *(lm.state.p_pos for lm in world.landmarks)])


class SpreadEnv(SimpleEnv):
    """The AEC form (mpe2's SimpleEnv) with the compact global state of Li & Jia's variant."""

    def __init__(self, N: int = 3, max_cycles: int = 25, continuous_actions: bool = True,
                 render_mode: str | None = None) -> None:
        if isinstance(N, bool) or not isinstance(N, int) or N < 1:
            raise ValueError(f"spread: N must be an integer >= 1, got {N!r}")
        if isinstance(max_cycles, bool) or not isinstance(max_cycles, int) or max_cycles < 1:
            raise ValueError(f"spread: max_cycles must be an integer >= 1, got {max_cycles!r}")
        scenario = SpreadScenario()
        # local_ratio = 0: every agent receives scenario.global_reward (the team mean).
        super().__init__(scenario=scenario, world=scenario.make_world(N), max_cycles=max_cycles,
                         render_mode=render_mode, continuous_actions=continuous_actions,
                         local_ratio=0.0)
        self.metadata = {**SimpleEnv.metadata, "name": "agentd_spread"}  # not the shared dict
        self.state_space = spaces.Box(low=-np.inf, high=np.inf, shape=(6 * N,),
                                      dtype=np.float32)

    def state(self) -> np.ndarray:
        return self.scenario.state(self.world).astype(np.float32)


env = make_env(SpreadEnv)
parallel_env = parallel_wrapper_fn(env)

