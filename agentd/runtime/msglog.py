"""Per-process message logs: every message in and out, length-prefixed msgpack records.

File layout: a sequence of records, each ``u32 little-endian length | msgpack array``.
The first record is ``["meta", wall_time, {"format": "agentd-msglog", "version": 1,
"process": name, "private": bool, "secure": bool, "insecure": bool}]`` (private is false in
runs of a centralised, non-private baseline such as maddpg or central-q, and of learners
whose params share private state, such as lola with opponent = shared; secure says whether
the process's links ran CURVE; insecure that plaintext beyond loopback was allowed on
purpose; an agent's log in a DP run adds "dp": its noise settings, see ``agentd.privacy.dp``). Every other record is ``[direction, wall_time, plane, reason, frames]`` where
direction is ``"in"``, ``"out"``, ``"rej"`` (a received message the guard refused; ``reason``
names why) or ``"hs"`` (a connection that failed its handshake: ``reason`` is
``handshake_failed_auth|protocol|no_detail`` and the frames are the peer's address and what
went wrong, as text), plane is ``control``/``env``/``peer`` and frames are the raw ZeroMQ
frames as sent/received, without the routing id (one frame, the envelope, for a well-formed
message; a refused frame is kept up to its first 4 KiB). The file transfer that assembles the
run directory at the end is not logged (it carries the logs).
A ``restart`` record ``["restart", wall_time, {"checkpoint": path or None, "sha256": ...,
"step": T}]`` marks where a restarted agent continued its log (after a second meta record):
it restored that recovery checkpoint, taken after its step T (``agentd.agent.recovery``).
The writer buffers and is flushed once per step, so a crash loses at most the step in flight,
except an agent's act: it is logged and flushed before it is sent, so the log holds every act
the env server took (a replay compares them all). A truncated last record is reported by the
reader and skipped (and cut off by a restarted process before it appends).
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

from agentd.runtime.runfiles import private_dir
from protocols.codec import Codec
from protocols.envelope import decode_body, decode_header, split
from protocols.errors import ProtocolError

FORMAT, FORMAT_VERSION = "agentd-msglog", 1
_LEN = struct.Struct("<I")


class MessageLog:
    """Append-only writer for one process's log."""

    def __init__(self, process: str, path: Path | None = None, private: bool = True,
                 meta: dict[str, Any] | None = None) -> None:
        self.process = process
        self.path: Path | None = None
        self._file: Any = None
        self._pending: list[list] = []   # records made before the file is known
        self._packer = msgpack.Packer(use_bin_type=True)
        if path is not None:
            self.attach(path, private=private, meta=meta)

    def attach(self, path: Path, process: str | None = None, private: bool = True,
               meta: dict[str, Any] | None = None) -> None:
        """Open the file (an agent learns its id, hence its log name, only when admitted).
        ``private`` False labels a run of a centralised (non-private) baseline; ``meta``
        adds fields to the meta record (secure, insecure)."""
        private_dir(path.parent)
        repair_tail(path)
        self.path, self.process = path, process or self.process
        # owner-only whatever the umask: a log holds every message of the run
        self._file = open(path, "ab", buffering=1 << 16,  # noqa: SIM115 - lives with the log
                          opener=_private)
        os.fchmod(self._file.fileno(), 0o600)
        self._write(["meta", time.time(), {"format": FORMAT, "version": FORMAT_VERSION,
                                           "process": self.process, "private": private,
                                           **(meta or {})}])
        for record in self._pending:
            self._write(record)
        self._pending.clear()

    def _write(self, record: list) -> None:
        if self._file is None:
            self._pending.append(record)
            return
        data = self._packer.pack(record)
        self._file.write(_LEN.pack(len(data)))
        self._file.write(data)

    def note(self, what: str, body: dict[str, Any]) -> None:
        """A record that is not a message (a restart), written and flushed at once."""
        self._write([what, time.time(), body])
        self.flush()

    def record(self, direction: str, plane: str, frames: list[bytes],
               reason: str | None = None) -> None:
        self._write([direction, time.time(), plane, reason, frames])

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None and not self._file.closed:
            self._file.flush()
            self._file.close()


@dataclass
class LogRecord:
    """One decoded log record; header/body are None when the frames do not decode."""

    direction: str
    time: float
    plane: str
    reason: str | None
    frames: list[bytes]
    header: dict[str, Any] | None
    body: Any

    @property
    def kind(self) -> str | None:
        return self.header["k"] if self.header else None

    @property
    def nbytes(self) -> int:
        return sum(len(f) for f in self.frames)


@dataclass
class LogFile:
    """A log file opened for reading: its meta record and whether its tail was truncated."""

    path: Path
    meta: dict[str, Any]
    truncated_tail: bool = False

    def __iter__(self) -> Iterator[LogRecord]:
        codec = Codec()
        for raw in _raw_records(self):
            yield _decode_record(codec, raw)


def _raw_records(log: LogFile) -> Iterator[list]:
    with open(log.path, "rb") as f:
        data = f.read()
    pos, first = 0, True
    while pos < len(data):
        if pos + 4 > len(data):
            log.truncated_tail = True
            return
        (length,) = _LEN.unpack_from(data, pos)
        if pos + 4 + length > len(data):
            log.truncated_tail = True
            return
        record = msgpack.unpackb(data[pos + 4:pos + 4 + length], raw=False)
        pos += 4 + length
        if first:
            first = False
            continue
        yield record


def _private(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)


def repair_tail(path: Path) -> int:
    """Cut a record the previous process of this name left half-written (it was killed);
    returns the bytes removed."""
    if not path.exists():
        return 0
    data = path.read_bytes()
    pos = 0
    while pos + 4 <= len(data):
        (length,) = _LEN.unpack_from(data, pos)
        if pos + 4 + length > len(data):
            break
        pos += 4 + length
    if pos < len(data):
        with open(path, "r+b") as f:
            f.truncate(pos)
    return len(data) - pos


def _decode_record(codec: Codec, raw: list) -> LogRecord:
    if len(raw) == 3:     # a note (a later meta record, a restart): no message frames
        return LogRecord(raw[0], raw[1], "", None, [], None, raw[2])
    direction, wall, plane, reason, frames = raw
    header = body = None
    if isinstance(frames, list) and len(frames) == 1:
        try:
            head, body_part = split(frames[0])
            header = decode_header(codec, head)
            body = decode_body(codec, head, body_part)
        except ProtocolError:
            pass
    return LogRecord(direction, wall, plane, reason, frames, header, body)


def open_log(path: str | Path) -> LogFile:
    """Open a message log; raises ValueError if it is not one."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(4)
        if len(head) < 4:
            raise ValueError(f"{path}: empty or not a message log")
        (length,) = _LEN.unpack(head)
        meta = msgpack.unpackb(f.read(length), raw=False)
    if not (isinstance(meta, list) and meta[0] == "meta" and meta[2].get("format") == FORMAT):
        raise ValueError(f"{path}: not an agentd message log")
    return LogFile(path, meta[2])
