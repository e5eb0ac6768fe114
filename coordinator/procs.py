"""What the coordinator knows of a process that said hello, and how its loop ends a run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from protocols import UNASSIGNED, process_name


@dataclass
class Proc:
    """A process that said hello."""

    identity: bytes
    role: str
    pid: int
    host: str
    endpoint: str | None
    want_id: int | None
    last_seen: float
    hello_src: int = UNASSIGNED      # the src its hello carried (its id, in secure mode)
    id: int | None = None
    stats: dict[str, Any] | None = None
    handshakes: dict[str, Any] | None = None   # its latest report of failed handshakes
    failing: bool = False            # it reported an error: it may ship its files now
    security_reports: int = 0
    unheard: bool = False            # restored from the journal, not heard from since

    def name(self) -> str:
        who = process_name(self.id) if self.id is not None else self.role
        return f"{who} (pid {self.pid} on {self.host})"


class RunEnded(Exception):
    """Raised inside the loop to end the run with a status and a reason."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason
