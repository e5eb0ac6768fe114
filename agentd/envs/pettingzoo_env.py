"""K copies of any PettingZoo ParallelEnv, made by a ``module.path:callable`` factory.

With ``obs_mode="state"`` every agent observes the env's global state (PettingZoo's
``state()`` / ``state_space``) instead of its own observation.

pettingzoo and gymnasium are imported only inside the functions that need them, so that
importing this module (e.g. for ``split_factory_spec`` during config validation) stays cheap.
It stays whole past ~300 lines: the adapter's spaces, resets and steps are one contract.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from agentd.envs.base import OBS_MODES, EnvError, StepResult, VecEnv
from agentd.envs.pz_spaces import describe_space, describe_with_flatten
from protocols.spaces import box_bounds, obs_dtype

__all__ = ["PettingZooVecEnv", "describe_space", "load_factory", "split_factory_spec"]

_DOTTED = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
_SPEC = re.compile(rf"({_DOTTED}):({_DOTTED})")


def split_factory_spec(spec: str) -> tuple[str, str]:
    """Split "module.path:callable" into its two parts (syntax only, imports nothing)."""
    match = _SPEC.fullmatch(spec.strip()) if isinstance(spec, str) else None
    if match is None:
        module, _, attr = spec.strip().rpartition(".") if isinstance(spec, str) else ("", "", "")
        hint = (f" (did you mean '{module}:{attr}'?)"
                if ":" not in spec and module and _SPEC.fullmatch(f"{module}:{attr}") else "")
        raise EnvError(f"bad env factory {spec!r}: expected 'module.path:callable', "
                       f"e.g. 'mpe2.simple_spread_v3:parallel_env'{hint}")
    return match.group(1), match.group(2)


def load_factory(spec: str) -> Callable[..., Any]:
    """Import the callable named by "module.path:callable"."""
    module_name, attr_path = split_factory_spec(spec)
    try:
        obj: Any = _import_dotted(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise EnvError(f"env factory {spec!r}: module '{module_name}' not found "
                           "(is the package installed in this environment?)") from None
        raise EnvError(f"env factory {spec!r}: importing '{module_name}' failed: {exc}") from exc
    except Exception as exc:  # any import-time failure becomes a clear error
        raise EnvError(f"env factory {spec!r}: importing '{module_name}' failed: "
                       f"{type(exc).__name__}: {exc}") from exc
    for part in attr_path.split("."):
        if not hasattr(obj, part):
            raise EnvError(f"env factory {spec!r}: module '{module_name}' has no attribute "
                           f"'{attr_path}'")
        obj = getattr(obj, part)
    if not callable(obj):
        raise EnvError(f"env factory {spec!r}: '{attr_path}' is a {type(obj).__name__}, "
                       "not callable")
    return obj


def _import_dotted(name: str) -> Any:
    """Import a module, or reach a module-valued attribute of its parent: packages such as
    gymnasium_robotics expose ``mamujoco_v1`` as an attribute, not an importable submodule,
    and ``gymnasium_robotics.mamujoco_v1:parallel_env`` is how their docs spell the env."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        parent, _, attr = name.rpartition(".")
        if not parent or exc.name != name:
            raise
        obj = _import_dotted(parent)
        if not hasattr(obj, attr):
            raise
        return getattr(obj, attr)


