"""The security thread of a process: ZAP authentication and socket monitors.

In secure mode it answers ZeroMQ's authentication requests (ZAP, RFC 27) for every server
socket of the process's context: a CURVE client is let in only if its public key is enrolled in
the run's registry *and* its owner may use that plane (agents everywhere, the env server only
on the control plane); the reply's User-Id is the owner's name, so every message received on
that connection carries who sent it. In every mode it watches the process's sockets and turns
failed handshakes (unknown key, wrong server key, plaintext client, ...) into
``HandshakeEvent``s, with the peer's address where it can be found, for the transport to count,
log and report. The thread never touches the process's own sockets, only its monitor sockets.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import socket as pysocket
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import zmq
from zmq.utils.monitor import parse_monitor_message

from agentd.runtime.keys import Registry

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
DOMAIN_PREFIX = "agentd-"
# Who may open a connection to a server socket of each plane (key names).
PLANE_ACCESS = {
    "control": lambda name: name == "envserver" or name.startswith("agent-"),
    "env": lambda name: name.startswith("agent-"),
    "peer": lambda name: name.startswith("agent-"),
}
DISCONNECTED = "disconnected"    # not a failure: see Tally.handshake
FAILURES = {zmq.EVENT_HANDSHAKE_FAILED_AUTH: "handshake_failed_auth",
            zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "handshake_failed_protocol",
            zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "handshake_failed_no_detail"}
_EVENTS = zmq.EVENT_ACCEPTED | zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED
for _event in FAILURES:
    _EVENTS |= _event
_PROTOCOL_TEXT = {
    "ZMTP_MECHANISM_MISMATCH": "security mechanism mismatch (a plaintext client or server "
                               "where CURVE is expected, or the other way round)",
    "ZMTP_CRYPTOGRAPHIC": "cryptographic failure (a client that pinned the wrong server key?)",
}


def domain(plane: str) -> bytes:
    return (DOMAIN_PREFIX + plane).encode()


@dataclass
class HandshakeEvent:
    """A connection that failed its handshake."""

    plane: str
    reason: str          # one of FAILURES' values
    peer: str            # the other end's address ("unknown" when it could not be read)
    detail: str
    server: bool         # True: someone failed to connect to us; False: we failed to connect


@dataclass
class _Watched:
    plane: str
    server: bool
    endpoint: str
    peers: dict[int, str] = field(default_factory=dict)     # fd -> address of accepted peers
    pending: HandshakeEvent | None = None
    pending_since: float = 0.0


class Sentinel:
    """ZAP handler (secure mode) and handshake monitor of one context, in one thread."""

    def __init__(self, ctx: zmq.Context, registry: Registry | None) -> None:
        self.ctx = ctx
        self.registry = registry
        self.events: deque[HandshakeEvent] = deque()
        # endpoints a client socket of this process has a connection to right now (set by
        # the thread; read by the process's thread to say whether anything answers there)
        self.connected: set[str] = set()
        self._new: queue.Queue = queue.Queue()
        self._count = itertools.count()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._last_denial = ("unknown", "key refused")
        self._thread = threading.Thread(target=self._run, name="agentd-sentinel", daemon=True)
        self._thread.start()
        self._ready.wait(10.0)
        if self._error is not None:
            raise RuntimeError(f"the ZAP handler could not start: {self._error}")

    # -- called from the process's thread -----------------------------------------------------
    def watch(self, sock: zmq.Socket, plane: str, server: bool, endpoint: str) -> None:
        """Monitor a socket's handshakes (call before it binds or connects)."""
        address = f"inproc://agentd-monitor-{next(self._count)}"
        sock.monitor(address, _EVENTS)
        pair = self.ctx.socket(zmq.PAIR)
        pair.connect(address)
        self._new.put((pair, _Watched(plane, server, endpoint)))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)

    # -- the thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        zap = None
        try:
            if self.registry is not None:
                zap = self.ctx.socket(zmq.REP)
                zap.linger = 0
                zap.bind(ZAP_ENDPOINT)
        except zmq.ZMQError as exc:
            self._error = exc
        self._ready.set()
        if self._error is not None:
            return
        poller, watched = zmq.Poller(), {}
        if zap is not None:
            poller.register(zap, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                self._adopt(poller, watched)
                for sock, _ in poller.poll(50):
                    if sock is zap:
                        self._serve_zap(zap)
                    else:
                        self._on_monitor(sock, watched[sock])
                for info in watched.values():
                    self._flush_stale(info)
        finally:
            self._adopt(poller, watched)     # a socket watched just before stop(): close it too
            for pair in watched:
                pair.close(linger=0)
            if zap is not None:
                zap.close(linger=0)

    def _adopt(self, poller: zmq.Poller, watched: dict) -> None:
        while True:
            try:
                pair, info = self._new.get_nowait()
            except queue.Empty:
                return
            poller.register(pair, zmq.POLLIN)
            watched[pair] = info

    # -- ZAP ----------------------------------------------------------------------------------
    def _serve_zap(self, zap: zmq.Socket) -> None:
        frames = zap.recv_multipart()
        if len(frames) < 6:
            if len(frames) >= 2:
                zap.send_multipart([b"1.0", frames[1], b"400", b"malformed ZAP request", b"", b""])
            else:   # a REP socket must answer something
                zap.send_multipart([b"1.0", b"", b"400", b"malformed ZAP request", b"", b""])
            return
        _version, request_id, dom, address, _identity, mechanism, *credentials = frames
        name, refusal = self._decide(dom, mechanism, credentials)
        if refusal is None:
            zap.send_multipart([b"1.0", request_id, b"200", b"OK", name.encode(), b""])
            return
        self._last_denial = (address.decode(errors="replace") or "unknown", refusal)
        zap.send_multipart([b"1.0", request_id, b"400", refusal.encode()[:250], b"", b""])

    def _decide(self, dom: bytes, mechanism: bytes,
                credentials: list[bytes]) -> tuple[str, str | None]:
        """(owner name, None) to let a client in, else ("", why not)."""
        plane = dom.decode(errors="replace").removeprefix(DOMAIN_PREFIX)
        allowed = PLANE_ACCESS.get(plane)
        if allowed is None or self.registry is None:
            return "", f"unknown ZAP domain {dom!r}"
        if mechanism != b"CURVE" or len(credentials) != 1 or len(credentials[0]) != 32:
            return "", f"mechanism {mechanism.decode(errors='replace')} is not allowed"
        name = self.registry.owner(credentials[0])
        if name is None:
            return "", "key not enrolled in the run's registry"
        if not allowed(name):
            return "", f"{name} may not connect to the {plane} plane"
        return name, None

    # -- monitors -----------------------------------------------------------------------------
    def _on_monitor(self, pair: zmq.Socket, info: _Watched) -> None:
        while True:
            try:
                msg = parse_monitor_message(pair.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                return
            event, value = int(msg["event"]), int(msg["value"])
            if not info.server and event in (zmq.EVENT_CONNECTED, zmq.EVENT_DISCONNECTED):
                (self.connected.add if event == zmq.EVENT_CONNECTED
                 else self.connected.discard)(info.endpoint)
            if event == zmq.EVENT_ACCEPTED:
                info.peers[value] = _peer_address(value)
            elif event == zmq.EVENT_DISCONNECTED:
                peer = info.peers.pop(value, None)
                if info.pending is not None:
                    if peer and info.pending.peer == "unknown":
                        info.pending.peer = peer
                    self._emit(info)
                elif info.server and peer is not None:
                    # a connection that had passed its handshake closed: the client left,
                    # or ZeroMQ dropped it for a frame over the socket's MAXMSGSIZE
                    self.events.append(HandshakeEvent(info.plane, DISCONNECTED, peer,
                                                      "connection closed", True))
            elif event in FAILURES:
                if info.pending is not None:
                    self._emit(info)
                info.pending = self._event(info, event, value)
                info.pending_since = time.monotonic()
                if not info.server:
                    self._emit(info)

    def _event(self, info: _Watched, event: int, value: int) -> HandshakeEvent:
        reason = FAILURES[event]
        peer = "unknown" if info.server else info.endpoint
        if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            if info.server:
                peer, detail = self._last_denial
            else:
                detail = f"the server refused our key (ZAP status {value})"
        elif event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
            name = _event_name(value).removeprefix("PROTOCOL_ERROR_")
            detail = _PROTOCOL_TEXT.get(name, name.lower().replace("_", " "))
        else:
            detail = os.strerror(value) if 0 < value < 4096 else f"code {value}"
        return HandshakeEvent(info.plane, reason, peer, detail, info.server)

    def _emit(self, info: _Watched) -> None:
        assert info.pending is not None
        self.events.append(info.pending)
        info.pending = None

    def _flush_stale(self, info: _Watched) -> None:
        if info.pending is not None and time.monotonic() - info.pending_since > 0.2:
            self._emit(info)


def _peer_address(fd: int) -> str:
    """host:port of an accepted connection, read from a duplicate of its descriptor (the
    I/O thread may already have closed it: then "unknown")."""
    try:
        with contextlib.closing(pysocket.socket(fileno=os.dup(fd))) as sock:
            host, port = sock.getpeername()[:2]
    except OSError:
        return "unknown"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _event_name(value: int) -> str:
    try:
        return zmq.Event(value).name or str(value)
    except ValueError:
        return str(value)
