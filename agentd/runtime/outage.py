"""What a process keeps for the coordinator while it is unreachable, and sends once it is back.

The coordinator is off the data plane, so its outage does not stop a process: its reports
wait in a bounded queue (the oldest dropped and counted past ``QUEUE_MAX``), and the latest
reports the coordinator counts once (``RESEND``) are kept, to be sent again to a coordinator
resumed from its journal (a new *epoch* in its heartbeats): those in flight when it died died
with it, and it drops what it had already counted.
"""

from __future__ import annotations

from collections import deque
from typing import Any

QUEUE_MAX = 4096
RESEND = frozenset({"episodes", "env_restarted", "restarted", "bye"})
RESEND_MAX = 1024

Report = tuple[str, dict[str, Any], int]     # kind, body, step


class Outbox:
    """One process's side of the coordinator's outages; ``counts`` goes into its bye."""

    def __init__(self) -> None:
        self.since: float | None = None     # when the coordinator was last heard, in an outage
        self.queued: deque[Report] = deque()
        self.recent: deque[Report] = deque(maxlen=RESEND_MAX)
        self.epoch = 0                      # the coordinator's, from its heartbeats
        self.counts = {"outages": 0, "outage_s": 0.0, "queued": 0, "dropped": 0, "resent": 0}

    def hold(self, kind: str, body: dict[str, Any], step: int) -> bool:
        """Keep a report that may have to go again; True if it waits (an outage; heartbeats
        still go to the socket, so a resumed coordinator learns at once who is there)."""
        if kind in RESEND:
            self.recent.append((kind, body, step))
        if self.since is None or kind == "heartbeat":
            return False
        if len(self.queued) >= QUEUE_MAX:
            self.queued.popleft()
            self.counts["dropped"] += 1
        self.queued.append((kind, body, step))
        self.counts["queued"] += 1
        return True

    def begin(self, last_heard: float) -> None:
        self.since = last_heard
        self.counts["outages"] += 1

    def end(self, now: float, epoch: int | None) -> list[Report]:
        """The coordinator is heard again: what to send now, in order (a new epoch gets the
        latest counted reports again, each once)."""
        if self.since is not None:
            self.counts["outage_s"] = round(self.counts["outage_s"] + now - self.since, 3)
            self.since = None
        resend = []
        if epoch is not None and epoch != self.epoch:
            resend = list(self.recent)
            self.counts["resent"] += len(resend)
            self.epoch = epoch
        queued, self.queued = list(self.queued), deque()
        seen: set[int] = set()
        out = []
        for report in resend + queued:
            if id(report[1]) not in seen:     # queued and resent: once is enough
                seen.add(id(report[1]))
                out.append(report)
        return out
