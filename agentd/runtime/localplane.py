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
is closed and counted. Anything that fails on the way (no such path, another host, a closed
connection) leaves that agent on ZeroMQ, logged; the run never depends on the fast path.
"""

from __future__ import annotations

import os
import secrets
import socket
import struct
from collections import deque
from pathlib import Path
from typing import Any

HEADER = struct.Struct("<I")       # the length of the frame that follows
TOKEN_BYTES = 16
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
    """The env server's listening socket, under a random abstract name ("\\0agentd-env-...")."""

    def __init__(self) -> None:
        self.path = f"\0agentd-env-{os.getpid()}-{secrets.token_hex(8)}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.bind(self.path)
            self.sock.listen(256)
        except OSError:
            self.close()
            raise
        self.sock.setblocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def pending(self) -> bool:
        return False

    def offer(self) -> dict[str, Any]:
        return {"path": self.path, **machine()}

    def accept(self, max_bytes: int) -> tuple[LocalConn, bytes] | str:
        """The next connection and its token, or the reason it was refused (closed here)."""
        try:
            sock, _ = self.sock.accept()
        except (BlockingIOError, OSError):
            return "no_connection"
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        if uid != os.getuid():
            sock.close()
            return "foreign_uid"
        sock.settimeout(2.0)       # the agent writes its token right after connecting
        token = b""
        try:
            while len(token) < TOKEN_BYTES:
                chunk = sock.recv(TOKEN_BYTES - len(token))
                if not chunk:
                    break
                token += chunk
        except OSError:
            pass
        if len(token) < TOKEN_BYTES:
            sock.close()
            return "no_token"
        return LocalConn(sock, max_bytes), token

    def close(self) -> None:
        self.sock.close()


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
