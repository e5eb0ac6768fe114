"""Audit a run from its message logs: who sent what to whom, what the guard refused, which
kinds crossed peer edges, and a probe of how much an agent's peer messages reveal of its actions.

Every figure comes from the logs alone (``RUN/logs/*.log``), plus ``config.toml`` for the algo
and ``endpoints.json`` to name agents that spoke before they had an id. (It stays whole past
~300 lines: one pass over the logs feeds every check.)
"""

from __future__ import annotations

import json
import tomllib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agentd.runtime.msglog import LogRecord, open_log
from agentd.tools.audit_dp import dp_audit
from protocols.envelope import COORDINATOR, ENVSERVER, UNASSIGNED, process_name
from protocols.kinds import REGISTRY, peer_kinds

PROBE_LABEL = "probe, not a guarantee"
FEATURE_KINDS = sorted(peer_kinds())
UNDECODABLE = "(undecodable)"


class AuditError(Exception):
    """The directory cannot be audited (not a run directory, no logs)."""


@dataclass
class EdgeCount:
    plane: str
    sent: int = 0
    sent_bytes: int = 0
    received: int = 0
    received_bytes: int = 0


@dataclass
class Collected:
    """Everything the audit needs, gathered in one pass over the logs."""

    agent_pids: dict[int, int]                    # OS pid -> agent id, from endpoints.json
    logs: dict[str, dict[str, Any]] = field(default_factory=dict)
    edges: dict[tuple[int, int, str], EdgeCount] = field(default_factory=dict)
    rejections: Counter = field(default_factory=Counter)   # (receiver, sender, reason, plane)
    topology: set[tuple[int, int]] = field(default_factory=set)
    actions: dict[int, dict[int, tuple]] = field(default_factory=lambda: defaultdict(dict))
    continuous: set[int] = field(default_factory=set)
    # agent -> step -> kind -> one array per peer message sent: every number its body carried
    peer_values: dict[int, dict[int, dict[str, list[np.ndarray]]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(lambda: defaultdict(list))))
    peer_sent: Counter = field(default_factory=Counter)
    # agent -> step -> the latent it sent for env copy 0 (the probe's features include it raw)
    latent_rows: dict[int, dict[int, np.ndarray]] = field(
        default_factory=lambda: defaultdict(dict))
    handshakes: Counter = field(default_factory=Counter)   # (owner, plane, reason, peer)

    def add(self, owner: int, rec: LogRecord) -> None:
        if rec.direction == "hs":
            peer = rec.frames[0].decode(errors="replace") if rec.frames else "unknown"
            self.handshakes[(owner, rec.plane, rec.reason or "?", peer)] += 1
            return
        if rec.direction == "rej":
            sender = process_name(rec.header["s"]) if rec.header else "unknown"
            self.rejections[(owner, sender, rec.reason or "?", rec.plane)] += 1
            return
        if rec.direction not in ("in", "out"):   # a note (restart, meta): no message
            return
        out = rec.direction == "out"
        # The log's owner is the one end we are sure of; a header may still say "unassigned".
        src, dst = (owner, self._dst(rec)) if out else (self._src(rec), owner)
        edge = self.edges.setdefault((src, dst, rec.kind or UNDECODABLE), EdgeCount(rec.plane))
        if out:
            edge.sent, edge.sent_bytes = edge.sent + 1, edge.sent_bytes + rec.nbytes
        else:
            edge.received, edge.received_bytes = edge.received + 1, edge.received_bytes + rec.nbytes
        if owner >= 0 and isinstance(rec.body, dict):
            self._agent_record(owner, out, rec)

    def _dst(self, rec: LogRecord) -> int:
        dst = rec.header["d"] if rec.header else UNASSIGNED
        if dst == UNASSIGNED and rec.kind == "welcome" and isinstance(rec.body, dict):
            return int(rec.body.get("id", UNASSIGNED))
        return dst

    def _src(self, rec: LogRecord) -> int:
        src = rec.header["s"] if rec.header else UNASSIGNED
        if src == UNASSIGNED and rec.kind == "hello" and isinstance(rec.body, dict):
            return self.agent_pids.get(rec.body.get("pid"), UNASSIGNED)
        return src

    def _agent_record(self, agent: int, out: bool, rec: LogRecord) -> None:
        if not out:
            if rec.kind == "welcome":
                neighbours = rec.body.get("info", {}).get("neighbours", {})
                self.topology.update((agent, int(j)) for j in neighbours)
            return
        if rec.kind == "act":
            a = np.asarray(rec.body["a"])
            if a.dtype.kind == "f":
                self.continuous.add(agent)
            self.actions[agent][rec.header["t"]] = tuple(a[0, 0].ravel().tolist())
        elif rec.plane == "peer":
            self.peer_sent[agent] += 1
            numbers = [np.asarray(v, dtype=np.float64).ravel() for v in rec.body.values()
                       if isinstance(v, np.ndarray | int | float)]
            self.peer_values[agent][rec.header["t"]][rec.kind].append(
                np.concatenate(numbers) if numbers else np.zeros(0))
            z = rec.body.get("z") if rec.kind == "latent" else None
            if isinstance(z, np.ndarray) and z.ndim == 2 and len(z):
                self.latent_rows[agent].setdefault(rec.header["t"], z[0].astype(np.float64))


