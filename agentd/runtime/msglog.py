"""Per-process message logs: every message in and out, msgpack records compressed on the fly.

A record is a msgpack array. The first is ``["meta", wall_time, {"format": "agentd-msglog",
"version": 2, "process": name, "private": bool, "secure": bool, "insecure": bool}]`` (private
is false in runs of a centralised, non-private baseline such as maddpg or central-q, and of
learners whose params share private state, such as lola with opponent = shared; secure says
whether the process's links ran CURVE; insecure that plaintext beyond loopback was allowed on
purpose; an agent's log in a DP run adds "dp": its noise settings, see ``agentd.privacy.dp``).
Every other record is ``[direction, wall_time, plane, reason, frames]`` where
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

File layout: a sequence of items, each ``u32 little-endian word | payload``. A word below
2**31 is the length of a plain record (``payload`` is its msgpack): the meta record, which
starts every process's part of the file. A word with the top bit set is a *chunk*: the low
31 bits are the payload's length and the payload is the next piece of one zstandard stream
(a stream starts after each meta record) that decompresses to whole msgpack records, one
after the other (msgpack delimits them itself). A chunk is written at every flush (once per step; an agent's act is
flushed before it is sent, so the log holds every act the env server took), every
``FLUSH_BYTES`` of records and, for a process that does not flush, every ``FLUSH_SECONDS``;
the stream keeps its window across chunks, so a chunk of one step's records costs a few bytes
against the steps before it. A crash loses at most the chunk in flight: a truncated last item
is reported by the reader and skipped (and cut off by a restarted process before it appends).
Version 1 logs (plain records only, no chunks) read the same way.
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
from protocols.envelope import READABLE, decode_body, decode_header, split
from protocols.errors import ProtocolError

FORMAT, FORMAT_VERSION = "agentd-msglog", 2
_LEN = struct.Struct("<I")
CHUNK = 0x8000_0000            # top bit of an item's word: a compressed chunk
# zstandard level: 3 is no smaller on tabular runs and ~8% smaller on float-heavy ones
# (dac-deep) at ~40% more CPU per record
LEVEL = 1
FLUSH_BYTES = 1 << 16          # records buffered before a chunk is written regardless
FLUSH_SECONDS = 1.0            # ... and the longest a record waits in a process that never flushes
MAX_WINDOW = 1 << 23           # the reader refuses streams that ask for a larger window
# What one chunk may decompress to: the records buffered before a flush plus the one that
# crossed FLUSH_BYTES (a message is at most 16 MiB of frames, and a record holds one message).
# A chunk that inflates past this is not one a writer made (a decompression bomb planted in a
# log handed to audit or attack): the reader stops there, as at a torn chunk.
MAX_CHUNK_OUT = FLUSH_BYTES + (1 << 25)


class MessageLog:
    """Append-only writer for one process's log."""

    def __init__(self, process: str, path: Path | None = None, private: bool = True,
                 meta: dict[str, Any] | None = None) -> None:
        self.process = process
        self.path: Path | None = None
        self._file: Any = None
        self._zstd: Any = None         # the compressor of this process's stream
        self._last_chunk = time.time()
        self._pending: list[list] = []   # records made before the file is known
        self._packer = msgpack.Packer(use_bin_type=True)
        self._chunk_packer = msgpack.Packer(use_bin_type=True, autoreset=False)  # its buffer
        # holds the records not yet compressed
        if path is not None:
            self.attach(path, private=private, meta=meta)

    def attach(self, path: Path, process: str | None = None, private: bool = True,
               meta: dict[str, Any] | None = None) -> None:
        """Open the file (an agent learns its id, hence its log name, only when admitted).
        ``private`` False labels a run of a centralised (non-private) baseline; ``meta``
        adds fields to the meta record (secure, insecure)."""
        import zstandard  # only processes that write a log pay for it

        private_dir(path.parent)
        repair_tail(path)
        self.path, self.process = path, process or self.process
        # owner-only whatever the umask: a log holds every message of the run
        self._file = open(path, "ab", buffering=1 << 16,  # noqa: SIM115 - lives with the log
                          opener=_private)
        os.fchmod(self._file.fileno(), 0o600)
        meta_record = self._packer.pack(["meta", time.time(), {
            "format": FORMAT, "version": FORMAT_VERSION, "process": self.process,
            "private": private, "compression": "zstd", **(meta or {})}])
        self._file.write(_LEN.pack(len(meta_record)) + meta_record)
        self._zstd = zstandard.ZstdCompressor(level=LEVEL).compressobj()
        self._flush_block = zstandard.COMPRESSOBJ_FLUSH_BLOCK
        for record in self._pending:
            self._write(record)
        self._pending.clear()

    def _write(self, record: list) -> None:
        if self._file is None:
            self._pending.append(record)
            return
        self._chunk_packer.pack(record)
        if len(self._chunk_packer.getbuffer()) >= FLUSH_BYTES:
            self._chunk()

    def _chunk(self) -> None:
        """The buffered records as one chunk: whole records, readable as soon as it is written
        (given the stream's chunks before it)."""
        out = self._zstd.compress(self._chunk_packer.getbuffer()) + \
            self._zstd.flush(self._flush_block)
        self._file.write(_LEN.pack(len(out) | CHUNK) + out)
        self._chunk_packer.reset()

    def note(self, what: str, body: dict[str, Any]) -> None:
        """A record that is not a message (a restart), written and flushed at once."""
        self._write([what, time.time(), body])
        self.flush()

    def record(self, direction: str, plane: str, frames: list[bytes],
               reason: str | None = None) -> None:
        now = time.time()
        self._write([direction, now, plane, reason, frames])
        if now - self._last_chunk >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self._file is not None and not self._file.closed:
            if len(self._chunk_packer.getbuffer()):
                self._chunk()
            self._file.flush()
            self._last_chunk = time.time()

    def close(self) -> None:
        if self._file is not None and not self._file.closed:
            self.flush()
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


