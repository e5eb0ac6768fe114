"""The transport layer: ZeroMQ sockets wrapped with the guard, the message log and counters.

Every process (agent, env server, coordinator) talks through one ``Transport``. Sending runs
the guard's outgoing check, then (in a DP run) the peer plane's noise layer (``agentd.privacy.dp``);
receiving runs the incoming check. A refused incoming message is dropped, counted by reason,
written to the message log with its reason and reported on stderr (rate-limited), and the
process carries on. Sync sockets with a poller: the hot path
(act -> env step -> peer exchange) is a tight loop, ~2x faster than asyncio here (DESIGN §8).

Secure mode (``keys`` given): every socket runs CURVE, both ends authenticated
(``agentd.runtime.sockets``), and the sender of a received message is the owner of the key that
authenticated the connection -- the guard refuses a routing identity or header ``src`` that
names anyone else (``spoofed``). The counters live in ``agentd.runtime.tally``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import zmq

from agentd.privacy.dp import DpLayer
from agentd.runtime.keys import Keys, pid_of
from agentd.runtime.linkshim import DelayShim, DropShim
from agentd.runtime.localplane import LocalClosed
from agentd.runtime.msglog import MessageLog
from agentd.runtime.sentinel import Sentinel
from agentd.runtime.sockets import (
    SEND_TIMEOUT_MS,
    EndpointError,
    InsecureBind,
    Link,
    bind_router,
    close_socket,
    connect_dealer,
    hostname,
)
from agentd.runtime.tally import Tally
from protocols import REGISTRY, Codec, Guard, Message, ProtocolError, encode, process_name
from protocols.errors import Oversize
from protocols.guard import peer_identity

__all__ = ["SEND_TIMEOUT_MS", "EndpointError", "InsecureBind", "Link", "Transport", "hostname",
           "oversize_advice"]
log = logging.getLogger("agentd.runtime.transport")
# With a hot set (``Transport.set_hot``), the sockets outside it are polled at least this often.
FULL_POLL_EVERY_S = 0.01


class Transport:
    """Sockets of one process plus its guard, message log and stats."""

    def __init__(self, me: int, guard: Guard, msglog: MessageLog | None,
                 keys: Keys | None = None, insecure: bool = False) -> None:
        if keys is not None and not zmq.has("curve"):
            raise RuntimeError("this pyzmq/libzmq build has no CURVE support: secure mode "
                               "cannot run (install a pyzmq wheel, which bundles libsodium)")
        self.me = me
        self.guard = guard
        self.msglog = msglog
        self.keys = keys
        self.insecure = insecure
        self.codec = Codec()
        self.ctx = zmq.Context()
        self.sentinel = Sentinel(self.ctx, keys.registry if keys else None)
        self.poller = zmq.Poller()
        self.links: dict[zmq.Socket, Link] = {}
        self._hot: zmq.Poller | None = None     # the sockets the hot loop waits on
        self._hot_links: list[Link] = []
        self._full_due = 0.0
        self._taken: tuple[Link, list[bytes], int | None] | None = None   # see _wait_solo
        self._locals: list[Link] = []     # links of the local env plane (agentd.runtime.localplane)
        self._by_fd: dict[int, Link] = {}
        self._rcvtimeo: dict[zmq.Socket, int] = {}
        self.tally = Tally(me)
        self.stats = self.tally.stats
        self.handshake_peers = self.tally.handshake_peers
        self._warn = self.tally.warn
        self._seq = 0
        self.dp: DpLayer | None = None    # a DP run's noise on the peer plane (agentd.privacy.dp)
        self.shim = DelayShim.from_env()
        self.drop = DropShim.from_env()
        if self.drop is not None:
            log.warning("TEST-ONLY link loss active (%s): %s", "AGENTD_TEST_LINK_DROP",
                        self.drop.spec)
        if self.shim is not None:
            log.warning("TEST-ONLY link delay active (%s): %s", "AGENTD_TEST_LINK_DELAY",
                        self.shim.spec)

    @property
    def secure(self) -> bool:
        return self.keys is not None

    def security_meta(self) -> dict[str, Any]:
        """What every log's meta record and summary says about this process's links."""
        meta: dict[str, Any] = {"secure": self.secure, "insecure": self.insecure}
        if self.shim is not None:
            meta["test_link_delay"] = self.shim.spec
        if self.drop is not None:
            meta["test_link_drop"] = self.drop.spec
        return meta

    # -- sockets ----------------------------------------------------------------------------
    def bind_router(self, address: str, plane: str) -> Link:
        return self._add(bind_router(self.ctx, self.sentinel, self.keys, self.insecure,
                                     address, plane))

    def connect_dealer(self, address: str, plane: str, server: int,
                       identity: bytes | None = None) -> Link:
        """A DEALER to ``server``'s ROUTER; in secure mode pinned to its public key."""
        return self._add(connect_dealer(self.ctx, self.sentinel, self.keys, address, plane,
                                        server, identity))

    def limit_send_wait(self, link: Link, seconds: float) -> None:
        """How long a send on this link may wait for the peer before it counts as failed."""
        link.sock.setsockopt(zmq.SNDTIMEO, int(seconds * 1000))

    def _add(self, link: Link) -> Link:
        self.links[link.sock] = link
        self.poller.register(link.sock, zmq.POLLIN)
        return link

    def add_local(self, conn: Any, plane: str, router: bool, server: int | None) -> Link:
        """A connection of the local env plane (``agentd.runtime.localplane``), polled with the
        sockets. ``router``: frames come with the peer's routing id in front, as on a ROUTER
        (the env server's end); ``server``: the process at the other end, whom the
        connection's token authenticated."""
        link = self._add(Link(conn, plane, router, "local", server, local=True))
        self._locals.append(link)
        self._by_fd[conn.fileno()] = link      # zmq.Poller reports a plain fd by its number
        return link

    def _link_of(self, polled: Any) -> Link:
        link = self.links.get(polled)
        return link if link is not None else self._by_fd[polled]

    def set_hot(self, links: list[Link]) -> None:
        """The sockets the hot loop's traffic arrives on (an agent's env and peer sockets, the
        env server's env socket). ``poll`` then waits on these alone and polls every socket
        at least every ``FULL_POLL_EVERY_S``: ``zmq_poll`` asks each socket for its events
        twice (two system calls each), so waiting on 5 sockets per step cost more CPU than
        the step's two messages. Nothing on the others is lost, it is read up to 10 ms later
        (control messages; an agent's DEALERs, which no well-behaved peer sends anything).
        An empty list ends it (after the run: the file transfer is all control traffic)."""
        self._hot_links = list(links)
        self._hot = zmq.Poller() if links else None     # none: every poll waits on all
        for link in self._hot_links:
            self._hot.register(link.sock, zmq.POLLIN)

    def close_link(self, link: Link) -> None:
        """Close one socket (a peer that moved); what it still held is dropped."""
        self.poller.unregister(link.sock)
        self.links.pop(link.sock, None)
        if link in self._hot_links:
            self.set_hot([h for h in self._hot_links if h is not link])
        if self._taken is not None and self._taken[0] is link:
            self._taken = None     # like what the closed socket still held
        if link in self._locals:
            self._locals.remove(link)
            self._by_fd = {fd: k for fd, k in self._by_fd.items() if k is not link}
        close_socket(link)

    def readable(self, link: Link) -> bool:
        """Is a message waiting on this link (without receiving it)?"""
        return bool(link.sock.poll(0, zmq.POLLIN))

    def poll(self, timeout_ms: int) -> list[Link]:
        """The links with a message waiting, after waiting up to ``timeout_ms`` for one."""
        if self.sentinel.events:
            self._take_handshake_events()
        if self.shim is not None:
            wait = self.shim.release(self._send_now)
            if wait is not None:
                timeout_ms = min(timeout_ms, max(1, int(wait * 1000) + 1))
        if self._locals:
            ready = [link for link in self._locals if link.sock.pending()]
            if ready:      # whole frames already read: the descriptor may not be readable
                return ready
        if self._hot is None:
            return [self._link_of(s) for s, _ in self.poller.poll(timeout_ms)]
        now = time.monotonic()
        if now >= self._full_due:     # every socket, without waiting, now and then
            self._full_due = now + FULL_POLL_EVERY_S
            ready = self.poller.poll(0)
            if ready:
                return [self._link_of(s) for s, _ in ready]
        # then the hot sockets alone, for at most one full-poll period (the caller loops); a
        # fixed wait keeps the socket's receive timeout set once
        wait = min(timeout_ms, int(FULL_POLL_EVERY_S * 1000))
        if len(self._hot_links) == 1:
            return [self._hot_links[0]] if self._wait_solo(self._hot_links[0], wait) else []
        return [self._link_of(s) for s, _ in self._hot.poll(wait)]

    def _wait_solo(self, link: Link, timeout_ms: int) -> bool:
        """Wait for one socket by receiving from it (blocking, with a timeout) instead of
        polling it: one system call per message where ``zmq_poll`` makes three or more. The
        message taken is the first ``recv_all`` of that link returns."""
        if self._taken is not None:
            return self._taken[0] is link
        if link.local:
            try:
                got = self._recv_local(link, timeout_ms / 1000)
            except LocalClosed as exc:
                self._local_closed(link, exc)
                return False
        else:
            if self._rcvtimeo.get(link.sock) != timeout_ms:
                link.sock.setsockopt(zmq.RCVTIMEO, timeout_ms)
                self._rcvtimeo[link.sock] = timeout_ms
            got = self._recv_frames(link, 0)
        if got is None:
            return False
        self._taken = (link, *got)
        return True

    def _recv_frames(self, link: Link, flags: int) -> tuple[list[bytes], int | None] | None:
        """The next message's frames and authenticated sender; None if there is none (no
        exception for that: building a ZMQError costs more than the rest of a receive)."""
        if link.local:
            return self._recv_local(link, None)
        if flags & zmq.NOBLOCK and not link.sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            return None
        try:
            if self.keys is None:
                return link.sock.recv_multipart(flags), None
            return self._recv_authenticated(link, flags)
        except zmq.Again:
            return None

    def _recv_local(self, link: Link, timeout: float | None
                    ) -> tuple[list[bytes], int | None] | None:
        """The next frame of a local link (waiting up to ``timeout`` seconds; None: not at
        all), as a ROUTER would hand it over (the sender's routing id first on the env server's
        end), with its sender in secure mode: the process the token bound the connection to."""
        frame = link.sock.recv(timeout)
        if frame is None:
            return None
        frames = [peer_identity(link.server), frame] if link.router else [frame]
        return frames, link.server if self.keys is not None else None

    def _local_closed(self, link: Link, exc: Exception) -> None:
        log.warning("%s: local %s connection to %s closed: %s", process_name(self.me),
                    link.plane, process_name(link.server) if link.server is not None else "?",
                    exc)
        self.close_link(link)

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
            if self.dp is not None and link.plane == "peer":
                body = self.dp.privatise(kind, body)   # after the guard, before the log
            frames.append((self._encode(link, kind, dst, body, step), to, dst))
        sent = [self._lost(link, dst, step) or self.send_frames(link, [frame], to)
                for frame, to, dst in frames]
        for (frame, _, dst), ok in zip(frames, sent):
            if ok and self.msglog is not None and REGISTRY[kind].logged:
                self.msglog.record("out", link.plane, [frame])
            if ok and self.dp is not None and link.plane == "peer":
                self.dp.sent(kind, dst)
        return sum(sent)

    def send_logged_first(self, links: Callable[[], Link], kind: str, dst: int,
                          body: dict[str, Any], step: int) -> bool:
        """Guard, encode, log and flush one control/env message, then send it; ``links()``
        names the link, and is asked again once if a local link fails (it falls back).

        For the act: logged before it leaves, so a process killed right after the send still
        has in its log every act the env server took (a replay compares them all). A send
        that fails both ways leaves an ``out`` record the env server never saw; it is
        counted like any failed send.
        """
        link = links()
        self.guard.outgoing(kind, dst, body, link.plane)
        frame = self._encode(link, kind, dst, body, step)
        if self.msglog is not None and REGISTRY[kind].logged:
            self.msglog.record("out", link.plane, [frame])
            self.msglog.flush()
        if self.send_frames(link, [frame]):
            return True
        return link.local and self.send_frames(links(), [frame])

    def _encode(self, link: Link, kind: str, dst: int, body: dict[str, Any], step: int
                ) -> bytes:
        """The next frame of ours; an oversize control or env message is our own bug (an
        oversize peer message is left to the receiver's guard to refuse and count)."""
        self._seq += 1
        frame = encode(self.codec, kind, self.me, dst, step, self._seq, body)
        if len(frame) > self.guard.max_bytes and link.plane != "peer":
            raise Oversize(oversize_advice(kind, len(frame), self.guard.max_bytes))
        return frame

    def _lost(self, link: Link, dst: int, step: int) -> bool:
        """The test-only lossy link ate this peer message (it still counts as sent)."""
        if self.drop is None or link.plane != "peer" or not self.drop.drops(self.me, dst, step):
            return False
        self.stats["peer"].refused_out["test_link_drop"] += 1
        return True

    def send_frames(self, link: Link, frames: list[bytes], to: bytes | None = None) -> bool:
        """Send pre-encoded frames; a ROUTER's peer that has gone away is counted, not fatal."""
        held = self.shim is not None and self.shim.hold(link.plane, link.sock,
                                                        (link, frames, to))
        if not held and not self._send_now(link, frames, to):
            return False
        stats = self.stats[link.plane]
        stats.msgs_sent += 1
        stats.bytes_sent += sum(len(f) for f in frames)
        return True

    def _send_now(self, link: Link, frames: list[bytes], to: bytes | None) -> bool:
        if link.local:
            return self._send_local(link, frames[-1])
        try:
            sock = link.sock
            if link.router:
                sock.send(to, zmq.SNDMORE)     # two sends: half the cost of send_multipart
            for frame in frames[:-1]:
                sock.send(frame, zmq.SNDMORE)
            sock.send(frames[-1])
        except zmq.Again:
            self.stats[link.plane].refused_out["send_timeout"] += 1
            log.warning("%s: %s message to %s not sent: nobody took it within %.0f s",
                        process_name(self.me), link.plane, to or link.endpoint,
                        link.sock.getsockopt(zmq.SNDTIMEO) / 1000)
            return False
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EHOSTUNREACH:
                raise
            self.stats[link.plane].refused_out["unreachable"] += 1
            log.warning("%s: %s message to %r not sent: peer gone", process_name(self.me),
                        link.plane, to)
            return False
        return True

    def _send_local(self, link: Link, frame: bytes) -> bool:
        try:
            link.sock.send(frame, SEND_TIMEOUT_MS / 1000)
        except OSError as exc:     # TimeoutError too: a part-written frame ends the stream
            reason = "send_timeout" if isinstance(exc, TimeoutError) else "unreachable"
            self.stats[link.plane].refused_out[reason] += 1
            if link.sock in self.links:
                self._local_closed(link, exc)
            return False
        return True

    def recv_all(self, link: Link, until: Callable[[Message], bool] | None = None
                 ) -> list[tuple[Message, bytes | None]]:
        """Drain every message waiting on a link; refused ones are counted and logged.
        With ``until``, stop right after the first accepted message it is true for: what
        follows stays queued, to be checked by a guard the caller may change meanwhile (the
        welcome assigns an agent its id, and the next message is already addressed to it)."""
        out = []
        taken = self._taken
        if taken is not None and taken[0] is link:
            # the message the hot wait took off this socket; the rest stays queued for the
            # next wait, which returns at once (draining would cost a failed receive)
            self._taken = None
            self._take(link, taken[1], taken[2], out)
            if until is None:
                return out
        while not (until is not None and out and until(out[-1][0])):
            try:
                got = self._recv_frames(link, zmq.NOBLOCK)
            except LocalClosed as exc:
                self._local_closed(link, exc)
                return out
            if got is None:
                return out
            self._take(link, *got, out)
        return out

    def _take(self, link: Link, frames: list[bytes], sender: int | None,
              out: list[tuple[Message, bytes | None]]) -> None:
        identity = frames.pop(0) if link.router else None
        msg = self._accept(link, frames, identity, sender)
        if msg is not None:
            out.append((msg, identity))

    def _recv_authenticated(self, link: Link, flags: int = zmq.NOBLOCK
                            ) -> tuple[list[bytes], int]:
        """Frames plus the process whose key authenticated them: the ZAP User-Id on a server
        socket, the pinned server on a client socket. (An unknown id maps to a process that
        does not exist, so the guard refuses the message as spoofed.)"""
        parts = link.sock.recv_multipart(flags, copy=False)
        if link.router:
            sender = pid_of(parts[-1].get("User-Id"))
        else:
            sender = link.server
        return [p.bytes for p in parts], (-999 if sender is None else sender)

    def _accept(self, link: Link, frames: list[bytes], identity: bytes | None,
                sender: int | None) -> Message | None:
        stats = self.stats[link.plane]
        try:
            msg = self.guard.incoming(frames, link.plane, identity, sender)
        except ProtocolError as exc:
            stats.rejected[exc.reason] += 1
            if self.msglog is not None:
                self.msglog.record("rej", link.plane, [f[:4096] for f in frames], exc.reason)
                # a refused frame is kept up to 4 KiB: enough to inspect, not to fill the disk
            self._warn(f"rejected a {link.plane} message from {identity!r}", exc)
            return None
        stats.msgs_recv += 1
        stats.bytes_recv += msg.nbytes
        if self.msglog is not None and REGISTRY[msg.kind].logged:
            self.msglog.record("in", link.plane, frames)
        return msg

    def count_rejection(self, plane: str, reason: str, why: str) -> None:
        """A message the guard passed but the process refuses (e.g. a hello under someone
        else's id): counted and warned about like a guard rejection."""
        self.stats[plane].rejected[reason] += 1
        self._warn(f"refused a {plane} message", ProtocolError(why), reason)

    def _take_handshake_events(self) -> None:
        """Count, log and warn about the failed handshakes the sentinel has seen."""
        while self.sentinel.events:
            self.tally.handshake(self.sentinel.events.popleft(), self.msglog)

    def handshake_counts(self) -> dict[str, dict[str, int]]:
        """Failed handshakes so far, by plane and reason (planes without any left out)."""
        return self.tally.handshake_counts()

    # -- bookkeeping ------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Totals and per-plane counters, as written to summary.json."""
        if self.sentinel.events:
            self._take_handshake_events()
        return self.tally.summary(self.security_meta())

    def flush(self) -> None:
        if self.msglog is not None:
            self.msglog.flush()

    def close(self) -> None:
        if self.shim is not None:
            self.shim.release(self._send_now, everything=True)
        for link in self.links.values():
            close_socket(link)
        self.links.clear()
        self.sentinel.stop()
        self.ctx.term()
        if self.msglog is not None:
            self.msglog.close()


def oversize_advice(kind: str, size: int, cap: int) -> str:
    """What to tell a user whose control or env message would be refused as too large."""
    need = 1 << max(20, (size - 1).bit_length())
    return (f"the '{kind}' message is {size:,} bytes, over the message size cap of {cap:,} "
            f"bytes; raise it with --max-msg-bytes {need} (or max_msg_bytes = {need} in the "
            "config file)" + (", or use fewer agents or smaller spaces" if kind in
                              ("welcome", "env_ready") else ""))

