"""What one process's transport counts: messages and bytes per plane, rejections and refusals
by reason, failed handshakes (and with whom); its rate-limited warnings; the totals written to
summary.json."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from agentd.runtime.msglog import MessageLog
from agentd.runtime.sentinel import DISCONNECTED, HandshakeEvent
from protocols import ProtocolError, process_name

log = logging.getLogger("agentd.runtime.transport")
PLANES = ("control", "env", "peer")
# Failed handshakes are counted per (plane, reason, address) for this many addresses; the
# rest under the address "other": a flood of connections cannot grow the summary.
MAX_PEER_KEYS = 64
# ... and written to the message log one by one up to this many, then every LOG_EVERY-th.
LOGGED_HANDSHAKES, LOG_EVERY = 1000, 1000


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
    disconnects: int = 0     # connections closed after their handshake (see Tally.handshake)
    # refusals that only the transport's last line of defence caught (agentd.runtime.layers)
    catch_all: int = 0


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
        """Count, log and warn about a failed handshake the sentinel has seen. A closed
        connection is only counted (``disconnects``): a client that leaves and one whose frame
        was over MAXMSGSIZE look the same to the socket monitor."""
        if ev.reason == DISCONNECTED:
            self.stats[ev.plane].disconnects += 1
            return
        failed = self.stats[ev.plane].handshakes_failed
        failed[ev.reason] += 1
        key = f"{ev.plane} {ev.reason} {_address(ev.peer) if ev.server else ev.peer}"
        if key not in self.handshake_peers and len(self.handshake_peers) >= MAX_PEER_KEYS:
            key = f"{ev.plane} {ev.reason} other"
        self.handshake_peers[key] += 1
        total = sum(failed.values())
        if msglog is not None and (total <= LOGGED_HANDSHAKES or total % LOG_EVERY == 0):
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
                      "handshakes_failed": dict(s.handshakes_failed),
                      "disconnects": s.disconnects, "catch_all": s.catch_all}
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
        total["catch_all"] = sum(s.catch_all for s in self.stats.values())
        total.update(meta)
        total["planes"] = planes
        return total


def _address(peer: str) -> str:
    """The host of ``host:port`` (``[v6]:port``): a client's every connection has its own
    port, and counting per port would count per connection."""
    host, sep, port = peer.rpartition(":")
    return host if sep and port.isdigit() and host else peer
