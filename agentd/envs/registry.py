"""The built-in envs, one row each: everything the rest of the code needs to know about one.

Adding a built-in env is one file (its ``VecEnv``) and one row here. ``make_env`` builds a row's
env; the config checks a learner's declared action and observation types against the row
(``refuses``) and takes its default episode length; the summary scores
a run against the row's game facts (an exact optimum, an exact greedy return); a learner may
ask for them too (tabular I2Q needs a deterministic env).

Nothing here imports an env module until it is built (``spread`` needs PettingZoo and mpe2).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agentd.envs.base import VecEnv

# (n_agents, num_envs, episode_len, seed, obs_mode, converted env_args) -> the VecEnv
Build = Callable[[int, int, int, int, str, dict[str, Any]], VecEnv]


@dataclass(frozen=True)
class EnvRow:
    """One built-in env and its facts."""

    name: str
    build: Build
    kwargs: Mapping[str, type]        # env_args it accepts, each with the type it converts to
    action_type: str                  # "discrete" | "box" of its action spaces, or
    obs_type: str                     # of its observations, unless an env arg switches it:
    box_actions_with: tuple[str, bool] | None = None   # (arg, default): Box actions when true
    box_obs_with: tuple[str, bool] | None = None       # (arg, default): Box obs when true
    episode_len: int | None = None    # its default episode length (None: the run config's)
    deterministic: bool = False       # the next state is a function of (state, joint action)
    knows_optimum: bool = False       # known_returns(): its exact optimal (and random) return
    scores_greedy: bool = False       # greedy_return(policies): a greedy joint policy's return
    doc: str = field(default="", compare=False)

    def action_type_of(self, env_args: Mapping[str, Any]) -> str:
        """The type of its action spaces with these env_args: "discrete" or "box"."""
        return _switched(self.action_type, self.box_actions_with, env_args)

    def obs_type_of(self, env_args: Mapping[str, Any]) -> str:
        """The type of its observation spaces with these env_args: "discrete" or "box"."""
        return _switched(self.obs_type, self.box_obs_with, env_args)

    def refuses(self, algo: str, action_type: str, obs_type: str,
                env_args: Mapping[str, Any]) -> str:
        """Why a learner of these action and observation types ("discrete" | "box" | "any")
        cannot run on this env with these env_args ("" if it can)."""
        for what, wants, has, switch in (
                ("actions", action_type, self.action_type_of(env_args), self.box_actions_with),
                ("observations", obs_type, self.obs_type_of(env_args), self.box_obs_with)):
            if wants in ("any", has):
                continue
            if switch is not None:
                flag = f"{switch[0]}={'true' if wants == 'box' else 'false'}"
                return f"{algo!r} needs {wants} {what}; for env {self.name!r} pass --env-arg {flag}"
            if wants == "box":
                return (f"{algo!r} needs continuous (Box) {what}; env {self.name!r} has "
                        f"discrete {what} (use --env spread or an MPE env)")
            return (f"{algo!r} needs discrete {what}; env {self.name!r} has continuous (Box) "
                    f"{what}")
        return ""


def _switched(fixed: str, switch: tuple[str, bool] | None, env_args: Mapping[str, Any]) -> str:
    if switch is None:
        return fixed
    arg, default = switch
    return "box" if env_args.get(arg, default) is True else "discrete"


def _model(target: str) -> Build:
    """A VecEnv class built as ``cls(n, K, episode_len, model_seed=seed, **env_args)``."""
    def build(n: int, k: int, episode_len: int, seed: int, obs_mode: str,
              kwargs: dict[str, Any]) -> VecEnv:
        return _load(target)(n, k, episode_len, model_seed=seed, **kwargs)
    return build


def _unseeded(target: str) -> Build:
    """A VecEnv class without a random model: ``cls(n, K, episode_len, **env_args)``."""
    def build(n: int, k: int, episode_len: int, seed: int, obs_mode: str,
              kwargs: dict[str, Any]) -> VecEnv:
        return _load(target)(n, k, episode_len, **kwargs)
    return build


def _spread(n: int, k: int, episode_len: int, seed: int, obs_mode: str,
            kwargs: dict[str, Any]) -> VecEnv:
    from agentd.envs.pettingzoo_env import PettingZooVecEnv
    from agentd.envs.spread import parallel_env

    return PettingZooVecEnv(parallel_env, k, episode_len, {"N": n, **kwargs},
                            name="env spread", shared_reward=True, obs_mode=obs_mode)


def _load(target: str) -> Any:
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


ENVS: dict[str, EnvRow] = {row.name: row for row in (
    EnvRow("random-mdp", _model("agentd.envs.random_mdp:RandomMDP"),
           {"n_actions": int, "n_states": int}, "discrete", "discrete",
           doc="random cooperative MDP of the decentralized actor-critic paper"),
    EnvRow("digital", _model("agentd.envs.digital:Digital"),
           {"n_states": int, "reward_noise": float}, "discrete", "discrete",
           doc="the digit game of policy reciprocity"),
    EnvRow("spread", _spread, {"max_cycles": int, "continuous_actions": bool}, "discrete",
           "box", box_actions_with=("continuous_actions", True),
           doc="cooperative navigation (MPE simple_spread) with the global state"),
    EnvRow("ipd", _unseeded("agentd.envs.ipd:IPD"),
           {"payoff_noise": float, "task_seed": int, "tasks": str, "train_tasks": str,
            "test_tasks": str, "episodes_per_task": int, "onehot": bool}, "discrete",
           "discrete", box_obs_with=("onehot", False), episode_len=150,
           doc="iterated prisoner's dilemma tasks of the opponent-shaping papers"),
    EnvRow("lstage", _model("agentd.envs.lstage:LStage"), {"L": int}, "discrete",
           "discrete", deterministic=True, knows_optimum=True, scores_greedy=True,
           doc="I2Q's deterministic L-stage game"),
    EnvRow("stochastic-game", _model("agentd.envs.stochastic_game:StochasticGame"),
           {"n_states": int, "n_actions": int, "horizon": int, "one_hot": bool}, "discrete",
           "discrete", box_obs_with=("one_hot", False), knows_optimum=True,
           scores_greedy=True, doc="I2Q's random cooperative stochastic game"),
    EnvRow("matrix", _model("agentd.envs.matrix:MatrixGame"),
           {"game": str, "k": float, "payoff": str}, "discrete", "discrete",
           deterministic=True, knows_optimum=True, scores_greedy=True,
           doc="one-step matrix games (climbing, penalty, or a payoff given)"),
)}