def _items(data: bytes) -> Iterator[tuple[bool, int, int]]:
    """(is a chunk, start, end of its payload) for every whole item; stops at a truncated
    one (the caller compares the last end with len(data))."""
    pos = 0
    while pos + 4 <= len(data):
        (word,) = _LEN.unpack_from(data, pos)
        end = pos + 4 + (word & ~CHUNK)
        if end > len(data):
            return
        yield bool(word & CHUNK), pos + 4, end
        pos = end


def _raw_records(log: LogFile) -> Iterator[list]:
    import zstandard

    with open(log.path, "rb") as f:
        data = f.read()
    stream, records, first, end = None, None, True, 0
    for chunk, start, end in _items(data):
        if not chunk:                  # a meta record: a new stream follows
            record = msgpack.unpackb(data[start:end], raw=False)
            sink = _Capped(MAX_CHUNK_OUT)
            stream = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW).stream_writer(
                sink, write_size=1 << 16)
            records = msgpack.Unpacker(raw=False, max_buffer_size=MAX_CHUNK_OUT)
            if not first:
                yield record
            first = False
            continue
        try:
            if stream is None:
                raise zstandard.ZstdError("a chunk before any meta record")
            stream.write(data[start:end])
            records.feed(sink.take())
            batch = list(records)
        except (zstandard.ZstdError, ValueError, _Inflated):  # not a chunk a writer made:
            # torn, corrupt or inflating past MAX_CHUNK_OUT - the log ends at the last good one
            end = -1
            break
        yield from batch
    if end != len(data):
        log.truncated_tail = True


class _Inflated(Exception):
    """A chunk decompressed to more than a writer's chunk can hold."""


class _Capped:
    """The decompressor's output for one chunk, refused past ``cap`` bytes (so a small
    chunk that inflates to gigabytes costs at most ``cap`` of memory)."""

    def __init__(self, cap: int) -> None:
        self.cap, self.buf = cap, bytearray()

    def write(self, data: bytes) -> int:
        if len(self.buf) + len(data) > self.cap:
            raise _Inflated
        self.buf += data
        return len(data)

    def take(self) -> bytes:
        out, self.buf = bytes(self.buf), bytearray()
        return out


def _private(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)


def repair_tail(path: Path) -> int:
    """Cut an item the previous process of this name left half-written (it was killed);
    returns the bytes removed."""
    if not path.exists():
        return 0
    data = path.read_bytes()
    whole = 0
    for _, _, whole in _items(data):
        pass
    if whole < len(data):
        with open(path, "r+b") as f:
            f.truncate(whole)
    return len(data) - whole


def _decode_record(codec: Codec, raw: list) -> LogRecord:
    if len(raw) == 3:     # a note (a later meta record, a restart): no message frames
        return LogRecord(raw[0], raw[1], "", None, [], None, raw[2])
    direction, wall, plane, reason, frames = raw
    header = body = None
    if isinstance(frames, list) and len(frames) == 1:
        try:
            head, body_part = split(frames[0])
            header = decode_header(codec, head, READABLE)
            body = decode_body(codec, head, body_part)
        except ProtocolError:
            pass
    return LogRecord(direction, wall, plane, reason, frames, header, body)


def open_log(path: str | Path) -> LogFile:
    """Open a message log (version 1 or 2); raises ValueError if it is not one."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(4)
        if len(head) < 4:
            raise ValueError(f"{path}: empty or not a message log")
        (length,) = _LEN.unpack(head)
        meta = msgpack.unpackb(f.read(length), raw=False) if length < CHUNK else None
    if not (isinstance(meta, list) and meta[0] == "meta" and meta[2].get("format") == FORMAT):
        raise ValueError(f"{path}: not an agentd message log")
    return LogFile(path, meta[2])
