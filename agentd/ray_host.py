"""The Ray actor that hosts one agentd process on its node (see ``agentd.ray_backend``).

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

from agentd.runfiles import MARKER

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the actor process goes away."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class ProcessHost:
    """One agentd process (coordinator, env server or agent) under a Ray actor."""

    def __init__(self, name: str, files: dict[str, tuple[str, int]], workdir: str | None) -> None:
        self.name = name
        if workdir is not None:
            Path(workdir).mkdir(parents=True, exist_ok=True)
        self.home = Path(tempfile.mkdtemp(prefix=f"agentd-{name}-", dir=workdir))
        os.chmod(self.home, 0o700)
        self.keys = self.home / "keys"
        self.keys.mkdir(mode=0o700)
        for filename, (text, mode) in files.items():
            path = self.keys / filename
            path.write_text(text)
            os.chmod(path, mode)
        self.proc: subprocess.Popen | None = None
        self._out = None

    def node_ip(self) -> str:
        import ray

        return ray.util.get_node_ip_address()

    def where(self) -> dict[str, object]:
        import ray

        return {"ip": self.node_ip(), "node_id": ray.get_runtime_context().get_node_id(),
                "pid": None if self.proc is None else self.proc.pid}

    def output_path(self, run_dir: str, run_id: str) -> str:
        """Where the child's output goes: the run directory itself when this node shares the
        coordinator's disk (as the local launcher does), else the actor's own directory (the
        process then ships its files to the coordinator when the run ends)."""
        try:
            shared = (Path(run_dir) / MARKER).read_text().strip() == run_id
        except OSError:
            shared = False
        return str(Path(run_dir) / "logs" / f"{self.name}.out") if shared \
            else str(self.home / f"{self.name}.stdout")

    def start(self, argv: list[str], out_path: str, cwd: str | None) -> int:
        """Start the child; ``{ip}``, ``{keys}`` and ``{home}`` in argv are this node's values."""
        values = {"ip": self.node_ip(), "keys": str(self.keys), "home": str(self.home)}
        args = [a.format(**values) if "{" in a else a for a in argv]
        self._out = open(out_path, "ab")  # noqa: SIM115 - held for the child's lifetime
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agentd", *args], stdout=self._out, stderr=subprocess.STDOUT,
            cwd=cwd or str(self.home), start_new_session=True,
            preexec_fn=_die_with_parent)  # noqa: PLW1509 - the actor starts no threads of its own here
        return self.proc.pid

    def poll(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

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
