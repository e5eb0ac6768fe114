"""The one supervisor of a launched run, shared by the local and the Ray launcher.

A launcher starts the processes its own way (children of this process, or children of Ray
actors on the cluster's nodes) and hands each to the supervisor as a ``Member``: something
that can be polled, signalled and started again. The supervisor does the rest the same way
for both: it waits for the coordinator's endpoint, waits for the run while restarting an agent
or the env server that died (up to ``max_restarts`` each; a clean exit is the end of its run)
and a coordinator that died before writing summary.json (``--resume``, up to
``max(max_restarts, COORDINATOR_RESTARTS)`` times: it keeps no learning state of its own),
forwards Ctrl-C / SIGTERM to the coordinator so it stops the run in order, and at the end
stops whatever is left -- a grace period, then SIGTERM, then SIGKILL, each by PID.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

COORDINATOR_RESTARTS = 3


class LaunchError(RuntimeError):
    """The run could not be started."""


class Unreachable(Exception):
    """A member that cannot be asked right now (a Ray actor that is lost or slow): skipped."""


class Member(Protocol):
    """One process of the run, as the supervisor sees it."""

    name: str

    def poll(self) -> tuple[int | None, int | None]:
        """(pid, exit code or None while it runs); raises ``Unreachable``."""
        ...

    def restart(self) -> None:
        """Start it again after it died (it rejoins the run under its id)."""
        ...

    def send_signal(self, signum: int) -> None:
        ...


class Supervisor:
    """Watches the members of one run: ``members[0]`` is the coordinator."""

    def __init__(self, run_dir: Path, max_restarts: int, tick: float = 0.05,
                 look_every: float = 0.0) -> None:
        self.run_dir = run_dir
        self.max_restarts = max_restarts
        self.tick = tick                  # seconds between two looks at the coordinator
        self.look_every = look_every      # ... and between two looks at the others
        self.members: list[Member] = []
        self.restarts: dict[str, int] = {}
        self.stop_signal: int | None = None

    def catch_signals(self) -> None:
        """Ctrl-C and SIGTERM reach the launcher only (the children have their own sessions):
        remembered here, forwarded to the coordinator by ``wait``."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stop_signal = signum

    def wait_endpoint(self, coord: Member, timeout: float, poll_s: float = 0.02,
                      output: Path | None = None) -> str:
        """The coordinator's control endpoint, once it has written coordinator.json
        (``output``: where its output goes, named if it exits first)."""
        path = self.run_dir / "coordinator.json"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if path.exists():
                return json.loads(path.read_text())["endpoint"]
            _, code = coord.poll()
            if code is not None:
                see = f" (see {output})" if output is not None else ""
                raise LaunchError(f"the coordinator exited with code {code} before it was "
                                  f"ready{see}")
            if self.stop_signal:
                raise LaunchError("interrupted while starting")
            time.sleep(poll_s)
        raise LaunchError(f"the coordinator did not start within {timeout:.0f} s")

    def wait(self, coord: Member, each: Callable[[], None] | None = None) -> int:
        """Until the coordinator ends (its exit code is the run's); ``each`` runs every tick
        (the Ray launcher echoes the coordinator's output). The others are supervised until
        a stop signal has been forwarded: from then on the coordinator ends the run."""
        forwarded, next_look = False, 0.0
        started = time.time()
        while True:
            pid, code = coord.poll()
            if each is not None:
                each()
            if code is not None and not forwarded and getattr(coord, "resumable", False) \
                    and self._resumable(code, started):
                self.restarts[coord.name] = self.restarts.get(coord.name, 0) + 1
                print(f"agentd launch: the coordinator (pid {pid}) exited with code {code} "
                      f"before the run ended; resuming it from its journal (restart "
                      f"{self.restarts[coord.name]} of {self._coordinator_restarts()})",
                      file=sys.stderr, flush=True)
                coord.restart()
                continue
            if code is not None:
                return code
            if self.stop_signal and not forwarded:
                coord.send_signal(self.stop_signal)   # the coordinator stops the run in order
                forwarded = True
            if not forwarded and time.monotonic() >= next_look:
                self.supervise()
                next_look = time.monotonic() + self.look_every
            time.sleep(self.tick)

    def _coordinator_restarts(self) -> int:
        return max(self.max_restarts, COORDINATOR_RESTARTS)

    def _resumable(self, code: int, started: float) -> bool:
        """A coordinator that died (not one that ended the run: it writes summary.json
        first; nor one that never started it: it had no journal) and has restarts left."""
        summary = self.run_dir / "summary.json"
        ended = summary.exists() and summary.stat().st_mtime >= started - 1.0
        journaled = (self.run_dir / "journal.jsonl").exists()
        return code != 0 and journaled and not ended and \
            self.restarts.get("coordinator", 0) < self._coordinator_restarts()

    def supervise(self) -> None:
        """Restart an agent or the env server that died (up to max_restarts each): it rejoins
        the coordinator, which lets it in under its old id. A clean exit (0) is the end of
        its run, never restarted; an unreachable member is skipped (the coordinator's
        heartbeats decide the run's fate)."""
        for member in self.members[1:]:
            try:
                pid, code = member.poll()
            except Unreachable:
                continue
            if code in (None, 0) or self.restarts.get(member.name, 0) >= self.max_restarts:
                continue
            self.restarts[member.name] = self.restarts.get(member.name, 0) + 1
            print(f"agentd launch: {member.name} (pid {pid}) exited with code {code}; "
                  f"restart {self.restarts[member.name]} of {self.max_restarts}",
                  file=sys.stderr, flush=True)
            member.restart()

    def cleanup(self, grace: float = 3.0, poll_s: float = 0.02) -> None:
        """Wait briefly for every member to leave, then SIGTERM, then SIGKILL the ones still
        there, each by its PID (the member's own)."""
        if not self._wait_gone(self.members, grace, poll_s):
            for sig in (signal.SIGTERM, signal.SIGKILL):
                alive = [m for m in self.members if self._alive(m)]
                for member in alive:
                    member.send_signal(sig)
                if self._wait_gone(alive, 2.0, poll_s):
                    break

    def _wait_gone(self, members: list[Member], timeout: float, poll_s: float) -> bool:
        deadline = time.monotonic() + timeout
        while any(self._alive(m) for m in members):
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll_s)
        return True

    @staticmethod
    def _alive(member: Member) -> bool:
        try:
            return member.poll()[1] is None
        except Unreachable:
            return False      # nothing to be done for it from here
