"""The deterministic L-stage game of I2Q (Jiang & Lu, NeurIPS 2022).

Two agents with three actions each play L stages. The state is a node of a complete 9-ary tree
of depth L (node 0 is the root); the joint action (a0, a1) moves to a child:

    s' = 9 s + (3 a0 + a1) + 1

Every node has a reward r_f(s) ~ U(-1, 1), drawn once from the env seed (the run seed), and
each step pays both agents the reward of the node being *left*. An episode is L steps from the
root (terminated), so the return is sum_{t<L} r_f(s_t): the last stage's joint action is never
rewarded and only L - 1 decisions matter — as in the official code, whose ``best_return`` also
stops at depth L - 1. Every agent observes the node index (a Discrete space of
(9^(L+1) - 1) / 8 states); the game is deterministic, which tabular I2Q requires.

The optimum is found by exhaustive recursion over the tree, V(s) = r_f(s) + max_c V(child c),
done level by level (the children of consecutive nodes are consecutive nodes).
"""

from __future__ import annotations

import numpy as np

from agentd.envs.base import EnvError, StepResult, VecEnv, check_discrete_actions

L_RANGE = (1, 6)          # L = 6 already has 597,871 nodes


def tree_size(depth: int) -> int:
    """Nodes of a complete 9-ary tree of the given depth: (9^(depth+1) - 1) / 8 (0 for -1)."""
    return (9 ** (depth + 1) - 1) // 8


def tree_values(r_f: np.ndarray, horizon: int, how: str = "max") -> float:
    """Return from the root over ``horizon`` steps when every stage picks the best child
    (``how = "max"``) or a uniformly random one (``"mean"``): a backward pass over levels."""
    value = r_f[tree_size(horizon - 2):tree_size(horizon - 1)]   # the deepest paid level
    for depth in range(horizon - 2, -1, -1):
        first = tree_size(depth - 1)                  # depth d spans [size(d-1), size(d))
        children = value.reshape(-1, 9)
        value = r_f[first:first + len(children)] + (
            children.max(axis=1) if how == "max" else children.mean(axis=1))
    return float(value[0])


class LStage(VecEnv):
    """K copies of one L-stage game (fixed by model_seed)."""

    env_id = "lstage"

    def __init__(self, n_agents: int, num_envs: int, episode_len: int, model_seed: int,
                 L: int = 3) -> None:
        if n_agents != 2:
            raise EnvError(f"lstage: the L-stage game has exactly 2 agents; got n = {n_agents} "
                           "(pass --n 2)")
        if isinstance(L, bool) or not isinstance(L, (int, np.integer)) \
                or not L_RANGE[0] <= L <= L_RANGE[1]:
            raise EnvError(f"lstage: L must be an integer in {L_RANGE[0]}..{L_RANGE[1]}, "
                           f"got {L!r}")
        if num_envs < 1 or episode_len < 1:
            raise EnvError(f"lstage: num_envs and episode_len must be >= 1, got {num_envs} "
                           f"and {episode_len}")
        self.L, self.num_envs, self.episode_len = int(L), int(num_envs), int(episode_len)
        self.horizon = min(self.L, self.episode_len)   # an episode_len < L cuts the game
        self.n_nodes = tree_size(self.L)
        self.r_f = 2.0 * np.random.default_rng([model_seed, 0x1257A6E]).random(self.n_nodes) - 1
        self.agent_names = ["agent_0", "agent_1"]
        self.obs_spaces = [{"type": "discrete", "n": self.n_nodes} for _ in range(2)]
        self.act_spaces = [{"type": "discrete", "n": 3} for _ in range(2)]
        self.shared_reward = True
        self._state = np.zeros(self.num_envs, dtype=np.int64)
        self._t = np.zeros(self.num_envs, dtype=np.int64)

    def known_returns(self) -> dict[str, float]:
        return {"optimal_return": tree_values(self.r_f, self.horizon, "max"),
                "random_return": tree_values(self.r_f, self.horizon, "mean")}

    def greedy_return(self, policies: list[np.ndarray]) -> float:
        """The exact return of the deterministic joint policy (policies[i][s]: agent i's
        action at node s), one episode from the root."""
        s, total = 0, 0.0
        for _ in range(self.horizon):
            total += float(self.r_f[s])
            s = 9 * s + 3 * int(policies[0][s]) + int(policies[1][s]) + 1
        return total

    def reset(self, seed: int) -> list[np.ndarray]:
        self._state[:] = 0          # every episode starts at the root; nothing is random
        self._t[:] = 0
        return self._per_agent(self._state)

    def step(self, actions: list[np.ndarray]) -> StepResult:
        a = check_discrete_actions(self.env_id, self.agent_names, self.num_envs, [3, 3], actions)
        reward = np.broadcast_to(self.r_f[self._state], (2, self.num_envs)).copy()
        final = 9 * self._state + 3 * a[0] + a[1] + 1
        self._t += 1
        terminated = self._t >= self.L
        truncated = ~terminated & (self._t >= self.episode_len)
        done = terminated | truncated
        self._state = np.where(done, 0, final)
        self._t[done] = 0
        return StepResult(obs=self._per_agent(self._state), final_obs=self._per_agent(final),
                          reward=reward, terminated=terminated, truncated=truncated)

    def _per_agent(self, state: np.ndarray) -> list[np.ndarray]:
        view = state.copy()
        view.flags.writeable = False
        return [view, view]
