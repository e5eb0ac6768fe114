"""What the attacks read from a run's message logs: per agent the actions it sent the env
server, the observations and rewards the env server sent it, and per directed edge the peer
messages that crossed it (as the receiver logged them: what an honest-but-curious neighbour
holds), all keyed by the joint step in the envelope header.

Only the attackers' inputs come from receivers' logs; the actions, observations and rewards of
the attacked agent are the ground truth the attacks are scored against (the sender's own log),
which no attacker holds.
"""

from __future__ import annotations

import tomllib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agentd.runtime.msglog import LogRecord, open_log
from protocols.envelope import ENVSERVER


class AttackError(Exception):
    """The directory cannot be attacked (not a run directory, no logs)."""


@dataclass
class RunLogs:
    """The attack's view of one run."""

    algo: str
    env: str
    num_envs: int
    # agent -> step -> (K,) or (K, d) per env copy
    actions: dict[int, dict[int, np.ndarray]] = field(default_factory=lambda: defaultdict(dict))
    obs: dict[int, dict[int, np.ndarray]] = field(default_factory=lambda: defaultdict(dict))
    final_obs: dict[int, dict[int, np.ndarray]] = field(
        default_factory=lambda: defaultdict(dict))     # s' of the transition ending at t
    rewards: dict[int, dict[int, np.ndarray]] = field(default_factory=lambda: defaultdict(dict))
    # (src, dst) -> step -> [(kind, body)], from the receiver's log
    received: dict[tuple[int, int], dict[int, list[tuple[str, dict]]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list)))
    continuous: set[int] = field(default_factory=set)
    dp: dict[int, dict[str, Any]] = field(default_factory=dict)   # agent -> its log's DP meta
    truncated: list[str] = field(default_factory=list)

    @property
    def agents(self) -> list[int]:
        return sorted(set(self.actions) | set(self.obs))

    @property
    def edges(self) -> list[tuple[int, int]]:
        return sorted(e for e, steps in self.received.items() if steps)

    def kinds(self, edge: tuple[int, int]) -> list[str]:
        return sorted({k for msgs in self.received[edge].values() for k, _ in msgs})


def _owner(meta: dict[str, Any], path: Path) -> int | None:
    """The agent id of a log, None for the coordinator's and env server's."""
    name = str(meta.get("process", ""))
    for text in (name.removeprefix("agent "), path.stem.removeprefix("agent-")):
        if text.isdigit():
            return int(text)
    return None


def _copies(arr: np.ndarray) -> np.ndarray:
    """One row per env copy from a (K, m, ...) array: the first seen env agent's part."""
    a = np.asarray(arr)
    if a.ndim < 2:
        return a.reshape(len(a), -1) if a.ndim == 1 else a.reshape(1, -1)
    return a[:, 0].reshape(a.shape[0], -1)


def _take(logs: RunLogs, owner: int, rec: LogRecord) -> None:
    if rec.direction not in ("in", "out") or rec.header is None or not isinstance(rec.body,
                                                                                  dict):
        return
    t = int(rec.header["t"])
    if rec.direction == "out" and rec.kind == "act":
        a = _copies(rec.body["a"])
        if a.dtype.kind == "f":
            logs.continuous.add(owner)
        logs.actions[owner][t] = a[:, 0] if a.shape[1] == 1 else a
    elif rec.direction == "in" and rec.kind == "step" and rec.header["s"] == ENVSERVER:
        logs.obs[owner][t] = _copies(rec.body["obs"])
        logs.final_obs[owner][t] = _copies(rec.body["final_obs"])
        logs.rewards[owner][t] = _copies(rec.body["reward"])[:, 0]
    elif rec.direction == "in" and rec.plane == "peer":
        logs.received[(int(rec.header["s"]), owner)][t].append((str(rec.kind), rec.body))


def read_run(run_dir: Path) -> RunLogs:
    """Read every agent log of RUN once; a truncated tail is noted and skipped."""
    if not run_dir.is_dir():
        raise AttackError(f"{run_dir} is not a run directory (no such directory)")
    try:
        config = tomllib.loads((run_dir / "config.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise AttackError(f"{run_dir} is not a run directory (config.toml: {exc})") from None
    paths = sorted((run_dir / "logs").glob("agent-*.log"))
    if not paths:
        raise AttackError(f"{run_dir} has no agent logs (expected {run_dir / 'logs'}/agent-*.log)")
    logs = RunLogs(str(config.get("algo", "?")), str(config.get("env", "?")),
                   int(config.get("num_envs", 1)))
    for path in paths:
        try:
            log = open_log(path)
        except ValueError as exc:
            raise AttackError(str(exc)) from None
        owner = _owner(log.meta, path)
        if owner is None:
            continue
        if log.meta.get("dp"):
            logs.dp[owner] = log.meta["dp"]
        for rec in log:
            _take(logs, owner, rec)
        if log.truncated_tail:
            logs.truncated.append(path.name)
    return logs
