"""The transport: one process's sockets and the pipeline of layers its messages pass through.

Every process (agent, env server, coordinator) talks through one ``Transport``. What happens
to a message on its way is not code in here but layers composed around the plain sockets
(``agentd.runtime.layers``): the guard, the last line of defence, the run's policy layers (DP,
``agentd.privacy.dp``), the codec, the message log, the test-only link shims
(``agentd.runtime.linkshim``) and the tally. A refused incoming message is dropped, counted by
reason, written to the message log with its reason and reported on stderr (rate-limited), and
the process carries on. The plain sockets, their polling and the frames on them are
``agentd.runtime.wire``.

Secure mode (``keys`` given): every socket runs CURVE, both ends authenticated
(``agentd.runtime.sockets``), and the sender of a received message is the owner of the key that
authenticated the connection -- the guard refuses a routing identity or header ``src`` that
names anyone else (``spoofed``). The counters live in ``agentd.runtime.tally``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import zmq

from agentd.runtime.keys import Keys
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
from agentd.runtime.sockets import (
    SEND_TIMEOUT_MS,
    EndpointError,
    InsecureBind,
    Link,
    hostname,
)
from agentd.runtime.tally import Tally
from agentd.runtime.wire import FULL_POLL_EVERY_S, Wire
from protocols import Guard, Message, ProtocolError, process_name

__all__ = ["FULL_POLL_EVERY_S", "SEND_TIMEOUT_MS", "EndpointError", "InsecureBind", "Link",
           "Transport", "hostname", "oversize_advice"]
log = logging.getLogger("agentd.runtime.transport")
L = TypeVar("L", bound=Layer)


class Transport(Wire):
    """Sockets of one process plus the pipeline of layers its messages pass through."""

    def __init__(self, me: int, guard: Guard, msglog: MessageLog | None,
                 keys: Keys | None = None, insecure: bool = False) -> None:
        super().__init__(me, Tally(me), keys, insecure)
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

    def security_meta(self) -> dict[str, Any]:
        """What every log's meta record and summary says about this process's links."""
        meta: dict[str, Any] = {"secure": self.secure, "insecure": self.insecure}
        for layer in self.layers:
            meta.update(layer.meta())
        return meta

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

    # -- bookkeeping ------------------------------------------------------------------------
    def reached(self, endpoint: str) -> bool:
        """Whether a socket of ours that connects to ``endpoint`` has a connection there now
        (something listens; the handshake is another matter)."""
        return endpoint in self.sentinel.connected

    def handshake_counts(self) -> dict[str, dict[str, int]]:
        """Failed handshakes so far, by plane and reason (planes without any left out)."""
        return self.tally.handshake_counts()

    def _before_poll(self, timeout_ms: int) -> int:
        if self.sentinel.events:
            self._take_handshake_events()
        for layer in self._tail:      # a held message leaves when it is due
            wait = layer.due()
            if wait is not None:
                timeout_ms = min(timeout_ms, max(1, int(wait * 1000) + 1))
        return timeout_ms

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
        self.close_sockets()
        self._log.close()


def _present(layer: Layer | None) -> list[Layer]:
    return [] if layer is None else [layer]
