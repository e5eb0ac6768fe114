"""The coordinator: admission, topology hand-out, heartbeats, metrics, orderly stop.

It binds one ROUTER (the control plane). The env server says hello and gets the config; once
its env is built (``env_ready``) and all agent processes have said hello, every agent gets its
``welcome``: id, neighbours and their endpoints, its row of W, the config, its seed and the
spaces. From then on every process heartbeats; a process that dies, goes silent or reports an
error ends the run within ``heartbeat_timeout`` with an error naming it. The end of a run is a
barrier: every process says ``bye`` (with its stats) and is acked only when all have, so no
process closes its sockets while a message to it is still in flight.

With keys (secure mode) a process is who its key says: the env server's key may only say hello
as the env server, agent i's key only as agent i (a mismatch is refused and counted as
``spoofed``). After the barrier, processes that wrote their files on another disk ship them
here (``coordinator.collect``), so the run directory on this host is complete; what could not
be collected is listed in ``summary.json``.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agentd.config import RunConfig, is_private, process_count, seating, to_toml, turn_schedule
from agentd.runtime.keys import Keys, name_of
from agentd.runtime.msglog import MessageLog
from agentd.runtime.runfiles import new_run_id, private_dir, write_marker
from agentd.runtime.transport import Transport
from agentd.tools.progress import ProgressBar
from coordinator.collect import Collector, free_space, limits, missing_files
from coordinator.restarts import Restarts
from coordinator.rundir import (
    MetricsFile,
    consensus_after_run,
    derive_seed,
    write_json,
)
from coordinator.summary import fold_tally, report, tallies_due, write_summary
from protocols import COORDINATOR, ENVSERVER, UNASSIGNED, Guard, Message, process_name
from protocols.errors import Oversize
from topologies import build, mixing_matrix

log = logging.getLogger("agentd.coordinator")


@dataclass
class Proc:
    """A process that said hello."""

    identity: bytes
    role: str
    pid: int
    host: str
    endpoint: str | None
    want_id: int | None
    last_seen: float
    hello_src: int = UNASSIGNED      # the src its hello carried (its id, in secure mode)
    id: int | None = None
    stats: dict[str, Any] | None = None
    handshakes: dict[str, Any] | None = None   # its latest report of failed handshakes
    failing: bool = False            # it reported an error: it may ship its files now
    security_reports: int = 0

    def name(self) -> str:
        who = process_name(self.id) if self.id is not None else self.role
        return f"{who} (pid {self.pid} on {self.host})"


class RunEnded(Exception):
    """Raised inside the loop to end the run with a status and a reason."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


