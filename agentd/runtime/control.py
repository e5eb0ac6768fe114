"""What every runtime process shares: heartbeats both ways, liveness, the welcome handshake,
and (for hand-started agents and env servers) how a process opens its sockets to join a run.

It stays whole past ~300 lines: the heartbeats, the watch over the coordinator's silence (its
outages, ``agentd.runtime.outage``) and every wait for the coordinator share one socket and
one clock, and are read together."""

from __future__ import annotations

import logging
import os
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentd.runtime.keys import Keys, KeysError, agent_names_with_secrets, load_keys
from agentd.runtime.msglog import MessageLog
from agentd.runtime.netaddr import route_to, split_endpoint, with_host
from agentd.runtime.outage import Outbox
from agentd.runtime.transport import SEND_TIMEOUT_MS, Link, Transport, hostname
from protocols import COORDINATOR, ENVSERVER, UNASSIGNED, Guard, Message, process_name

log = logging.getLogger("agentd.runtime.control")


NOTICE_FIRST, NOTICE_EVERY = 2.0, 5.0   # seconds to the first "still waiting" line, between two


class RunFailed(RuntimeError):
    """The run cannot go on (lost coordinator, refused admission, bad env); exit non-zero."""


class CoordinatorLost(RunFailed):
    """The coordinator stayed unreachable longer than ``coordinator_timeout`` (or never
    welcomed this process); the message names the error, as the logs show only messages."""

    def __init__(self, message: str) -> None:
        super().__init__(f"CoordinatorLost: {message}")


