"""Are a learner's declarations well-formed? The runtime reads a learner's capabilities from
its class (``Learner``'s declared attributes and class methods) and never probes for them, so
each must hold a value of the declared type and agree with the others and with the registry
of message kinds. ``check_learner`` lists what is wrong with one class; the suite runs it over
every registered learner, and a plug-in author runs it over theirs.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from agentd.algorithms import ALGORITHMS, load_learner_class
from agentd.algorithms.base import SPACE_TYPES, Learner, LearnerConfigError, parse_params
from protocols.kinds import REGISTRY

FLAGS = ("needs_torch", "centralised", "joint_view", "wants_state", "greedy_q", "takes_turns",
         "follows_link_schedule", "act_ahead")


def check_registry() -> dict[str, list[str]]:
    """Every registered learner's problems (an empty list: conforms)."""
    return {name: check_learner(load_learner_class(name), name) for name in ALGORITHMS}


def check_learner(cls: type[Learner], name: str | None = None) -> list[str]:
    """What is wrong with the declarations of ``cls`` (registered as ``name``, if given)."""
    problems: list[str] = []
    bad = problems.append
    if not (isinstance(cls, type) and issubclass(cls, Learner)):
        return [f"{cls!r} is not a Learner subclass"]
    if not isinstance(cls.name, str) or not cls.name or (name is not None and cls.name != name):
        bad(f"name {cls.name!r} is not the registered name {name!r}")
    for flag in FLAGS:
        if not isinstance(getattr(cls, flag), bool):
            bad(f"{flag} must be a bool, got {getattr(cls, flag)!r}")
    if cls.centralised and cls.joint_view:
        bad("centralised and joint_view are two different seatings; declare one")
    for attr in ("action_type", "obs_type"):
        if getattr(cls, attr) not in SPACE_TYPES:
            bad(f"{attr} must be one of {SPACE_TYPES}, got {getattr(cls, attr)!r}")
    if cls.greedy_q and (cls.centralised or "box" in (cls.action_type, cls.obs_type)):
        bad("greedy_q needs one tabular Q per agent: Discrete spaces, not centralised")
    _check_params(cls, bad)
    params: dict[str, Any] = {}     # the raw params of a run without overrides
    problems += _kind_problems(cls, params)
    problems += _act_ahead_problems(cls, params)
    problems += _run_problems(cls, params)
    return problems


def _check_params(cls: type[Learner], bad: Any) -> None:
    """Params, if any, is a dataclass whose defaults are a valid run."""
    if cls.Params is None:
        return
    if not dataclasses.is_dataclass(cls.Params):
        bad(f"Params must be a dataclass, got {cls.Params!r}")
        return
    try:
        parse_params(cls.Params, {}, cls.name)
    except (LearnerConfigError, TypeError) as exc:
        bad(f"Params has no valid defaults: {exc}")


def _kind_problems(cls: type[Learner], params: dict[str, Any]) -> list[str]:
    out = []
    if not isinstance(cls.peer_kinds, frozenset):
        out.append(f"peer_kinds must be a frozenset, got {type(cls.peer_kinds).__name__}")
    permitted = cls.permitted_kinds(params)
    for kind in sorted(set(cls.peer_kinds) | set(permitted)):
        if kind not in REGISTRY or REGISTRY[kind].plane != "peer":
            out.append(f"peer kind {kind!r} is not a registered peer-plane kind")
    if out:
        return out
    releases = cls.dp_releases(params)
    if set(releases) != set(permitted):
        out.append(f"dp_releases covers {sorted(releases)}, the permitted kinds are "
                   f"{sorted(permitted)}")
    if (cls.centralised or cls.joint_view) != bool(cls.non_private_reason(params)):
        out.append("non_private_reason must say why exactly when the learner is centralised "
                   "or has a joint view")
    return out


def _act_ahead_problems(cls: type[Learner], params: dict[str, Any]) -> list[str]:
    out = []
    if not isinstance(cls.act_ahead_why, str) or not cls.act_ahead_why.strip():
        out.append("act_ahead_why must say why act-ahead is (not) allowed")
    fields = {f.name for f in dataclasses.fields(cls.Params)} \
        if cls.Params is not None and dataclasses.is_dataclass(cls.Params) else set()
    if not isinstance(cls.act_ahead_off_with, dict):
        out.append("act_ahead_off_with must be a dict param -> why")
        return out
    for key, why in cls.act_ahead_off_with.items():
        if key not in fields or not isinstance(why, str) or not why:
            out.append(f"act_ahead_off_with names {key!r}: not a parameter with a reason")
    allowed = cls.act_ahead_allowed(params)
    if not (isinstance(allowed, tuple) and len(allowed) == 2 and isinstance(allowed[0], bool)
            and isinstance(allowed[1], str)):
        out.append(f"act_ahead_allowed must return (bool, why), got {allowed!r}")
    return out


def _run_problems(cls: type[Learner], params: dict[str, Any]) -> list[str]:
    out = []
    schedule = cls.turn_schedule(params, 3, 0)
    if cls.takes_turns != (schedule is not None):
        out.append(f"takes_turns is {cls.takes_turns} but turn_schedule gives {schedule!r}")
    if schedule is not None and not isinstance(schedule, dict):
        out.append("turn_schedule must give the turn body (a dict) or None")
    try:
        kept = cls.params_for_links(params, False, 0.0)
    except LearnerConfigError as exc:
        out.append(f"params_for_links refuses a run whose links never fail: {exc}")
    else:
        if kept != params:
            out.append("params_for_links must keep the params of a run whose links never fail")
    try:
        cls.params_for_links(params, True, 0.0)
        follows = True
    except LearnerConfigError:
        follows = False
    if follows != cls.follows_link_schedule:
        out.append(f"follows_link_schedule is {cls.follows_link_schedule} but "
                   f"params_for_links {'accepts' if follows else 'refuses'} a link schedule")
    return out
