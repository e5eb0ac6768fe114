"""``agentd env check``: will this ParallelEnv run under agentd, and if not, why.

Runs PettingZoo's own ``parallel_api_test`` and then our env-server contract on K = 2 copies:
every space describable for the wire and the ``env_ready``/``welcome`` messages under the size
cap, resets reproducible from a seed, observations inside their spaces and of their dtype, and
a few vectorised steps with random actions.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from agentd.envs.base import EnvError
from protocols.codec import Codec
from protocols.spaces import box_bounds

# Room the rest of a welcome takes besides the spaces (config, neighbours, weights...).
WELCOME_OVERHEAD = 8 << 10


@dataclass
class Finding:
    """One check: its name, whether it passed, and what a user should know or do."""

    name: str
    ok: bool
    detail: str = ""


def check_env(spec: str, env_kwargs: dict[str, Any], max_bytes: int = 16 << 20,
              steps: int = 5) -> tuple[list[Finding], int, dict[str, set[str]]]:
    """Every check that can run (a failed build stops the ones that need the env), the
    env's number of agents (0 when it could not be built) and the kinds of its spaces
    ({"act": {"discrete"}, "obs": {"box"}}; empty when it could not be built)."""
    from agentd.envs import canonical_env
    from agentd.envs.pettingzoo_env import PettingZooVecEnv, load_factory

    try:
        factory = load_factory(canonical_env(spec))     # a plug-in's name: its factory
    except EnvError as exc:
        return [Finding("factory", False, str(exc))], 0, {}
    out = [_api_test(factory, env_kwargs, steps)]
    try:
        envs = [PettingZooVecEnv(factory, 2, steps, env_kwargs, name=spec) for _ in range(2)]
    except EnvError as exc:
        return [*out, Finding("spaces", False, str(exc))], 0, {}
    try:
        out.append(Finding("spaces", True, _describe(envs[0])))
        out.append(_size(envs[0], max_bytes))
        out += _run(envs, steps)
    finally:
        for env in envs:
            env.close()
    kinds = {"act": {a["type"] for a in envs[0].act_spaces},
             "obs": {o["type"] for o in envs[0].obs_spaces}}
    return out, envs[0].n_agents, kinds


def _api_test(factory: Callable[..., Any], kwargs: dict[str, Any], steps: int) -> Finding:
    from pettingzoo.test import parallel_api_test

    try:
        env = factory(**kwargs)
    except Exception as exc:  # noqa: BLE001 - a user's factory may raise anything
        return Finding("pettingzoo parallel_api_test", False,
                       f"creating the env with {kwargs} failed: {type(exc).__name__}: {exc}")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            parallel_api_test(env, num_cycles=steps)
        return Finding("pettingzoo parallel_api_test", True, f"{steps} cycles")
    except Exception as exc:  # noqa: BLE001 - the API test raises assertions and env errors
        return Finding("pettingzoo parallel_api_test", False,
                       f"{type(exc).__name__}: {exc or 'assertion failed'}")
    finally:
        with contextlib.suppress(Exception):
            env.close()


def _describe(env: Any) -> str:
    def one(space: dict) -> str:
        if space["type"] == "discrete":
            return f"Discrete({space['n']})"
        return f"Box{tuple(space['shape'])} {space['dtype']}"

    kinds = sorted({f"obs {one(o)}, act {one(a)}" for o, a in zip(env.obs_spaces,
                                                                  env.act_spaces)})
    return f"{env.n_agents} agents: " + "; ".join(kinds)


def _size(env: Any, max_bytes: int) -> Finding:
    spaces = {"obs": env.obs_spaces, "act": env.act_spaces, "agents": env.agent_names}
    size = len(Codec().pack({"spaces": spaces})) + WELCOME_OVERHEAD
    ok = size <= max_bytes
    detail = f"env_ready/welcome about {size:,} bytes of a {max_bytes:,}-byte cap"
    if not ok:
        detail += "; raise it with --max-msg-bytes"
    return Finding("message size", ok, detail)


def _run(envs: list[Any], steps: int) -> list[Finding]:
    """Reset both copies of the env from one seed and step them with the same random
    actions: the same observations and rewards each time, all inside their spaces."""
    from agentd.algorithms.tabular.random_policy import box_sampling_bounds

    rng = np.random.default_rng(0)
    problems: list[str] = []
    same = True
    try:
        first = [e.reset(seed=7) for e in envs]
        same &= _equal(first[0], first[1])
        problems += _outside(envs[0], first[0], "after reset")
        for t in range(1, steps + 1):
            acts = _random_actions(envs[0], rng, box_sampling_bounds)
            res = [e.step(acts) for e in envs]
            same &= _equal(res[0].obs, res[1].obs) and np.array_equal(res[0].reward,
                                                                      res[1].reward)
            problems += _outside(envs[0], res[0].final_obs, f"at step {t}")
    except EnvError as exc:
        return [Finding("vectorised steps", False, str(exc))]
    return [Finding("reproducible seeds", same, "" if same else
                    "two resets with the same seed and the same actions gave different "
                    "observations or rewards: seed every random generator from reset(seed)"),
            Finding("observations inside their spaces", not problems, "; ".join(problems[:3])),
            Finding("vectorised steps", True, f"{steps} steps of 2 copies")]


def _random_actions(env: Any, rng: np.random.Generator, bounds: Callable) -> list[np.ndarray]:
    out = []
    for space in env.act_spaces:
        if space["type"] == "discrete":
            out.append(rng.integers(space["n"], size=env.num_envs))
        else:
            lo, hi = bounds(space)
            out.append((lo + rng.random((env.num_envs, *lo.shape)) * (hi - lo))
                       .astype(np.float32))
    return out


def _equal(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return all(np.array_equal(x, y, equal_nan=True) for x, y in zip(a, b))


def _outside(env: Any, obs: list[np.ndarray], when: str) -> list[str]:
    out = []
    for name, space, o in zip(env.agent_names, env.obs_spaces, obs):
        if space["type"] == "discrete":
            if o.min() < 0 or o.max() >= space["n"]:
                out.append(f"{name} {when}: {o.tolist()} outside Discrete({space['n']})")
        else:
            low, high = box_bounds(space)
            bad = np.argwhere(~((o >= low) & (o <= high)))
            if len(bad):
                at = tuple(bad[0])
                out.append(f"{name} {when}: {len(bad)} values outside the Box, e.g. "
                           f"{o[at]} not in [{low[at[1:]]}, {high[at[1:]]}]")
    return out


# The learner a ready env's command suggests: the first of these whose declared spaces fit
# (a tabular learner, else a deep one for Box spaces), else the first registered one that fits.
PREFERRED = ("dac", "dac-deep", "ippo")


def pick_learner(kinds: dict[str, set[str]]) -> str:
    """A registered, private, decentralised learner whose declared action and observation
    types fit these space kinds ("" if none can be loaded here)."""
    from agentd.algorithms import ALGORITHMS, load_learner_class
    from agentd.algorithms.base import LearnerConfigError

    for name in dict.fromkeys([*PREFERRED, *ALGORITHMS]):
        try:
            cls = load_learner_class(name)
        except LearnerConfigError:      # e.g. a deep learner without PyTorch installed
            continue
        if cls.non_private_reason({}):
            continue
        if all(cls.action_type in ("any", k) for k in kinds.get("act", ())) and \
                all(cls.obs_type in ("any", k) for k in kinds.get("obs", ())):
            return name
    return ""


def report(spec: str, findings: list[Finding], env_args: list[str] | None = None,
           n_agents: int = 0, kinds: dict[str, set[str]] | None = None) -> tuple[str, bool]:
    """The text a user reads and whether the env passed; a ready env gets a command with a
    learner whose declared spaces fit it (``pick_learner``)."""
    lines = [f"env check: {spec}"]
    command = " ".join([f"--n {n_agents} --env {spec}",
                        *(f"--env-arg {a}" for a in env_args or [])])
    lines += [f"  [{'ok' if f.ok else 'FAIL'}] {f.name}" + (f": {f.detail}" if f.detail else "")
              for f in findings]
    failed = [f.name for f in findings if not f.ok]
    if failed:
        lines.append(f"verdict: NOT ready: {len(failed)} problem(s): {', '.join(failed)}")
        return "\n".join(lines), False
    algo = pick_learner(kinds or {})
    lines.append("verdict: ready: agentd launch " + command + (f" --algo {algo}" if algo else ""))
    if algo:
        shown = "; ".join(f"{what} {', '.join(sorted((kinds or {}).get(key, ())))}"
                          for key, what in (("act", "actions"), ("obs", "observations")))
        lines.append(f"  ({algo}: the first of {', '.join(PREFERRED)} whose declared spaces fit "
                     f"this env's ({shown}); agentd algos lists every learner's)")
    return "\n".join(lines), True
