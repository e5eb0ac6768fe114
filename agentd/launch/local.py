"""Local launcher: starts the coordinator, the env server and the agent processes on this
machine, waits for the run, and stops every child it started (by PID) however the run ends.

Children run in their own sessions, so Ctrl-C reaches only the launcher, which then asks the
coordinator to stop the run in order (forwarding the signal) and cleans up whatever is left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from agentd.algorithms import load_learner_class
from agentd.config import RunConfig
from agentd.configfile import to_toml
from agentd.launch.precheck import precheck
from agentd.launch.supervisor import LaunchError, Supervisor
from agentd.plan import RunPlan, plan
from agentd.runtime.keys import new_keys

__all__ = ["LaunchError", "Launcher", "LocalChild"]


class LocalChild:
    """A child process of this launcher, as the supervisor sees it (``Member``)."""

    def __init__(self, name: str, start: Callable[[], subprocess.Popen],
                 again: Callable[[], subprocess.Popen] | None = None) -> None:
        self.name, self._start, self._again = name, start, again or start
        self.resumable = again is not None    # restarted another way (the coordinator)
        self.proc = start()

    def poll(self) -> tuple[int | None, int | None]:
        return self.proc.pid, self.proc.poll()

    def restart(self) -> None:
        self.proc = self._again()

    def send_signal(self, signum: int) -> None:
        try:
            os.kill(self.proc.pid, signum)
        except ProcessLookupError:
            pass


class Launcher:
    """Owns the child processes of one local run."""

    def __init__(self, config: RunConfig, quiet: bool = False, pin_cpus: bool = False,
                 secure: bool = False, run_plan: RunPlan | None = None,
                 catch_signals: bool = False) -> None:
        self.config = config
        self.plan = run_plan or plan(config)      # which processes to start
        self.quiet = quiet
        self.pin_cpus = pin_cpus
        self.secure = secure
        # True (the CLI): Ctrl-C and SIGTERM stop the run in order; else stop() does
        self.catch_signals = catch_signals
        self.checked = False
        self.run_dir = Path(config.run_dir)
        self.supervisor = Supervisor(self.run_dir, config.max_restarts)

    @property
    def children(self) -> list[LocalChild]:
        return self.supervisor.members      # type: ignore[return-value]

    def spawn(self, name: str, args: list[str], inherit: bool = False,
              again: list[str] | None = None) -> LocalChild:
        # Pinned, a process and its ZeroMQ I/O thread share a core, so waking the I/O thread on
        # each send stays on-core: +27% joint steps/s at n = 5 on a 2-core VM. (A restarted
        # child keeps its core.)
        pin = self._next_cpu() if self.pin_cpus else None
        child = LocalChild(name, lambda: self._popen(name, args, inherit, pin),
                           None if again is None else
                           lambda: self._popen(name, again, inherit, pin))
        self.supervisor.members.append(child)
        return child

    def _popen(self, name: str, args: list[str], inherit: bool, pin: int | None
               ) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "agentd", *args]
        preexec = (lambda: os.sched_setaffinity(0, {pin})) if pin is not None else None
        if inherit:
            proc = subprocess.Popen(cmd, start_new_session=True,
                                    preexec_fn=preexec)  # noqa: PLW1509 - no threads here
        else:   # the child keeps its own copy of the descriptor
            with open(self.run_dir / "logs" / f"{name}.out", "ab") as out:
                proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                        start_new_session=True,
                                        preexec_fn=preexec)  # noqa: PLW1509 - no threads here
        return proc

    def _next_cpu(self) -> int:
        """Round-robin over the CPUs this launcher may use, in start order."""
        cpus = sorted(os.sched_getaffinity(0))
        return cpus[len(self.children) % len(cpus)]

    def run(self) -> int:
        """Check the run (``precheck``: a ``ConfigError`` before anything starts), start its
        processes and wait for it; the coordinator's exit code."""
        self.check()
        (self.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        config_path = self.run_dir / "config.toml"
        config_path.write_text(to_toml(self.config))
        if self.catch_signals:
            self.supervisor.catch_signals()
        try:
            security = self._security_flags()
            marker = self.run_dir / "coordinator.json"
            marker.unlink(missing_ok=True)     # an earlier run's endpoint is not this one's
            coord = self.spawn("coordinator", [
                "coordinator", "--config", str(config_path), *security,
                "--bind", f"tcp://{self.config.host}:*", *(["--quiet"] if self.quiet else [])],
                inherit=True, again=["coordinator", "--resume", str(self.run_dir), *security,
                                     *(["--quiet"] if self.quiet else [])])
            # all start at once and import while the coordinator starts (~0.5 s of the
            # start-up); they read its endpoint from coordinator.json once it is written
            # a process (first start or restart) waits for the coordinator as long as the
            # run carries on without it: a restart during an outage finds it resumed
            wait = max(self.config.join_timeout, self.config.coordinator_timeout)
            joining = ["--join", f"@{marker}", "--bind", f"tcp://{self.config.host}:*",
                       "--join-timeout", f"{wait:g}", *security]
            self.spawn("envserver", ["envserver", *joining])
            preload = ["--preload-torch"] if load_learner_class(self.config.algo).needs_torch \
                else []
            for i in range(self.plan.n_procs):
                self.spawn(f"agent-{i}", ["agent", *joining, "--id", str(i), *preload])
            self.supervisor.wait_endpoint(coord, timeout=30.0)
            return self.supervisor.wait(coord)
        finally:
            self.supervisor.cleanup()

    def check(self) -> None:
        """``precheck`` the run, once: a ``ConfigError`` before anything starts."""
        if not self.checked:
            precheck(self.config, self.plan)
            self.checked = True

    def stop(self, signum: int = signal.SIGINT) -> None:
        """Ask the run to stop in order, as Ctrl-C does (safe from another thread)."""
        self.supervisor.stop_signal = signum

    def _security_flags(self) -> list[str]:
        """--secure: a throw-away key directory inside the run directory, for every child."""
        if self.secure:
            keys = self.run_dir / "keys"
            new_keys(keys, self.plan.n_procs)
            return ["--keys", str(keys)]
        return ["--insecure"] if self.config.insecure else []
