"""What every runtime process shares: heartbeats both ways, liveness, the welcome handshake."""

from __future__ import annotations

import logging
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentd.transport import Link, Transport, hostname
from protocols import COORDINATOR, Message

log = logging.getLogger("agentd.process")


class RunFailed(RuntimeError):
    """The run cannot go on (lost coordinator, refused admission, bad env); exit non-zero."""


class ControlPlane:
    """The DEALER to the coordinator, with heartbeats and a silence watchdog."""

    def __init__(self, transport: Transport, coordinator: str, identity: bytes | None = None,
                 interval: float = 0.5, timeout: float = 5.0) -> None:
        self.transport = transport
        self.link: Link = transport.connect_dealer(coordinator, "control", identity)
        self.interval, self.timeout = interval, timeout
        self._last_sent = 0.0
        self.last_heard = time.monotonic()

    def send(self, kind: str, body: dict[str, Any], step: int = 0) -> None:
        self.transport.send(self.link, kind, COORDINATOR, body, step)
        self._last_sent = time.monotonic()

    def hello(self, role: str, endpoint: str | None, want_id: int | None,
              caps: dict[str, Any] | None = None) -> None:
        self.send("hello", {"role": role, "pid": os.getpid(), "host": hostname(),
                            "endpoint": endpoint, "want_id": want_id, "caps": caps or {}})

    def wait_welcome(self, timeout: float) -> dict[str, Any]:
        """Block until the coordinator admits us (or refuses, or stays silent too long)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.link in self.transport.poll(100):
                for msg, _ in self.transport.recv_all(self.link):
                    self.last_heard = time.monotonic()
                    if msg.kind == "welcome":
                        return {"id": msg.body["id"], **msg.body["info"]}
                    if msg.kind == "stop":
                        raise RunFailed(f"not admitted: {msg.body['reason']}")
        raise RunFailed(f"no welcome from the coordinator within {timeout:.0f} s")

    def tick(self) -> None:
        """Send a heartbeat when due; fail if the coordinator has gone silent."""
        now = time.monotonic()
        if now - self._last_sent >= self.interval:
            self.send("heartbeat", {})
        if now - self.last_heard > self.timeout:
            raise RunFailed(f"lost the coordinator (silent for {now - self.last_heard:.1f} s)")

    def heard(self, msg: Message) -> None:
        self.last_heard = time.monotonic()

    def wait_ack(self, timeout: float, serve: Callable[[Link], None] | None = None) -> bool:
        """After ``bye``: wait until the coordinator confirms it (or tells us to stop).
        ``serve`` handles traffic on the other links meanwhile (an agent that has finished
        still answers neighbours that have not: the ack comes only when all have)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.tick_quietly()
            for link in self.transport.poll(50):
                if link is not self.link:
                    if serve is not None:
                        serve(link)
                    continue
                for msg, _ in self.transport.recv_all(self.link):
                    self.last_heard = time.monotonic()
                    if msg.kind in ("ack", "stop"):
                        return True
        return False

    def tick_quietly(self) -> None:
        if time.monotonic() - self._last_sent >= self.interval:
            self.send("heartbeat", {})


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


def report_error(transport: Transport, message: str) -> None:
    """Best effort, while failing: tell the coordinator why this process is leaving."""
    control = next((lk for lk in transport.links.values()
                    if lk.plane == "control" and not lk.router), None)
    if control is not None:
        try:
            transport.send(control, "error", COORDINATOR, {"message": message})
            time.sleep(0.2)   # let the report leave before the socket closes
        except Exception as exc:  # noqa: BLE001 - best effort while already failing
            log.debug("could not report the error to the coordinator: %s", exc)
    transport.flush()


def advertised(endpoint: str, advertise: str | None) -> str:
    """Replace the bound host by the address other machines should dial."""
    if not advertise:
        return endpoint
    scheme, _, rest = endpoint.partition("://")
    port = rest.rsplit(":", 1)[-1]
    return f"{scheme}://{advertise}:{port}"
