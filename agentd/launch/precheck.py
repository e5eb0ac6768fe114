"""Fail fast: everything about a run that can be known before a process starts, checked in the
launcher (the local one, the Ray one and the in-process backend call ``precheck``).

``agentd.config.resolve`` has already checked every field on its own and the learner's params;
what only the env knows is checked here, by building the run's env once, as the env server
will (one copy): that its module imports, that its factory takes the env_args, its number of
agents against ``n``, its action and observation spaces against the learner's declared types
(and, for a learner that needs no PyTorch, against the learner itself: agent 0's learner is
built from its welcome as its process would build it), and the welcome's size against the
message cap. A mistake here is a ``ConfigError`` naming the field, raised before any child
process, run directory or warning: warnings the env gives while it is built are held back and
shown only once every check has passed.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import Any

from agentd.agent.core import build_learner
from agentd.algorithms import load_learner_class
from agentd.algorithms.base import Learner, LearnerConfigError
from agentd.config import ConfigError, RunConfig
from agentd.envs import ENVS, make_env
from agentd.envs.base import EnvError, VecEnv
from agentd.plan import RunPlan, plan
from agentd.runtime.layers import oversize_advice
from agentd.runtime.localplane import machine
from protocols.codec import Codec
from protocols.envelope import encode

__all__ = ["precheck"]


def precheck(config: RunConfig, run_plan: RunPlan | None = None) -> RunPlan:
    """The run's plan, once every check above has passed; else ``ConfigError``."""
    p = run_plan or plan(config)
    learner = _learner_class(config)
    with warnings.catch_warnings(record=True) as held:
        warnings.simplefilter("always")
        env = _probe_env(config, p)
        try:
            spaces = {"obs": env.obs_spaces, "act": env.act_spaces,
                      "shared_reward": env.shared_reward}
            _check_types(config, learner, spaces)
            _check_size(config, p, env)
        finally:
            with contextlib.suppress(Exception):
                env.close()
        if not learner.needs_torch:
            _build_learners(config, p, spaces)
    for w in held:      # the run goes ahead: what the env said is shown, as it would be
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return p


def _learner_class(c: RunConfig) -> type[Learner]:
    try:
        return load_learner_class(c.algo)
    except LearnerConfigError as exc:
        raise ConfigError(f"'algo': {exc}") from None


def _probe_env(c: RunConfig, p: RunPlan) -> VecEnv:
    """The plan's env as the env server builds it, with one copy; its output is held back."""
    e = p.env
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return make_env(e.id, n_agents=e.n_agents, num_envs=1, episode_len=e.episode_len,
                            seed=e.model_seed, env_kwargs=dict(e.args), obs_mode=e.obs)
    except EnvError as exc:
        raise ConfigError(f"'env' {c.env!r}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a user's env factory may raise anything
        raise ConfigError(f"'env' {c.env!r} could not be built with env_args {e.args}: "
                          f"{type(exc).__name__}: {exc}") from None


def _check_types(c: RunConfig, learner: type[Learner], spaces: dict[str, Any]) -> None:
    """The learner's declared action and observation types against the env's spaces."""
    for what, wants, have in (("actions", learner.action_type, spaces["act"]),
                              ("observations", learner.obs_type, spaces["obs"])):
        kinds = sorted({s["type"] for s in have})
        if wants == "any" or kinds == [wants]:
            continue
        shown = " and ".join(_kind_name(k) for k in kinds)
        hint = (" (its obs setting is 'state': the env's global state)"
                if what == "observations" and c.obs == "state" else "")
        if what == "actions" and c.env.startswith("mpe2.") and wants in ("discrete", "box"):
            hint += (". An MPE env switches with --env-arg continuous_actions="
                     + ("false" if wants == "discrete" else "true"))
        which = "agentd algos lists each learner's actions and obs" if c.env in ENVS else \
            f"agentd env check {c.env} names a learner that fits"
        raise ConfigError(
            f"'algo' {c.algo!r} needs {_kind_name(wants)} {what}; env {c.env!r} has {shown} "
            f"{what}{hint}. {which}")


def _kind_name(kind: str) -> str:
    return {"discrete": "discrete", "box": "continuous (Box)"}.get(kind, kind)


def _check_size(c: RunConfig, p: RunPlan, env: VecEnv) -> None:
    """The env server's env_ready and the busiest agent's welcome, encoded as they will be
    (with endpoints on this run's host), against the message cap. The runtime still checks
    every message it sends; this finds the too-small cap before anything starts."""
    codec = Codec()
    spaces = {"obs": env.obs_spaces, "act": env.act_spaces,
              "shared_reward": env.shared_reward, "agents": env.agent_names}
    endpoint, run_dir = f"tcp://{c.host}:65535", str(Path(c.run_dir).absolute())
    local = None if c.env_plane == "zmq" else \
        {"path": f"\0agentd-env-{2**22}-{'0' * 16}", **machine()}
    busiest = max(p.agents, key=lambda a: len(a.neighbours))
    welcome = {"id": busiest.id, "info": {
        **p.agent_info(busiest.id), "config": c.to_dict(), "run_dir": run_dir,
        "run_id": "0" * 24, "neighbours": {j: endpoint for j in busiest.neighbours},
        "env_endpoint": endpoint, "spaces": spaces, "env_local": local}}
    for kind, body in (("env_ready", {"spaces": spaces, "local": local}), ("welcome", welcome)):
        size = len(encode(codec, kind, 0, 0, 0, 0, body))
        if size > c.max_msg_bytes:
            raise ConfigError(f"'max_msg_bytes': {oversize_advice(kind, size, c.max_msg_bytes)}")


def _build_learners(c: RunConfig, p: RunPlan, spaces: dict[str, Any]) -> None:
    """Agent 0's learner and that of the agent with the most neighbours, each built from the
    welcome it would get (spaces through the wire codec), so a learner's own check of its
    spaces, params or place in the graph (pr: beta * degree < 1) fails here, not in a
    process."""
    codec = Codec()
    config = codec.unpack(codec.pack(c.to_dict()))
    wire_spaces = codec.unpack(codec.pack(spaces))
    busiest = max(p.agents, key=lambda a: len(a.neighbours)).id
    for i in sorted({0, busiest}):
        info = {**p.agent_info(i), "config": config, "spaces": wire_spaces,
                "neighbours": list(p.agents[i].neighbours)}
        if p.turns is not None:
            info["turn"] = codec.unpack(codec.pack(p.turns))
        try:
            build_learner(info)
        except LearnerConfigError as exc:
            raise ConfigError(f"'algo' {c.algo!r} on env {c.env!r} (agent {i}): "
                              f"{exc}") from None
