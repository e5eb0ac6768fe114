"""Assembling the run directory: the coordinator pulls each remote process's files.

A process that wrote its files on another disk announces them (``files``: path, size,
SHA-256). The collector asks for them in chunks (``file_get``), a bounded window of requests
in flight per process, checks each chunk's CRC-32 and offset, writes it into ``RUN/<path>.part``
and, once the file is complete, checks its SHA-256 before renaming it into place. A bad chunk
is asked for again; a file whose digest does not match is fetched once more, then given up.
``missing`` lists, per process, what the run directory should hold and does not -- whether it
was never shipped or never written.

A peer decides nothing here. Before anything touches the disk, every announced entry must be
a file of the sender's own (``protocols.bodies.is_shipped_file``: ``logs/<name>.log|.out``,
``checkpoints/<name>.npz``, ``checkpoints/<name>/<word>-<number>.<ext>``, nothing longer than
255 characters), fit the limits below, and appear once. Files are written through directory
descriptors opened with ``O_NOFOLLOW`` from the run directory down, so no symbolic link planted
in a shared run directory (a ``logs`` that points elsewhere, a ``.part`` that does) is
followed: such a component is refused. Every refusal is counted by reason and listed (the first
``LISTED``) in summary.json.

The limits a shipment must fit are ``coordinator.shiplimits``'s. It stays whole past ~300
lines: a shipment's checks, from its manifest to its last chunk, are one protocol.
"""

from __future__ import annotations

import hashlib
import os
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from agentd.runtime.runfiles import CHUNK_BYTES
from coordinator.shiplimits import FLOOR_BYTES_PER_S, Limits, free_space, limits
from protocols.bodies import is_shipped_file