class ControlPlane:
    """The DEALER to the coordinator, with heartbeats and a silence watchdog.

    The coordinator is off the data plane: when it goes silent for ``timeout`` the process
    carries on (an *outage*), queueing its reports, until it is heard again or
    ``coordinator_timeout`` has passed (``CoordinatorLost``)."""

    def __init__(self, transport: Transport, coordinator: str, identity: bytes | None = None,
                 interval: float = 0.5, timeout: float = 5.0) -> None:
        self.transport = transport
        self.endpoint = coordinator
        self.link: Link = transport.connect_dealer(coordinator, "control", COORDINATOR, identity)
        self.interval, self.timeout = interval, timeout
        self.coordinator_timeout = 0.0     # 0: the heartbeat timeout (before the welcome)
        self._last_sent = 0.0
        self.last_heard = time.monotonic()
        self._reported: dict[str, dict[str, int]] = {}
        self.outbox = Outbox()            # its reports while the coordinator is away

    def configure(self, cfg: dict[str, Any]) -> None:
        """The run's heartbeat settings, from the welcome's config."""
        self.interval, self.timeout = cfg["heartbeat_interval"], cfg["heartbeat_timeout"]
        self.coordinator_timeout = float(cfg.get("coordinator_timeout", self.timeout))

    @property
    def outage_since(self) -> float | None:
        return self.outbox.since

    @property
    def epoch(self) -> int:
        return self.outbox.epoch

    def send(self, kind: str, body: dict[str, Any], step: int = 0) -> None:
        if self.outbox.hold(kind, body, step):
            return
        self.transport.send(self.link, kind, COORDINATOR, body, step)
        self._last_sent = time.monotonic()

    def hello(self, role: str, endpoint: str | None, want_id: int | None,
              caps: dict[str, Any] | None = None) -> None:
        self.send("hello", {"role": role, "pid": os.getpid(), "host": hostname(),
                            "endpoint": endpoint, "want_id": want_id, "caps": caps or {}})

    def wait_welcome(self, timeout: float) -> dict[str, Any]:
        """Block until the coordinator admits us (or refuses, or stays silent too long),
        saying every few seconds what we wait for and until when (``_say_waiting``)."""
        started = time.monotonic()
        deadline, notice = started + timeout, started + NOTICE_FIRST
        while time.monotonic() < deadline:
            if self.link in self.transport.poll(100):
                # Stop at the welcome: what follows is addressed to the id it assigns, so the
                # guard must know that id before checking it (else a heartbeat queued behind
                # the welcome is refused as wrong_destination).
                for msg, _ in self.transport.recv_all(
                        self.link, until=lambda m: m.kind in ("welcome", "stop")):
                    self.last_heard = time.monotonic()
                    if msg.kind == "welcome":
                        self.transport.assign(msg.body["id"])
                        return {"id": msg.body["id"], **msg.body["info"]}
                    if msg.kind == "stop":
                        raise RunFailed(f"not admitted: {msg.body['reason']}")
            self._check_handshake()
            if time.monotonic() >= notice:
                self._say_waiting(time.monotonic() - started, deadline)
                notice = time.monotonic() + NOTICE_EVERY
        if not self.transport.reached(self.endpoint):
            raise CoordinatorLost(f"nothing answered at {self.endpoint} within {timeout:.0f} s: "
                                  "no coordinator listens there (is it running, and are the "
                                  "address and port right?)")
        raise CoordinatorLost(f"no welcome from the coordinator within {timeout:.0f} s")

    def _say_waiting(self, waited: float, deadline: float) -> None:
        """What a joining process waits for, and until when: nothing listening at the
        endpoint (a warning), or the coordinator's welcome, which comes once the env server
        and every agent process of the run have said hello."""
        left = deadline - time.monotonic()
        until = f"until {time.strftime('%H:%M:%S %Z', time.localtime(time.time() + left))} " \
                f"({left:.0f} s left of the join timeout)"
        if not self.transport.reached(self.endpoint):
            log.warning("nothing answers at %s after %.0f s: no connection to a coordinator "
                        "there (is it running, and are the address and port right?); still "
                        "trying %s", self.endpoint, waited, until)
        else:
            log.info("connected to the coordinator at %s; waiting %.0f s so far for its "
                     "welcome (sent once the env server and every agent process of the run "
                     "have joined); waiting %s", self.endpoint, waited, until)

    def wait_turn(self, timeout: float) -> dict[str, Any]:
        """Block until the coordinator's turn schedule (sent right behind the welcome)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.link in self.transport.poll(100):
                for msg, _ in self.transport.recv_all(
                        self.link, until=lambda m: m.kind in ("turn", "stop")):
                    self.last_heard = time.monotonic()
                    if msg.kind == "turn":
                        return msg.body
                    if msg.kind == "stop":
                        raise RunFailed(f"stopped before the run began: {msg.body['reason']}")
        raise RunFailed(f"no turn schedule from the coordinator within {timeout:.0f} s")

    def _check_handshake(self) -> None:
        """Fail fast when the coordinator's socket refuses ours: a security mismatch would
        otherwise only show as a missing welcome much later."""
        failed = self.transport.stats["control"].handshakes_failed
        if not failed:
            return
        reason = next(iter(failed))
        peer = next((k.split(" ", 2)[2] for k in self.transport.handshake_peers
                     if k.startswith(f"control {reason} ")), self.endpoint)
        mine = "with keys" if self.transport.secure else "without keys"
        raise RunFailed(f"the secure handshake with the coordinator at {peer} failed "
                        f"({reason}); this process runs {mine}. Every process of a run needs "
                        "--keys with the same public.toml (or none of them, on loopback)")

    def tick(self) -> None:
        """Send a heartbeat when due (and news of failed handshakes); note an outage of the
        coordinator, and fail once it has lasted ``coordinator_timeout``."""
        now = time.monotonic()
        if now - self._last_sent >= self.interval:
            self.report_handshakes()
            self.send("heartbeat", {})
        self.check_silence(now)

    def check_silence(self, now: float) -> None:
        silent = now - self.last_heard
        if silent <= self.timeout:
            return
        limit = max(self.coordinator_timeout, self.timeout)
        if silent > limit:
            raise CoordinatorLost(f"lost the coordinator: unreachable for {silent:.1f} s "
                                  f"(coordinator_timeout {limit:g} s)")
        if self.outage_since is None:
            self.outbox.begin(self.last_heard)
            # heartbeats must not wait on a socket nobody reads: past its queue they are
            # counted as not sent (the coordinator learns who is there from the next one)
            self.transport.limit_send_wait(self.link, 0.0)
            log.warning("%s: the coordinator is unreachable (silent for %.1f s); carrying on "
                        "for up to %.0f s, its reports queued", process_name(self.transport.me),
                        silent, limit)

    def _back(self, epoch: int | None) -> None:
        """The coordinator is heard again: what waited goes out; a new epoch (it was resumed
        from its journal) gets the latest counted reports again (``agentd.runtime.outage``)."""
        now = time.monotonic()
        if self.outage_since is not None:
            self.transport.limit_send_wait(self.link, SEND_TIMEOUT_MS / 1000)
            log.warning("%s: the coordinator is back; sending the %d reports queued",
                        process_name(self.transport.me), len(self.outbox.queued))
        for kind, body, step in self.outbox.end(now, epoch):
            self.transport.send(self.link, kind, COORDINATOR, body, step)
            self._last_sent = now

    def report_handshakes(self) -> None:
        """Tell the coordinator about failed handshakes since the last report."""
        counts = self.transport.handshake_counts()
        if counts != self._reported:
            self._reported = counts
            peers = sorted(self.transport.handshake_peers.items(), key=lambda kv: -kv[1])[:20]
            self.send("security", {"counts": counts, "peers": [list(p) for p in peers]})

    def heard(self, msg: Message) -> None:
        self.last_heard = time.monotonic()
        epoch = msg.body.get("epoch", 0) if msg.kind == "heartbeat" else None
        if self.outage_since is not None or (epoch is not None and epoch != self.epoch):
            self._back(epoch)

    def wait_ack(self, timeout: float, serve: Callable[[Link], None] | None = None) -> bool:
        """After ``bye``: wait until the coordinator confirms it (or tells us to stop).
        ``serve`` handles traffic on the other links meanwhile (an agent that has finished
        still answers neighbours that have not: the ack comes only when all have)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline or self.outage_since is not None:
            self.tick_quietly()
            for link in self.transport.poll(50):
                if link is not self.link:
                    if serve is not None:
                        serve(link)
                    continue
                for msg, _ in self.transport.recv_all(self.link):
                    self.heard(msg)
                    if msg.kind in ("ack", "stop"):
                        return True
        return False

    def tick_quietly(self) -> None:
        """A heartbeat when due; an outage is noted (and waited out, up to
        ``coordinator_timeout``) as in ``tick``."""
        now = time.monotonic()
        if now - self._last_sent >= self.interval:
            self.send("heartbeat", {})
        self.check_silence(now)

    def keepalive(self) -> None:
        """Inside a long computation: heartbeat when due, and take the coordinator's queued
        messages as a sign of life without reading them (the loop reads them afterwards)."""
        now = time.monotonic()
        if now - self._last_sent >= self.interval:
            self.send("heartbeat", {})
            if self.transport.readable(self.link):
                self.last_heard = now