def _process_id(name: str, path: Path) -> int:
    if name in ("coordinator", "envserver"):
        return COORDINATOR if name == "coordinator" else ENVSERVER
    for text in (name.removeprefix("agent "), path.stem.removeprefix("agent-")):
        if text.isdigit():
            return int(text)
    raise AuditError(f"{path}: cannot tell which process wrote this log ({name!r})")


def _agent_pids(run_dir: Path) -> dict[int, int]:
    try:
        agents = json.loads((run_dir / "endpoints.json").read_text())["agents"]
        return {int(a["pid"]): int(i) for i, a in agents.items()}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def collect(run_dir: Path) -> Collected:
    """Read every log in RUN/logs once; a truncated tail is noted and skipped, never fatal."""
    paths = sorted((run_dir / "logs").glob("*.log"))
    if not paths:
        raise AuditError(f"{run_dir} has no message logs (expected {run_dir / 'logs'}/*.log)")
    c = Collected(_agent_pids(run_dir))
    for path in paths:
        entry: dict[str, Any] = {"records": 0, "truncated_tail": False, "error": None}
        c.logs[path.name] = entry
        try:
            log = open_log(path)
            owner = _process_id(str(log.meta.get("process", "")), path)
            entry["process"] = process_name(owner)
            entry["secure"] = log.meta.get("secure")
            entry["insecure"] = log.meta.get("insecure")
            entry["test_link_delay"] = log.meta.get("test_link_delay")
            entry["private"] = log.meta.get("private")
            for rec in log:
                c.add(owner, rec)
                entry["records"] += 1
            entry["truncated_tail"] = log.truncated_tail
        except (ValueError, TypeError, AuditError) as exc:   # a damaged log is reported
            entry["error"] = str(exc)
    return c


# -- analysis -------------------------------------------------------------------------------
def _order(pid: int) -> tuple[int, int]:
    return (0, pid) if pid >= 0 else (1, -pid)


def edge_table(c: Collected) -> list[dict[str, Any]]:
    """Sent (sender's log) and received (receiver's log) per edge and kind; peer edges first."""
    keys = sorted(c.edges, key=lambda k: (not (k[0] >= 0 and k[1] >= 0), _order(k[0]),
                                          _order(k[1]), k[2]))
    return [{"src": process_name(s), "dst": process_name(d), "kind": k, **vars(c.edges[s, d, k])}
            for s, d, k in keys]


def rejection_table(c: Collected) -> list[dict[str, Any]]:
    rows = sorted(c.rejections.items(), key=lambda kv: (_order(kv[0][0]), kv[0][1:]))
    return [{"receiver": process_name(r), "sender": s, "reason": why, "plane": p, "count": n}
            for (r, s, why, p), n in rows]


def handshake_table(c: Collected) -> list[dict[str, Any]]:
    rows = sorted(c.handshakes.items(), key=lambda kv: (_order(kv[0][0]), kv[0][1:]))
    return [{"process": process_name(o), "plane": p, "reason": why, "peer": peer, "count": n}
            for (o, p, why, peer), n in rows]


def run_files(run_dir: Path) -> dict[str, Any] | None:
    """What summary.json says about the run directory's files (shipped, missing)."""
    try:
        return json.loads((run_dir / "summary.json").read_text()).get("files")
    except (OSError, ValueError, AttributeError):
        return None


def peer_check(c: Collected, algo: str, params: dict[str, Any] | None = None
               ) -> dict[str, Any]:
    """Kinds per peer edge, and whether only the learner's permitted peer kinds crossed."""
    from agentd.algorithms import LearnerConfigError, load_learner_class

    try:
        permitted: frozenset[str] | None = load_learner_class(algo).permitted_kinds(
            params or {})
    except LearnerConfigError:
        permitted = None
    crossed: dict[tuple[int, int], set[str]] = {e: set() for e in c.topology}
    for (s, d, kind), e in c.edges.items():
        if s >= 0 and d >= 0 and (e.sent or e.received):
            crossed.setdefault((s, d), set()).add(kind)
    edges = [{"src": process_name(s), "dst": process_name(d), "kinds": sorted(crossed[s, d])}
             for s, d in sorted(crossed)]
    seen = set().union(*crossed.values()) if crossed else set()
    not_peer = sorted(k for k in seen if k not in REGISTRY or REGISTRY[k].plane != "peer")
    unpermitted = sorted(seen - permitted) if permitted is not None else sorted(seen)
    return {"algo": algo, "permitted": sorted(permitted) if permitted is not None else None,
            "edges": edges, "kinds_seen": sorted(seen), "not_permitted": unpermitted,
            "not_peer_plane": not_peer,
            "only_permitted": permitted is not None and not unpermitted and not not_peer}


