"""Admission: a hello is checked (its key, the run's room, its role), the env server is
welcomed at once, and once its env is built and every agent process has said hello each agent
gets its ``welcome`` (id, neighbours and their endpoints, its part of the run plan, the
spaces). A part of ``coordinator.Coordinator``, kept here so the coordinator reads as its
loop, its watch over the run and its handlers."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from coordinator.procs import Proc, RunEnded
from protocols import ENVSERVER, Message, process_name
from protocols.errors import Oversize

if TYPE_CHECKING:
    from coordinator.coordinator import Coordinator

log = logging.getLogger("agentd.coordinator")


class Admission:
    """The coordinator's admission handlers (mixed into ``Coordinator``)."""

    def on_hello(self: Coordinator, msg: Message, ident: bytes) -> None:
        b = msg.body
        proc = Proc(ident, b["role"], b["pid"], b["host"], b["endpoint"], b["want_id"],
                    time.monotonic(), msg.src)
        agents = [p for p in self.procs.values() if p.role == "agent"]
        if self.restarts.is_rejoin(proc):
            self.restarts.rejoin(proc)
            return
        refuse = self._key_refusal(proc) if self.transport.secure else None
        if refuse:
            self.transport.count_rejection("control", refuse[0], refuse[1])
            self.refused.add(ident)
            self.send(proc, "stop", {"reason": refuse[1]})
            return
        if proc.role == "envserver" and self.env_proc is not None:
            refuse = "this run already has an env server"
        elif proc.role == "agent" and (len(agents) >= self.n_procs or self.admitted):
            refuse = f"this run is full ({self.n_procs} agent processes)"
        elif proc.role not in ("agent", "envserver"):
            refuse = f"unknown role {proc.role!r}"
        if refuse:
            log.warning("refused %s: %s", proc.name(), refuse)
            self.send(proc, "stop", {"reason": refuse})
            return
        self.procs[ident] = proc
        if self.transport.secure and proc.role == "agent":
            proc.want_id = proc.hello_src       # admitted under its key's id, nothing else
        if proc.role == "envserver":
            self.env_proc = proc
            proc.id = ENVSERVER
            self.journal_proc("admit", proc)
            self.send(proc, "welcome", {"id": ENVSERVER, "info": self.env_info()})
        self.try_admit()

    def _key_refusal(self: Coordinator, proc: Proc) -> tuple[str, str] | None:
        """Secure mode: (reason, why) if a hello cannot be admitted under its key. (The guard
        has refused, as spoofed, any hello whose src, role or id is not the key's owner.)"""
        key = process_name(proc.hello_src)
        if proc.hello_src >= self.n_procs:
            return "not_in_run", f"{key} is not in this run ({self.n_procs} agent processes)"
        if any(p.hello_src == proc.hello_src for p in self.procs.values()):
            return "duplicate", f"{key} has already joined"
        return None

    def env_info(self: Coordinator) -> dict[str, Any]:
        c = self.config
        return {"config": c.to_dict(), "run_dir": str(self.run_dir.resolve()),
                "run_id": self.run_id, "n_procs": self.n_procs,
                "seeds": {"env_model": self.plan.env.model_seed,
                          "env_reset": self.plan.env.reset_seed},
                "controllers": self.controllers, "views": self.views}

    def on_env_ready(self: Coordinator, proc: Proc, msg: Message) -> None:
        if self.not_from(proc, msg, "envserver"):
            return
        self.env_local = msg.body.get("local")
        self.journal.write("env_ready", spaces=msg.body["spaces"] if not self.admitted
                           else self.spaces, local=self.env_local)
        if self.admitted:       # a restarted env server: the agents move to it
            self.restarts.moved_env()
            return
        self.spaces = msg.body["spaces"]
        self.try_admit()

    def try_admit(self: Coordinator) -> None:
        agents = [p for p in self.procs.values() if p.role == "agent"]
        if self.admitted or self.spaces is None or len(agents) < self.n_procs:
            return
        self.assign_ids(agents)
        for proc in agents:
            self.journal_proc("admit", proc)
        self.journal.write("running")
        for proc in agents:   # in plaintext it learns its id from this very message
            try:
                self.send(proc, "welcome", {"id": proc.id, "info": self.agent_info(proc.id)},
                          dst=proc.hello_src)
            except Oversize as exc:
                raise RunEnded("failed", f"cannot admit {proc.name()}: {exc}") from None
        schedule = self.plan.turns
        if schedule is not None:    # right behind the welcome: the agent waits for it
            for proc in agents:
                self.send(proc, "turn", schedule)
        self.admitted = True
        self.restarts.write_endpoints()

    def assign_ids(self: Coordinator, agents: list[Proc]) -> None:
        free = list(range(self.n_procs))
        for proc in agents:
            if proc.want_id in free:
                proc.id = proc.want_id
                free.remove(proc.want_id)
        for proc in agents:
            if proc.id is None:
                proc.id = free.pop(0)

    def agent_info(self: Coordinator, i: int) -> dict[str, Any]:
        by_id = {p.id: p for p in self.procs.values() if p.role == "agent"}
        return {**self.plan.agent_info(i), "config": self.config.to_dict(),
                "run_dir": str(self.run_dir.resolve()), "run_id": self.run_id,
                "neighbours": {j: by_id[j].endpoint for j in self.plan.agents[i].neighbours},
                "env_endpoint": self.env_proc.endpoint, "spaces": self.spaces,
                "env_local": self.env_local}