def resident_mb() -> float:
    """Resident set size of this process in MB (Linux /proc; 0 elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def process_facts() -> dict[str, Any]:
    """Who and how big: pid, host, resident MB, whether torch got imported, CPU seconds used
    by all threads (zmq's I/O thread included), the CPUs it may run on."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    torch = sys.modules.get("torch")
    return {"pid": os.getpid(), "host": hostname(), "rss_mb": round(resident_mb(), 1),
            "torch_loaded": torch is not None,
            "torch_threads": torch.get_num_threads() if torch is not None else None,
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
            "cpus": sorted(os.sched_getaffinity(0))}


def report_error(transport: Transport, message: str, files: str | None = None) -> None:
    """Best effort, while failing: tell the coordinator why this process is leaving (and
    whether it will ship its files: ``files`` 'ship' or 'shared')."""
    control = next((lk for lk in transport.links.values()
                    if lk.plane == "control" and not lk.router), None)
    if control is not None:
        body = {"message": message, **({"files": files} if files else {})}
        try:
            transport.limit_send_wait(control, 1.0)   # the coordinator may be unreachable
            transport.send(control, "error", COORDINATOR, body)
            time.sleep(0.2)   # let the report leave before the socket closes
        except Exception as exc:  # noqa: BLE001 - best effort while already failing
            log.debug("could not report the error to the coordinator: %s", exc)
    transport.flush()


@dataclass
class JoinOptions:
    """How a hand-started agent or env server joins a run (its command-line flags)."""

    connect: str                    # the coordinator's control endpoint
    bind: str | None = None         # default: tcp://<the local address that routes there>:*
    advertise: str | None = None    # host others dial (default: the bound one)
    keys: str | None = None         # keys directory: secure mode
    insecure: bool = False          # allow plaintext beyond loopback, on purpose
    run_dir: str | None = None      # this host's directory for the process's files
    join_timeout: float = 120.0


def open_transport(role: str, opts: JoinOptions, want_id: int | None, plane: str
                   ) -> tuple[Transport, Link, str, int | None]:
    """Keys, transport and the bound ROUTER of a joining process.

    Returns the transport, the ROUTER, the endpoint to advertise and the id the keys fix
    (an agent's key is its identity: agent-<i> may only join as agent i)."""
    keys = _load_role_keys(role, opts.keys, want_id) if opts.keys else None
    me = keys.pid if keys else (ENVSERVER if role == "envserver" else UNASSIGNED)
    transport = Transport(me, Guard(me), MessageLog(role), keys, opts.insecure)
    try:
        bind = opts.bind or f"tcp://{route_to(opts.connect)}:*"
        link = transport.bind_router(bind, plane)
        endpoint = link.endpoint
        host = split_endpoint(endpoint)[1]
        if opts.advertise:
            endpoint = with_host(endpoint, opts.advertise)
        elif host in ("0.0.0.0", "::", "*"):   # bound everywhere: say where we are reached
            endpoint = with_host(endpoint, route_to(opts.connect))
    except Exception:
        transport.close()
        raise
    return transport, link, endpoint, (keys.pid if keys and role == "agent" else want_id)


def _load_role_keys(role: str, directory: str, want_id: int | None) -> Keys:
    if role == "envserver":
        return load_keys(directory, "envserver")
    if want_id is not None:
        return load_keys(directory, f"agent-{want_id}")
    names = agent_names_with_secrets(directory)
    if len(names) != 1:
        found = ", ".join(names) or "none"
        raise KeysError(f"{directory}: pass --id I to pick this agent's key (agent secrets "
                        f"here: {found})")
    return load_keys(directory, names[0])
