"""Environments the env server can step: the built-ins and any PettingZoo ParallelEnv.

``make_env`` builds one from its id; ``check_env_id`` is the cheap syntax check used when a
config is validated (it imports nothing). PettingZoo (and mpe2) are imported only for env ids
that need them: PettingZoo ids and "spread".

Plug-ins: an installed distribution may name PettingZoo ParallelEnv factories in the
``agentd.envs`` entry-point group (``[project.entry-points."agentd.envs"] mine =
"mypkg.env:parallel_env"``); ``--env mine`` then means that factory, and a run records it as
its ``module:callable`` (``canonical_env``), so every host builds the same env.

``obs_mode`` "state" makes every agent observe the env's global state; for random-mdp and
digital the observation already is the global state, so both modes are the same there.
"""

from __future__ import annotations

from typing import Any

from agentd.envs.base import OBS_MODES, EnvError, StepResult, VecEnv
from agentd.envs.registry import ENVS, EnvRow

BUILTIN_ENVS = tuple(ENVS)
# Built-ins whose transitions are deterministic given the joint action (tabular I2Q needs it).
DETERMINISTIC_ENVS = tuple(name for name, row in ENVS.items() if row.deterministic)

__all__ = ["BUILTIN_ENVS", "ENVS", "ENV_GROUP", "OBS_MODES", "EnvError", "EnvRow", "StepResult",
           "VecEnv", "canonical_env", "check_env_id", "make_env", "plugin_envs"]
ENV_GROUP = "agentd.envs"       # entry-point group of plug-in envs (PettingZoo factories)


def _unknown(env_id: str) -> EnvError:
    plugins = plugin_envs()
    return EnvError(f"unknown env id {env_id!r}: use one of {', '.join(BUILTIN_ENVS)}"
                    + (f", an installed plug-in ({', '.join(plugins)})" if plugins else "")
                    + " or a PettingZoo ParallelEnv as module:callable "
                    "(e.g. mpe2.simple_spread_v3:parallel_env)")


def entry_point_targets(group: str, builtins: Any) -> dict[str, str]:
    """Installed plug-ins of an entry-point group: name -> its ``module:attr``, names in
    ``builtins`` left out (a built-in name means the built-in). Shared by the env and the
    learner registries (this package is the lower of the two)."""
    import importlib.metadata  # only when a name is not a built-in one

    found: dict[str, str] = {}
    for ep in importlib.metadata.entry_points(group=group):
        if ep.name not in builtins:
            found.setdefault(ep.name, ep.value.strip())
    return found


def plugin_envs() -> dict[str, str]:
    """Installed plug-in envs: entry-point name -> ``module:callable`` (group
    ``agentd.envs``), built-in names left out (a built-in name means the built-in)."""
    return entry_point_targets(ENV_GROUP, ENVS)


def canonical_env(env_id: str) -> str:
    """What a run records for ``--env``: a built-in id or a ``module:callable`` as it is, an
    installed plug-in's entry-point name as its ``module:callable``."""
    if env_id in ENVS or not isinstance(env_id, str) or ":" in env_id:
        return env_id
    return plugin_envs().get(env_id, env_id)


def check_env_id(env_id: str) -> None:
    """Raise EnvError unless env_id is a built-in or well-formed "module:callable"."""
    if env_id in ENVS:
        return
    env_id = canonical_env(env_id)
    if isinstance(env_id, str) and (":" in env_id or "." in env_id):
        from agentd.envs.pettingzoo_env import split_factory_spec

        split_factory_spec(env_id)
        return
    raise _unknown(env_id)


def make_env(env_id: str, *, n_agents: int, num_envs: int, episode_len: int, seed: int,
             env_kwargs: dict[str, Any], obs_mode: str = "local") -> VecEnv:
    """Build the VecEnv named by env_id for n_agents agents and num_envs copies.

    ``seed`` fixes the model of built-in random envs (P and the rewards); the trajectory
    randomness comes from the seed later passed to ``reset``. ``obs_mode`` is "local" (each
    agent's own observation) or "state" (the env's global state for every agent).
    """
    env_id = canonical_env(env_id)
    check_env_id(env_id)
    if obs_mode not in OBS_MODES:
        raise EnvError(f"obs_mode must be one of {', '.join(OBS_MODES)}, got {obs_mode!r}")
    row = ENVS.get(env_id)
    if row is not None:
        return row.build(n_agents, num_envs, episode_len, seed, obs_mode,
                         _builtin_kwargs(row, env_kwargs))

    from agentd.envs.pettingzoo_env import PettingZooVecEnv, load_factory

    env = PettingZooVecEnv(load_factory(env_id), num_envs, episode_len, env_kwargs,
                           name=f"env {env_id}", obs_mode=obs_mode)
    if env.n_agents != n_agents:
        env.close()
        raise EnvError(f"env {env_id} has {env.n_agents} agents but n={n_agents}; pass "
                       f"env_kwargs (e.g. --env-arg N={n_agents})")
    return env


def _builtin_kwargs(row: EnvRow, env_kwargs: dict[str, Any]) -> dict[str, Any]:
    """env_kwargs of a built-in env converted to their types, or EnvError naming the key."""
    env_id, allowed = row.name, row.kwargs
    unknown = sorted(set(env_kwargs) - set(allowed))
    if unknown:
        raise EnvError(f"unknown env_kwargs {unknown} for {env_id}; "
                       f"allowed: {sorted(allowed)}")
    converted = {}
    for key, value in env_kwargs.items():
        kind = allowed[key]
        if kind is bool:
            if not isinstance(value, bool):   # bool("false") would be True
                raise EnvError(f"{env_id}: {key} must be true or false, got {value!r}")
            converted[key] = value
            continue
        try:
            converted[key] = kind(value)
            if kind is int and isinstance(value, float) and value != converted[key]:
                raise ValueError
        except (TypeError, ValueError):
            noun = "an integer" if kind is int else "a number"
            raise EnvError(f"{env_id}: {key} must be {noun}, got {value!r}") from None
    return converted
