"""What one process's transport counts: messages and bytes per plane, rejections and refusals
by reason, failed handshakes (and with whom); its rate-limited warnings; the totals written to
summary.json."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from agentd.runtime.msglog import MessageLog
from agentd.runtime.sentinel import HandshakeEvent
from protocols import ProtocolError, process_name

log = logging.getLogger("agentd.runtime.transport")
PLANES = ("control", "env", "peer")


@dataclass
class PlaneStats:
    """Counters for one plane of one process."""

    msgs_sent: int = 0
    msgs_recv: int = 0
    bytes_sent: int = 0
    bytes_recv: int = 0
    rejected: Counter = field(default_factory=Counter)
    refused_out: Counter = field(default_factory=Counter)
    handshakes_failed: Counter = field(default_factory=Counter)


class Tally:
    """The counters of one process, by plane."""

    def __init__(self, me: int) -> None:
        self.me = me
        self.stats = {plane: PlaneStats() for plane in PLANES}
        self.handshake_peers: Counter = Counter()   # "plane reason peer" -> count
        self._warned: Counter = Counter()

    def warn(self, what: str, exc: ProtocolError, reason: str | None = None) -> None:
        """The first 5 of each reason, then every 1000th: a flood does not flood stderr."""
        reason = reason or exc.reason
        self._warned[reason] += 1
        count = self._warned[reason]
        if count <= 5 or count % 1000 == 0:
            log.warning("%s %s: %s: %s (%d so far)", process_name(self.me), what, reason,
                        exc, count)

    def handshake(self, ev: HandshakeEvent, msglog: MessageLog | None) -> None:
        """Count, log and warn about a failed handshake the sentinel has seen."""
        self.stats[ev.plane].handshakes_failed[ev.reason] += 1
        self.handshake_peers[f"{ev.plane} {ev.reason} {ev.peer}"] += 1
        if msglog is not None:
            msglog.record("hs", ev.plane, [ev.peer.encode(), ev.detail.encode()], ev.reason)
        who = f"a client at {ev.peer}" if ev.server else f"our connection to {ev.peer}"
        self.warn(f"{ev.plane} plane: handshake with {who} failed", ProtocolError(ev.detail),
                  ev.reason)

    def handshake_counts(self) -> dict[str, dict[str, int]]:
        """Failed handshakes so far, by plane and reason (planes without any left out)."""
        return {p: dict(s.handshakes_failed) for p, s in self.stats.items()
                if s.handshakes_failed}

    def summary(self, meta: dict[str, Any]) -> dict[str, Any]:
        """Totals and per-plane counters, as written to summary.json."""
        planes = {p: {"msgs_sent": s.msgs_sent, "msgs_recv": s.msgs_recv,
                      "bytes_sent": s.bytes_sent, "bytes_recv": s.bytes_recv,
                      "rejected": dict(s.rejected), "refused_out": dict(s.refused_out),
                      "handshakes_failed": dict(s.handshakes_failed)}
                  for p, s in self.stats.items()}
        total: dict[str, Any] = {k: sum(planes[p][k] for p in PLANES)
                                 for k in ("msgs_sent", "msgs_recv", "bytes_sent", "bytes_recv")}
        rejected: Counter = Counter()
        handshakes: Counter = Counter()
        for s in self.stats.values():
            rejected.update(s.rejected)
            handshakes.update(s.handshakes_failed)
        total["rejected"] = dict(rejected)
        total["handshakes_failed"] = dict(handshakes)
        total["handshake_peers"] = dict(self.handshake_peers)
        total.update(meta)
        total["planes"] = planes
        return total
