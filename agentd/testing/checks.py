"""The kit's checks over a finished run directory: each returns what is wrong (an empty list:
the run conforms). They read only the run directory (logs, checkpoints, plan, config), so a
plug-in author may run them over any run of theirs."""

from __future__ import annotations

import functools
import io
import json
import tomllib
from pathlib import Path
from typing import Any

import numpy as np

from agentd.agent import recovery
from agentd.agent.core import build_learner
from agentd.algorithms import load_learner_class
from agentd.runtime.msglog import open_log
from agentd.tools.audit import audit_run
from agentd.tools.replay import compare_state, read_agent_log, replay
from protocols.arrays import FLOATS, Arr
from protocols.kinds import REGISTRY
from protocols.spaces import action_problem


def _summary(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "summary.json").read_text())


def _config(run_dir: Path) -> dict[str, Any]:
    return tomllib.loads((run_dir / "config.toml").read_text())


def _agents(run_dir: Path) -> range:
    return range(_summary(run_dir)["processes"])


def _audit(run_dir: str) -> dict[str, Any]:
    """The audit of a run, read once for the wire and the DP checks of the same run (a run
    made again in the same directory has another summary.json, so it is audited again)."""
    return _audit_of(run_dir, (Path(run_dir) / "summary.json").stat().st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _audit_of(run_dir: str, stamp: int) -> dict[str, Any]:
    return audit_run(Path(run_dir))


def _checkpoint(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as saved:
        return {k: saved[k] for k in saved.files}


def check_replay(run_dir: Path) -> list[str]:
    """Every agent replayed from its log acts as it did at every step and ends in the state
    of its final checkpoint, bit for bit; and that complete state (what a recovery checkpoint
    holds) round-trips through a recovery checkpoint (``recovery_round_trip``)."""
    out, steps = [], _summary(run_dir)["steps"]
    for i in _agents(run_dir):
        res = replay(run_dir, i)
        if res.steps != steps or res.actions_compared != steps:
            out.append(f"agent {i}: the replay made {res.steps} steps and compared "
                       f"{res.actions_compared} actions, the run made {steps}")
        if res.first_divergence is not None:
            out.append(f"agent {i}: the replay first acts differently at step "
                       f"{res.first_divergence}")
        same = compare_state(res.state, run_dir / "checkpoints" / f"agent-{i}.npz")
        if not all(same.values()):
            out.append(f"agent {i}: the replayed state differs from the checkpoint in "
                       f"{sorted(k for k, v in same.items() if not v)}")
        out += [f"agent {i}: {p}" for p in recovery_round_trip(
            res.core, read_agent_log(run_dir, i).info)]
    return out


def check_checkpoint(run_dir: Path) -> list[str]:
    """Each agent's final checkpoint loads into a learner built afresh from its welcome, which
    then holds exactly the saved arrays."""
    out = []
    for i in _agents(run_dir):
        learner = build_learner(read_agent_log(run_dir, i).info)
        saved = _checkpoint(run_dir / "checkpoints" / f"agent-{i}.npz")
        learner.load_state_dict(saved)
        state = learner.state_dict()
        if state.keys() != saved.keys():
            out.append(f"agent {i}: state_dict has {sorted(state)}, the checkpoint "
                       f"{sorted(saved)}")
        differ = [k for k in saved if k in state and not np.array_equal(
            np.asarray(state[k]), saved[k], equal_nan=True)]
        if differ:
            out.append(f"agent {i}: after load_state_dict the learner differs in {differ}")
    return out


def recovery_round_trip(core: Any, info: dict[str, Any]) -> list[str]:
    """An agent's complete state (its core: learner, buffers, RNGs), saved as a recovery
    checkpoint, loaded into an agent built afresh from its welcome (``info``) as a restarted
    agent is, and saved again: the same skeleton and the same arrays."""
    data = recovery.snapshot(core)
    try:
        back = recovery.load(data, recovery.fresh_core(info))
    except recovery.RecoveryError as exc:
        return [f"its recovery checkpoint does not load: {exc}"]
    again = recovery.snapshot(back)
    with np.load(io.BytesIO(data)) as a, np.load(io.BytesIO(again)) as b:
        if sorted(a.files) != sorted(b.files):
            return ["a reloaded recovery checkpoint holds other arrays"]
        differ = [k for k in a.files if a[k].dtype != b[k].dtype
                  or not np.array_equal(a[k], b[k], equal_nan=True)]
    return [f"a reloaded recovery checkpoint differs in {differ[:6]}"] if differ else []


def check_wire(run_dir: Path) -> list[str]:
    """Only the learner's permitted peer kinds crossed, only on the run's graph edges, none
    refused by a guard, each sent one received; the privacy label agrees everywhere."""
    out = []
    report = _audit(str(run_dir))
    label = _config(run_dir).get("private", True)
    if _summary(run_dir)["private"] is not label or report["private"] is not label:
        out.append("the privacy label differs between config.toml, summary.json and the audit")
    for path in sorted((run_dir / "logs").glob("*.log")):
        if open_log(path).meta.get("private") is not label:
            out.append(f"{path.name} is labelled private={open_log(path).meta.get('private')}")
    if not report["peer"]["only_permitted"]:
        out.append(f"peer kinds not permitted crossed: {report['peer']['not_permitted']}")
    plan = json.loads((run_dir / "plan.json").read_text())
    edges = {(a, b) for a, b in plan["edges"]} | {(b, a) for a, b in plan["edges"]}
    for e in report["edges"]:
        if e["plane"] != "peer":
            continue
        pair = (int(e["src"].split()[-1]), int(e["dst"].split()[-1]))
        if pair not in edges and (e["sent"] or e["received"]):
            out.append(f"'{e['kind']}' crossed {e['src']} -> {e['dst']}, not an edge")
        if e["sent"] != e["received"]:
            out.append(f"'{e['kind']}' {e['src']} -> {e['dst']}: {e['sent']} sent, "
                       f"{e['received']} received")
    if report["rejections"]:
        out.append(f"the guards refused messages: {report['rejections'][:3]}")
    return out


def check_spaces(run_dir: Path) -> list[str]:
    """The env's spaces are of the types the learner declares (action_type, obs_type), and
    every action each agent sent is one of its action space (shape, dtype, range)."""
    out = []
    config = _config(run_dir)
    cls = load_learner_class(config["algo"])
    for i in _agents(run_dir):
        info = read_agent_log(run_dir, i).info
        spaces, controls = info["spaces"], info["controls"]
        view = info.get("view", controls)
        for what, declared, seen in (("action", cls.action_type, [spaces["act"][c]
                                                                  for c in controls]),
                                     ("observation", cls.obs_type, [spaces["obs"][c]
                                                                    for c in view])):
            kinds = {s["type"] for s in seen}
            if declared != "any" and kinds != {declared}:
                out.append(f"agent {i}: declares {what}s {declared!r}, ran on {sorted(kinds)}")
        act = [spaces["act"][c] for c in controls]
        for rec in open_log(run_dir / "logs" / f"agent-{i}.log"):
            if rec.direction == "out" and rec.kind == "act":
                why = action_problem(rec.body["a"], act, config["num_envs"])
                if why:
                    out.append(f"agent {i}: step {rec.body['t']}: action refused ({why})")
                    break
    return out


def check_dp(run_dir: Path) -> list[str]:
    """In a private run, every peer kind sent that carries float arrays declares what a DP
    run does with them (``released`` or ``exact`` in its registration), so a DP run can
    account for it (a run labelled non-private, e.g. happo's factors, makes no DP claim);
    and the learner's ``dp_releases`` covers exactly its permitted kinds."""
    out = []
    config = _config(run_dir)
    cls = load_learner_class(config["algo"])
    params = config.get("params", {})
    releases = cls.dp_releases(params)
    private = not cls.non_private_reason(params)
    for kind in _audit(str(run_dir))["peer"]["kinds_seen"] if private else ():
        spec = REGISTRY.get(kind)
        floats = [name for name, f in (spec.fields.items() if spec else ())
                  if isinstance(f, Arr) and f.dtypes & FLOATS]
        if floats and not releases.get(kind):
            out.append(f"'{kind}' sends float arrays {floats} but declares no DP release "
                       "(peer_kind(..., released={field: 'row' | 'array'}) or exact=(...)): "
                       "a DP run of this learner would refuse to start")
    if set(releases) != set(cls.permitted_kinds(params)):
        out.append(f"dp_releases covers {sorted(releases)}, the permitted kinds are "
                   f"{sorted(cls.permitted_kinds(params))}")
    return out


def check_in_process(run_dir: Path) -> list[str]:
    """The in-process backend, given the run's config.toml, runs the plan the live run wrote
    (plan.json) and every agent sends the same actions at every step and ends in the state of
    its live checkpoint, byte for byte. (Learners that talk to neighbours: a live run with
    act-ahead off, whose order of learner calls is the in-process one.)"""
    from agentd.config import resolve
    from agentd.configfile import load_toml
    from agentd.launch.inprocess import run_planned
    from agentd.plan import plan

    out = []
    config = resolve(load_toml(run_dir / "config.toml"), {})
    p = plan(config)
    if json.loads((run_dir / "plan.json").read_text()) != p.to_dict():
        out.append("plan.json is not the plan of the run's config.toml")
    res = run_planned(p, config)
    live: dict[int, dict[int, np.ndarray]] = {}
    for i in range(p.n_procs):
        for rec in open_log(run_dir / "logs" / f"agent-{i}.log"):
            if rec.direction == "out" and rec.kind == "act":
                live.setdefault(int(rec.body["t"]), {})[i] = rec.body["a"]
    episodes = _summary(run_dir)["episodes"]
    if episodes != len(res.returns):
        out.append(f"{episodes} episodes ended live, {len(res.returns)} in process")
    steps = [live[t] for t in sorted(live)]
    if len(steps) != len(res.actions):
        out.append(f"{len(steps)} live steps, {len(res.actions)} in process")
    for t, (a, b) in enumerate(zip(steps, res.actions, strict=False)):
        bad = [i for i in a if i not in b or a[i].dtype != b[i].dtype
               or a[i].shape != b[i].shape or a[i].tobytes() != b[i].tobytes()]
        if bad:
            out.append(f"step {t}: agents {bad} acted differently in process")
            break
    for i, learner in enumerate(res.learners):
        mine = {k: np.asarray(v) for k, v in learner.state_dict().items()}
        theirs = _checkpoint(run_dir / "checkpoints" / f"agent-{i}.npz")
        differ = sorted(set(mine) ^ set(theirs)) + [
            k for k in mine if k in theirs and (mine[k].dtype != theirs[k].dtype or
                                                mine[k].tobytes() != theirs[k].tobytes())]
        if differ:
            out.append(f"agent {i}: the in-process state differs in {differ[:6]}")
    return out
