"""Beacon: a small cooperative PettingZoo ParallelEnv.

A beacon shows one of ``n_states`` colours; every agent observes it (Discrete) and picks one
of ``n_states`` buttons (Discrete). The team is paid the fraction of agents that pressed the
button of the colour shown, and the beacon moves on to a colour drawn from the env's own
random generator (seeded by ``reset``). An episode is ``max_cycles`` steps long.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv


class Beacon(ParallelEnv):
    metadata: ClassVar[dict] = {"name": "beacon_v0"}

    def __init__(self, n_agents: int = 3, n_states: int = 4, max_cycles: int = 25) -> None:
        self.possible_agents = [f"agent_{i}" for i in range(n_agents)]
        self.agents: list[str] = []
        self.n_states, self.max_cycles = n_states, max_cycles
        self._obs_space = spaces.Discrete(n_states)
        self._act_space = spaces.Discrete(n_states)
        self._rng = np.random.default_rng()
        self._colour, self._t = 0, 0

    def observation_space(self, agent: str) -> spaces.Space:
        return self._obs_space

    def action_space(self, agent: str) -> spaces.Space:
        return self._act_space

    def _observe(self) -> dict:
        return {a: self._colour for a in self.agents}

    def reset(self, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self.agents = list(self.possible_agents)
        self._colour, self._t = int(self._rng.integers(self.n_states)), 0
        return self._observe(), {a: {} for a in self.agents}

    def step(self, actions: dict):
        hits = sum(int(actions[a]) == self._colour for a in self.agents)
        reward = hits / len(self.agents)
        self._t += 1
        self._colour = int(self._rng.integers(self.n_states))
        done = self._t >= self.max_cycles
        obs = self._observe()
        rewards = {a: reward for a in self.agents}
        terms = {a: False for a in self.agents}
        truncs = {a: done for a in self.agents}
        infos = {a: {} for a in self.agents}
        if done:
            self.agents = []
        return obs, rewards, terms, truncs, infos


def parallel_env(**kwargs) -> Beacon:
    """The factory agentd calls (``--env beacon`` or
    ``--env agentd_plugin_example.env:parallel_env``); ``--env-arg n_agents=5`` etc."""
    return Beacon(**kwargs)
