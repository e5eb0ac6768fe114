"""The Ray actor that hosts one agentd process on its node (see ``agentd.launch.ray_backend``).

The actor is a thin supervisor: it writes the keys it was given into a private directory, starts
``python -m agentd ROLE --join ... --bind tcp://<this node's IP>:*`` as its child, and reports on
it. The child dies with the actor (``PR_SET_PDEATHSIG``), so a killed actor never leaves an
orphan process behind on its node.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from agentd.runtime.runfiles import MARKER

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the actor process goes away (a lost actor is a
    lost process, as a crash would be; the run's failure handling takes it from there)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class ProcessHost:
    """One agentd process (coordinator, env server or agent) under a Ray actor.

    The child is started in the constructor: when Ray restarts a dead actor (``max_restarts``)
    it runs the constructor again, so the process comes back with its actor, rejoins under its
    id with its key and, on the same node, finds its recovery checkpoints in the same
    directory (``<workdir>/agentd-<run tag>-<name>``)."""

    def __init__(self, name: str, files: dict[str, tuple[str, int]], workdir: str | None,
                 tag: str, argv: list[str], out: str | None, run: tuple[str, str] | None,
                 cwd: str | None, again: list[str] | None = None) -> None:
        self.name, self.argv, self.cwd, self.again = name, argv, cwd, again
        if again is not None and _reconstructed():   # (the coordinator: resumed, not anew)
            self.argv = again
        base = Path(workdir) if workdir is not None else Path(tempfile.gettempdir())
        self.home = base / f"agentd-{tag}-{name}"
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.keys = self.home / "keys"
        self.keys.mkdir(mode=0o700, exist_ok=True)
        for filename, (text, mode) in files.items():
            path = self.keys / filename
            path.write_text(text)
            os.chmod(path, mode)
        self.out_path = out if out is not None else self._output_path(run)
        self.proc: subprocess.Popen | None = None
        self._out = None
        self.starts = 0
        self._start()

    def node_ip(self) -> str:
        import ray

        return ray.util.get_node_ip_address()

    def where(self) -> dict[str, object]:
        import ray

        return {"ip": self.node_ip(), "node_id": ray.get_runtime_context().get_node_id(),
                "pid": None if self.proc is None else self.proc.pid, "actor_pid": os.getpid()}

    def _output_path(self, run: tuple[str, str] | None) -> str:
        """The run directory itself when this node shares the coordinator's disk (as the local
        launcher does), else the actor's own directory (the process then ships its files to
        the coordinator when the run ends)."""
        if run is not None:
            run_dir, run_id = run
            try:
                if (Path(run_dir) / MARKER).read_text().strip() == run_id:
                    return str(Path(run_dir) / "logs" / f"{self.name}.out")
            except OSError:
                pass
        return str(self.home / f"{self.name}.stdout")

    def _start(self) -> int:
        """Start the child; ``{ip}``, ``{keys}`` and ``{home}`` in argv are this node's values."""
        values = {"ip": self.node_ip(), "keys": str(self.keys), "home": str(self.home)}
        args = [a.format(**values) if "{" in a else a for a in self.argv]
        if self._out is None:
            self._out = open(self.out_path, "ab")  # noqa: SIM115 - held for the child's lifetime
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agentd", *args], stdout=self._out, stderr=subprocess.STDOUT,
            cwd=self.cwd or str(self.home), start_new_session=True,
            preexec_fn=_die_with_parent)  # noqa: PLW1509 - the actor starts no threads of its own here
        self.starts += 1
        return self.proc.pid

    def poll(self) -> tuple[int | None, int | None, int]:
        """(pid, exit code or None while it runs, how many times this actor started it)."""
        if self.proc is None:
            return None, None, self.starts
        return self.proc.pid, self.proc.poll(), self.starts

    def restart(self) -> int | None:
        """Start the child again after it died (the supervisor decided it may)."""
        if self.proc is not None and self.proc.poll() is None:
            return None
        if self.again is not None:
            self.argv = self.again
        return self._start()

    def send_signal(self, signum: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signum)

    def stop(self, grace: float) -> int | None:
        """Let the child leave by itself for ``grace`` seconds, then SIGTERM, then SIGKILL."""
        proc = self.proc
        if proc is not None:
            for sig in (None, signal.SIGTERM, signal.SIGKILL):
                if sig is not None and proc.poll() is None:
                    proc.send_signal(sig)
                try:
                    proc.wait(timeout=grace if sig is None else 2.0)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self._out is not None:
            self._out.close()
        shutil.rmtree(self.keys, ignore_errors=True)
        code = None if proc is None else proc.poll()
        if code == 0:   # its files are in the run directory (shared disk, or shipped)
            shutil.rmtree(self.home, ignore_errors=True)
        return code


def _reconstructed() -> bool:
    """True in an actor Ray restarted (its constructor runs again)."""
    import ray

    return bool(ray.get_runtime_context().was_current_actor_reconstructed)
