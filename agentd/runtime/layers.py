"""The transport's pipeline: layers composed around the plain sockets, each with a send and a
receive side (Flower's mods are the model: ``make_ffn(ffn, mods)``).

Layers are listed from the process's side down to the wire::

    guard -> [dp] -> codec -> boundary -> log -> [drop shim] -> tally -> [delay shim] -> wire

A send runs down the list: ``layer.send(batch, down)`` gets a burst of ``Parcel``s, passes on
(to ``down``) those it lets through and returns the ones that went out. A receive runs up it:
``layer.receive(arrival, up)`` gets the frames off the wire and returns ``up(arrival)``'s
message, raising ``ProtocolError`` for a refusal (which the layers below count and log). A
layer that does nothing on one side says so (``on_send`` / ``on_receive`` False) and is left
out of that side's chain: a receive costs only the layers that act on it.

The layers every process has live here; the DP layer lives in ``agentd.privacy.dp`` and the
test-only link shims in ``agentd.runtime.linkshim``. Which layers a run has is decided once,
by whoever knows the run (``agentd.agent.pipeline`` for an agent).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from agentd.runtime.msglog import MessageLog
from agentd.runtime.sockets import Link
from agentd.runtime.tally import Tally
from protocols import REGISTRY, Codec, Guard, Message, ProtocolError, encode
from protocols.errors import Oversize
from protocols.guard import DEFAULT_MAX_BYTES

# a refused frame is kept in the log up to 4 KiB: enough to inspect, not to fill the disk
REJECTED_KEPT = 4096


class Unhandled(ProtocolError):
    """A receive path raised something other than a refusal: the boundary's last line of
    defence turned it into one (and counted that it had to)."""

    reason = "unhandled"


@dataclass
class Parcel:
    """One message on its way out: what the process sends, and what the layers add to it."""

    link: Link
    kind: str
    src: int
    dst: int
    body: dict[str, Any]
    step: int = 0
    to: bytes | None = None                       # a ROUTER's routing id of the receiver
    frame: bytes = b""                            # set by the codec
    first: bool = False                           # logged (and flushed) before it leaves
    fallback: Callable[[], Link] | None = None    # asked for another link if a local one fails


@dataclass
class Arrival:
    """One message as it came off a socket: frames without the routing id, the routing id,
    and (secure mode) the process whose key authenticated it."""

    link: Link
    frames: list[bytes]
    identity: bytes | None = None
    sender: int | None = None


Down = Callable[[list[Parcel]], list[Parcel]]
Up = Callable[[Arrival], Message]


class Layer:
    """A pass-through on both sides; a layer overrides the side it acts on."""

    on_send: ClassVar[bool] = True
    on_receive: ClassVar[bool] = True

    def send(self, batch: list[Parcel], down: Down) -> list[Parcel]:
        return down(batch)

    def receive(self, arrival: Arrival, up: Up) -> Message:
        return up(arrival)

    def meta(self) -> dict[str, Any]:
        """What every log's meta record and summary says about this layer (test shims)."""
        return {}

    def due(self) -> float | None:
        """Seconds until something this layer holds is due to go out (None: nothing held);
        called on every poll, so held messages leave in time."""
        return None

    def close(self) -> None:
        """The transport is closing: send or release what the layer still holds."""


def chain_send(layers: Sequence[Layer], wire: Down) -> Down:
    """``wire`` wrapped in the send sides of ``layers`` (listed process side first)."""
    down = wire
    for layer in reversed([lay for lay in layers if lay.on_send]):
        down = _bind_send(layer, down)
    return down


def chain_receive(layers: Sequence[Layer], top: Up) -> Up:
    """``top`` wrapped in the receive sides of ``layers`` (listed process side first): the
    returned function is the wire's end, which an arrival enters."""
    up = top
    for layer in [lay for lay in layers if lay.on_receive]:
        up = _bind_receive(layer, up)
    return up


def _bind_send(layer: Layer, down: Down) -> Down:
    return lambda batch: layer.send(batch, down)


def _bind_receive(layer: Layer, up: Up) -> Up:
    return lambda arrival: layer.receive(arrival, up)


def unreachable_top(arrival: Arrival) -> Message:
    """Above the guard there is nothing left to decode a message: a chain without a guard is
    a bug of whoever composed it."""
    raise RuntimeError("a transport pipeline needs a guard layer to turn frames into messages")


class GuardLayer(Layer):
    """The guard: what may be sent (a refused peer message is counted and skipped; a refused
    control or env message is our own bug and raises) and what is accepted."""

    def __init__(self, guard: Guard, tally: Tally) -> None:
        self.guard, self.tally = guard, tally

    def send(self, batch: list[Parcel], down: Down) -> list[Parcel]:
        passed = []
        for p in batch:
            try:
                self.guard.outgoing(p.kind, p.dst, p.body, p.link.plane, encoded_checked=True)
            except ProtocolError as exc:
                if p.link.plane != "peer":
                    raise
                self.tally.stats["peer"].refused_out[exc.reason] += 1
                self.tally.warn("refused to send", exc)
                continue
            passed.append(p)
        return down(passed)

    def receive(self, arrival: Arrival, up: Up) -> Message:
        return self.guard.incoming(arrival.frames, arrival.link.plane, arrival.identity,
                                   arrival.sender)


