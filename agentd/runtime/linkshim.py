"""Test-only impaired links, as transport layers (``agentd.runtime.layers``): a delay and a loss.

The delay: outgoing messages of chosen planes are held for d ± j ms.

This machine's kernel has no netem, so link latency for multi-host tests is added here.
``AGENTD_TEST_LINK_DELAY="peer=20:5,env=5:0"`` holds each message sent on those planes for
d ± j milliseconds (uniform, seeded) and releases it when the transport next polls, in order
per socket (ZeroMQ keeps order on a connection, so a shim must too). It drops nothing: loss
belongs to the network (nftables on a host's input), where TCP recovers it as it would on a
real LAN. A run with the shim says so in every log's meta record and warns at start-up.
The loss (``DropShim``) is for loopback runs, where there is no network to lose anything.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections import deque
from typing import Any

from agentd.runtime.layers import Down, Layer, Parcel
from agentd.runtime.tally import Tally

log = logging.getLogger("agentd.runtime.transport")
ENV_VAR = "AGENTD_TEST_LINK_DELAY"


class DelayShim(Layer):
    """Holds outgoing frames per socket until they are due (just above the wire: a held
    message counts as sent, as it would on a slow link)."""

    on_receive = False

    def __init__(self, spec: str, seed: int = 0) -> None:
        self.delays: dict[str, tuple[float, float]] = {}
        for item in spec.split(","):
            plane, _, numbers = item.partition("=")
            delay, _, jitter = numbers.partition(":")
            try:
                self.delays[plane.strip()] = (float(delay) / 1e3, float(jitter or 0) / 1e3)
            except ValueError:
                raise ValueError(f"{ENV_VAR}={spec!r}: expected plane=DELAY_MS[:JITTER_MS],...")
        self.spec = spec
        self._rng = random.Random(seed)
        self._queues: dict[Any, deque] = {}

    @classmethod
    def from_env(cls, seed: int = 0) -> DelayShim | None:
        spec = os.environ.get(ENV_VAR, "").strip()
        if not spec:
            return None
        log.warning("TEST-ONLY link delay active (%s): %s", ENV_VAR, spec)
        return cls(spec, seed)

    def meta(self) -> dict[str, Any]:
        return {"test_link_delay": self.spec}

    def send(self, batch: list[Parcel], down: Down) -> list[Parcel]:
        held = {id(p) for p in batch if self.hold(p.link.plane, p.link.sock, (down, p))}
        if not held:
            return down(batch)
        gone = {id(p) for p in down([p for p in batch if id(p) not in held])} | held
        return [p for p in batch if id(p) in gone]

    def due(self) -> float | None:
        return self.release(lambda down, p: down([p]))

    def close(self) -> None:
        self.release(lambda down, p: down([p]), everything=True)

    def hold(self, plane: str, sock: Any, item: tuple) -> bool:
        """Queue ``item`` if this plane is delayed; False means send it now."""
        delay = self.delays.get(plane)
        if delay is None:
            return False
        queue = self._queues.setdefault(sock, deque())
        due = time.monotonic() + max(0.0, delay[0] + self._rng.uniform(-delay[1], delay[1]))
        if queue and queue[-1][0] > due:
            due = queue[-1][0]            # never overtake an earlier message on this socket
        queue.append((due, item))
        return True

    def release(self, send: Any, everything: bool = False) -> float | None:
        """Send every due item (all with ``everything``); seconds until the next is due."""
        now, soonest = time.monotonic(), None
        for queue in self._queues.values():
            while queue and (everything or queue[0][0] <= now):
                send(*queue.popleft()[1])
            if queue:
                wait = queue[0][0] - now
                soonest = wait if soonest is None else min(soonest, wait)
        return soonest


DROP_VAR = "AGENTD_TEST_LINK_DROP"


class DropShim(Layer):
    """A test-only lossy link on loopback: ``AGENTD_TEST_LINK_DROP="0-1@30-60,2-3@5-9"`` loses
    every peer message between agents 0 and 1 (both ways) of steps 30 <= t < 60. The sender
    logs what it sent, the receiver never sees it: a link that went down, not a schedule the
    agents know about. Counted as ``test_link_drop`` in the sender's refused_out."""

    on_receive = False

    def __init__(self, spec: str, tally: Tally | None = None) -> None:
        self.spec = spec
        self.tally = tally
        self.rules: list[tuple[frozenset[int], int, int]] = []
        for item in spec.split(","):
            try:
                edge, _, steps = item.strip().partition("@")
                i, j = (int(v) for v in edge.split("-"))
                start, stop = (int(v) for v in steps.split("-"))
            except ValueError:
                raise ValueError(f"{DROP_VAR}={spec!r}: expected I-J@FROM-TO,...") from None
            self.rules.append((frozenset((i, j)), start, stop))

    @classmethod
    def from_env(cls, tally: Tally) -> DropShim | None:
        spec = os.environ.get(DROP_VAR, "").strip()
        if not spec:
            return None
        log.warning("TEST-ONLY link loss active (%s): %s", DROP_VAR, spec)
        return cls(spec, tally)

    def meta(self) -> dict[str, Any]:
        return {"test_link_drop": self.spec}

    def send(self, batch: list[Parcel], down: Down) -> list[Parcel]:
        """The lost messages count as sent (the sender logs them) but never reach the wire."""
        lost = {id(p) for p in batch
                if p.link.plane == "peer" and self.drops(p.src, p.dst, p.step)}
        if not lost:
            return down(batch)
        if self.tally is not None:
            self.tally.stats["peer"].refused_out["test_link_drop"] += len(lost)
        gone = {id(p) for p in down([p for p in batch if id(p) not in lost])} | lost
        return [p for p in batch if id(p) in gone]

    def drops(self, src: int, dst: int, step: int) -> bool:
        return any(edge == {src, dst} and start <= step < stop
                   for edge, start, stop in self.rules)
