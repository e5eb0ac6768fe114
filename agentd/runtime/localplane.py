"""The local env plane: ``act`` and ``step`` over a Unix stream socket when an agent runs on the
same machine (and network namespace) as the env server.

Over ZeroMQ every message wakes the sender's I/O thread, then the receiver's I/O thread, then
the receiving thread; at n = 5 that is ~20 thread wake-ups per joint step on 2 cores, which
is where most of a round's time went (benchmarks/README.md). A Unix socket costs one wake-up
per message. Only the transport changes: the frames are the same bytes (same envelope, same
guard on both ends, same message log records), so logs and ``agentd replay`` do not see it.

How a connection gets its identity: the env server listens on a socket with a random name in
Linux's abstract namespace (no file: nothing is left behind when the process is killed; the
name is only reachable inside its network namespace) and says where in ``env_ready`` (the
coordinator passes it on in the welcome). An agent that is on the same machine connects,
writes a random token first and then sends the same token in its ``join`` over its ZeroMQ
env link -- authenticated by CURVE in secure mode, the routing identity in plaintext, exactly
as before. The env server binds the connection to the agent whose join carried its token; a
connection from another user (``SO_PEERCRED``), without a token, or with one no join claims
is closed and counted. Tokens are read off the loop (``LocalListener``): a connection that
sends nothing never stalls a round. Anything that fails on the way (no such path, another host, a closed
connection) leaves that agent on ZeroMQ, logged; the run never depends on the fast path.
"""

from __future__ import annotations

import os
import secrets
import select
import socket
import struct
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HEADER = struct.Struct("<I")       # the length of the frame that follows
TOKEN_BYTES = 16
TOKEN_WAIT = 2.0          # seconds a new connection has to send its token (off the loop)
MAX_WAITING = 64          # connections owing their token at once; the oldest goes first
READ_CHUNK = 1 << 16


class LocalClosed(ConnectionError):
    """The other end closed the connection (or broke the framing)."""


