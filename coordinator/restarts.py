"""The coordinator's side of restarts: a dead agent or env server that rejoins.

A process that dies or stops heartbeating is *down*. While it has restarts left
(``max_restarts``), the coordinator waits up to ``rejoin_timeout`` beyond the heartbeat timeout
for a process to say hello under the same id (in secure mode: with the same key) -- started by
``agentd launch``'s supervisor, by the host's own supervisor or by hand. The env server holds
the joint step meanwhile (it waits for every agent's action), so the run pauses. A rejoining
agent gets a ``welcome`` marked ``rejoin`` (it restores its recovery checkpoint) and its
neighbours get ``peer_moved`` with its new endpoint; a rejoining env server gets its welcome
and every agent ``env_moved``. Once the restarts of one process are used up, its next death
ends the run with the usual error naming it.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any

from coordinator.rundir import write_json
from protocols import ENVSERVER

if TYPE_CHECKING:
    from coordinator.coordinator import Coordinator, Proc

log = logging.getLogger("agentd.coordinator")


class Restarts:
    """Which processes restarted, when, and what each restart lost."""

    def __init__(self, coord: Coordinator) -> None:
        self.coord = coord
        self.count: dict[int, int] = {}          # process id -> restarts so far
        self.records: list[dict[str, Any]] = []  # one per resumed agent / restarted env
        self.down_since: dict[int, float] = {}

    def left(self, pid: int) -> int:
        return self.coord.config.max_restarts - self.count.get(pid, 0)

    def silence_limit(self, proc: Proc, limit: float) -> float:
        """How long ``proc`` may stay silent before the run fails: longer while it may still
        be restarted (its supervisor needs the time to notice and start it again)."""
        if proc.id is not None and self.left(proc.id) > 0:
            return limit + self.coord.config.rejoin_timeout
        return limit

    def note_silent(self, proc: Proc, silent: float) -> None:
        """Say once that a process is down and the run waits for it."""
        if proc.id is None or proc.id in self.down_since:
            return
        self.down_since[proc.id] = time.monotonic()
        log.warning("%s is down (silent for %.1f s); the joint step waits up to %.0f s for it "
                    "to rejoin (%d restarts left)", proc.name(), silent,
                    self.coord.config.rejoin_timeout, self.left(proc.id))

    def is_rejoin(self, proc: Proc) -> bool:
        """A hello after admission from a process that claims an admitted id."""
        c = self.coord
        if not c.admitted:
            return False
        if proc.role == "envserver":
            return c.env_proc is not None
        want = proc.hello_src if c.transport.secure else proc.want_id
        return proc.role == "agent" and want is not None and 0 <= want < c.n_procs

    def rejoin(self, proc: Proc) -> None:
        """Admit ``proc`` in place of the process it restarts, or refuse it."""
        c = self.coord
        pid = ENVSERVER if proc.role == "envserver" else (
            proc.hello_src if c.transport.secure else proc.want_id)
        old = next((p for p in c.procs.values() if p.id == pid), None)
        if old is None or self.left(pid) <= 0:
            why = (f"{proc.name()} may not rejoin: " + ("no such process in this run"
                   if old is None else f"its {c.config.max_restarts} restarts are used up "
                   "(--max-restarts)"))
            c.transport.count_rejection("control", "rejoin_refused", why)
            c.send(proc, "stop", {"reason": why})
            return
        self.count[pid] = self.count.get(pid, 0) + 1
        self.down_since.pop(pid, None)
        del c.procs[old.identity]
        proc.id = pid
        c.procs[proc.identity] = proc
        c.journal_proc("rejoin", proc)
        log.warning("%s rejoined in place of pid %d (restart %d of %d)", proc.name(), old.pid,
                    self.count[pid], c.config.max_restarts)
        if proc.role == "envserver":
            c.env_proc = proc
            c.send(proc, "welcome", {"id": ENVSERVER,
                                     "info": {**c.env_info(), "rejoin": self.count[pid]}})
        else:
            c.send(proc, "welcome", {"id": pid, "info": {**c.agent_info(pid),
                                                         "rejoin": self.count[pid]}},
                   dst=proc.hello_src)
            schedule = c.plan.turns
            if schedule is not None:    # as at admission: right behind the welcome
                c.send(proc, "turn", schedule)
            for j in c.graph.neighbours(pid):
                other = next((p for p in c.procs.values() if p.id == j), None)
                if other is not None and other.stats is None:
                    c.send(other, "peer_moved", {"id": pid, "endpoint": proc.endpoint})
        self.write_endpoints()

    def moved_env(self) -> None:
        """The restarted env server is ready: every agent dials its new endpoint."""
        c = self.coord
        assert c.env_proc is not None
        for p in c.procs.values():
            if p.role == "agent" and p.id is not None and p.stats is None:
                c.send(p, "env_moved", {"endpoint": c.env_proc.endpoint})

    def resumed(self, proc: Proc, body: dict[str, Any]) -> None:
        """A restarted agent has its first step: how many steps its restart lost."""
        self.records.append({"process": f"agent-{proc.id}", **body, "pid": proc.pid})
        self.coord.journal.write("restart", record=self.records[-1])
        log.warning("agent %d resumed at step %d from %s (env step %d): %d steps lost",
                    proc.id, body["resumed_step"], body["checkpoint"] or "its initial state",
                    body["env_step"], body["lost"])

    def env_restarted(self, body: dict[str, Any]) -> None:
        self.records.append({"process": "envserver", **body})
        self.coord.journal.write("restart", record=self.records[-1])
        log.warning("the env server resumed at step %d; %d episodes in flight were truncated",
                    body["step"], body["truncated"])

    def write_endpoints(self) -> None:
        c = self.coord
        env = c.env_proc
        agents = sorted((p for p in c.procs.values() if p.role == "agent" and p.id is not None),
                        key=lambda p: p.id)
        write_json(c.run_dir / "endpoints.json", {
            "coordinator": {"endpoint": c.endpoint, "pid": os.getpid()},
            "envserver": {"endpoint": env.endpoint, "pid": env.pid, "host": env.host}
            if env else None,
            "agents": {str(p.id): {"endpoint": p.endpoint, "pid": p.pid, "host": p.host}
                       for p in agents}})

    def summary(self) -> dict[str, Any]:
        lost: dict[str, int] = {}
        for r in self.records:
            if "lost" in r:
                lost[r["process"]] = lost.get(r["process"], 0) + r["lost"]
        return {"restarts": self.records, "steps_lost": lost,
                "truncated_episodes": self.coord.metrics.truncated_episodes,
                "restart_counts": {("envserver" if k == ENVSERVER else f"agent-{k}"): v
                                   for k, v in self.count.items()}}
