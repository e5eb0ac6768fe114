"""The built-in "ipd" env: the iterated prisoner's dilemma of LOLA and Meta-MAPG, with tasks.

Two agents, actions 0 = cooperate (C) and 1 = defect (D). Each agent observes one of five
states from its own seat: 0 = start, then the previous joint action as
``1 + 2 * own action + other's action`` (1 = CC, 2 = CD, 3 = DC, 4 = DD, own letter first), as
an index (Discrete(5)) or, with ``onehot = true``, as the one-hot vector (Box(5,)). Rewards are
the standard payoffs, own letter first: CC -1, CD -3, DC 0, DD -2 (the opponent gets the
transposed entry). Episodes are cut at the run's ``episode_len`` (for ipd 150 unless set, the
official Meta-MAPG horizon); the discount belongs to the learners (``--param gamma``, 0.96).

Task distribution (Kim et al. 2021, "adding a uniform noise to the IPD payoff table"): task ``i`` adds
``U(-payoff_noise, payoff_noise)`` noise, drawn from ``default_rng([task_seed, i])``, to the
2 x 2 table. The same noise is seen from both seats, so every task stays a symmetric game (an
agent can infer its opponent's payoffs from its own; the paper does not say, this is our
choice); with ``payoff_noise <= 0.25`` every task keeps T > R > P > S and 2R > T + S. Task ids
come in two named sets, ``meta-train`` (``train_tasks``, default ids 0:200) and ``meta-test``
(``test_tasks``, default 200:220), which must not overlap; ``tasks`` picks the set a run draws
from. All K copies play the same task; a new task is drawn every ``episodes_per_task``
episodes, walking through the set in an order shuffled by the reset seed.
"""

from __future__ import annotations

import numpy as np

from agentd.envs.base import EnvError, StepResult, VecEnv
from protocols.spaces import box_space

COOPERATE, DEFECT = 0, 1
START = 0
N_STATES, N_ACTIONS = 5, 2
# Own-seat payoff, indexed [own action, other's action] (C = 0, D = 1).
PAYOFF = np.array([[-1.0, -3.0], [0.0, -2.0]])
# The same state seen from the other seat: CD and DC trade places.
SWAP = np.array([0, 1, 3, 2, 4])
TASK_SETS = ("meta-train", "meta-test")


def state_of(own: np.ndarray, other: np.ndarray) -> np.ndarray:
    """The state index one agent observes after the joint action (own, other)."""
    return 1 + 2 * np.asarray(own) + np.asarray(other)


def task_payoff(task_seed: int, task_id: int, noise: float) -> np.ndarray:
    """The own-seat 2 x 2 payoff table of one task: PAYOFF + U(-noise, noise)."""
    rng = np.random.default_rng([task_seed, task_id])
    return PAYOFF + rng.uniform(-noise, noise, size=(2, 2))


def parse_task_range(name: str, text: str) -> range:
    """A task-id range written "A:B" (ids A..B-1), or EnvError naming the field."""
    parts = str(text).split(":")
    try:
        lo, hi = (int(p) for p in parts)
    except ValueError:
        raise EnvError(f"ipd: {name} must be a range 'A:B' of task ids, got {text!r}") from None
    if not 0 <= lo < hi:
        raise EnvError(f"ipd: {name} must be a non-empty range 'A:B' with 0 <= A < B, "
                       f"got {text!r}")
    return range(lo, hi)


def task_ids(tasks: str, train_tasks: str = "0:200", test_tasks: str = "200:220") -> range:
    """The task ids of a named set ("meta-train" or "meta-test"); the two must be disjoint."""
    if tasks not in TASK_SETS:
        raise EnvError(f"ipd: tasks must be one of {', '.join(TASK_SETS)}, got {tasks!r}")
    train = parse_task_range("train_tasks", train_tasks)
    test = parse_task_range("test_tasks", test_tasks)
    common = range(max(train.start, test.start), min(train.stop, test.stop))
    if len(common):
        raise EnvError(f"ipd: train_tasks {train_tasks!r} and test_tasks {test_tasks!r} "
                       f"overlap (ids {common.start}..{common.stop - 1}); meta-test tasks "
                       "must never be meta-trained on")
    return train if tasks == "meta-train" else test


