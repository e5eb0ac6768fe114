"""Small real PettingZoo ParallelEnvs for tests: spaces of every kind, agents that finish early,
and a deliberately broken variant (loaded by agentd as ``pz_toy:...`` with tests/ on the path).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv


class ToyEnv(ParallelEnv):
    """Three agents; agent a0 terminates after ``a0_steps`` steps, the others after
    ``steps``. Each agent's reward is 1 per step; its observation is the step count, in the
    space ``obs`` names ("box", "image", "multibinary", "multidiscrete", "dict", "tuple", or
    "wide": 300 values, each with its own bounds)."""

    metadata: ClassVar[dict] = {"name": "toy_v0"}

    def __init__(self, obs: str = "box", steps: int = 5, a0_steps: int = 2,
                 broken: str = "") -> None:
        self.possible_agents = ["a0", "a1", "a2"]
        self.kind, self.steps, self.a0_steps, self.broken = obs, steps, a0_steps, broken
        self._space, self._act = _space(obs), spaces.Discrete(3)
        self._t = 0
        self.agents: list[str] = []

    def observation_space(self, agent: str) -> spaces.Space:
        return self._space

    def action_space(self, agent: str) -> spaces.Space:
        return self._act

    def _obs(self) -> dict:
        if self.broken == "obs_outside":
            return {a: np.full(self._space.shape, 99.0, np.float32) for a in self.agents}
        return {a: _value(self.kind, self._t) for a in self.agents}

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        self._t = 0
        self.agents = list(self.possible_agents)
        if self.broken == "unseeded":
            self._t = int(np.random.default_rng().integers(3))
        return self._obs(), {a: {} for a in self.agents}

    def step(self, actions: dict) -> tuple[dict, dict, dict, dict, dict]:
        self._t += 1
        rew = {a: 1.0 for a in self.agents}
        term = {a: self._t >= (self.a0_steps if a == "a0" else self.steps) for a in self.agents}
        trunc = {a: False for a in self.agents}
        obs = self._obs()
        infos = {a: {} for a in self.agents}
        self.agents = [a for a in self.agents if not term[a]]
        return obs, rew, term, trunc, infos


def _space(kind: str) -> spaces.Space:
    box = spaces.Box(0.0, 10.0, (2,), np.float32)
    return {"box": box, "image": spaces.Box(0, 255, (4, 5, 3), np.uint8),
            "multibinary": spaces.MultiBinary(4), "multidiscrete": spaces.MultiDiscrete([3, 4]),
            "dict": spaces.Dict({"pos": box, "id": spaces.Discrete(3)}),
            "tuple": spaces.Tuple((spaces.Discrete(2), box)),
            "wide": spaces.Box(np.arange(300, dtype=np.float32), np.arange(1, 301, dtype=np.float32))}[kind]


def _value(kind: str, t: int) -> object:
    box = np.full(2, float(t), np.float32)
    return {"box": box, "image": np.full((4, 5, 3), t, np.uint8),
            "multibinary": np.array([t % 2, 1, 0, 1], np.int8),
            "multidiscrete": np.array([t % 3, 1]),
            "dict": {"pos": box, "id": t % 3}, "tuple": (t % 2, box),
            "wide": np.arange(300, dtype=np.float32) + 0.5}[kind]


def parallel_env(**kwargs: object) -> ToyEnv:
    return ToyEnv(**kwargs)  # type: ignore[arg-type]
