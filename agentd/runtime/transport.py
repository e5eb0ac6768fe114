"""The transport: one process's sockets and the pipeline of layers its messages pass through.

Every process (agent, env server, coordinator) talks through one ``Transport``. What happens
to a message on its way is not code in here but layers composed around the plain sockets
(``agentd.runtime.layers``): the guard, the last line of defence, the run's policy layers (DP,
``agentd.privacy.dp``), the codec, the message log, the test-only link shims
(``agentd.runtime.linkshim``) and the tally. A refused incoming message is dropped, counted by
reason, written to the message log with its reason and reported on stderr (rate-limited), and
the process carries on. Sync sockets with a poller: the hot path (act -> env step -> peer
exchange) is a tight loop, ~2x faster than asyncio here (DESIGN §8).

Secure mode (``keys`` given): every socket runs CURVE, both ends authenticated
(``agentd.runtime.sockets``), and the sender of a received message is the owner of the key that
authenticated the connection -- the guard refuses a routing identity or header ``src`` that
names anyone else (``spoofed``). The counters live in ``agentd.runtime.tally``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import zmq

from agentd.runtime.keys import Keys, pid_of
from agentd.runtime.layers import (
    Arrival,
    Boundary,
    CodecLayer,
    GuardLayer,
    Layer,
    LogLayer,
    Parcel,
    TallyLayer,
    Unhandled,
    chain_receive,
    chain_send,
    oversize_advice,
    unreachable_top,
)
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
from protocols import Guard, Message, ProtocolError, process_name
from protocols.guard import peer_identity

__all__ = ["SEND_TIMEOUT_MS", "EndpointError", "InsecureBind", "Link", "Transport", "hostname",
           "oversize_advice"]
log = logging.getLogger("agentd.runtime.transport")
L = TypeVar("L", bound=Layer)
# With a hot set (``Transport.set_hot``), the sockets outside it are polled at least this often.
FULL_POLL_EVERY_S = 0.01


class Transport:
    """Sockets of one process plus the pipeline of layers its messages pass through."""

    def __init__(self, me: int, guard: Guard, msglog: MessageLog | None,
                 keys: Keys | None = None, insecure: bool = False) -> None:
        if keys is not None and not zmq.has("curve"):
            raise RuntimeError("this pyzmq/libzmq build has no CURVE support: secure mode "
                               "cannot run (install a pyzmq wheel, which bundles libsodium)")
        self.me = me
        self.keys = keys
        self.insecure = insecure
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
        # the layers below the codec are the process's for its whole life; the guard (and a
        # run's policy layers above the codec, such as DP) are the run's: ``enter_run``
        self._log = LogLayer(msglog)
        self._tail: list[Layer] = [self._log, *_present(DropShim.from_env(self.tally)),
                                   TallyLayer(self.tally), *_present(DelayShim.from_env())]
        self._entered = False
        self._compose(guard, [], CodecLayer(guard.max_bytes))

    def _compose(self, guard: Guard, policy: list[Layer], codec: CodecLayer) -> None:
        """Build the pipeline: the guard, the run's policy layers, the codec, the boundary,
        the tail (log, shims, tally)."""
        self.guard = guard
        self._codec = codec
        self.layers: list[Layer] = [GuardLayer(guard, self.tally), *policy, codec,
                                    Boundary(self.tally), *self._tail]
        self._send_chain = chain_send(self.layers, self._deliver)
        self._receive_chain = chain_receive(self.layers, unreachable_top)

    def assign(self, me: int) -> None:
        """The id the coordinator's welcome assigns: from now on we send as it, and accept
        what is addressed to it (the guard keeps everything else it knew)."""
        g = self.guard
        self.me = self.tally.me = me
        self._compose(Guard(me, g.neighbours, g.permitted, g.max_bytes, g.declared),
                      self.layers[1:self.layers.index(self._codec)], self._codec)

    def enter_run(self, guard: Guard, policy: list[Layer] | None = None) -> None:
        """The run's pipeline, composed once its config is known (the welcome): its guard and
        policy layers (DP) above the codec. The process's own layers below it stay."""
        if self._entered:
            raise RuntimeError("the transport's pipeline for the run is composed only once")
        self._entered = True
        self.me = self.tally.me = guard.me
        self._compose(guard, list(policy or []), CodecLayer(guard.max_bytes, self._codec.seq))

    def layer(self, kind: type[L]) -> L | None:
        """The pipeline's layer of this type, if it has one."""
        return next((lay for lay in self.layers if isinstance(lay, kind)), None)

    @property
    def msglog(self) -> MessageLog | None:
        return self._log.log

    def end_log(self) -> None:
        """The message log is complete (the files are shipped next): close it; nothing
        further is logged."""
        self._log.close()

    @property
    def secure(self) -> bool:
        return self.keys is not None

    def security_meta(self) -> dict[str, Any]:
        """What every log's meta record and summary says about this process's links."""
        meta: dict[str, Any] = {"secure": self.secure, "insecure": self.insecure}
        for layer in self.layers:
            meta.update(layer.meta())
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
        for layer in self._tail:      # a held message leaves when it is due
            wait = layer.due()
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
        """Pass every message through the pipeline's layers first, then send them back to
        back; returns how many were sent.

        Sending them in a burst lets ZeroMQ's I/O thread take them in one wake-up; with encoding
        between the sends, every send had to wake it again (an expensive signal on a VM). The
        guard raises for control and env messages (our own bug); a refused peer message (the
        learner's) is counted and skipped.
        """
        batch = [Parcel(link, kind, self.me, dst, body, step, to) for dst, body, to in messages]
        return len(self._send_chain(batch))

    def send_logged_first(self, links: Callable[[], Link], kind: str, dst: int,
                          body: dict[str, Any], step: int) -> bool:
        """Guard, encode, log and flush one control/env message, then send it; ``links()``
        names the link, and is asked again once if a local link fails (it falls back).

        For the act: logged before it leaves, so a process killed right after the send still
        has in its log every act the env server took (a replay compares them all). A send
        that fails both ways leaves an ``out`` record the env server never saw; it is
        counted like any failed send.
        """
        parcel = Parcel(links(), kind, self.me, dst, body, step, first=True, fallback=links)
        return len(self._send_chain([parcel])) == 1

    def _deliver(self, batch: list[Parcel]) -> list[Parcel]:
        """The wire: send each frame as it is; what went out is returned."""
        sent = []
        for p in batch:
            ok = self._send_now(p.link, [p.frame], p.to)
            if not ok and p.fallback is not None and p.link.local:
                p.link = p.fallback()
                ok = self._send_now(p.link, [p.frame], p.to)
            if ok:
                sent.append(p)
        return sent

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
        msg = self._receive_chain(Arrival(link, frames, identity, sender))
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

    def count_rejection(self, plane: str, reason: str, why: str) -> None:
        """A message the guard passed but the process refuses (e.g. a hello under someone
        else's id): counted and warned about like a guard rejection."""
        self.stats[plane].rejected[reason] += 1
        self._warn(f"refused a {plane} message", ProtocolError(why), reason)

    @contextmanager
    def handling(self, plane: str, msg: Message, passing: tuple[type[BaseException], ...] = ()
                 ) -> Iterator[None]:
        """The boundary around a receive loop's handler: anything it raises for this message
        (other than the ``passing`` exceptions, the process's own control flow) is a counted
        rejection (``unhandled``) and a count of the catch-all, not the end of the process."""
        try:
            yield
        except passing:
            raise
        except Exception as exc:
            self.stats[plane].catch_all += 1
            log.debug("handling '%s' from %s raised", msg.kind, process_name(msg.src),
                      exc_info=True)
            self.count_rejection(plane, Unhandled.reason, f"'{msg.kind}' from "
                                 f"{process_name(msg.src)}: {type(exc).__name__}: {exc}")

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
        for layer in self.layers:
            if layer is not self._log:
                layer.close()      # (the delay shim sends what it holds)
        for link in self.links.values():
            close_socket(link)
        self.links.clear()
        self.sentinel.stop()
        self.ctx.term()
        self._log.close()


def _present(layer: Layer | None) -> list[Layer]:
    return [] if layer is None else [layer]
