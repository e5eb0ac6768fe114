"""The run config as files: ``config.toml`` read and written (every learner parameter
recorded, defaults included), and ``KEY=VALUE`` flags parsed as TOML literals."""

from __future__ import annotations

import dataclasses
import textwrap
import tomllib
from pathlib import Path
from typing import Any

from agentd.config import ConfigError, RunConfig, non_private_reason


def load_toml(path: str | Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def resolved_params(c: RunConfig) -> dict[str, Any]:
    """Every learner parameter the run uses, defaults included (config.toml records them, so
    a run re-made from its config.toml keeps its values when a default changes); a field
    without a value (None: TOML has none) is left out."""
    from agentd.algorithms import load_learner_class
    from agentd.algorithms.base import parse_params

    learner = load_learner_class(c.algo)
    if learner.Params is None:
        return dict(c.params)
    parsed = parse_params(learner.Params, c.params, c.algo)
    full = {f.name: getattr(parsed, f.name) for f in dataclasses.fields(parsed)}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in full.items() if v is not None}


def to_toml(c: RunConfig) -> str:
    """The resolved config as TOML (written to the run directory); ``[params]`` holds every
    learner parameter, defaults included."""
    lines: list[str] = []
    reason = non_private_reason(c)
    if reason:
        lines += [f"# {line}" for line in textwrap.wrap(f"NON-PRIVATE RUN: {reason}", 90)]
        lines.append("private = false")
    tables = []
    for key, value in {**c.to_dict(), "params": resolved_params(c)}.items():
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    for key, table in tables:
        lines.append(f"\n[{key}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in table.items())
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise ConfigError(f"cannot write {value!r} to TOML")


def parse_assignments(items: list[str] | None, flag: str) -> dict[str, Any]:
    """Parse repeated ``KEY=VALUE`` flags; VALUE is a TOML literal, else a string."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} expects KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = raw
    return out