class Boundary(Layer):
    """The last line of defence on the receive side: anything the layers above it (everything
    that reads the frames: the guard, the run's policy layers) raise that is not a refusal
    becomes one (``unhandled``), logged and counted like any refusal below it, and counted in
    the plane's ``catch_all`` so a test can tell real validation from this net."""

    on_send = False

    def __init__(self, tally: Tally) -> None:
        self.tally = tally

    def receive(self, arrival: Arrival, up: Up) -> Message:
        try:
            return up(arrival)
        except ProtocolError:
            raise
        except Exception as exc:
            self.tally.stats[arrival.link.plane].catch_all += 1
            raise Unhandled(f"{type(exc).__name__}: {exc}") from exc


class CodecLayer(Layer):
    """Encodes each message into its frame with the next sequence number. An oversize control
    or env message is our own bug and raises; an oversize peer message is left to the
    receiver's guard to refuse and count."""

    on_receive = False

    def __init__(self, max_bytes: int, seq: int = 0) -> None:
        self.max_bytes = max_bytes
        self.codec = Codec()
        self.seq = seq       # the last sequence number used (a new guard's codec goes on)

    def send(self, batch: list[Parcel], down: Down) -> list[Parcel]:
        for p in batch:
            self.seq += 1
            p.frame = encode(self.codec, p.kind, p.src, p.dst, p.step, self.seq, p.body,
                             check=True)
            if len(p.frame) > self.max_bytes and p.link.plane != "peer":
                raise Oversize(oversize_advice(p.kind, len(p.frame), self.max_bytes))
        return down(batch)


class LogLayer(Layer):
    """The message log: what went out, what came in, what was refused and why."""

    def __init__(self, msglog: MessageLog | None) -> None:
        self.log = msglog

    def send(self, batch: list[Parcel], down: Down) -> list[Parcel]:
        log = self.log
        if log is not None:
            first = [p for p in batch if p.first and REGISTRY[p.kind].logged]
            for p in first:   # a process killed right after the send still has it logged
                log.record("out", p.link.plane, [p.frame])
            if first:
                log.flush()
        sent = down(batch)
        if log is not None:
            for p in sent:
                if not p.first and REGISTRY[p.kind].logged:
                    log.record("out", p.link.plane, [p.frame])
        return sent

    def receive(self, arrival: Arrival, up: Up) -> Message:
        try:
            msg = up(arrival)
        except ProtocolError as exc:
            if self.log is not None:
                self.log.record("rej", arrival.link.plane,
                                [f[:REJECTED_KEPT] for f in arrival.frames], exc.reason)
            raise
        if self.log is not None and REGISTRY[msg.kind].logged:
            self.log.record("in", arrival.link.plane, arrival.frames)
        return msg

    def close(self) -> None:
        """The log is complete: what follows is not logged."""
        if self.log is not None:
            self.log.close()
            self.log = None


class TallyLayer(Layer):
    """Messages and bytes per plane, and every refusal by reason (``agentd.runtime.tally``);
    a refused message ends here: counted, warned about (rate-limited), dropped."""

    def __init__(self, tally: Tally) -> None:
        self.tally = tally

    def send(self, batch: list[Parcel], down: Down) -> list[Parcel]:
        sent = down(batch)
        for p in sent:
            stats = self.tally.stats[p.link.plane]
            stats.msgs_sent += 1
            stats.bytes_sent += len(p.frame)
        return sent

    def receive(self, arrival: Arrival, up: Up) -> Message | None:  # type: ignore[override]
        stats = self.tally.stats[arrival.link.plane]
        try:
            msg = up(arrival)
        except ProtocolError as exc:
            stats.rejected[exc.reason] += 1
            self.tally.warn(f"rejected a {arrival.link.plane} message from "
                            f"{arrival.identity!r}", exc)
            return None
        stats.msgs_recv += 1
        stats.bytes_recv += msg.nbytes
        return msg


def oversize_advice(kind: str, size: int, cap: int) -> str:
    """What to tell a user whose control or env message would be refused as too large."""
    need = 1 << max(20, (size - 1).bit_length())
    smaller = (", or use fewer agents or smaller spaces" if kind in ("welcome", "env_ready")
               else "")
    if need > DEFAULT_MAX_BYTES:      # past the sockets' frame cap: no flag can carry it
        return (f"the '{kind}' message is {size:,} bytes, over the largest message a run can "
                f"carry ({DEFAULT_MAX_BYTES:,} bytes, the sockets' frame cap){smaller}")
    return (f"the '{kind}' message is {size:,} bytes, over the message size cap of {cap:,} "
            f"bytes; raise it with --max-msg-bytes {need} (or max_msg_bytes = {need} in the "
            f"config file){smaller}")
