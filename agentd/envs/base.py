"""The vectorised environment contract the environment server steps.

A ``VecEnv`` holds K copies of an N-agent environment and steps them together, so one message
round serves K transitions. Episodes end on the env's own termination/truncation or after
``episode_len`` steps, and a finished copy is reset at once (auto-reset): ``step`` returns
both the observation that ends the transition (``final_obs``) and the observation to act on
next (``obs``, equal to ``final_obs`` where the episode goes on).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# What each agent observes: its own observation, or the env's global state (config "obs";
# "auto" is resolved to one of these before an env is built).
OBS_MODES = ("local", "state")


class EnvError(ValueError):
    """An environment that cannot be built or stepped as asked (clear message for the user)."""


@dataclass
class StepResult:
    """One joint step of K copies; per-agent lists are indexed by env agent index."""

    obs: list[np.ndarray]          # per agent (K, *obs_shape): obs to act on next
    final_obs: list[np.ndarray]    # per agent (K, *obs_shape): s' of this transition
    reward: np.ndarray             # (N, K) float64
    terminated: np.ndarray         # (K,) bool: the copy's episode ended (all agents done)
    truncated: np.ndarray          # (K,) bool: ... cut short (cap or an agent's truncation)
    # (N, K) bool per agent, where agents may finish before their copy (None: as the copy).
    # An agent that finished stays flagged, with reward 0, until its copy resets.
    agent_terminated: np.ndarray | None = None
    agent_truncated: np.ndarray | None = None

    def agent_flags(self, agents: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """(terminated, truncated) (K,) as one process acting for these env agents sees
        them: its own agent's flags, or the copy's when it acts for several."""
        if len(agents) != 1 or self.agent_terminated is None:
            return self.terminated, self.truncated
        assert self.agent_truncated is not None
        i = agents[0]
        return self.agent_terminated[i], self.agent_truncated[i]


class VecEnv:
    """K copies of an N-agent environment with auto-reset and an episode length cap."""

    agent_names: list[str]         # env agent names, index = env agent index
    obs_spaces: list[dict]         # space dicts (see agentd.algorithms.base)
    act_spaces: list[dict]
    shared_reward: bool            # True when every agent gets the same reward
    num_envs: int

    @property
    def n_agents(self) -> int:
        return len(self.agent_names)

    def reset(self, seed: int) -> list[np.ndarray]:
        """Reset all K copies; per-agent obs arrays (K, *obs_shape)."""
        raise NotImplementedError

    def step(self, actions: list[np.ndarray]) -> StepResult:
        """Step all copies with per-agent action arrays (K, *act_shape)."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def known_returns(self) -> dict[str, float]:
        """Episode returns of reference policies the env can compute exactly: the optimum
        (``optimal_return``) and, where known, the uniform-random policy's (``random_return``),
        so a summary can show ``normalised_return = final_return / optimal_return``."""
        return {}


def check_discrete_actions(env_id: str, names: list[str], num_envs: int, n_actions: list[int],
                           actions: list[np.ndarray]) -> np.ndarray:
    """Per-agent Discrete actions stacked into (N, K) int64, or EnvError naming the agent."""
    if len(actions) != len(names):
        raise EnvError(f"{env_id}: expected actions for {len(names)} agents, got {len(actions)}")
    try:
        stacked = np.stack([np.asarray(a) for a in actions])
    except ValueError:
        stacked = None
    limits = np.asarray(n_actions)[:, None]
    if (stacked is None or stacked.shape != (len(names), num_envs)
            or stacked.dtype.kind not in "iu" or stacked.min() < 0 or (stacked >= limits).any()):
        _explain_bad_action(env_id, names, num_envs, n_actions, actions)
    return stacked.astype(np.int64, copy=False)


def _explain_bad_action(env_id: str, names: list[str], num_envs: int, n_actions: list[int],
                        actions: list[np.ndarray]) -> None:
    for i, a in enumerate(actions):
        a = np.asarray(a)
        where = f"{env_id}: action of agent {i} ({names[i]})"
        if a.shape != (num_envs,):
            raise EnvError(f"{where} must have shape ({num_envs},), got {a.shape}")
        if a.dtype.kind not in "iu":
            raise EnvError(f"{where} must be integers, got dtype {a.dtype}")
        if a.min() < 0 or a.max() >= n_actions[i]:
            raise EnvError(f"{where} must lie in [0, {n_actions[i]}), got {a.tolist()}")
    raise EnvError(f"{env_id}: malformed actions")   # unreachable in practice
