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

It journals what it cannot recompute and, killed, is resumed from the journal
(``coordinator.resume``). It stays whole past ~300 lines: its loop, its watch over the
processes and its handlers share the table of processes and are read together (admission, the
end of a run and the resume are their own modules).
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

from agentd.config import RunConfig
from agentd.configfile import to_toml
from agentd.plan import RunPlan, plan
from agentd.runtime.keys import Keys, name_of
from agentd.runtime.msglog import MessageLog
from agentd.runtime.runfiles import new_run_id, private_dir, write_marker
from agentd.runtime.transport import Transport
from agentd.tools.progress import ProgressBar
from coordinator.admission import Admission
from coordinator.collect import Collector
from coordinator.ending import Ending
from coordinator.journal import Replayed
from coordinator.procs import Proc, RunEnded
from coordinator.restarts import Restarts
from coordinator.resume import Resume, read_metrics
from coordinator.rundir import (
    MetricsFile,
    write_json,
)
from protocols import COORDINATOR, Guard, Message

log = logging.getLogger("agentd.coordinator")

__all__ = ["HANDLERS", "SENDS_ONLY", "Coordinator", "Proc", "RunEnded"]


@dataclass
class Coordinator(Admission, Ending, Resume):
    """One run's coordinator; ``serve`` returns the process exit code. With ``resumed`` (its
    journal, read back) it picks up the run a killed coordinator left (``coordinator.resume``)."""

    config: RunConfig
    bind: str
    quiet: bool = False
    keys: Keys | None = None
    plan: RunPlan | None = None     # the run's plan (None: the config's, ``agentd.plan``)
    resumed: Replayed | None = None
    run_dir: Path = field(init=False)

    def __post_init__(self) -> None:
        c = self.config
        if self.plan is None:
            self.plan = plan(c)
        self.run_dir = Path(c.run_dir)
        private_dir(private_dir(self.run_dir) / "logs")
        self.n_procs = self.plan.n_procs
        msglog = MessageLog("coordinator")    # the file once the socket is bound
        self.transport = Transport(COORDINATOR, Guard(COORDINATOR, max_bytes=c.max_msg_bytes),
                                   msglog, self.keys, c.insecure)
        try:
            self.link = self.transport.bind_router(self.bind, "control")
        except Exception:
            self.transport.close()
            raise
        msglog.attach(self.run_dir / "logs" / "coordinator.log", private=self.plan.private,
                      meta={"secure": self.transport.secure, "insecure": c.insecure})
        self.run_id = new_run_id()
        self.collector = Collector(self.run_dir, self._send_to, c.max_msg_bytes)
        self.graph = self.plan.graph()
        self.W = np.array(self.plan.W)
        self.controllers, self.views = self.plan.seating()
        self.procs: dict[bytes, Proc] = {}
        self.refused: set[bytes] = set()     # connections whose hello was refused
        self.env_proc: Proc | None = None
        self.spaces: dict[str, Any] | None = None
        self.env_local: dict[str, Any] | None = None   # the env server's local env plane
        self.admitted = False
        self.stepping = False          # the env server has reported a step
        metrics_path = self.run_dir / "metrics.jsonl"
        before = read_metrics(metrics_path) if self.resumed is not None else ([], 0, 0)
        self.metrics = MetricsFile(metrics_path)
        self.agent_scalars: dict[int, dict[str, float]] = {}
        self.env_rate = 0.0
        self.progress = None if self.quiet else ProgressBar(c.steps)
        self.started = time.monotonic()
        self._last_hb = 0.0
        self._signal: str | None = None
        self.restarts = Restarts(self)
        self.tallies: set[int] = set()   # agents whose tally (after the ack) is still due
        self.open_journal()
        if self.resumed is not None:
            self.restore(self.resumed, before[0], before[2])

    @property
    def endpoint(self) -> str:
        return self.link.endpoint

    def write_start_files(self) -> None:
        (self.run_dir / "config.toml").write_text(to_toml(self.config))
        (self.run_dir / "plan.json").write_text(self.plan.to_json())
        write_json(self.run_dir / "seeds.json", self.plan.seeds())
        write_json(self.run_dir / "coordinator.json", {"endpoint": self.endpoint})
        write_marker(self.run_dir, self.run_id)
        self.journal_start()

    def write_resume_files(self) -> None:
        """A resumed coordinator: the same endpoint, its new pid in endpoints.json."""
        write_json(self.run_dir / "coordinator.json", {"endpoint": self.endpoint})
        if self.admitted:
            self.restarts.write_endpoints()

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
            beat = {"epoch": self.epoch} if self.epoch else {}
            # (not to one that is down or not back since a resume: nobody is there; to one
            # that said bye too: it waits for the ack, and tells an outage by the silence)
            for proc in self.procs.values():
                if proc.id is not None and not proc.unheard and \
                        proc.id not in self.restarts.down_since:
                    self.send(proc, "heartbeat", beat)
        self.end_if_ended()
        self.alive(now)
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
        if proc is not None and proc.unheard:
            self.welcome_back(proc)
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
        connection; its key is the same). Answer it there from now on. (In plaintext, a
        resumed coordinator knows its processes again by the ids they send as.)"""
        if ident in self.refused:
            return None
        if not self.transport.secure:
            return self.reconnected_after_resume(src, ident) if self.epoch else None
        proc = next((p for p in self.procs.values() if p.hello_src == src), None)
        if proc is not None:
            del self.procs[proc.identity]
            proc.identity = ident
            self.procs[ident] = proc
        return proc

    # -- admission --------------------------------------------------------------------------
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

    def on_env_restarted(self, proc: Proc, msg: Message) -> None:
        if self.not_from(proc, msg, "envserver"):
            return
        if any(r.get("process") == "envserver" and r["step"] == msg.body["step"]
               for r in self.restarts.records):
            return          # sent again to a resumed coordinator: counted already
        if msg.body["truncated"] > self.config.num_envs:
            self.refuse(proc, msg, "bad_value", f"{msg.body['truncated']} env copies "
                        f"truncated, the run has {self.config.num_envs}")
            return
        self.restarts.env_restarted(msg.body)
        for env in range(msg.body["truncated"]):
            self.metrics.truncated(msg.body["step"], env, "envserver restart")

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
        new = self.new_episodes(msg.body["step"], len(returns))
        for ret, length in list(zip(returns, lengths))[len(returns) - new:]:
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
        if any(r["process"] == f"agent-{proc.id}" and r.get("resumed_step") ==
               msg.body["resumed_step"] for r in self.restarts.records):
            return          # sent again to a resumed coordinator: counted already
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
