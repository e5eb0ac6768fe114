"""The cooperative tabular stochastic game of DPO / MA2QL (Su & Lu 2022; Su et al. 2022).

S states (30), N agents (3) with |A| actions each (5). For every state and JOINT action a the
game draws, once from the env seed, a shared reward R(s, a) ~ U(-5, 5) and a dense transition
distribution P(. | s, a) ~ Dirichlet(1, ..., 1) — uniform on the simplex, so every next state
has positive probability. (The DPO repository ships one such game; its generator is not
public, and its rows are somewhat more peaked than U(0, 1)-normalised ones, which is why we
draw from the Dirichlet.) Episodes start in state 0 and last ``horizon`` = 30 steps (a time
limit: truncated, never terminated). Every agent observes the global state: its index
(Discrete(S), for tabular learners) or, with ``one_hot = true``, a one-hot Box(S).

The tables are small (S x |A|^N x S), so the exact references are dynamic programming:
``values`` backs up V <- best over a set of allowed joint actions of R + gamma P V, either for
a finite horizon or to convergence. Allowing every joint action gives the optimum; one per
state, a fixed joint policy's value; the |A| that vary one agent's action, that agent's best
response to the others — which is how a learned joint policy is checked for being a Nash
equilibrium (``best_response_gain``).
"""

from __future__ import annotations

import numpy as np

from agentd.envs.base import EnvError, StepResult, VecEnv, check_discrete_actions
from protocols.spaces import box_space

MAX_ENTRIES = 20_000_000          # S * |A|^N * S transition entries are tabulated


