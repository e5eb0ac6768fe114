"""Where a process keeps its files, and how it ships them to the coordinator's run directory.

A process writes its message log, checkpoints and output under a directory on its own disk.
If that disk already holds the coordinator's run directory (a local run, a shared mount: the
coordinator's marker file with this run's id is visible there), it writes straight into it and
nothing is shipped. Otherwise it writes under ``--run-dir`` (default ``runs/<run name>``) and,
when the run ends, serves the coordinator's chunk requests over the control plane until the
coordinator confirms every file: the coordinator pulls, so a process never floods it, and the
hot loop is over by then. Only the files of this process can be asked for, and only those
whose names the coordinator accepts (``protocols.bodies.is_shipped_file``) are offered.
Run directories are owner-only (0700) whatever the umask: message logs, checkpoints and
outputs are a run's private data.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from protocols.bodies import is_shipped_file

if TYPE_CHECKING:
    from agentd.runtime.control import ControlPlane
    from agentd.runtime.transport import Transport

log = logging.getLogger("agentd.runtime.runfiles")
MARKER = ".agentd-run"
CHUNK_BYTES = 256 << 10


def private_dir(path: Path) -> Path:
    """Make ``path`` (and any missing parent) a directory only its owner can enter: each one
    made here gets mode 0700 whatever the umask; the last one gets it even if it existed, when
    it is ours (a shared run directory of another user is left as it is)."""
    missing = []
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    path.mkdir(parents=True, exist_ok=True)
    for made in missing:
        os.chmod(made, 0o700)
    if path.stat().st_uid == os.geteuid():
        os.chmod(path, 0o700)
    return path


def new_run_id() -> str:
    return secrets.token_hex(12)


def write_marker(run_dir: Path, run_id: str) -> None:
    """Mark a run directory so processes on the same disk can recognise it."""
    (run_dir / MARKER).write_text(run_id + "\n")


def own_files(root: Path, name: str) -> list[Path]:
    """The files a process named ``name`` (agent-3, envserver) writes under a run directory."""
    found = [*sorted((root / "logs").glob(f"{name}.*")),
             *([root / "checkpoints" / f"{name}.npz"]
               if (root / "checkpoints" / f"{name}.npz").is_file() else []),
             *sorted(p for p in (root / "checkpoints" / name).rglob("*") if p.is_file())]
    own = []
    for p in found:
        rel = p.relative_to(root).as_posix()
        if not p.is_file() or p.is_symlink():
            continue
        if is_shipped_file(rel, name):
            own.append(p)
        elif not rel.endswith(".part"):
            log.warning("%s: not shipping %s: the coordinator accepts no such name", name, rel)
    return own


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class RunFiles:
    """The directory one process writes to, and whether it is the coordinator's own."""

    root: Path
    shared: bool
    name: str
    _handler: logging.Handler | None = field(default=None, repr=False)

    @classmethod
    def choose(cls, info: dict[str, Any], name: str, local: str | None) -> RunFiles:
        run_dir = Path(info["run_dir"])
        try:
            shared = (run_dir / MARKER).read_text().strip() == info["run_id"]
        except OSError:
            shared = False
        root = run_dir if shared else Path(local) if local else Path("runs") / run_dir.name
        root = root.absolute()
        private_dir(private_dir(root) / "logs")
        return cls(root, shared, name)

    @property
    def log_path(self) -> Path:
        return self.root / "logs" / f"{self.name}.log"

    @property
    def mode(self) -> str:
        """What the process tells the coordinator: 'shared' (nothing to ship) or 'ship'."""
        return "shared" if self.shared else "ship"

    def capture_output(self) -> None:
        """On another host, keep this process's log lines in logs/<name>.out (a local launcher
        redirects a child's output there itself)."""
        if self.shared or self._handler is not None:
            return
        self._handler = logging.FileHandler(self.root / "logs" / f"{self.name}.out")
        self._handler.setFormatter(logging.Formatter(
            "%(asctime)s %(name)s %(levelname)s: %(message)s"))
        logging.getLogger().addHandler(self._handler)

    def release_output(self) -> None:
        if self._handler is not None:
            logging.getLogger().removeHandler(self._handler)
            self._handler.close()
            self._handler = None

    def manifest(self) -> list[list[Any]]:
        return [[p.relative_to(self.root).as_posix(), p.stat().st_size, sha256_of(p)]
                for p in own_files(self.root, self.name)]


def ship(files: RunFiles, control: ControlPlane, silence: float) -> bool:
    """Ship this process's files to the coordinator: announce them, then serve its chunk
    requests until it confirms (True if every file arrived whole) or stays silent."""
    files.release_output()
    transport = control.transport
    transport.set_hot([])                # chunk requests come on the control link
    transport.end_log()                  # the log is complete: what follows is not logged
    manifest = files.manifest()
    allowed = {path for path, _, _ in manifest}
    control.send("files", {"files": manifest})
    log.info("%s: shipping %d files (%d bytes) to the coordinator", files.name, len(manifest),
             sum(size for _, size, _ in manifest))
    heard = time.monotonic()
    # a coordinator that dies meanwhile is waited for (up to coordinator_timeout: then
    # ``tick_quietly`` raises CoordinatorLost); resumed, it is told the files again
    while time.monotonic() - heard < silence or control.outage_since is not None:
        control.tick_quietly()
        if control.link not in transport.poll(100):
            continue
        for msg, _ in transport.recv_all(control.link):
            heard = time.monotonic()
            epoch, queued = control.epoch, any(k == "files" for k, _, _ in control.outbox.queued)
            control.heard(msg)
            if control.epoch != epoch and not queued:
                control.send("files", {"files": manifest})
            if msg.kind == "file_get":
                _serve_chunk(files.root, allowed, control, msg.body)
            elif msg.kind == "files_done":
                failed = msg.body["failed"]
                if failed:
                    log.error("%s: the coordinator could not verify %s", files.name, failed)
                return not failed
    log.error("%s: the coordinator went silent while collecting files; they stay in %s",
              files.name, files.root)
    return False


def _serve_chunk(root: Path, allowed: set[str], control: ControlPlane,
                 req: dict[str, Any]) -> None:
    path, offset = req["path"], req["offset"]
    length = max(0, min(req["length"], CHUNK_BYTES))
    if path not in allowed or offset < 0:
        log.warning("the coordinator asked for %r, which this process did not offer", path)
        return
    with open(root / path, "rb") as f:
        f.seek(offset)
        data = f.read(length)
    control.send("file_chunk", {"path": path, "offset": offset, "data": data,
                                "crc32": zlib.crc32(data)})


def fail_and_ship(transport: Transport, control: ControlPlane | None, files: RunFiles | None,
                  message: str) -> None:
    """While failing: tell the coordinator why we leave, and ship what we wrote if it is
    still there to collect it."""
    from agentd.runtime.control import report_error

    report_error(transport, message, files.mode if files else None)
    if control is not None and files is not None and not files.shared:
        try:
            ship(files, control, 2 * control.timeout + 10.0)
        except Exception as exc:  # noqa: BLE001 - best effort while already failing
            log.warning("could not ship the files after the failure: %s", exc)
