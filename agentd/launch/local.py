"""Local launcher: starts the coordinator, the env server and the agent processes on this
machine, waits for the run, and stops every child it started (by PID) however the run ends.

Children run in their own sessions, so Ctrl-C reaches only the launcher, which then asks the
coordinator to stop the run in order (forwarding the signal) and cleans up whatever is left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from agentd.algorithms import load_learner_class
from agentd.config import RunConfig, process_count, to_toml
from agentd.runtime.keys import new_keys


class LaunchError(RuntimeError):
    """The run could not be started."""


class Launcher:
    """Owns the child processes of one local run."""

    def __init__(self, config: RunConfig, quiet: bool = False, pin_cpus: bool = False,
                 secure: bool = False) -> None:
        self.config = config
        self.quiet = quiet
        self.pin_cpus = pin_cpus
        self.secure = secure
        self.run_dir = Path(config.run_dir)
        self.children: list[tuple[str, subprocess.Popen]] = []
        self.args: dict[str, list[str]] = {}      # how each child was started
        self.restarts: dict[str, int] = {}
        self._stop_signal: int | None = None

    def spawn(self, name: str, args: list[str], inherit: bool = False) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "agentd", *args]
        self.args[name] = args
        # Pinned, a process and its ZeroMQ I/O thread share a core, so waking the I/O thread on
        # each send stays on-core: +27% joint steps/s at n = 5 on a 2-core VM.
        pin = self._next_cpu() if self.pin_cpus else None
        preexec = (lambda: os.sched_setaffinity(0, {pin})) if pin is not None else None
        if inherit:
            proc = subprocess.Popen(cmd, start_new_session=True,
                                    preexec_fn=preexec)  # noqa: PLW1509 - no threads here
        else:   # the child keeps its own copy of the descriptor
            with open(self.run_dir / "logs" / f"{name}.out", "ab") as out:
                proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                        start_new_session=True,
                                        preexec_fn=preexec)  # noqa: PLW1509 - no threads here
        self.children.append((name, proc))
        return proc

    def _next_cpu(self) -> int:
        """Round-robin over the CPUs this launcher may use, in start order."""
        cpus = sorted(os.sched_getaffinity(0))
        return cpus[len(self.children) % len(cpus)]

    def run(self) -> int:
        (self.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        config_path = self.run_dir / "config.toml"
        config_path.write_text(to_toml(self.config))
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)
        try:
            security = self._security_flags()
            marker = self.run_dir / "coordinator.json"
            marker.unlink(missing_ok=True)     # an earlier run's endpoint is not this one's
            coord = self.spawn("coordinator", [
                "coordinator", "--config", str(config_path), *security,
                "--bind", f"tcp://{self.config.host}:*", *(["--quiet"] if self.quiet else [])],
                inherit=True)
            # all start at once and import while the coordinator starts (~0.5 s of the
            # start-up); they read its endpoint from coordinator.json once it is written
            joining = ["--join", f"@{marker}", "--bind", f"tcp://{self.config.host}:*",
                       *security]
            self.spawn("envserver", ["envserver", *joining])
            preload = ["--preload-torch"] if load_learner_class(self.config.algo).needs_torch \
                else []
            for i in range(process_count(self.config)):
                self.spawn(f"agent-{i}", ["agent", *joining, "--id", str(i), *preload])
            self._wait_endpoint(coord)
            return self._wait(coord)
        finally:
            self.cleanup()

    def _security_flags(self) -> list[str]:
        """--secure: a throw-away key directory inside the run directory, for every child."""
        if self.secure:
            keys = self.run_dir / "keys"
            new_keys(keys, process_count(self.config))
            return ["--keys", str(keys)]
        return ["--insecure"] if self.config.insecure else []

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._stop_signal = signum

    def _wait_endpoint(self, coord: subprocess.Popen, timeout: float = 30.0) -> str:
        path = self.run_dir / "coordinator.json"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if path.exists():
                return json.loads(path.read_text())["endpoint"]
            if coord.poll() is not None:
                raise LaunchError(f"the coordinator exited with code {coord.returncode} "
                                  "before it was ready")
            if self._stop_signal:
                raise LaunchError("interrupted while starting")
            time.sleep(0.02)
        raise LaunchError(f"the coordinator did not start within {timeout:.0f} s")

    def _wait(self, coord: subprocess.Popen) -> int:
        forwarded = False
        while coord.poll() is None:
            if self._stop_signal and not forwarded:
                coord.send_signal(self._stop_signal)   # the coordinator stops the run in order
                forwarded = True
            if not forwarded:
                self._supervise()
            time.sleep(0.05)
        return coord.returncode

    def _supervise(self) -> None:
        """Restart an agent or the env server that died (up to max_restarts each): it rejoins
        the coordinator, which lets it in under its old id. A clean exit (0) is the end of
        its run, never restarted."""
        for k, (name, proc) in enumerate(self.children):
            code = proc.poll()
            if name == "coordinator" or code in (None, 0):
                continue
            if self.restarts.get(name, 0) >= self.config.max_restarts:
                continue
            self.restarts[name] = self.restarts.get(name, 0) + 1
            print(f"agentd launch: {name} (pid {proc.pid}) exited with code {code}; "
                  f"restart {self.restarts[name]} of {self.config.max_restarts}",
                  file=sys.stderr, flush=True)
            self.children.pop(k)
            self.spawn(name, self.args[name])
            return     # the list changed: look again on the next round

    def cleanup(self, grace: float = 3.0) -> None:
        """Wait briefly for children to leave, then terminate, then kill, each by its PID."""
        deadline = time.monotonic() + grace
        for _, proc in self.children:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for sig in (signal.SIGTERM, signal.SIGKILL):
            alive = [p for _, p in self.children if p.poll() is None]
            for proc in alive:
                try:
                    os.kill(proc.pid, sig)
                except ProcessLookupError:
                    pass
            for proc in alive:
                try:
                    proc.wait(timeout=2.0)
                except subprocess.TimeoutExpired:
                    pass
