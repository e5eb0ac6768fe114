"""Replay one agent from its message log, alone: no coordinator, env server or other agent.

The agent is rebuilt from the ``welcome`` in its own log (config, seed, spaces, neighbours) and
fed, in logged order, exactly the env replies and peer messages it received; ``AgentCore`` —
the code the live agent ran — turns them into actions. With deterministic CPU math the replay
reproduces the live agent bit for bit: every action it sent and its final learned state.

An agent that was restarted during the run has a ``restart`` record in its log: the replay
drops the state it has built so far and restores the recovery checkpoint the record names (the
one the live agent restored, checked by its SHA-256), then goes on with what the restarted
process received -- so it stays exact across the restart.

Perturbed replays change only the peer stream (the env replies stay as logged, since the env
cannot be re-run): drop a neighbour's messages, deliver them k steps late, add Gaussian noise
to their numeric arrays, or remove every peer message.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agentd.agent.core import AgentCore, Effect, build_learner, drive
from agentd.agent.recovery import RecoveryError, core_for_replay
from agentd.runtime.msglog import open_log


class ReplayError(RuntimeError):
    """A log that cannot be replayed (missing, no welcome, a stream the learner cannot take)."""


@dataclass(frozen=True)
class Item:
    """One received message of the replayed stream."""

    plane: str                 # "env" | "peer" | "restart" (body: the restart record)
    src: int
    step: int
    kind: str
    body: dict[str, Any]


@dataclass
class Perturbation:
    """What a perturbed replay changes in the peer stream (nothing by default)."""

    drop_from: frozenset[int] = frozenset()
    delay_from: dict[int, int] = field(default_factory=dict)     # src -> steps late
    noise_from: dict[int, float] = field(default_factory=dict)   # src -> sigma
    only_env: bool = False
    seed: int = 0

    @property
    def active(self) -> bool:
        return bool(self.drop_from or self.delay_from or self.noise_from or self.only_env)

    def describe(self) -> str:
        parts = [f"drop-from {j}" for j in sorted(self.drop_from)]
        parts += [f"delay-from {j}:{k}" for j, k in sorted(self.delay_from.items())]
        parts += [f"noise-from {j}:{s:g}" for j, s in sorted(self.noise_from.items())]
        parts += ["only-env"] if self.only_env else []
        return ", ".join(parts) or "none"

    def apply(self, items: list[Item]) -> Iterator[Item]:
        """The perturbed stream: env items untouched and in place, peer items changed."""
        rng = np.random.default_rng(self.seed)
        held: list[tuple[int, Item]] = []
        for item in items:
            if item.plane in ("restart", "silent"):
                yield item
                continue
            if item.plane == "env":
                yield item
                ready = [h for h in held if h[0] <= item.step]
                held = [h for h in held if h[0] > item.step]
                yield from (h[1] for h in ready)
                continue
            if self.only_env or item.src in self.drop_from:
                continue
            if item.src in self.noise_from:
                item = _with_noise(item, self.noise_from[item.src], rng)
            if item.src in self.delay_from:
                held.append((item.step + self.delay_from[item.src], item))
                continue
            yield item


def _with_noise(item: Item, sigma: float, rng: np.random.Generator) -> Item:
    body = {}
    for key, value in item.body.items():
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            value = (value + rng.normal(0.0, sigma, value.shape)).astype(value.dtype)
        body[key] = value
    return Item(item.plane, item.src, item.step, item.kind, body)


@dataclass
class AgentLog:
    """What replay needs from one agent's log."""

    info: dict[str, Any]
    items: list[Item]
    actions: dict[tuple[int, int], list[np.ndarray]]   # (process, step) -> acts, in order
    # (two for one step where an env server restart asked for that step's action again)
    truncated_tail: bool
    restarts: int = 0                            # restart records in the log


def read_agent_log(run_dir: Path, agent: int) -> AgentLog:
    path = run_dir / "logs" / f"agent-{agent}.log"
    if not path.exists():
        raise ReplayError(f"{path} does not exist (is {run_dir} a run directory, and agent "
                          f"{agent} part of it?)")
    log = open_log(path)
    info, items, actions, segment, turn = None, [], {}, 0, None
    for r in log:
        if r.direction == "restart":
            segment += 1
            items.append(Item("restart", agent, -1, "restart", r.body))
        elif r.direction == "peer_timeout":
            items.append(Item("silent", agent, r.body["t"], "peer_timeout", r.body))
        if r.header is None:
            continue
        if r.direction == "in" and r.kind == "welcome":
            info = info or {"id": r.body["id"], **r.body["info"]}
        elif r.direction == "in" and r.kind == "turn":
            turn = r.body
        elif r.direction == "in" and r.plane in ("env", "peer") and r.kind != "join":
            items.append(Item(r.plane, r.header["s"], r.header["t"], r.kind, r.body))
        elif r.direction == "out" and r.kind == "act":
            actions.setdefault((segment, r.body["t"]), []).append(r.body["a"])
    if info is None:
        raise ReplayError(f"{path} has no welcome: the agent was never admitted")
    if turn is not None:
        info["turn"] = turn
    return AgentLog(info, items, actions, log.truncated_tail, segment)