@dataclass
class Coordinator:
    """One run's coordinator; ``serve`` returns the process exit code."""

    config: RunConfig
    bind: str
    quiet: bool = False
    keys: Keys | None = None
    run_dir: Path = field(init=False)

    def __post_init__(self) -> None:
        c = self.config
        self.run_dir = Path(c.run_dir)
        private_dir(private_dir(self.run_dir) / "logs")
        self.n_procs = process_count(c)
        msglog = MessageLog("coordinator")    # the file once the socket is bound
        self.transport = Transport(COORDINATOR, Guard(COORDINATOR, max_bytes=c.max_msg_bytes),
                                   msglog, self.keys, c.insecure)
        try:
            self.link = self.transport.bind_router(self.bind, "control")
        except Exception:
            self.transport.close()
            raise
        msglog.attach(self.run_dir / "logs" / "coordinator.log", private=is_private(c),
                      meta={"secure": self.transport.secure, "insecure": c.insecure})
        self.run_id = new_run_id()
        self.collector = Collector(self.run_dir, self._send_to, c.max_msg_bytes)
        self.graph = build(c.topology if self.n_procs > 1 else "complete", self.n_procs,
                           rows=c.rows or None, p=c.p, k=c.k, rewire=c.rewire,
                           seed=derive_seed(c.seed, "graph"), edges_file=c.edges or None)
        self.W = mixing_matrix(self.graph, c.mixing)
        self.controllers, self.views = seating(c)
        self.procs: dict[bytes, Proc] = {}
        self.refused: set[bytes] = set()     # connections whose hello was refused
        self.env_proc: Proc | None = None
        self.spaces: dict[str, Any] | None = None
        self.env_local: dict[str, Any] | None = None   # the env server's local env plane
        self.admitted = False
        self.stepping = False          # the env server has reported a step
        self.metrics = MetricsFile(self.run_dir / "metrics.jsonl")
        self.agent_scalars: dict[int, dict[str, float]] = {}
        self.env_rate = 0.0
        self.progress = None if self.quiet else ProgressBar(c.steps)
        self.started = time.monotonic()
        self._last_hb = 0.0
        self._signal: str | None = None
        self.restarts = Restarts(self)

    @property
    def endpoint(self) -> str:
        return self.link.endpoint

    def write_start_files(self) -> None:
        (self.run_dir / "config.toml").write_text(to_toml(self.config))
        c = self.config
        write_json(self.run_dir / "seeds.json", {
            "seed": c.seed, "graph": derive_seed(c.seed, "graph"),
            "env_model": derive_seed(c.seed, "env_model"),
            "env_reset": derive_seed(c.seed, "env_reset"),
            "agents": {str(i): derive_seed(c.seed, "agent", i) for i in range(self.n_procs)}})
        write_json(self.run_dir / "coordinator.json", {"endpoint": self.endpoint})
        write_marker(self.run_dir, self.run_id)

    # -- the loop ---------------------------------------------------------------------------
    def serve(self) -> int:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)
        try:
            while True:
                for _ in self.transport.poll(100):
                    for msg, ident in self.transport.recv_all(self.link):
                        with self.transport.handling("control", msg, passing=(RunEnded,)):
                            self.on_message(msg, ident)
                self.housekeeping()
                self.transport.flush()
        except RunEnded as end:
            return self.finish(end.status, end.reason)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self._signal = signal.Signals(signum).name

    def housekeeping(self) -> None:
        now = time.monotonic()
        if self._signal:
            raise RunEnded("interrupted", f"received {self._signal}")
        if now - self._last_hb >= self.config.heartbeat_interval:
            self._last_hb = now
            for proc in self.procs.values():   # (not to one that is down: nobody is there)
                if proc.id is not None and proc.stats is None and \
                        proc.id not in self.restarts.down_since:
                    self.send(proc, "heartbeat", {})
        # Before the first step, processes build learners (a deep one imports torch and builds
        # networks: seconds on a loaded machine), so silence is judged against join_timeout.
        limit = self.config.heartbeat_timeout if self.stepping else \
            max(self.config.heartbeat_timeout, self.config.join_timeout)
        for proc in self.procs.values():
            silent = now - proc.last_seen
            if proc.id is None or proc.stats is not None or silent <= limit:
                continue
            if silent > self.restarts.silence_limit(proc, limit):
                raise RunEnded("failed", f"{proc.name()} stopped heartbeating "
                               f"(silent for {silent:.1f} s); see logs/ in {self.run_dir}")
            self.restarts.note_silent(proc, silent)
        if not self.admitted and now - self.started > self.config.join_timeout:
            agents = sum(p.role == "agent" for p in self.procs.values())
            env = "joined" if self.env_proc else "not joined"
            raise RunEnded("failed", f"only {agents} of {self.n_procs} agent processes joined "
                           f"within {self.config.join_timeout:.0f} s (env server {env})")

    def send(self, proc: Proc, kind: str, body: dict[str, Any], dst: int | None = None) -> None:
        if dst is None:
            dst = proc.id if proc.id is not None else proc.hello_src
        self.transport.send(self.link, kind, dst, body, to=proc.identity)

    def _send_to(self, name: str, kind: str, body: dict[str, Any]) -> None:
        proc = self._by_name(name)
        if proc is not None:
            self.send(proc, kind, body)

    def _by_name(self, name: str) -> Proc | None:
        """An admitted process by its key name (agent-3, envserver)."""
        return next((p for p in self.procs.values()
                     if p.id is not None and name_of(p.id) == name), None)

    def on_message(self, msg: Message, ident: bytes | None) -> None:
        assert ident is not None
        proc = self.procs.get(ident)
        if proc is None and msg.kind != "hello":
            proc = self._reconnected(msg.src, ident)
        if proc is None:
            if msg.kind == "hello":
                self.on_hello(msg, ident)
            else:
                self.transport.count_rejection("control", "unknown_sender",
                                               f"'{msg.kind}' from a process that never said "
                                               "hello")
            return
        proc.last_seen = time.monotonic()
        handler = HANDLERS.get(msg.kind)
        if handler is not None:
            handler(self, proc, msg)
        elif msg.kind != "hello":     # a second hello of an admitted process changes nothing
            self.refuse(proc, msg, "unexpected_kind", "the coordinator only sends it")

    def _reconnected(self, src: int, ident: bytes) -> Proc | None:
        """Secure mode: a known process on a new connection (its routing id is assigned per
        connection; its key is the same). Answer it there from now on."""
        if not self.transport.secure or ident in self.refused:
            return None
        proc = next((p for p in self.procs.values() if p.hello_src == src), None)
        if proc is not None:
            del self.procs[proc.identity]
            proc.identity = ident
            self.procs[ident] = proc
        return proc

    # -- admission --------------------------------------------------------------------------
    def on_hello(self, msg: Message, ident: bytes) -> None:
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
            self.send(proc, "welcome", {"id": ENVSERVER, "info": self.env_info()})
        self.try_admit()

    def _key_refusal(self, proc: Proc) -> tuple[str, str] | None:
        """Secure mode: (reason, why) if a hello cannot be admitted under its key. (The guard
        has refused, as spoofed, any hello whose src, role or id is not the key's owner.)"""
        key = process_name(proc.hello_src)
        if proc.hello_src >= self.n_procs:
            return "not_in_run", f"{key} is not in this run ({self.n_procs} agent processes)"
        if any(p.hello_src == proc.hello_src for p in self.procs.values()):
            return "duplicate", f"{key} has already joined"
        return None

    def env_info(self) -> dict[str, Any]:
        c = self.config
        return {"config": c.to_dict(), "run_dir": str(self.run_dir.resolve()),
                "run_id": self.run_id, "n_procs": self.n_procs,
                "seeds": {"env_model": derive_seed(c.seed, "env_model"),
                          "env_reset": derive_seed(c.seed, "env_reset")},
                "controllers": self.controllers, "views": self.views}

    def refuse(self, proc: Proc, msg: Message, reason: str, why: str) -> bool:
        """Count and warn about a control message this process may not send (True)."""
        self.transport.count_rejection("control", reason, f"'{msg.kind}' from {proc.name()}: "
                                       f"{why}")
        return True

    def not_from(self, proc: Proc, msg: Message, role: str | None) -> bool:
        """True (and counted) unless ``proc`` is admitted, and in ``role`` if one is given:
        the handlers trust what the guard checked, and who may say it is checked here."""
        if proc.id is None:
            return self.refuse(proc, msg, "not_admitted", "it has not been admitted")
        if role is not None and proc.role != role:
            return self.refuse(proc, msg, "wrong_role", f"only the {role} sends it")
        return False

    def on_env_ready(self, proc: Proc, msg: Message) -> None:
        if self.not_from(proc, msg, "envserver"):
            return
        self.env_local = msg.body.get("local")
        if self.admitted:       # a restarted env server: the agents move to it
            self.restarts.moved_env()
            return
        self.spaces = msg.body["spaces"]
        self.try_admit()

    def on_env_restarted(self, proc: Proc, msg: Message) -> None:
        if self.not_from(proc, msg, "envserver"):
            return
        if msg.body["truncated"] > self.config.num_envs:
            self.refuse(proc, msg, "bad_value", f"{msg.body['truncated']} env copies "
                        f"truncated, the run has {self.config.num_envs}")
            return
        self.restarts.env_restarted(msg.body)
        for env in range(msg.body["truncated"]):
            self.metrics.truncated(msg.body["step"], env, "envserver restart")

    def try_admit(self) -> None:
        agents = [p for p in self.procs.values() if p.role == "agent"]
        if self.admitted or self.spaces is None or len(agents) < self.n_procs:
            return
        self.assign_ids(agents)
        for proc in agents:   # in plaintext it learns its id from this very message
            try:
                self.send(proc, "welcome", {"id": proc.id, "info": self.agent_info(proc.id)},
                          dst=proc.hello_src)
            except Oversize as exc:
                raise RunEnded("failed", f"cannot admit {proc.name()}: {exc}") from None
        schedule = turn_schedule(self.config)
        if schedule is not None:    # right behind the welcome: the agent waits for it
            for proc in agents:
                self.send(proc, "turn", schedule)
        self.admitted = True
        self.restarts.write_endpoints()

    def assign_ids(self, agents: list[Proc]) -> None:
        free = list(range(self.n_procs))
        for proc in agents:
            if proc.want_id in free:
                proc.id = proc.want_id
                free.remove(proc.want_id)
        for proc in agents:
            if proc.id is None:
                proc.id = free.pop(0)

    def agent_info(self, i: int) -> dict[str, Any]:
        by_id = {p.id: p for p in self.procs.values() if p.role == "agent"}
        neighbours = self.graph.neighbours(i)
        return {"config": self.config.to_dict(), "run_dir": str(self.run_dir.resolve()),
                "run_id": self.run_id, "n_procs": self.n_procs,
                "seed": derive_seed(self.config.seed, "agent", i),
                "neighbours": {j: by_id[j].endpoint for j in neighbours},
                "weights": {j: float(self.W[i, j]) for j in [i, *neighbours]},
                "env_endpoint": self.env_proc.endpoint, "controls": self.controllers[i],
                "view": self.views[i],
                "graph_edges": [list(e) for e in self.graph.edges],
                "spaces": self.spaces, "env_local": self.env_local}

    # -- during the run ---------------------------------------------------------------------
    def on_heartbeat(self, proc: Proc, msg: Message) -> None:
        pass

    def on_metrics(self, proc: Proc, msg: Message) -> None:
        if self.not_from(proc, msg, None):
            return
        if proc.role == "envserver":
            self.stepping = self.stepping or msg.body["step"] > 0
            self.env_rate = float(msg.body["scalars"].get("steps_per_s", 0.0))
            self.show_progress(msg.body["step"])
            self.metrics.scalars("env", msg.body["step"], msg.body["scalars"])
        else:
            self.agent_scalars[proc.id] = msg.body["scalars"]
            self.metrics.scalars(f"agent_{proc.id}", msg.body["step"], msg.body["scalars"])

    def on_episodes(self, proc: Proc, msg: Message) -> None:
        if self.not_from(proc, msg, "envserver"):
            return
        returns, lengths = msg.body["returns"], msg.body["lengths"]
        if len(returns) != len(lengths) or len(returns) > self.config.num_envs:
            self.refuse(proc, msg, "bad_value", f"{len(returns)} returns and {len(lengths)} "
                        f"lengths; at most one episode per env copy ({self.config.num_envs})")
            return
        self.stepping = True
        for ret, length in zip(msg.body["returns"], msg.body["lengths"]):
            self.metrics.episode(msg.body["step"], float(ret), int(length), self.agent_scalars)
        self.show_progress(msg.body["step"])

    def show_progress(self, step: int) -> None:
        if self.progress is not None:
            recent = self.metrics.returns[-20:]
            note = f"return {np.mean(recent):.2f}" if recent else ""
            self.progress.update(step, note)

    def on_restarted(self, proc: Proc, msg: Message) -> None:
        if self.not_from(proc, msg, "agent"):
            return
        if msg.body["agent"] != proc.id:
            self.refuse(proc, msg, "bad_value", f"it speaks for agent {msg.body['agent']}")
            return
        self.restarts.resumed(proc, msg.body)

    def on_error(self, proc: Proc, msg: Message) -> None:
        proc.failing = True
        if self.admitted and proc.id is not None and self.restarts.left(proc.id) > 0:
            # (before admission a failure is a broken setup, e.g. an env that cannot be
            # built: restarting would only repeat it)
            log.warning("%s failed: %s; it may be restarted", proc.name(), msg.body["message"])
            return      # it goes silent now: the heartbeat check waits for its rejoin
        proc.stats = {"pid": proc.pid, "host": proc.host, "error": msg.body["message"],
                      "files": msg.body.get("files", "unknown")}
        raise RunEnded("failed", f"{proc.name()} failed: {msg.body['message']}")

    def on_security(self, proc: Proc, msg: Message) -> None:
        proc.handshakes = msg.body
        proc.security_reports += 1      # said on stderr for the first 5, then every 1000th
        if proc.security_reports > 5 and proc.security_reports % 1000:
            return
        text = ", ".join(f"{plane} {reason} x{n}" for plane, reasons in msg.body["counts"].items()
                         for reason, n in reasons.items())
        peers = ", ".join(f"{p} ({n})" for p, n in msg.body["peers"][:3])
        log.warning("%s reports failed handshakes: %s; from %s", proc.name(), text, peers)

    def on_files(self, proc: Proc, msg: Message) -> None:
        if self.not_shipping(proc, msg):
            return
        c, name = self.config, name_of(proc.id)
        shippers = 1 + len(self.collector.busy())
        lim = limits(c.steps, c.checkpoint_every, proc.stats, free_space(self.run_dir),
                     shippers)
        self.collector.announce(name, msg.body["files"], lim, 2 * c.heartbeat_timeout)

    def on_file_chunk(self, proc: Proc, msg: Message) -> None:
        if not self.not_shipping(proc, msg):
            self.collector.on_chunk(name_of(proc.id), msg.body)

    def on_tally(self, proc: Proc, msg: Message) -> None:
        """An agent's counters after the ack (``coordinator.summary.fold_tally``)."""
        if self.not_from(proc, msg, "agent"):
            return
        if not self.collector.accepting or proc.stats is None:
            self.refuse(proc, msg, "out_of_phase", "a tally comes after the ack")
            return
        proc.stats = fold_tally(proc.stats, msg.body["stats"])
        self.tallies.discard(proc.id)

    def not_shipping(self, proc: Proc, msg: Message) -> bool:
        """File transfer is for the end of the run, or for a process that said it is failing;
        any other time it is refused (and counted with the transfer's refusals)."""
        if self.not_from(proc, msg, None):
            return True
        if self.collector.accepting or proc.failing:
            return False
        self.collector.refuse(name_of(proc.id), "out_of_phase", f"'{msg.kind}' during the run")
        return self.refuse(proc, msg, "out_of_phase", "file transfer is for the end of the run")

    def on_bye(self, proc: Proc, msg: Message) -> None:
        if self.not_from(proc, msg, None):
            return
        proc.stats = msg.body["stats"]
        members = [p for p in self.procs.values() if p.id is not None]
        if self.admitted and all(p.stats is not None for p in members):
            raise RunEnded("done", "")

    # -- the end ----------------------------------------------------------------------------
    def finish(self, status: str, reason: str) -> int:
        if status != "done":
            self.stop_everyone(reason)
        for proc in self.procs.values():
            if proc.id is not None:
                self.send(proc, "ack", {})
        self.transport.flush()
        if self.progress is not None:
            self.progress.close()
        files = self.collect_files(status)
        consensus = consensus_after_run(self.run_dir, self.metrics) if status == "done" \
            else None
        summary = write_summary(self, status, reason, consensus, files)
        self.metrics.close()
        self.transport.close()
        report(self.run_dir, summary)
        return {"done": 0, "interrupted": 130}.get(status, 1)

    def stop_everyone(self, reason: str) -> None:
        """Tell every live process to stop and collect the byes that come within a moment."""
        for proc in self.procs.values():
            if proc.id is None:   # said hello, never admitted: it leaves without a bye
                self.send(proc, "stop", {"reason": reason})
        waiting = [p for p in self.procs.values() if p.id is not None and p.stats is None]
        for proc in waiting:
            self.send(proc, "stop", {"reason": reason})
        deadline = time.monotonic() + min(3.0, self.config.heartbeat_timeout)
        while time.monotonic() < deadline and any(p.stats is None for p in waiting):
            for _ in self.transport.poll(50):
                for msg, ident in self.transport.recv_all(self.link):
                    proc = self.procs.get(ident)
                    with self.transport.handling("control", msg):
                        if proc is not None and msg.kind == "bye":
                            proc.stats = msg.body["stats"]
                        elif proc is not None and msg.kind == "episodes":
                            self.on_episodes(proc, msg)

    def collect_files(self, status: str) -> dict[str, Any]:
        """Pull the files of processes that wrote them on another disk; list what is missing.
        Every shipper has ``2 x heartbeat_timeout`` to announce its files and each shipment
        its own deadline (``coordinator.collect``): heartbeats keep a process known to be
        alive, they do not keep the collection waiting."""
        shippers = {name_of(p.id) for p in self.procs.values()
                    if p.id is not None and (p.stats or {}).get("files") == "ship"}
        silence = 2 * self.config.heartbeat_timeout
        started = time.monotonic()
        self.tallies = tallies_due(self.procs.values()) if status == "done" else set()
        self.collector.accepting = True
        while True:
            self._give_up_late(shippers, started, silence)
            if self.tallies and time.monotonic() - started > silence:
                log.warning("no tally from agents %s: summary.json counts their messages up "
                            "to their bye only", sorted(self.tallies))
                self.tallies.clear()
            waiting = (shippers - set(self.collector.shipments)) | set(self.collector.busy())
            if not waiting and not self.tallies:
                break
            for _ in self.transport.poll(100):
                for msg, ident in self.transport.recv_all(self.link):
                    proc = self.procs.get(ident) or self._reconnected(msg.src, ident)
                    if proc is not None:
                        proc.last_seen = time.monotonic()
                        if msg.kind in ("files", "file_chunk", "security", "tally"):
                            with self.transport.handling("control", msg):
                                HANDLERS[msg.kind](self, proc, msg)
        shipped = {s.name: {"files": len(s.done), "bytes": s.bytes}
                   for s in self.collector.shipments.values()}
        if shipped:
            log.info("collected %d files (%d bytes) from %d processes in %.1f s",
                     sum(v["files"] for v in shipped.values()),
                     sum(v["bytes"] for v in shipped.values()), len(shipped),
                     time.monotonic() - started)
        return {"shipped": shipped,
                "missing": missing_files(self.run_dir, self.expected_files(status)),
                **self.collector.report()}

    def _give_up_late(self, shippers: set[str], started: float, silence: float) -> None:
        """Stop waiting for a shipper that is gone, silent, never announced in time, or whose
        shipment is past its deadline or has stalled."""
        now = time.monotonic()
        for name in sorted(shippers - set(self.collector.shipments)):
            proc = self._by_name(name)
            if proc is None or now - proc.last_seen > silence or now - started > silence:
                log.error("%s did not announce its files", proc.name() if proc else name)
                self.collector.refuse(name, "never_announced", f"nothing within {silence:.0f} s")
                shippers.discard(name)
        for name in self.collector.busy():
            proc = self._by_name(name)
            why = "it went silent" if proc is None or now - proc.last_seen > silence else \
                self.collector.overdue(name, now, silence)
            if why:
                log.error("%s: giving up the files still coming: %s", name, why)
                self.collector.abandon(name, why)
                shippers.discard(name)

    def expected_files(self, status: str) -> dict[str, list[str]]:
        """What the run directory should hold for each admitted process."""
        expected = {}
        shipments = {s.name: s for s in self.collector.shipments.values()}
        for proc in self.procs.values():
            if proc.id is None:
                continue
            name, stats = name_of(proc.id), proc.stats or {}
            paths = [f"logs/{name}.log"]
            if stats.get("files") == "ship":
                paths.append(f"logs/{name}.out")
            if proc.role == "agent" and status == "done":
                paths.append(f"checkpoints/{name}.npz")
            if name in shipments:
                paths += [p for p in shipments[name].files if p not in paths]
            expected[proc.name()] = paths
        return expected


# The control kinds the coordinator receives from an admitted process, each with its handler
# (``hello``, from a process not admitted yet, goes to ``on_hello`` first). Every other
# control kind of the registry is one the coordinator only sends (``SENDS_ONLY``); received,
# it is refused and counted. tests/test_dispatch.py checks both against ``protocols.kinds``.
HANDLERS: dict[str, Callable[[Coordinator, Proc, Message], None]] = {
    "env_ready": Coordinator.on_env_ready,
    "env_restarted": Coordinator.on_env_restarted,
    "heartbeat": Coordinator.on_heartbeat,
    "metrics": Coordinator.on_metrics,
    "episodes": Coordinator.on_episodes,
    "restarted": Coordinator.on_restarted,
    "error": Coordinator.on_error,
    "security": Coordinator.on_security,
    "files": Coordinator.on_files,
    "file_chunk": Coordinator.on_file_chunk,
    "bye": Coordinator.on_bye,
    "tally": Coordinator.on_tally,
}
SENDS_ONLY = frozenset({"welcome", "ack", "turn", "stop", "peer_moved", "env_moved",
                        "file_get", "files_done"})