class StochasticGame(VecEnv):
    """K copies of one random cooperative stochastic game (fixed by model_seed)."""

    env_id = "stochastic-game"

    def __init__(self, n_agents: int, num_envs: int, episode_len: int, model_seed: int,
                 n_states: int = 30, n_actions: int = 5, horizon: int = 30,
                 one_hot: bool = False) -> None:
        for name, value in (("n_agents", n_agents), ("num_envs", num_envs),
                            ("episode_len", episode_len), ("n_states", n_states),
                            ("n_actions", n_actions), ("horizon", horizon)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise EnvError(f"{self.env_id}: {name} must be an integer >= 1, got {value!r}")
        S, A, n = int(n_states), int(n_actions), int(n_agents)
        joint = A ** n
        if S * joint * S > MAX_ENTRIES:
            raise EnvError(f"{self.env_id}: n_states^2 x n_actions^n = {S}^2 x {A}^{n} = "
                           f"{S * joint * S} transition entries, more than {MAX_ENTRIES}; use "
                           "fewer agents (--n), actions (n_actions) or states (n_states)")
        self.n_states, self.n_actions, self.n_joint = S, A, joint
        self.num_envs, self.episode_len = int(num_envs), int(episode_len)
        self.horizon = min(int(horizon), self.episode_len)
        rng = np.random.default_rng([model_seed, 0x57C6A3E])
        self.R = rng.uniform(-5.0, 5.0, size=(S, joint))
        self.P = rng.dirichlet(np.ones(S), size=(S, joint))
        self._cdf = np.cumsum(self.P, axis=-1)
        self._cdf[..., -1] = 1.0                  # rounding must not leave a gap at the end
        self.places = A ** np.arange(n, dtype=np.int64)   # agent 0 is the least significant
        self.one_hot = bool(one_hot)
        self.agent_names = [f"agent_{i}" for i in range(n)]
        obs = (box_space([S], 0.0, 1.0) if self.one_hot else {"type": "discrete", "n": S})
        self.obs_spaces = [dict(obs) for _ in range(n)]
        self.act_spaces = [{"type": "discrete", "n": A} for _ in range(n)]
        self.shared_reward = True
        self._rng = np.random.default_rng(0)
        self._state = np.zeros(self.num_envs, dtype=np.int64)
        self._t = np.zeros(self.num_envs, dtype=np.int64)

    # ---- exact references ----------------------------------------------------------------
    def values(self, choices: np.ndarray, how: str = "max", gamma: float = 1.0,
               horizon: int | None = None, tol: float = 1e-10) -> np.ndarray:
        """V(s) when the policy picks, in every state s, the best (``how = "max"``) or a
        uniformly random (``"mean"``) joint action among ``choices[s]`` (an (S, m) array of
        joint indices): ``horizon`` backups of V <- R + gamma P V from V = 0, or, with
        ``horizon = None`` and gamma < 1, backups until V changes by less than tol."""
        rows = np.arange(self.n_states)[:, None]
        r, p = self.R[rows, choices], self.P[rows, choices]          # (S, m), (S, m, S)
        v = np.zeros(self.n_states)
        steps = horizon if horizon is not None else 100_000
        for _ in range(steps):
            q = r + gamma * (p @ v)
            new = q.max(axis=1) if how == "max" else q.mean(axis=1)
            if horizon is None and np.abs(new - v).max() < tol:
                return new
            v = new
        return v

    def all_joint(self) -> np.ndarray:
        """(S, |A|^N): every joint action is allowed in every state."""
        return np.broadcast_to(np.arange(self.n_joint), (self.n_states, self.n_joint))

    def joint_policy(self, policies: np.ndarray) -> np.ndarray:
        """(S, 1) joint indices of a deterministic joint policy; policies is (N, S) actions."""
        return (np.asarray(policies, dtype=np.int64).T @ self.places)[:, None]

    def unilateral(self, policies: np.ndarray, agent: int) -> np.ndarray:
        """(S, |A|): agent's every action against the others' fixed actions in each state."""
        base = self.joint_policy(policies) - np.asarray(policies)[agent][:, None] * \
            self.places[agent]
        return base + np.arange(self.n_actions)[None, :] * self.places[agent]

    def best_response_gain(self, policies: np.ndarray, agent: int, gamma: float = 1.0,
                           horizon: int | None = None) -> tuple[float, float]:
        """How much ``agent`` gains by its best response (found by DP) against the others'
        fixed policies: (gain at the start state, largest gain over states). The joint policy
        is a Nash equilibrium (of this criterion) when no agent gains."""
        if horizon is None and gamma >= 1.0:
            horizon = self.horizon
        own = self.values(self.joint_policy(policies), gamma=gamma, horizon=horizon)
        best = self.values(self.unilateral(policies, agent), gamma=gamma, horizon=horizon)
        return float(best[0] - own[0]), float((best - own).max())

    def greedy_return(self, policies: list[np.ndarray]) -> float:
        """The exact expected return from the start state of the deterministic joint policy
        (policies[i][s]: agent i's action in state s), over the episode's horizon."""
        return float(self.values(self.joint_policy(np.stack(policies)),
                                 horizon=self.horizon)[0])

    def known_returns(self) -> dict[str, float]:
        every = self.all_joint()
        return {"optimal_return": float(self.values(every, "max", horizon=self.horizon)[0]),
                "random_return": float(self.values(every, "mean", horizon=self.horizon)[0])}

    # ---- VecEnv --------------------------------------------------------------------------
    def reset(self, seed: int) -> list[np.ndarray]:
        self._rng = np.random.default_rng(seed)
        self._state[:] = 0
        self._t[:] = 0
        return self._per_agent(self._state)

    def step(self, actions: list[np.ndarray]) -> StepResult:
        a = check_discrete_actions(self.env_id, self.agent_names, self.num_envs,
                                   [self.n_actions] * len(self.agent_names), actions)
        joint = self.places @ a
        reward = np.broadcast_to(self.R[self._state, joint],
                                 (len(self.agent_names), self.num_envs)).copy()
        u = self._rng.random(self.num_envs)
        cdf = self._cdf[self._state, joint]                                 # (K, S)
        final = np.minimum((cdf <= u[:, None]).sum(axis=1), self.n_states - 1)
        self._t += 1
        truncated = self._t >= self.horizon
        self._state = np.where(truncated, 0, final)
        self._t[truncated] = 0
        return StepResult(obs=self._per_agent(self._state), final_obs=self._per_agent(final),
                          reward=reward, terminated=np.zeros(self.num_envs, dtype=bool),
                          truncated=truncated)

    def _per_agent(self, state: np.ndarray) -> list[np.ndarray]:
        if self.one_hot:
            out = np.zeros((self.num_envs, self.n_states), dtype=np.float32)
            out[np.arange(self.num_envs), state] = 1.0
        else:
            out = state.copy()
        out.flags.writeable = False
        return [out] * len(self.agent_names)