@dataclass
class ReplayResult:
    """What a replay found."""

    agent: int
    steps: int = 0
    env_items: int = 0
    peer_items: int = 0
    peer_delivered: int = 0
    actions_compared: int = 0
    actions_equal: int = 0
    first_divergence: int | None = None     # first step whose action differs from the log
    forced_steps: int = 0                   # updates made without every awaited message
    state: dict[str, np.ndarray] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    truncated_tail: bool = False
    restarts: int = 0                       # restart records replayed (checkpoints restored)
    silent: int = 0                         # peer_timeout records replayed
    core: Any = None                        # the agent's core at the end (its complete state)


def replay(run_dir: Path, agent: int, perturbation: Perturbation | None = None) -> ReplayResult:
    """Run agent ``agent`` of ``run_dir`` again from its log; see the module docstring."""
    perturbation = perturbation or Perturbation()
    log = read_agent_log(run_dir, agent)
    core = AgentCore(log.info, build_learner(log.info))
    res = ReplayResult(agent, truncated_tail=log.truncated_tail)
    res.env_items = sum(i.plane == "env" for i in log.items)
    res.peer_items = sum(i.plane == "peer" for i in log.items)
    for item in perturbation.apply(log.items):
        if item.plane == "restart":      # the live agent restarted from this checkpoint
            try:
                core = core_for_replay(run_dir, item.body, log.info)
            except RecoveryError as exc:
                raise ReplayError(f"agent {agent}'s restart cannot be replayed: {exc}") from None
            res.restarts += 1
            continue
        effects: list[Effect] = []
        if item.plane == "silent":      # the live agent stopped waiting for these here
            drive(core, core.on_silent(frozenset(item.body["silent"])) or [], effects.extend)
            res.silent += 1
        elif item.plane == "env":
            while core.blocks_step() and not item.body.get("restart"):
                # a perturbation withheld messages it waited for (after an env server
                # restart the live agent dropped the step instead, as the core does)
                res.forced_steps += 1
                drive(core, core.advance(force=True), effects.extend)
            drive(core, core.on_step(item.body), effects.extend)
        else:
            res.peer_delivered += 1
            drive(core, core.on_peer(item.src, item.kind, item.body), effects.extend)
        _take(res, log, agent, effects)
    while core.pending is not None:   # the last step's messages were withheld
        res.forced_steps += 1
        effects = []
        drive(core, core.advance(force=True), effects.extend)
        _take(res, log, agent, effects)
    res.steps = core.steps_done
    res.state = core.learner.state_dict()
    res.core = core
    return res


def _take(res: ReplayResult, log: AgentLog, agent: int, effects: list[Effect]) -> None:
    """Compare the replayed acts with the logged ones; collect the metrics."""
    for e in effects:
        if e.what == "act":
            sent = log.actions.get((res.restarts, e.step))
            _compare(res, e.step, e.body["a"], sent.pop(0) if sent else None)
        elif e.what == "metrics":
            res.metrics.append({"step": e.step, "agents": {str(agent): e.body["scalars"]},
                                "action_agreement": _agreement(res)})


def _compare(res: ReplayResult, step: int, action: np.ndarray, logged: Any) -> None:
    if logged is None:
        return
    res.actions_compared += 1
    if np.array_equal(action, logged):
        res.actions_equal += 1
    elif res.first_divergence is None:
        res.first_divergence = step


def _agreement(res: ReplayResult) -> float:
    return res.actions_equal / res.actions_compared if res.actions_compared else 1.0


def compare_state(state: dict[str, np.ndarray], checkpoint: Path) -> dict[str, bool]:
    """Per array: is the replayed state bit-for-bit the one the live run checkpointed?"""
    with np.load(checkpoint, allow_pickle=False) as saved:
        names = set(saved.files) | set(state)
        return {name: name in saved.files and name in state and
                saved[name].dtype == state[name].dtype and
                np.array_equal(saved[name], state[name]) for name in sorted(names)}
