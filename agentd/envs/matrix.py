"""One-shot cooperative matrix games: climbing, penalty (with k) or a payoff file.

Every episode is a single joint action: both (all) agents observe the one state 0, act, and
receive the same payoff; the episode then terminates. The optimum is the largest payoff, the
uniform-random policy's return its mean.

    climbing (Claus & Boutilier 1998)      penalty, k <= 0 (default k = -100)
        11  -30    0                           10    0    k
       -30    7    6                            0    2    0
         0    0    5                            k    0   10

Rows are agent 0's actions, columns agent 1's. A payoff file gives any cooperative game: a
``.npy`` array of shape (|A^0|, ..., |A^{N-1}|) for N agents, or a text file of numbers
(whitespace or commas) for two agents, one row per action of agent 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agentd.envs.base import EnvError, StepResult, VecEnv, check_discrete_actions

GAMES = ("climbing", "penalty", "file")


def payoff_matrix(game: str, k: float = -100.0, payoff: str = "") -> np.ndarray:
    """The payoff array of a named game (EnvError names the bad argument)."""
    if game == "climbing":
        return np.array([[11.0, -30.0, 0.0], [-30.0, 7.0, 6.0], [0.0, 0.0, 5.0]])
    if game == "penalty":
        if not k <= 0:
            raise EnvError(f"matrix: penalty k must be <= 0, got {k}")
        return np.array([[10.0, 0.0, k], [0.0, 2.0, 0.0], [k, 0.0, 10.0]])
    if game == "file":
        return _load_payoff(payoff)
    raise EnvError(f"matrix: game must be one of {', '.join(GAMES)}, got {game!r}")


def _load_payoff(path: str) -> np.ndarray:
    if not path:
        raise EnvError("matrix: game = file needs --env-arg payoff=PATH (.npy or a text table)")
    p = Path(path)
    if not p.is_file():
        raise EnvError(f"matrix: payoff file {path!r} does not exist")
    try:
        if p.suffix == ".npy":
            table = np.load(p, allow_pickle=False)
        else:
            rows = [line.replace(",", " ").split() for line in p.read_text().splitlines()]
            table = np.array([[float(x) for x in row] for row in rows if row])
    except (ValueError, OSError) as exc:
        raise EnvError(f"matrix: cannot read payoff file {path!r}: {exc}") from None
    table = np.asarray(table, dtype=np.float64)
    if table.ndim < 1 or table.size == 0 or not np.isfinite(table).all():
        raise EnvError(f"matrix: payoff file {path!r} must hold a finite, non-empty array "
                       f"with one axis per agent, got shape {table.shape}")
    return table


class MatrixGame(VecEnv):
    """K copies of a one-shot cooperative game with a shared payoff."""

    env_id = "matrix"

    def __init__(self, n_agents: int, num_envs: int, episode_len: int, model_seed: int,
                 game: str = "climbing", k: float = -100.0, payoff: str = "") -> None:
        self.payoff = payoff_matrix(game, k, payoff)
        if self.payoff.ndim != n_agents:
            raise EnvError(f"matrix: game {game!r} has {self.payoff.ndim} players but "
                           f"n = {n_agents} (pass --n {self.payoff.ndim})")
        if num_envs < 1 or episode_len < 1:
            raise EnvError(f"matrix: num_envs and episode_len must be >= 1, got {num_envs} "
                           f"and {episode_len}")
        self.game, self.num_envs = game, int(num_envs)
        self.agent_names = [f"agent_{i}" for i in range(n_agents)]
        self.obs_spaces = [{"type": "discrete", "n": 1} for _ in range(n_agents)]
        self.act_spaces = [{"type": "discrete", "n": int(m)} for m in self.payoff.shape]
        self.shared_reward = True
        self._zeros = np.zeros(self.num_envs, dtype=np.int64)

    def known_returns(self) -> dict[str, float]:
        return {"optimal_return": float(self.payoff.max()),
                "random_return": float(self.payoff.mean())}

    def greedy_return(self, policies: list[np.ndarray]) -> float:
        """The payoff of the joint action (policies[i][0]: agent i's action)."""
        return float(self.payoff[tuple(int(p[0]) for p in policies)])

    def reset(self, seed: int) -> list[np.ndarray]:
        return self._obs()

    def step(self, actions: list[np.ndarray]) -> StepResult:
        a = check_discrete_actions(self.env_id, self.agent_names, self.num_envs,
                                   list(self.payoff.shape), actions)
        value = self.payoff[tuple(a)]                                       # (K,)
        reward = np.broadcast_to(value, (len(self.agent_names), self.num_envs)).copy()
        done = np.ones(self.num_envs, dtype=bool)
        return StepResult(obs=self._obs(), final_obs=self._obs(), reward=reward,
                          terminated=done, truncated=~done)

    def _obs(self) -> list[np.ndarray]:
        out = self._zeros.copy()
        out.flags.writeable = False
        return [out] * len(self.agent_names)