def machine() -> dict[str, Any]:
    """What makes two processes 'on the same machine' for a Unix socket: host, boot and
    network namespace (a namespace is how the multi-host tests simulate another host)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = ""
    try:
        netns = os.stat("/proc/self/ns/net").st_ino
    except OSError:
        netns = 0
    return {"host": socket.gethostname(), "boot": boot, "netns": int(netns), "uid": os.getuid()}


def same_machine(offer: dict[str, Any] | None) -> bool:
    if not offer or not offer.get("path"):
        return False
    here = machine()
    return all(offer.get(k) == here[k] for k in ("host", "boot", "netns", "uid"))


class LocalConn:
    """One end of a connection carrying length-prefixed frames. ``fileno`` makes it pollable
    next to ZeroMQ sockets (``zmq.Poller`` takes anything with a file descriptor)."""

    def __init__(self, sock: socket.socket, max_bytes: int) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.max_bytes = max_bytes
        self.buf = bytearray()
        self.frames: deque[bytes] = deque()
        self.closed = False

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, frame: bytes, timeout: float) -> None:
        """Send one frame; raises TimeoutError (nobody reads) or OSError (gone)."""
        if self.closed:
            raise LocalClosed("connection closed")
        self.sock.settimeout(timeout)
        try:
            if len(frame) < 4096:
                self.sock.sendall(HEADER.pack(len(frame)) + frame)
            else:
                self.sock.sendall(HEADER.pack(len(frame)))
                self.sock.sendall(frame)
        finally:
            self.sock.setblocking(False)

    def pending(self) -> bool:
        """A whole frame is already read and waiting (the fd may not be readable then)."""
        return bool(self.frames)

    def recv(self, timeout: float | None = None) -> bytes | None:
        """The next frame, or None if none arrives within ``timeout`` (None: do not wait).
        Raises LocalClosed at the end of the stream or on a frame over the size cap."""
        if self.frames:
            return self.frames.popleft()
        if self.closed:
            raise LocalClosed("connection closed")
        if timeout:
            self.sock.settimeout(timeout)
        try:
            while not self.frames:
                try:
                    chunk = self.sock.recv(READ_CHUNK)
                except (BlockingIOError, TimeoutError):
                    return None
                except OSError as exc:
                    self.closed = True
                    raise LocalClosed(str(exc)) from None
                if not chunk:
                    self.closed = True
                    raise LocalClosed("closed by the other end")
                self.buf += chunk
                self._split()
        finally:
            if timeout:
                self.sock.setblocking(False)
        return self.frames.popleft()

    def _split(self) -> None:
        buf = self.buf
        start = 0
        while len(buf) - start >= HEADER.size:
            (size,) = HEADER.unpack_from(buf, start)
            if size > self.max_bytes:
                self.closed = True
                raise LocalClosed(f"a frame of {size:,} bytes, over the cap of "
                                  f"{self.max_bytes:,}: the stream cannot be trusted")
            end = start + HEADER.size + size
            if end > len(buf):
                break
            self.frames.append(bytes(buf[start + HEADER.size:end]))
            start = end
        if start:
            del buf[:start]

    def close(self) -> None:
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass


class LocalListener:
    """The env server's listening socket, under a random abstract name ("\\0agentd-env-...").

    Tokens are read off the env server's loop: a new connection waits in an epoll set until
    its token is whole (or ``TOKEN_WAIT`` passes, or ``MAX_WAITING`` newer ones push it out),
    and ``fileno`` is that set's descriptor, so the loop wakes only when there is something to
    take. A connection that sends nothing costs the loop nothing."""

    def __init__(self) -> None:
        self.path = f"\0agentd-env-{os.getpid()}-{secrets.token_hex(8)}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.epoll: select.epoll | None = None
        try:
            self.sock.bind(self.path)
            self.sock.listen(256)
            self.sock.setblocking(False)
            self.epoll = select.epoll()
            self.epoll.register(self.sock.fileno(), select.EPOLLIN)
        except OSError:
            self.close()
            raise
        self.waiting: dict[int, _Waiting] = {}     # fd -> a connection owing its token
        self.refused: deque[str] = deque()         # reasons not yet reported

    def fileno(self) -> int:
        assert self.epoll is not None
        return self.epoll.fileno()

    def pending(self) -> bool:
        return bool(self.refused)

    def offer(self) -> dict[str, Any]:
        return {"path": self.path, **machine()}

    def accept(self, max_bytes: int) -> tuple[LocalConn, bytes] | str:
        """A connection whose token is whole and the token, the reason one was refused
        (closed here), or "no_connection" when neither is ready. Never waits."""
        self._expire(time.monotonic())
        for _ in range(2 * MAX_WAITING):
            if self.refused:
                return self.refused.popleft()
            assert self.epoll is not None
            events = self.epoll.poll(0, 1)
            if not events:
                return "no_connection"
            fd = events[0][0]
            got = self._new() if fd == self.sock.fileno() else self._read(fd)
            if isinstance(got, tuple):
                return LocalConn(got[0], max_bytes), got[1]
            if got is not None:
                return got
        return self.refused.popleft() if self.refused else "no_connection"

    def _new(self) -> str | None:
        try:
            sock, _ = self.sock.accept()
        except OSError:
            return None
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        if uid != os.getuid():
            sock.close()
            return "foreign_uid"
        if len(self.waiting) >= MAX_WAITING:       # the oldest waited longest: it goes
            self._drop(min(self.waiting, key=lambda fd: self.waiting[fd].deadline))
        sock.setblocking(False)
        assert self.epoll is not None
        self.epoll.register(sock.fileno(), select.EPOLLIN)
        self.waiting[sock.fileno()] = _Waiting(sock, time.monotonic() + TOKEN_WAIT)
        return None

    def _read(self, fd: int) -> tuple[socket.socket, bytes] | str | None:
        w = self.waiting.get(fd)
        if w is None:
            return None
        try:
            chunk = w.sock.recv(TOKEN_BYTES - len(w.token))
        except BlockingIOError:
            return None
        except OSError:
            chunk = b""
        if not chunk:
            self._drop(fd)
            return self.refused.popleft()
        w.token += chunk
        if len(w.token) < TOKEN_BYTES:
            return None
        self._forget(fd)
        return w.sock, w.token

    def _expire(self, now: float) -> None:
        for fd in [fd for fd, w in self.waiting.items() if w.deadline <= now]:
            self._drop(fd)

    def _drop(self, fd: int) -> None:
        self._forget(fd).sock.close()
        self.refused.append("no_token")

    def _forget(self, fd: int) -> _Waiting:
        assert self.epoll is not None
        self.epoll.unregister(fd)
        return self.waiting.pop(fd)

    def close(self) -> None:
        for fd in list(self.waiting):
            self._forget(fd).sock.close()
        if self.epoll is not None:
            self.epoll.close()
        self.sock.close()


@dataclass
class _Waiting:
    """A same-user connection that has not sent its whole token yet."""

    sock: socket.socket
    deadline: float
    token: bytes = b""


def connect(offer: dict[str, Any], max_bytes: int) -> tuple[LocalConn, str]:
    """Dial the env server's local socket and write a fresh token; returns the connection and
    the token (hex) for the ``join``. Raises OSError when it cannot."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(2.0)
        sock.connect(offer["path"])
        token = secrets.token_bytes(TOKEN_BYTES)
        sock.sendall(token)
    except OSError:
        sock.close()
        raise
    return LocalConn(sock, max_bytes), token.hex()
