"""The envelope: one ZeroMQ frame ``u16 header length | header map | body map`` (msgpack).

Header: ``{"v": version, "k": kind, "s": src, "d": dst, "t": step, "q": seq}``. The length
prefix lets a receiver validate the header before it decodes the body; one frame instead of
two saves a socket call per message on the hot path. The two hot kinds (``act``, ``step``)
travel in fixed binary layouts instead (``protocols.fixed``: prefix 0xFFFF, struct header,
raw arrays), which decode to the same header and body.
Process ids: agents 0..N-1, the coordinator -1, the environment server -2, a process not yet
admitted -3.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from protocols import fixed
from protocols.codec import Codec
from protocols.errors import MalformedFrame

VERSION = 1
COORDINATOR, ENVSERVER, UNASSIGNED = -1, -2, -3
HEADER_KEYS = ("v", "k", "s", "d", "t", "q")
_HLEN = struct.Struct("<H")
MAX_KIND_LEN = 64
_I32, _I64 = (-(1 << 31), (1 << 31) - 1), (-(1 << 63), (1 << 63) - 1)
_RANGES = (("s", _I32), ("d", _I32), ("t", _I64), ("q", _I64))


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
           body: dict[str, Any]) -> bytes:
    frame = fixed.encode_fixed(kind, src, dst, step, seq, body)
    if frame is not None:
        return frame
    header = codec.pack({"v": VERSION, "k": kind, "s": src, "d": dst, "t": step, "q": seq})
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


def decode_header(codec: Codec, part: bytes | memoryview) -> dict[str, Any]:
    """The header map, its field types checked exactly: ``v`` the int VERSION (not 1.0, not
    True), ``k`` a short str, ``s``/``d`` int32 and ``t``/``q`` int64 (the fixed layout's
    widths), never a bool."""
    if fixed.is_fixed(part):
        return fixed.decode_head(part, VERSION)
    header = codec.unpack(part)
    if type(header) is not dict or len(header) != len(HEADER_KEYS) or \
            not all(key in header for key in HEADER_KEYS):
        raise MalformedFrame("header is not a map with keys v, k, s, d, t, q")
    v = header["v"]
    if type(v) is not int or v != VERSION:
        raise MalformedFrame(f"protocol version {v!r:.40}, expected {VERSION}")
    if type(header["k"]) is not str or len(header["k"]) > MAX_KIND_LEN:
        raise MalformedFrame("header field 'k' must be a short str")
    for key, (lo, hi) in _RANGES:
        value = header[key]
        if type(value) is not int or not lo <= value <= hi:
            raise MalformedFrame(f"header field '{key}' must be an int in [{lo}, {hi}]")
    return header


def decode_body(codec: Codec, head: bytes | memoryview, part: bytes | memoryview,
                max_objects: int | None = None) -> Any:
    """The body of a frame whose header ``head`` has been decoded (and checked);
    ``max_objects``: see ``Codec.unpack``."""
    if fixed.is_fixed(head):
        return fixed.decode_body(fixed.KIND_OF[head[3]], part)
    return codec.unpack(part, max_objects)
