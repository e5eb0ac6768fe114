"""Evaluate a finished run's saved policies: ``agentd evaluate RUN --agent I | --all``.

The run's config gives its plan (``agentd.plan``); the env is built as the env server built it
and every learner as its agent process built it, then loaded from the run's final checkpoint
(``checkpoints/agent-<i>.npz``). Every agent plays its saved policy through ``act_eval``
(greedy where the learner defines it: the argmax of Q, the mode of its distribution; else as
it acted in training) for N episodes on fresh resets of the env; nothing is learned. The
report gives each env agent's own return per episode and the team return (the mean over
agents, as a run's ``final_return`` counts it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agentd.agent.core import build_learner
from agentd.algorithms.base import Learner
from agentd.config import ConfigError, RunConfig, resolve
from agentd.configfile import load_toml
from agentd.envs import make_env
from agentd.envs.base import VecEnv
from agentd.plan import RunPlan, plan
from protocols.codec import Codec


class EvaluateError(ValueError):
    """A run directory that cannot be evaluated (what is missing, and why)."""


@dataclass
class Evaluation:
    """Per-episode returns of a run's saved policies."""

    team: list[float] = field(default_factory=list)          # mean over env agents
    agents: dict[int, list[float]] = field(default_factory=dict)   # env agent -> own return
    lengths: list[int] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        def stats(v: list[float]) -> dict[str, float]:
            a = np.asarray(v, dtype=float)
            return {"mean": float(a.mean()), "std": float(a.std()), "min": float(a.min()),
                    "max": float(a.max())}
        return {"episodes": len(self.team), "team": stats(self.team),
                "agents": {str(i): stats(v) for i, v in self.agents.items()},
                "mean_length": float(np.mean(self.lengths))}


def run_config(run_dir: Path) -> RunConfig:
    path = run_dir / "config.toml"
    if not path.exists():
        raise EvaluateError(f"{run_dir} has no config.toml: not a run directory")
    try:
        return resolve(load_toml(path), {})
    except ConfigError as exc:
        raise EvaluateError(f"{path}: {exc}") from None


def env_of(p: RunPlan, num_envs: int) -> VecEnv:
    """The plan's env as the env server builds it, with ``num_envs`` copies."""
    e = p.env
    return make_env(e.id, n_agents=e.n_agents, num_envs=num_envs, episode_len=e.episode_len,
                    seed=e.model_seed, env_kwargs=dict(e.args), obs_mode=e.obs)


def saved_learners(run_dir: Path, p: RunPlan, config: RunConfig, env: VecEnv
                   ) -> list[Learner]:
    """Every agent's learner, built from its part of the plan and loaded from its final
    checkpoint."""
    codec = Codec()
    spaces = codec.unpack(codec.pack({"obs": env.obs_spaces, "act": env.act_spaces,
                                      "shared_reward": env.shared_reward}))
    cfg = codec.unpack(codec.pack({**config.to_dict(), "num_envs": env.num_envs}))
    turn = {} if p.turns is None else {"turn": codec.unpack(codec.pack(p.turns))}
    learners = []
    for a in p.agents:
        path = run_dir / "checkpoints" / f"agent-{a.id}.npz"
        if not path.exists():
            raise EvaluateError(f"{path} is missing: the run did not finish, or agent {a.id}'s "
                                "files were not shipped here")
        learner = build_learner({**p.agent_info(a.id), "config": cfg, "spaces": spaces,
                                 "neighbours": list(a.neighbours), **turn})
        with np.load(path, allow_pickle=False) as saved:
            learner.load_state_dict({k: saved[k] for k in saved.files})
        learners.append(learner)
    return learners


def evaluate(run_dir: Path, episodes: int, seed: int = 1, num_envs: int = 1) -> Evaluation:
    """Play ``episodes`` episodes with every agent's saved policy (see the module doc)."""
    if episodes < 1:
        raise EvaluateError(f"--episodes must be at least 1, got {episodes}")
    config = run_config(run_dir)
    p = plan(config)
    env = env_of(p, num_envs)
    learners = saved_learners(run_dir, p, config, env)
    out = Evaluation(agents={i: [] for i in range(env.n_agents)})
    own = np.zeros((env.n_agents, num_envs))
    length = np.zeros(num_envs, dtype=int)
    obs = env.reset(seed)
    while len(out.team) < episodes:
        joint: list = [None] * env.n_agents
        for a, learner in zip(p.agents, learners, strict=True):
            view = [obs[c] for c in a.view]
            seen = view[0] if len(view) == 1 else np.stack(view, axis=1)
            act = np.asarray(learner.act_eval(seen))
            for j, c in enumerate(a.controls):
                joint[c] = act if len(a.controls) == 1 else act[:, j]
        res = env.step(joint)
        own += res.reward
        length += 1
        for k in np.nonzero(res.terminated | res.truncated)[0]:
            if len(out.team) < episodes:
                out.team.append(float(own[:, k].mean()))
                for i in range(env.n_agents):
                    out.agents[i].append(float(own[i, k]))
                out.lengths.append(int(length[k]))
            own[:, k] = 0.0
            length[k] = 0
        obs = res.obs
    return out
