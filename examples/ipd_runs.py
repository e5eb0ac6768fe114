"""What the ipd examples share: two shaping agents played in one process, their per-episode
scalars, and 95% confidence intervals over seeds.

The sweeps use ``agentd.launch.inprocess``: the same learner classes and the same env as a live
``agentd launch`` run, driven by the same ``AgentCore`` hooks, but without sockets (a 2-core
machine cannot afford one process per agent for hundreds of runs). The README shows each
learner in a real launch too.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

from agentd.algorithms.base import Learner
from agentd.launch.inprocess import build_env, make_learners, run_in_process

HORIZON = 150


def ci95(values: list[float] | np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean and half-width of the 95% t-interval over ``axis`` (the seeds)."""
    x = np.asarray(values, dtype=float)
    n = x.shape[axis]
    half = stats.t.ppf(0.975, n - 1) * x.std(axis=axis, ddof=1) / np.sqrt(n) if n > 1 else 0.0
    return x.mean(axis=axis), half


def new_pair(algo: str, seed: int, params: dict[str, Any], num_envs: int = 1,
             env_args: dict[str, Any] | None = None) -> tuple[Any, list[Learner]]:
    env = build_env("ipd", 2, num_envs=num_envs, episode_len=HORIZON, env_args=env_args)
    return env, make_learners(algo, env, 2, "line", seed, params)


def play(env: Any, learners: list[Learner], episodes: int, seed: int
         ) -> list[list[dict[str, float]]]:
    """Play ``episodes`` episodes; per agent, the scalars of each episode in order."""
    out = run_in_process(env, learners, HORIZON * episodes, reset_seed=seed,
                         metrics_every=HORIZON)
    per_agent: list[list[dict[str, float]]] = [[], []]
    for _, agent, scalars in sorted(out.scalars, key=lambda x: (x[0], x[1])):
        per_agent[agent].append(scalars)
    return per_agent


def p_cooperate(logits: np.ndarray) -> list[float]:
    """P(C | start, CC, CD, DC, DD) of a 5 x 2 logit table."""
    z = np.asarray(logits)
    return (1.0 / (1.0 + np.exp(z[:, 1] - z[:, 0]))).round(2).tolist()