class PettingZooVecEnv(VecEnv):
    """K instances of a ParallelEnv stepped together, with auto-reset and an episode cap.

    obs_mode "local": each agent observes its own observation; "state": every agent observes
    the env's global state ``env.state()`` (the env must have ``state`` and ``state_space``).
    """

    def __init__(self, factory: Callable[..., Any], num_envs: int, episode_len: int,
                 env_kwargs: dict[str, Any] | None = None, name: str = "pettingzoo env",
                 shared_reward: bool = False, obs_mode: str = "local") -> None:
        if num_envs < 1 or episode_len < 1:
            raise EnvError(f"{name}: num_envs and episode_len must be >= 1, "
                           f"got {num_envs} and {episode_len}")
        if obs_mode not in OBS_MODES:
            raise EnvError(f"{name}: obs_mode must be one of {', '.join(OBS_MODES)}, "
                           f"got {obs_mode!r}")
        self.name = name
        self.obs_mode = obs_mode
        self.num_envs = int(num_envs)
        self.episode_len = int(episode_len)
        self.envs = [self._make(factory, env_kwargs or {}) for _ in range(self.num_envs)]
        first = self.envs[0]
        self.agent_names = list(first.possible_agents)
        if not self.agent_names:
            raise EnvError(f"{name}: the env has no agents (possible_agents is empty)")
        self._flatten: list[Any] = [None] * len(self.agent_names)
        if obs_mode == "state":
            state_space = self._state_space(first)
            self.obs_spaces = [dict(state_space) for _ in self.agent_names]
        else:
            described = [describe_with_flatten(first.observation_space(a), a)
                         for a in self.agent_names]
            self.obs_spaces = [d for d, _ in described]
            self._flatten = [f for _, f in described]
        self.act_spaces = [describe_space(first.action_space(a), a, "action")
                           for a in self.agent_names]
        self.shared_reward = bool(shared_reward)
        self._act_bounds = [self._bounds(sp) for sp in self.act_spaces]
        self._seed = 0
        self._episodes = np.zeros(self.num_envs, dtype=np.int64)
        self._t = np.zeros(self.num_envs, dtype=np.int64)
        self._last_obs: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        # per copy and agent: finished this episode (terminated or truncated), and terminated
        self._gone = np.zeros((self.num_envs, len(self.agent_names)), dtype=bool)
        self._gone_term = np.zeros_like(self._gone)

    # ---- VecEnv -------------------------------------------------------------------------

    def reset(self, seed: int) -> list[np.ndarray]:
        self._seed = int(seed)
        self._episodes[:] = 0
        self._t[:] = 0
        for k in range(self.num_envs):
            self._reset_copy(k)
        return self._gather(self._last_obs)

    def step(self, actions: list[np.ndarray]) -> StepResult:
        actions = self._check_actions(actions)
        n, K = self.n_agents, self.num_envs
        final: list[dict[str, Any]] = []
        reward = np.zeros((n, K), dtype=np.float64)
        agent_term = np.zeros((n, K), dtype=bool)
        agent_trunc = np.zeros((n, K), dtype=bool)
        for k, env in enumerate(self.envs):
            joint = {a: self._env_action(i, actions[i][k]) for i, a in enumerate(self.agent_names)
                     if a in env.agents}
            obs, rew, term, trunc, _ = env.step(joint)
            gone = dict(zip(self.agent_names, self._gone[k]))
            obs = self._flat({a: o for a, o in obs.items() if not gone.get(a, True)})
            # An agent missing from this step's obs (or finished before it) keeps its last
            # observation. In state mode this is the state at the end of the transition,
            # before any auto-reset.
            final.append(self._observation(k, {**self._last_obs[k], **obs}))
            # A finished agent gets no reward until its copy resets, whatever the env says.
            reward[:, k] = [0.0 if self._gone[k, i] else float(rew.get(a, 0.0))
                            for i, a in enumerate(self.agent_names)]
            self._t[k] += 1
            agent_term[:, k], agent_trunc[:, k] = self._agent_flags(k, env, term, trunc)
            self._last_obs[k] = final[k]
        terminated = agent_term.all(axis=0)
        truncated = agent_trunc.any(axis=0) & (agent_term | agent_trunc).all(axis=0)
        for k in np.flatnonzero(terminated | truncated):
            self._episodes[k] += 1
            self._reset_copy(int(k))
        return StepResult(obs=self._gather(self._last_obs), final_obs=self._gather(final),
                          reward=reward, terminated=terminated, truncated=truncated,
                          agent_terminated=agent_term, agent_truncated=agent_trunc)

    def _agent_flags(self, k: int, env: Any, term: dict, trunc: dict
                     ) -> tuple[np.ndarray, np.ndarray]:
        """Per-agent (terminated, truncated) of copy k after a step. An agent that finished
        earlier stays terminated (or truncated) until the copy resets; the copy ends when no
        agent is left or at the episode cap, which truncates every agent still playing."""
        names = self.agent_names
        done_now = np.array([bool(term.get(a, False)) for a in names])
        cut_now = np.array([bool(trunc.get(a, False)) and not done_now[i]
                            for i, a in enumerate(names)])
        # one that left env.agents with neither flag set is taken as truncated
        left = np.array([a not in env.agents for a in names]) & ~self._gone[k] & ~done_now
        done = self._gone_term[k] | done_now
        cut = (self._gone[k] & ~self._gone_term[k]) | cut_now | left
        self._gone_term[k] |= done
        self._gone[k] |= done | cut
        if self._t[k] >= self.episode_len or self._gone[k].all():
            cut = cut | ~done
        return done, cut

    def close(self) -> None:
        for env in self.envs:
            env.close()

    # ---- plumbing -----------------------------------------------------------------------

    def _make(self, factory: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
        from pettingzoo.utils.env import AECEnv

        try:
            env = factory(**kwargs)
        except Exception as exc:  # a user's factory may raise anything
            raise EnvError(f"{self.name}: creating the env with {kwargs} failed: "
                           f"{type(exc).__name__}: {exc}") from exc
        if isinstance(env, AECEnv):
            raise EnvError(f"{self.name} is an AEC env; pass a ParallelEnv factory "
                           "(e.g. module:parallel_env)")
        missing = [m for m in ("possible_agents", "reset", "step", "observation_space",
                               "action_space") if not hasattr(env, m)]
        if missing:
            raise EnvError(f"{self.name} did not return a PettingZoo ParallelEnv "
                           f"(missing {missing})")
        return env

    def _reset_copy(self, k: int) -> None:
        seed = np.random.SeedSequence([self._seed, k, int(self._episodes[k])])
        obs, _ = self.envs[k].reset(seed=int(seed.generate_state(1)[0]))
        obs = self._flat(obs)
        absent = [a for a in self.agent_names if a not in obs]
        if absent:
            raise EnvError(f"{self.name}: agents {absent} have no observation after reset")
        self._last_obs[k] = self._observation(k, obs)
        self._t[k] = 0
        self._gone[k] = self._gone_term[k] = False

    def _flat(self, obs: dict[str, Any]) -> dict[str, Any]:
        """Dict/Tuple observations flattened (see ``pz_spaces``); others as they are."""
        if not any(self._flatten):
            return obs
        where = dict(zip(self.agent_names, self._flatten))
        return {a: o if where.get(a) is None else where[a](o) for a, o in obs.items()}

    def _state_space(self, env: Any) -> dict:
        """The described state_space of env, or EnvError when the env has no global state."""
        space = getattr(env, "state_space", None)
        if space is None or not callable(getattr(env, "state", None)):
            raise EnvError(f"{self.name} has no global state (no state() / state_space), so "
                           "agents cannot observe it; run with --obs local")
        try:
            desc, flatten = describe_with_flatten(space, "state")
            if flatten is not None:
                raise EnvError(f"a {type(space).__name__} state is not flattened")
            return desc
        except EnvError as exc:
            raise EnvError(f"{self.name}: its state_space cannot be observed ({exc}); run "
                           "with --obs local") from None

    def _observation(self, k: int, local: dict[str, Any]) -> dict[str, Any]:
        """What each agent of copy k observes now: its own obs, or the env's global state."""
        if self.obs_mode == "local":
            return local
        try:
            state = np.asarray(self.envs[k].state(), dtype=obs_dtype(self.obs_spaces[0]))
        except NotImplementedError:
            raise EnvError(f"{self.name} does not implement state(); run with "
                           "--obs local") from None
        want = tuple(self.obs_spaces[0].get("shape", ()))
        if state.shape != want:
            raise EnvError(f"{self.name}: state() has shape {state.shape} but state_space "
                           f"says {want}")
        return {a: state for a in self.agent_names}

    def _gather(self, per_copy: list[dict[str, Any]]) -> list[np.ndarray]:
        out = []
        for a, space in zip(self.agent_names, self.obs_spaces):
            dtype = obs_dtype(space)
            out.append(np.stack([np.asarray(obs[a], dtype=dtype) for obs in per_copy]))
        return out

    @staticmethod
    def _bounds(space: dict) -> tuple[np.ndarray, np.ndarray] | None:
        if space["type"] != "box":
            return None
        return box_bounds(space, np.float32)

    def _env_action(self, i: int, action: np.ndarray) -> Any:
        return int(action) if self._act_bounds[i] is None else action

    def _check_actions(self, actions: list[np.ndarray]) -> list[np.ndarray]:
        """Per-agent action arrays in the env's dtype, or EnvError naming the agent."""
        if len(actions) != self.n_agents:
            raise EnvError(f"{self.name}: expected actions for {self.n_agents} agents, "
                           f"got {len(actions)}")
        out = []
        for name, space, bounds, a in zip(self.agent_names, self.act_spaces,
                                          self._act_bounds, actions):
            a = np.asarray(a)
            where = f"{self.name}: action of agent {name}"
            shape = (self.num_envs,) + (() if bounds is None else tuple(space["shape"]))
            if a.shape != shape:
                raise EnvError(f"{where} must have shape {shape}, got {a.shape}")
            if bounds is None:
                if a.dtype.kind not in "iu" or a.min() < 0 or a.max() >= space["n"]:
                    raise EnvError(f"{where} must be integers in [0, {space['n']}), "
                                   f"got {a.tolist()}")
                out.append(a.astype(np.int64, copy=False))
            else:
                if a.dtype.kind not in "iuf":
                    raise EnvError(f"{where} must be numbers, got dtype {a.dtype}")
                a = a.astype(np.float32, copy=False)
                if not (np.all(a >= bounds[0]) and np.all(a <= bounds[1])):
                    raise EnvError(f"{where} is outside the Box [{_brief(space['low'])}, "
                                   f"{_brief(space['high'])}] (or not finite)")
                out.append(a.astype(space.get("dtype", "float32"), copy=False))
        return out


def _brief(bound: Any) -> str:
    """A bound for an error message: the number, or the array's range."""
    arr = np.asarray(bound)
    return f"{float(arr)}" if arr.ndim == 0 else f"{arr.min()}..{arr.max()} per element"
