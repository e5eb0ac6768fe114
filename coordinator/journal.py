"""The coordinator's journal: what it cannot recompute, appended to ``RUN/journal.jsonl`` so
that ``agentd coordinator --resume RUN`` picks the run up after the coordinator died.

One record per line, ``<crc32 hex8> <json>``. Records (``"r"``):

    start     run id, control endpoint, secure, epoch 0                       fsync
    admit     one admitted process: role, id, pid, host, endpoint, the src
              its hello carried, its key's name (secure mode)                  fsync
    env_ready the env server's spaces and local env plane offer                fsync
    running   every agent welcomed (the turn schedule, if any, is the plan's
              and its position is the joint step: nothing more to keep)        fsync
    rejoin    a restarted process took its id over: new pid, host, endpoint   fsync
    restart   a restart record (what a restart lost; summary.json's list)     fsync
    bye       a process's bye and its stats                                   fsync
    tally     an agent's counters after the ack                               fsync
    phase     ending | done | failed | interrupted (metrics.jsonl offset)     fsync
    resume    a resumed coordinator: epoch, pid, its downtime, the records
              it ignored, the metrics.jsonl offset it kept                    fsync

Each of them is rare (a few per process per run), so every one is fsynced: the journal is
never the pace of a run. The per-episode records live in ``metrics.jsonl`` (written a line
at a time, not fsynced: a killed process loses nothing the kernel holds; the env server sends
its latest reports again to a resumed coordinator, which skips what it already has).

A record cut short by the crash (a torn last line, or one whose checksum fails) is ignored,
counted, and the resume says so; a bad record before the last ends the resume with an error
naming its line, since what follows it cannot be trusted either.
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NAME = "journal.jsonl"


class JournalError(RuntimeError):
    """The journal cannot be read back (missing, or damaged before its last record)."""


def _line(record: dict[str, Any]) -> bytes:
    text = json.dumps(record, separators=(",", ":"), default=_plain).encode()
    return b"%08x %s\n" % (zlib.crc32(text), text)


def _plain(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


class Journal:
    """The append-only journal of one run's coordinator."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / NAME
        self._file = open(self.path, "ab")  # noqa: SIM115 - open for the coordinator's life

    def write(self, kind: str, **fields: Any) -> None:
        """Append one record and fsync it (every record kind matters; see the module)."""
        self._file.write(_line({"r": kind, **fields}))
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


@dataclass
class Replayed:
    """A run's state as its journal holds it."""

    records: list[dict[str, Any]] = field(default_factory=list)
    torn: int = 0                    # records cut short by the crash (ignored)
    kept_bytes: int = 0              # the journal up to its last whole record
    mtime: float = 0.0               # when it was last written (or touched: still alive)

    def first(self, kind: str) -> dict[str, Any] | None:
        return next((r for r in self.records if r["r"] == kind), None)

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r["r"] == kind]

    def last(self, kind: str) -> dict[str, Any] | None:
        found = self.all(kind)
        return found[-1] if found else None


def read_journal(run_dir: Path) -> Replayed:
    """Every whole record of ``RUN/journal.jsonl``; a torn last record is ignored and counted
    (and cut off the file, so what the resumed coordinator appends follows a whole record)."""
    path = Path(run_dir) / NAME
    try:
        data = path.read_bytes()
        mtime = path.stat().st_mtime
    except OSError as exc:
        raise JournalError(f"{run_dir} has no coordinator journal ({exc.strerror}): it was "
                           "not started by a coordinator that keeps one") from None
    out, offset = Replayed(mtime=mtime), 0
    lines = data.split(b"\n")
    for i, raw in enumerate(lines):
        last = i >= len(lines) - 2          # the final line, or the empty one after it
        if not raw and i == len(lines) - 1:
            break
        record = _parse(raw) if (i < len(lines) - 1) else None
        if record is None:
            if not last:
                raise JournalError(f"{path}: record {i + 1} is damaged and more follow; "
                                   "the journal cannot be trusted past it")
            out.torn += 1
            break
        out.records.append(record)
        offset += len(raw) + 1
    out.kept_bytes = offset
    if offset < len(data):
        with open(path, "r+b") as f:
            f.truncate(offset)
    if out.first("start") is None:
        raise JournalError(f"{path}: no start record")
    return out


def _parse(raw: bytes) -> dict[str, Any] | None:
    crc, _, text = raw.partition(b" ")
    try:
        if len(crc) != 8 or int(crc, 16) != zlib.crc32(text):
            return None
        record = json.loads(text)
    except ValueError:
        return None
    return record if isinstance(record, dict) and "r" in record else None
