"""The plain transport: one process's sockets -- ZeroMQ and the local env plane's Unix
sockets -- polled, read and written as frames, with nothing in between (the layers that guard,
noise, log and count are composed around it: ``agentd.runtime.transport``).

Sync sockets with a poller: the hot path (act -> env step -> peer exchange) is a tight loop,
~2x faster than asyncio here (benchmarks/README.md). A failed send is counted in the process's tally (a
peer that went away, a send nobody took in time); it never raises.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import zmq

from agentd.runtime.keys import Keys, pid_of
from agentd.runtime.localplane import LocalClosed
from agentd.runtime.sentinel import Sentinel
from agentd.runtime.sockets import (
    SEND_TIMEOUT_MS,
    Link,
    bind_router,
    close_socket,
    connect_dealer,
)
from agentd.runtime.tally import Tally
from protocols import process_name
from protocols.guard import peer_identity

log = logging.getLogger("agentd.runtime.transport")
# With a hot set (``Wire.set_hot``), the sockets outside it are polled at least this often.
FULL_POLL_EVERY_S = 0.01


class Wire:
    """The sockets of one process, polled; frames in, frames out."""

    def __init__(self, me: int, tally: Tally, keys: Keys | None = None,
                 insecure: bool = False) -> None:
        if keys is not None and not zmq.has("curve"):
            raise RuntimeError("this pyzmq/libzmq build has no CURVE support: secure mode "
                               "cannot run (install a pyzmq wheel, which bundles libsodium)")
        self.me = me
        self.keys = keys
        self.insecure = insecure
        self.tally = tally
        self.stats = tally.stats
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
        # the run loop is over (bye sent): a local env connection closing now is the end of
        # the run, not a failure
        self.finished = False

    @property
    def secure(self) -> bool:
        return self.keys is not None

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
        timeout_ms = self._before_poll(timeout_ms)
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
        log.log(logging.INFO if self.finished else logging.WARNING,
                "%s: local %s connection to %s closed: %s", process_name(self.me),
                link.plane, process_name(link.server) if link.server is not None else "?", exc)
        self.close_link(link)

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

    def _before_poll(self, timeout_ms: int) -> int:
        """What a poll does first; returns how long it may wait (the transport's layers may
        hold messages that are due sooner)."""
        return timeout_ms

    def close_sockets(self) -> None:
        for link in self.links.values():
            close_socket(link)
        self.links.clear()
        self.sentinel.stop()
        self.ctx.term()
