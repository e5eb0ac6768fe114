"""The envelope: one ZeroMQ frame ``u16 header length | header map | body map`` (msgpack).

Header: ``{"v": version, "k": kind, "s": src, "d": dst, "t": step, "q": seq}``, encoded and
decoded by msgspec as a typed struct: the field types and ranges are checked while it is
decoded, in C (``v`` an int, never 1.0 or True; ``k`` a str of at most 64 characters; ``s``,
``d`` int32; ``t``, ``q`` int64; no other key). The length prefix lets a receiver validate the
header before it decodes the body; one frame instead of two saves a socket call per message
on the hot path. The two hot kinds (``act``, ``step``) travel in fixed binary layouts instead
(``protocols.fixed``: prefix 0xFFFF, struct header, raw arrays), which decode to the same
header and body.

Version 2: the msgpack envelope is byte for byte version 1's but for ``v``; the fixed layout
of ``step`` changed (``protocols.fixed``). A live process accepts version 2 only; the message
log reader (``READABLE``) reads both, so the logs of earlier runs still replay.
Process ids: agents 0..N-1, the coordinator -1, the environment server -2, a process not yet
admitted -3.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec

from protocols import fixed
from protocols.codec import Codec
from protocols.errors import MalformedFrame
from protocols.kinds import lookup

VERSION = fixed.VERSION
READABLE = (1, 2)      # the versions a message log may hold
FIXED_KINDS = frozenset(fixed.CODES)
is_fixed = fixed.is_fixed
COORDINATOR, ENVSERVER, UNASSIGNED = -1, -2, -3
HEADER_KEYS = ("v", "k", "s", "d", "t", "q")
_HLEN = struct.Struct("<H")
MAX_KIND_LEN = 64
_I32 = Annotated[int, msgspec.Meta(ge=-(1 << 31), le=(1 << 31) - 1)]
_I64 = Annotated[int, msgspec.Meta(ge=-(1 << 63), le=(1 << 63) - 1)]


class Header(msgspec.Struct, forbid_unknown_fields=True):
    """The msgpack header, as it travels (a map with these keys, in this order)."""

    v: int
    k: Annotated[str, msgspec.Meta(max_length=MAX_KIND_LEN)]
    s: _I32
    d: _I32
    t: _I64
    q: _I64


_HEADER_ENCODER = msgspec.msgpack.Encoder()
_HEADER_DECODER = msgspec.msgpack.Decoder(Header)


def process_name(pid: int) -> str:
    return {COORDINATOR: "coordinator", ENVSERVER: "envserver",
            UNASSIGNED: "unassigned"}.get(pid, f"agent {pid}")


@dataclass(slots=True)
class Message:
    """A decoded, validated message."""

    kind: str
    src: int
    dst: int
    step: int
    seq: int
    body: dict[str, Any]
    nbytes: int = 0


def encode(codec: Codec, kind: str, src: int, dst: int, step: int, seq: int,
           body: dict[str, Any], check: bool = False) -> bytes:
    """The frame of one message. ``check``: a kind with a fixed layout has its body checked
    against its schema here (SchemaMismatch), where the layout's verdicts are kept; the guard
    checks every other kind before it is encoded."""
    frame = fixed.encode_fixed(kind, src, dst, step, seq, body, check)
    if frame is not None:
        return frame
    if check and kind in fixed.CODES:
        lookup(kind).check_body(body)
    header = _HEADER_ENCODER.encode(Header(VERSION, kind, src, dst, step, seq))
    return _HLEN.pack(len(header)) + header + codec.pack(body)


def split(frame: bytes) -> tuple[memoryview, memoryview]:
    """The header and body parts of a frame (no decoding)."""
    if len(frame) < 3:
        raise MalformedFrame(f"frame of {len(frame)} bytes is too short for an envelope")
    if fixed.is_fixed(frame):        # a short header is refused by fixed.decode_head
        view = memoryview(frame)
        return view[:fixed.HEAD.size], view[fixed.HEAD.size:]
    (hlen,) = _HLEN.unpack_from(frame)
    if hlen < 1 or 2 + hlen >= len(frame):
        raise MalformedFrame("header length prefix does not fit the frame")
    view = memoryview(frame)
    return view[2:2 + hlen], view[2 + hlen:]


def decode_header(codec: Codec, part: bytes | memoryview,
                  versions: tuple[int, ...] = (VERSION,)) -> dict[str, Any]:
    """The header map, its field types checked exactly: ``v`` one of ``versions`` (an int, not
    1.0, not True), ``k`` a short str, ``s``/``d`` int32 and ``t``/``q`` int64 (the fixed
    layout's widths), never a bool."""
    if fixed.is_fixed(part):
        return fixed.decode_head(part, versions)
    try:
        h = _HEADER_DECODER.decode(part)
    except msgspec.ValidationError as exc:
        raise MalformedFrame(f"header is not a map with keys v, k, s, d, t, q of their "
                             f"types: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - garbage raises DecodeError, UnicodeDecodeError...
        raise MalformedFrame(f"header is not valid msgpack: {type(exc).__name__}: "
                             f"{exc}") from None
    if h.v not in versions:
        raise MalformedFrame(f"protocol version {h.v!r:.40}, expected {VERSION}")
    return {"v": h.v, "k": h.k, "s": h.s, "d": h.d, "t": h.t, "q": h.q}


def decode_body(codec: Codec, head: bytes | memoryview, part: bytes | memoryview,
                max_objects: int | None = None) -> Any:
    """The body of a frame whose header ``head`` has been decoded (and checked);
    ``max_objects``: see ``Codec.unpack``."""
    if fixed.is_fixed(head):
        return fixed.decode_body(fixed.KIND_OF[head[3]], part, head[2])
    return codec.unpack(part, max_objects)
