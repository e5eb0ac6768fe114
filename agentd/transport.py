"""The transport layer: ZeroMQ sockets wrapped with the guard, the message log and counters.

Every process (agent, env server, coordinator) talks through one ``Transport``. Sending runs
the guard's outgoing check; receiving runs the incoming check. A refused incoming message is
dropped, counted by reason, written to the message log with its reason and reported on
stderr (rate-limited), and the process carries on. Sync sockets with a poller: the hot path
(act -> env step -> peer exchange) is a tight loop, ~2x faster than asyncio here (DESIGN §8).
"""

from __future__ import annotations

import logging
import socket as pysocket
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import zmq

from agentd.msglog import MessageLog
from protocols import Codec, Guard, Message, ProtocolError, encode, process_name

log = logging.getLogger("agentd.transport")
PLANES = ("control", "env", "peer")


@dataclass
class PlaneStats:
    """Counters for one plane of one process."""

    msgs_sent: int = 0
    msgs_recv: int = 0
    bytes_sent: int = 0
    bytes_recv: int = 0
    rejected: Counter = field(default_factory=Counter)
    refused_out: Counter = field(default_factory=Counter)


@dataclass
class Link:
    """One socket, the plane it carries, and (for ROUTERs) the endpoint it is bound to."""

    sock: zmq.Socket
    plane: str
    router: bool
    endpoint: str


class Transport:
    """Sockets of one process plus its guard, message log and stats."""

    def __init__(self, me: int, guard: Guard, msglog: MessageLog | None) -> None:
        self.me = me
        self.guard = guard
        self.msglog = msglog
        self.codec = Codec()
        self.ctx = zmq.Context()
        self.poller = zmq.Poller()
        self.links: dict[zmq.Socket, Link] = {}
        self.stats = {plane: PlaneStats() for plane in PLANES}
        self._seq = 0
        self._warned: Counter = Counter()

    # -- sockets ----------------------------------------------------------------------------
    def bind_router(self, address: str, plane: str) -> Link:
        sock = self.ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 1000)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.bind(address)
        endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        return self._add(Link(sock, plane, True, endpoint))

    def connect_dealer(self, address: str, plane: str, identity: bytes | None = None) -> Link:
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 1000)
        if identity is not None:
            sock.setsockopt(zmq.IDENTITY, identity)
        sock.connect(address)
        return self._add(Link(sock, plane, False, address))

    def _add(self, link: Link) -> Link:
        self.links[link.sock] = link
        self.poller.register(link.sock, zmq.POLLIN)
        return link

    def poll(self, timeout_ms: int) -> list[Link]:
        return [self.links[s] for s, _ in self.poller.poll(timeout_ms)]

    # -- send / receive ---------------------------------------------------------------------
    def send(self, link: Link, kind: str, dst: int, body: dict[str, Any], step: int = 0,
             to: bytes | None = None) -> bool:
        """Guard, send and log one message; a refused peer message is counted, not raised."""
        return self.send_burst(link, kind, [(dst, body, to)], step) == 1

    def send_burst(self, link: Link, kind: str,
                   messages: list[tuple[int, dict[str, Any], bytes | None]],
                   step: int = 0) -> int:
        """Guard and encode every message first, then send them back to back; returns how
        many were sent.

        Sending them in a burst lets ZeroMQ's I/O thread take them in one wake-up; with encoding
        between the sends, every send had to wake it again (an expensive signal on a VM). The
        guard raises for control and env messages (our own bug); a refused peer message (the
        learner's) is counted and skipped.
        """
        frames = []
        for dst, body, to in messages:
            try:
                self.guard.outgoing(kind, dst, body, link.plane)
            except ProtocolError as exc:
                if link.plane != "peer":
                    raise
                self.stats["peer"].refused_out[exc.reason] += 1
                self._warn("refused to send", exc)
                continue
            self._seq += 1
            frames.append((encode(self.codec, kind, self.me, dst, step, self._seq, body), to))
        sent = [self.send_frames(link, [frame], to) for frame, to in frames]
        if self.msglog is not None:
            for (frame, _), ok in zip(frames, sent):
                if ok:
                    self.msglog.record("out", link.plane, [frame])
        return sum(sent)

    def send_frames(self, link: Link, frames: list[bytes], to: bytes | None = None) -> bool:
        """Send pre-encoded frames; a ROUTER's peer that has gone away is counted, not fatal."""
        stats = self.stats[link.plane]
        try:
            link.sock.send_multipart([to, *frames] if link.router else frames)
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EHOSTUNREACH:
                raise
            stats.refused_out["unreachable"] += 1
            log.warning("%s: %s message to %r not sent: peer gone", process_name(self.me),
                        link.plane, to)
            return False
        stats.msgs_sent += 1
        stats.bytes_sent += sum(len(f) for f in frames)
        return True

    def recv_all(self, link: Link) -> list[tuple[Message, bytes | None]]:
        """Drain every message waiting on a link; refused ones are counted and logged."""
        out = []
        while True:
            try:
                frames = link.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return out
            identity = frames.pop(0) if link.router else None
            msg = self._accept(link, frames, identity)
            if msg is not None:
                out.append((msg, identity))

    def _accept(self, link: Link, frames: list[bytes], identity: bytes | None) -> Message | None:
        stats = self.stats[link.plane]
        try:
            msg = self.guard.incoming(frames, link.plane, identity)
        except ProtocolError as exc:
            stats.rejected[exc.reason] += 1
            if self.msglog is not None:
                self.msglog.record("rej", link.plane, [f[:4096] for f in frames], exc.reason)
                # a refused frame is kept up to 4 KiB: enough to inspect, not to fill the disk
            self._warn(f"rejected a {link.plane} message from {identity!r}", exc)
            return None
        stats.msgs_recv += 1
        stats.bytes_recv += msg.nbytes
        if self.msglog is not None:
            self.msglog.record("in", link.plane, frames)
        return msg

    def _warn(self, what: str, exc: ProtocolError) -> None:
        self._warned[exc.reason] += 1
        count = self._warned[exc.reason]
        if count <= 5 or count % 1000 == 0:
            log.warning("%s %s: %s: %s (%d so far)", process_name(self.me), what, exc.reason,
                        exc, count)

    # -- bookkeeping ------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Totals and per-plane counters, as written to summary.json."""
        planes = {p: {"msgs_sent": s.msgs_sent, "msgs_recv": s.msgs_recv,
                      "bytes_sent": s.bytes_sent, "bytes_recv": s.bytes_recv,
                      "rejected": dict(s.rejected), "refused_out": dict(s.refused_out)}
                  for p, s in self.stats.items()}
        total: dict[str, Any] = {k: sum(planes[p][k] for p in PLANES)
                                 for k in ("msgs_sent", "msgs_recv", "bytes_sent", "bytes_recv")}
        rejected: Counter = Counter()
        for s in self.stats.values():
            rejected.update(s.rejected)
        total["rejected"] = dict(rejected)
        total["planes"] = planes
        return total

    def flush(self) -> None:
        if self.msglog is not None:
            self.msglog.flush()

    def close(self) -> None:
        for link in self.links.values():
            link.sock.close(linger=0)
        self.links.clear()
        self.ctx.term()
        if self.msglog is not None:
            self.msglog.close()


def hostname() -> str:
    return pysocket.gethostname()
