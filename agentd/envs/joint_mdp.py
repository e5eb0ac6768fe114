"""Tabular MDPs over the JOINT action of N agents, shared by random-mdp and digital.

Every agent observes the global state s. The joint action space has n_actions**N entries, so
for large N (N = 64 runs) no table is built up front: the model row of (s, joint index) is
generated on first use from ``default_rng([model_seed, s, joint_index])`` — a pure function of
its key — and kept in a bounded cache, so results never depend on what happens to be cached.
The trajectory (initial states, next states, reward noise) comes from the reset seed.
Episodes are truncated at episode_len; there is no termination.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from agentd.envs.base import EnvError, StepResult, VecEnv, check_discrete_actions

CACHE_LIMIT = 50_000        # rows kept before the cache is cleared
_INT64_SAFE = 2 ** 63 - 1


class JointActionMDP(VecEnv):
    """K copies of one random joint-action MDP; subclasses give the reward model."""

    env_id = ""

    def __init__(self, n_agents: int, num_envs: int, episode_len: int, model_seed: int,
                 n_states: int, n_actions: int, shared_reward: bool) -> None:
        for name, value, low in (("n_agents", n_agents, 1), ("num_envs", num_envs, 1),
                                 ("episode_len", episode_len, 1), ("n_states", n_states, 1),
                                 ("n_actions", n_actions, 1), ("model_seed", model_seed, 0)):
            if not isinstance(value, (int, np.integer)) or value < low:
                raise EnvError(f"{self.env_id}: {name} must be an integer >= {low}, "
                               f"got {value!r}")
        self.n_states, self.n_actions = int(n_states), int(n_actions)
        self.model_seed, self.num_envs = int(model_seed), int(num_envs)
        self.episode_len = int(episode_len)
        self.agent_names = [f"agent_{i}" for i in range(n_agents)]
        self.obs_spaces = [{"type": "discrete", "n": self.n_states} for _ in range(n_agents)]
        self.act_spaces = [{"type": "discrete", "n": self.n_actions} for _ in range(n_agents)]
        self.shared_reward = shared_reward
        self._cache: dict[tuple[int, int], tuple[np.ndarray, Any]] = {}
        # Joint index = sum_i a_i * n_actions**i (agent 0 least significant). While the joint
        # space fits in int64 it is one matrix product; beyond that, exact Python ints.
        self._fits_int64 = self.n_actions ** n_agents <= _INT64_SAFE
        places = [self.n_actions ** i for i in range(n_agents)]
        self._places = np.array(places, dtype=np.int64) if self._fits_int64 else places
        self._rng = np.random.default_rng(0)
        self._state = np.zeros(self.num_envs, dtype=np.int64)
        self._t = np.zeros(self.num_envs, dtype=np.int64)
        self._terminated = np.zeros(self.num_envs, dtype=bool)   # never set: no termination

    # ---- the model: subclasses say what a row's reward part is ----------------------------
    def model_reward(self, rng: np.random.Generator) -> Any:
        """The reward part of a model row, drawn after its transition row."""
        raise NotImplementedError

    def rewards(self, parts: list[Any]) -> np.ndarray:
        """(N, K) rewards of this step from the K rows' reward parts (may add noise)."""
        raise NotImplementedError

    def row(self, state: int, joint_index: int) -> tuple[np.ndarray, Any]:
        """(cdf of P(state, a, ·), reward part) for the joint action with this index."""
        key = (int(state), int(joint_index))
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        rng = np.random.default_rng([self.model_seed, key[0], key[1]])
        p = rng.random(self.n_states)
        cdf = np.cumsum(p / p.sum())
        cdf[-1] = 1.0               # rounding must not leave a gap past the last state
        entry = (cdf, self.model_reward(rng))
        if len(self._cache) >= CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = entry
        return entry

    def joint_index(self, actions: np.ndarray) -> list[int]:
        """Joint action indices of K copies from the (N, K) array of per-agent actions."""
        if self._fits_int64:
            return (self._places @ actions).tolist()
        return [sum(int(a) * place for a, place in zip(column, self._places))
                for column in actions.T.tolist()]

    # ---- VecEnv ---------------------------------------------------------------------------
    def reset(self, seed: int) -> list[np.ndarray]:
        self._rng = np.random.default_rng(seed)
        self._state = self._rng.integers(self.n_states, size=self.num_envs, dtype=np.int64)
        self._t[:] = 0
        return self._per_agent(self._state)

    def step(self, actions: list[np.ndarray]) -> StepResult:
        joint = self.joint_index(self._check_actions(actions))
        u = self._rng.random(self.num_envs)
        final = np.empty(self.num_envs, dtype=np.int64)
        parts = []
        last = self.n_states - 1
        for k, (s, j) in enumerate(zip(self._state.tolist(), joint)):
            cdf, part = self.row(s, j)
            parts.append(part)
            final[k] = min(int(cdf.searchsorted(u[k], side="right")), last)
        reward = self.rewards(parts)
        self._t += 1
        truncated = self._t >= self.episode_len
        obs = final
        if truncated.any():
            obs = final.copy()
            obs[truncated] = self._rng.integers(self.n_states, size=int(truncated.sum()))
            self._t[truncated] = 0
        self._state = obs
        return StepResult(obs=self._per_agent(obs), final_obs=self._per_agent(final),
                          reward=reward, terminated=self._terminated.copy(),
                          truncated=truncated)

    # ---- plumbing -------------------------------------------------------------------------
    def _per_agent(self, state: np.ndarray) -> list[np.ndarray]:
        # Every agent sees the same global state: one read-only array handed out N times.
        view = state.view()
        view.flags.writeable = False
        return [view] * self.n_agents

    def _check_actions(self, actions: list[np.ndarray]) -> np.ndarray:
        """Stack per-agent actions into (N, K) int64, or raise EnvError naming the agent."""
        return check_discrete_actions(self.env_id, self.agent_names, self.num_envs,
                                      [self.n_actions] * self.n_agents, actions)