def drawn_tasks(env_args: dict) -> tuple[int, range]:
    """(task_seed, task ids) an ipd run with these env_args draws its tasks from."""
    return (int(env_args.get("task_seed", 0)),
            task_ids(str(env_args.get("tasks", "meta-train")),
                     str(env_args.get("train_tasks", "0:200")),
                     str(env_args.get("test_tasks", "200:220"))))


class IPD(VecEnv):
    """K copies of the iterated prisoner's dilemma, all playing the current task."""

    def __init__(self, n_agents: int, num_envs: int, episode_len: int,
                 payoff_noise: float = 0.0, task_seed: int = 0, tasks: str = "meta-train",
                 train_tasks: str = "0:200", test_tasks: str = "200:220",
                 episodes_per_task: int = 1, onehot: bool = False) -> None:
        if n_agents != 2:
            raise EnvError(f"ipd is a two-agent game; got n={n_agents} (use --n 2)")
        for name, value in (("num_envs", num_envs), ("episode_len", episode_len),
                            ("episodes_per_task", episodes_per_task)):
            if value < 1:
                raise EnvError(f"ipd: {name} must be an integer >= 1, got {value!r}")
        if not 0.0 <= payoff_noise < np.inf:
            raise EnvError(f"ipd: payoff_noise must be a finite number >= 0, got {payoff_noise}")
        self.ids = task_ids(tasks, train_tasks, test_tasks)
        self.noise, self.task_seed = float(payoff_noise), int(task_seed)
        self.num_envs, self.episode_len = int(num_envs), int(episode_len)
        self.episodes_per_task, self.onehot = int(episodes_per_task), bool(onehot)
        self.agent_names = ["agent_0", "agent_1"]
        obs = (box_space([N_STATES], 0.0, 1.0) if onehot
               else {"type": "discrete", "n": N_STATES})
        self.obs_spaces = [obs, dict(obs)]
        self.act_spaces = [{"type": "discrete", "n": N_ACTIONS} for _ in range(2)]
        self.shared_reward = False
        self._order = np.asarray(self.ids)
        self.episode = 0
        self._t = 0
        self.task_id = self.ids[0]
        self.payoff = task_payoff(self.task_seed, self.task_id, self.noise)

    def reset(self, seed: int) -> list[np.ndarray]:
        self._order = np.random.default_rng(seed).permutation(np.asarray(self.ids))
        self.episode, self._t = 0, 0
        self._set_task()
        start = np.full(self.num_envs, START, dtype=np.int64)
        return self._obs(start, start)

    def step(self, actions: list[np.ndarray]) -> StepResult:
        a0, a1 = self._check(actions)
        reward = np.stack([self.payoff[a0, a1], self.payoff[a1, a0]])
        final = self._obs(state_of(a0, a1), state_of(a1, a0))
        self._t += 1
        done = self._t >= self.episode_len
        truncated = np.full(self.num_envs, done)
        obs = final
        if done:
            self._t, self.episode = 0, self.episode + 1
            if self.episode % self.episodes_per_task == 0:
                self._set_task()
            start = np.full(self.num_envs, START, dtype=np.int64)
            obs = self._obs(start, start)
        return StepResult(obs=obs, final_obs=final, reward=reward,
                          terminated=np.zeros(self.num_envs, dtype=bool), truncated=truncated)

    def _set_task(self) -> None:
        block = self.episode // self.episodes_per_task
        self.task_id = int(self._order[block % len(self._order)])
        self.payoff = task_payoff(self.task_seed, self.task_id, self.noise)

    def _obs(self, s0: np.ndarray, s1: np.ndarray) -> list[np.ndarray]:
        if self.onehot:
            eye = np.eye(N_STATES, dtype=np.float32)
            return [eye[s0], eye[s1]]
        return [s0.astype(np.int64), s1.astype(np.int64)]

    def _check(self, actions: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        if len(actions) != 2:
            raise EnvError(f"ipd: expected actions for 2 agents, got {len(actions)}")
        out = []
        for i, a in enumerate(actions):
            a = np.asarray(a)
            if a.shape != (self.num_envs,) or a.dtype.kind not in "iu":
                raise EnvError(f"ipd: action of agent {i} must be {self.num_envs} integers, "
                               f"got shape {a.shape} dtype {a.dtype}")
            if a.min() < 0 or a.max() >= N_ACTIONS:
                raise EnvError(f"ipd: action of agent {i} must be 0 (cooperate) or 1 "
                               f"(defect), got {a.tolist()}")
            out.append(a.astype(np.int64, copy=False))
        return out[0], out[1]