# -- leakage probe --------------------------------------------------------------------------
def _features(per_kind: dict[str, list[np.ndarray]]) -> list[float]:
    row: list[float] = []
    for kind in FEATURE_KINDS:
        chunks = per_kind.get(kind, [])
        values = np.concatenate(chunks) if chunks else np.zeros(0)
        stats = ((values.mean(), values.std(), values.min(), values.max()) if values.size
                 else (0.0, 0.0, 0.0, 0.0))
        row += [float(len(chunks)), *map(float, stats)]
    return row


def nearest_centroid(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray) -> np.ndarray:
    """Predict by the closest class mean of standardised features; ties go to the commoner
    class, so features that carry nothing leave the prediction at the training majority."""
    mu, sd = x_train.mean(0), x_train.std(0)
    live = sd > 0
    z_train = np.where(live, (x_train - mu) / np.where(live, sd, 1.0), 0.0)
    z_test = np.where(live, (x_test - mu) / np.where(live, sd, 1.0), 0.0)
    classes, counts = np.unique(y_train, return_counts=True)
    classes = classes[np.argsort(-counts, kind="stable")]
    centroids = np.stack([z_train[y_train == k].mean(0) for k in classes])
    dist = ((z_test[:, None, :] - centroids[None]) ** 2).sum(-1)
    return classes[np.argmin(dist, axis=1)]


PROBE_METHOD = (
    "Can an observer who sees only the peer messages agent i sent predict agent i's action? "
    "Features per step: count, mean, std, min and max of the numbers in the bodies of each peer "
    "kind it sent at that step. A nearest-centroid classifier is fitted on the first half of "
    "the steps and scored on the second half. Chance = share of the most common action in the "
    "second half (the best constant guess, chosen with hindsight); baseline = the same "
    "classifier with the messages blanked out (it guesses the first half's most common action), "
    "so accuracy - baseline is what the messages add. Discrete actions only (copy 0, slot 0). "
    "A latent message's vector for copy 0 is a feature as it is, not only through its "
    "statistics.")


def leakage_probe(c: Collected) -> dict[str, Any]:
    agents = sorted(set(c.actions) | set(c.peer_sent))
    return {"label": PROBE_LABEL, "method": PROBE_METHOD,
            "agents": [_probe_agent(c, i) for i in agents]}


def _probe_agent(c: Collected, agent: int) -> dict[str, Any]:
    actions = c.actions.get(agent, {})
    steps = sorted(actions)
    row: dict[str, Any] = {"agent": process_name(agent), "peer_messages": c.peer_sent[agent],
                           "steps": len(steps), "accuracy": None, "chance": None,
                           "baseline": None, "note": ""}
    if agent in c.continuous:
        return {**row, "note": "continuous actions: probe skipped"}
    if len(steps) < 4:
        return {**row, "note": "fewer than 4 logged actions: probe skipped"}
    labels: dict[tuple, int] = {}
    y = np.array([labels.setdefault(actions[t], len(labels)) for t in steps])
    sent = c.peer_values.get(agent, {})
    x = np.array([_features(sent.get(t, {})) for t in steps])
    rows = c.latent_rows.get(agent, {})
    if rows:
        width = max(len(r) for r in rows.values())
        raw = np.zeros((len(steps), width))
        for k, t in enumerate(steps):   # the latent sent at step t + 1 is of the
            if t + 1 in rows:           # observation the action of step t was taken on
                raw[k, :len(rows[t + 1])] = rows[t + 1]
        x = np.hstack([x, raw])
    half = len(steps) // 2
    y_test = y[half:]
    accuracy = float(np.mean(nearest_centroid(x[:half], y[:half], x[half:]) == y_test))
    blank = np.zeros((len(steps), 1))
    baseline = float(np.mean(nearest_centroid(blank[:half], y[:half], blank[half:]) == y_test))
    chance = float(np.bincount(y_test).max() / len(y_test))
    if not c.peer_sent[agent]:
        note = "no peer messages: nothing to learn from"
    elif np.all(x == x[0]):
        note = "peer messages never vary: nothing to learn from"
    elif accuracy > max(chance, baseline) + 0.05:
        note = f"{100 * (accuracy - chance):.0f} points above chance: messages may reveal actions"
    else:
        note = "no better than guessing"
    return {**row, "accuracy": accuracy, "chance": chance, "baseline": baseline, "note": note}


# -- the report -----------------------------------------------------------------------------
def audit_run(run_dir: Path) -> dict[str, Any]:
    """All audit figures for a run directory, as plain data (what audit.json holds)."""
    if not run_dir.is_dir():
        raise AuditError(f"{run_dir} is not a run directory (no such directory)")
    try:
        config = tomllib.loads((run_dir / "config.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise AuditError(f"{run_dir} is not a run directory (config.toml: {exc})") from None
    algo = str(config.get("algo", "?"))
    c = collect(run_dir)
    edges = edge_table(c)
    return {"run": str(run_dir), "algo": algo, "private": config.get("private", True),
            "logs": c.logs, "edges": edges,
            "sent_not_received": [e for e in edges if e["sent"] != e["received"]],
            "rejections": rejection_table(c), "handshakes_failed": handshake_table(c),
            "files": run_files(run_dir),
            "peer": peer_check(c, algo, config.get("params", {})), "probe": leakage_probe(c),
            "dp": dp_audit(run_dir)}
