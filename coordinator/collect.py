"""Assembling the run directory: the coordinator pulls each remote process's files.

A process that wrote its files on another disk announces them (``files``: path, size,
SHA-256). The collector asks for them in chunks (``file_get``), a bounded window of requests
in flight per process, checks each chunk's CRC-32 and offset, writes it into ``RUN/<path>.part``
and, once the file is complete, checks its SHA-256 before renaming it into place. A bad chunk
is asked for again; a file whose digest does not match is fetched once more, then given up.
A process may only deliver its own files (``logs/<name>.*``, ``checkpoints/<name>...``), so
one host cannot overwrite another's log. ``missing`` lists, per process, what the run
directory should hold and does not — whether it was never shipped or never written.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from agentd.runtime.runfiles import CHUNK_BYTES, sha256_of

WINDOW = 8          # chunk requests in flight per process
RETRIES = 3         # per chunk (bad CRC) and per file (bad digest: one fetch again)


@dataclass
class _File:
    path: str
    size: int
    sha256: str
    received: int = 0
    pending: set[int] = field(default_factory=set)    # offsets asked for, not yet received
    next_offset: int = 0
    failures: int = 0
    fetches: int = 1


@dataclass
class Shipment:
    """The files one process announced and how far they have come."""

    name: str
    files: dict[str, _File]
    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    bytes: int = 0
    reported: bool = False

    @property
    def finished(self) -> bool:
        return len(self.done) + len(self.failed) == len(self.files)


class Collector:
    """Pulls announced files into ``run_dir``; ``send(name, kind, body)`` reaches a process
    by its key name (agent-3, envserver)."""

    def __init__(self, run_dir: Path, send: Callable[[str, str, dict], None],
                 max_msg_bytes: int) -> None:
        self.run_dir = run_dir
        self.send = send
        self.chunk = max(512, min(CHUNK_BYTES, max_msg_bytes // 2))
        self.shipments: dict[str, Shipment] = {}
        self.refused: list[str] = []

    def announce(self, name: str, listing: list) -> None:
        """A process lists its files; bad entries are refused (and reported), the rest pulled."""
        files = {}
        for entry in listing:
            problem = _check_entry(entry, name)
            if problem:
                self.refused.append(f"{name}: {problem}")
                continue
            path, size, digest = entry
            files[path] = _File(path, size, digest)
        self.shipments[name] = Shipment(name, files)
        for f in files.values():
            self._open(f)
        self.pump(name)

    def _open(self, f: _File) -> None:
        part = self._part(f)
        part.parent.mkdir(parents=True, exist_ok=True)
        with open(part, "wb") as out:
            out.truncate(f.size)
        f.received, f.next_offset = 0, 0
        f.pending.clear()

    def _part(self, f: _File) -> Path:
        return self.run_dir / (f.path + ".part")

    def pump(self, name: str) -> None:
        """Finish files that have all their bytes, then keep WINDOW requests in flight."""
        ship = self.shipments[name]
        active = [f for f in ship.files.values()
                  if f.path not in ship.done and f.path not in ship.failed]
        for f in active:
            if f.received >= f.size and not f.pending:
                self._complete(ship, f)          # may start the file over (a bad digest)
        in_flight = sum(len(f.pending) for f in ship.files.values())
        for f in active:
            while in_flight < WINDOW and f.next_offset < f.size and f.path not in ship.failed:
                self._ask(name, f, f.next_offset)
                f.next_offset += self.chunk
                in_flight += 1
        if ship.finished and not ship.reported:
            ship.reported = True
            self.send(name, "files_done", {"received": ship.done, "failed": ship.failed})

    def _ask(self, name: str, f: _File, offset: int) -> None:
        f.pending.add(offset)
        self.send(name, "file_get", {"path": f.path, "offset": offset,
                                    "length": min(self.chunk, f.size - offset)})

    def on_chunk(self, name: str, body: dict[str, Any]) -> None:
        ship = self.shipments.get(name)
        f = ship.files.get(body["path"]) if ship else None
        if f is None or body["offset"] not in f.pending:
            return                                   # not asked for: ignored
        data, offset = body["data"], body["offset"]
        expected = min(self.chunk, f.size - offset)
        if zlib.crc32(data) != body["crc32"] or len(data) != expected:
            f.failures += 1
            f.pending.discard(offset)
            if f.failures > RETRIES:
                self._give_up(ship, f, "chunks kept arriving damaged")
            else:
                self._ask(name, f, offset)
            return
        with open(self._part(f), "r+b") as out:
            out.seek(offset)
            out.write(data)
        f.pending.discard(offset)
        f.received += len(data)
        ship.bytes += len(data)
        self.pump(name)

    def _complete(self, ship: Shipment, f: _File) -> None:
        part = self._part(f)
        if sha256_of(part) == f.sha256:
            os.replace(part, self.run_dir / f.path)
            ship.done.append(f.path)
        elif f.fetches <= 1:
            f.fetches += 1
            self._open(f)
        else:
            self._give_up(ship, f, "SHA-256 does not match after two fetches")

    def _give_up(self, ship: Shipment, f: _File, why: str) -> None:
        f.pending.clear()
        f.next_offset = f.size
        ship.failed.append(f.path)
        self.refused.append(f"{ship.name}: {f.path}: {why}")
        self._part(f).unlink(missing_ok=True)

    def busy(self) -> list[str]:
        """Names of processes whose files are still coming."""
        return [k for k, s in self.shipments.items() if not s.finished]

    def abandon(self, name: str) -> None:
        """A process went away mid-shipment: drop its half-written files."""
        ship = self.shipments[name]
        for f in ship.files.values():
            if f.path not in ship.done and f.path not in ship.failed:
                self._give_up(ship, f, "the process went silent before the file arrived")


def _check_entry(entry: Any, name: str) -> str | None:
    if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], str)
            and isinstance(entry[1], int) and isinstance(entry[2], str) and entry[1] >= 0):
        return f"malformed file entry {entry!r:.80}"
    path = PurePosixPath(entry[0])
    parts = path.parts
    if path.is_absolute() or ".." in parts or len(parts) < 2:
        return f"refused path {entry[0]!r}: not inside the run directory"
    ours = (parts[0] == "logs" and len(parts) == 2 and parts[1].startswith(name + ".")) or \
        (parts[0] == "checkpoints" and (parts[1] == f"{name}.npz" or parts[1] == name))
    if not ours or path.name.endswith(".part"):
        return f"refused path {entry[0]!r}: not a file of {name}"
    return None


def missing_files(run_dir: Path, expected: dict[str, list[str]]) -> dict[str, list[str]]:
    """For each process (by display name), the expected files the run directory lacks."""
    out = {}
    for who, paths in expected.items():
        absent = [p for p in paths if not (run_dir / p).is_file()]
        if absent:
            out[who] = absent
    return out