WINDOW = 8          # chunk requests in flight per process
RETRIES = 3         # per chunk (bad CRC) and per file (bad digest: one fetch again)
LISTED = 100                  # refusals listed one by one in summary.json (all are counted)


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
    deadline: float = 0.0
    progress_at: float = 0.0       # when the last chunk came (or the announcement)
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
        self.refusals: Counter = Counter()
        self.accepting = False     # the end-of-run phase: every shipper may deliver

    def refuse(self, name: str, reason: str, detail: str) -> None:
        """Count a refusal by reason and list it (the first LISTED of them)."""
        self.refusals[reason] += 1
        if len(self.refused) < LISTED:
            self.refused.append(f"{name}: {reason}: {detail}"[:300])

    def announce(self, name: str, listing: list, lim: Limits | None = None,
                 silence: float = 60.0) -> None:
        """A process lists its files; entries that break a rule are refused (and reported),
        the rest pulled. Without ``lim``: a process of a run that has no step checkpoints
        and did not report its traffic."""
        if lim is None:
            lim = limits(0, 0, None, free_space(self.run_dir), 1)
        old = self.shipments.get(name)
        if old is not None and not old.finished:
            self.refuse(name, "announced_twice", "a second listing while the first is coming")
            return
        files: dict[str, _File] = {}
        total = 0
        for entry in listing:
            problem = self._check_entry(entry, name, files, total, lim)
            if problem:
                self.refuse(name, *problem)
                continue
            path, size, digest = entry
            files[path] = _File(path, size, digest)
            total += size
        now = time.monotonic()
        ship = Shipment(name, files, now + silence + total / FLOOR_BYTES_PER_S, now)
        self.shipments[name] = ship
        for f in list(files.values()):
            self._open(ship, f)
        self.pump(name)

    @staticmethod
    def _check_entry(entry: Any, name: str, files: dict[str, _File], total: int,
                     lim: Limits) -> tuple[str, str] | None:
        if not (type(entry) is list and len(entry) == 3 and type(entry[0]) is str
                and type(entry[1]) is int and type(entry[2]) is str and entry[1] >= 0):
            return "malformed", f"entry {entry!r:.80}"
        path, size = entry[0], entry[1]
        if not is_shipped_file(path, name):
            return "not_its_file", f"{path!r:.80} is not a file {name} may ship"
        if path in files:
            return "duplicate", f"{path} listed twice"
        if len(files) >= lim.max_files:
            return "too_many_files", f"{path}: over {lim.max_files} files"
        if size > lim.file_cap(path):
            return "too_large", f"{path}: {size} bytes, this file may have {lim.file_cap(path)}"
        if total + size > lim.process_bytes:
            return "over_process_cap", f"{path}: {name} may ship {lim.process_bytes} bytes"
        return None

    # -- the disk, never through a link ------------------------------------------------------
    @contextmanager
    def _dir_of(self, path: str) -> Iterator[tuple[int, str]]:
        """The directory descriptor of ``path``'s parent (made if missing; every component
        below the run directory a real directory, no link followed) and the base name."""
        parts = PurePosixPath(path).parts
        fd = os.open(self.run_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for part in parts[:-1]:
                try:
                    os.mkdir(part, 0o700, dir_fd=fd)
                except FileExistsError:
                    pass
                sub = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                os.close(fd)
                fd = sub
            yield fd, parts[-1]
        finally:
            os.close(fd)

    def _disk(self, ship: Shipment, f: _File, op: Callable[[int, str], Any]) -> bool:
        """Run a file operation in its directory; a refusal by the disk gives the file up."""
        try:
            with self._dir_of(f.path) as (dfd, base):
                op(dfd, base)
            return True
        except (OSError, ValueError) as exc:
            self._give_up(ship, f, f"cannot write it here: {type(exc).__name__}: {exc}",
                          "disk_refused")
            return False

    def _open(self, ship: Shipment, f: _File) -> None:
        def create(dfd: int, base: str) -> None:
            os.close(os.open(base + ".part", os.O_WRONLY | os.O_CREAT | os.O_TRUNC
                             | os.O_NOFOLLOW, 0o600, dir_fd=dfd))
        f.received, f.next_offset = 0, 0
        f.pending.clear()
        self._disk(ship, f, create)

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
            self.refuse(name, "not_asked_for", f"chunk of {body['path']!r:.80} at "
                        f"{body['offset']}")
            return
        data, offset = body["data"], body["offset"]
        expected = min(self.chunk, f.size - offset)
        if zlib.crc32(data) != body["crc32"] or len(data) != expected:
            f.failures += 1
            f.pending.discard(offset)
            if f.failures > RETRIES:
                self._give_up(ship, f, "chunks kept arriving damaged", "damaged")
            else:
                self._ask(name, f, offset)
            return

        def write(dfd: int, base: str) -> None:
            fd = os.open(base + ".part", os.O_WRONLY | os.O_NOFOLLOW, dir_fd=dfd)
            try:
                os.pwrite(fd, data, offset)
            finally:
                os.close(fd)
        if not self._disk(ship, f, write):
            return
        f.pending.discard(offset)
        f.received += len(data)
        ship.bytes += len(data)
        ship.progress_at = time.monotonic()
        self.pump(name)

    def _complete(self, ship: Shipment, f: _File) -> None:
        digest: list[str] = []

        def check_and_place(dfd: int, base: str) -> None:
            fd = os.open(base + ".part", os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dfd)
            with os.fdopen(fd, "rb") as part:
                h = hashlib.sha256()
                for block in iter(lambda: part.read(1 << 20), b""):
                    h.update(block)
            digest.append(h.hexdigest())
            if digest[0] == f.sha256:     # rename replaces a link there, never follows it
                os.replace(base + ".part", base, src_dir_fd=dfd, dst_dir_fd=dfd)
        if not self._disk(ship, f, check_and_place):
            return
        if digest[0] == f.sha256:
            ship.done.append(f.path)
        elif f.fetches <= 1:
            f.fetches += 1
            self._open(ship, f)
        else:
            self._give_up(ship, f, "SHA-256 does not match after two fetches", "bad_digest")

    def _give_up(self, ship: Shipment, f: _File, why: str, reason: str) -> None:
        if f.path in ship.failed:
            return
        f.pending.clear()
        f.next_offset = f.size
        ship.failed.append(f.path)
        self.refuse(ship.name, reason, f"{f.path}: {why}")
        try:
            with self._dir_of(f.path) as (dfd, base):
                os.unlink(base + ".part", dir_fd=dfd)
        except (OSError, ValueError):
            pass

    def busy(self) -> list[str]:
        """Names of processes whose files are still coming."""
        return [k for k, s in self.shipments.items() if not s.finished]

    def overdue(self, name: str, now: float, silence: float) -> str | None:
        """Why a shipment still coming should be given up now (None: not yet)."""
        ship = self.shipments[name]
        if now > ship.deadline:
            return "past its deadline"
        if now - ship.progress_at > silence:
            return f"no chunk for {silence:.0f} s"
        return None

    def abandon(self, name: str, why: str = "the process went silent before the file "
                "arrived", reason: str = "abandoned") -> None:
        """Give up what is still coming from a process; its half-written files go."""
        ship = self.shipments[name]
        for f in list(ship.files.values()):
            if f.path not in ship.done and f.path not in ship.failed:
                self._give_up(ship, f, why, reason)

    def report(self) -> dict[str, Any]:
        """summary.json's view of the refusals: counts by reason, the first LISTED listed."""
        return {"refused": list(self.refused), "refusals": dict(self.refusals)}


def missing_files(run_dir: Path, expected: dict[str, list[str]]) -> dict[str, list[str]]:
    """For each process (by display name), the expected files the run directory lacks."""
    out = {}
    for who, paths in expected.items():
        absent = [p for p in paths if not (run_dir / p).is_file()]
        if absent:
            out[who] = absent
    return out
