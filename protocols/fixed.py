"""Fixed binary layouts for the two hot kinds, ``act`` and ``step`` (every joint step).

A fixed-layout frame replaces the envelope's msgpack header and body with structs and raw
array bytes; it decodes to the same header and body a msgpack frame of the same message would,
so the guard runs the same checks on it, and logs, replay and audit read it the same way.

    u16 0xFFFF | u8 version | u8 kind (1 act, 2 step) | i32 src | i32 dst | i64 step | i64 seq
    act:  i64 t | array a
    step: i64 t | u8 flags (1 last, 2 restart present, 4 restart) | arrays obs, final_obs,
          reward, terminated, truncated
    array: u8 dtype code | u8 ndim | ndim x u64 shape | raw bytes (little-endian)

The prefix 0xFFFF cannot start a msgpack envelope (its u16 header length is a few dozen
bytes). A body that does not fit a layout exactly (other fields, a non-array) is sent as
msgpack instead, so the layouts never change what a message says.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from protocols.codec import _CODE_OF, _DTYPE_OF, MAX_NDIM, element_count
from protocols.errors import MalformedFrame

PREFIX = b"\xff\xff"
HEAD = struct.Struct("<HBBiiqq")
_T = struct.Struct("<q")
_T_FLAGS = struct.Struct("<qB")
_ARR = [struct.Struct(f"<BB{k}Q") for k in range(MAX_NDIM + 1)]
CODES = {"act": 1, "step": 2}
KIND_OF = {code: name for name, code in CODES.items()}
STEP_ARRAYS = ("obs", "final_obs", "reward", "terminated", "truncated")
_STEP_KEYS = frozenset(("t", *STEP_ARRAYS, "last"))
_LAST, _HAS_RESTART, _RESTART = 1, 2, 4


def is_fixed(frame: bytes | memoryview) -> bool:
    return frame[:2] == PREFIX


def encode_fixed(kind: str, src: int, dst: int, step: int, seq: int,
                 body: dict[str, Any]) -> bytes | None:
    """The fixed-layout frame of this message, or None if it has no layout (use msgpack)."""
    code = CODES.get(kind)
    if code is None or type(body) is not dict:
        return None
    t = body.get("t")
    if type(t) is not int:
        return None
    try:
        if code == 1:
            a = body.get("a")
            if len(body) != 2 or type(a) is not np.ndarray:
                return None
            parts = [HEAD.pack(0xFFFF, 1, code, src, dst, step, seq), _T.pack(t)]
            _add_array(parts, a)
            return b"".join(parts)
        restart = body.get("restart")
        last = body.get("last")
        if (type(last) is not bool or body.keys() - {"restart"} != _STEP_KEYS
                or (restart is not None and type(restart) is not bool)):
            return None
        flags = (_LAST if last else 0) | (0 if restart is None else
                                          _HAS_RESTART | (_RESTART if restart else 0))
        parts = [HEAD.pack(0xFFFF, 1, code, src, dst, step, seq), _T_FLAGS.pack(t, flags)]
        for name in STEP_ARRAYS:
            arr = body[name]
            if type(arr) is not np.ndarray:
                return None
            _add_array(parts, arr)
        return b"".join(parts)
    except (struct.error, _NoLayout):    # an int out of range, an odd dtype: msgpack then
        return None


class _NoLayout(Exception):
    """An array the fixed layout does not carry (msgpack's codec converts or refuses it)."""


def _add_array(parts: list[bytes], arr: np.ndarray) -> None:
    code = _CODE_OF.get(arr.dtype)
    if code is None or arr.ndim > MAX_NDIM:
        raise _NoLayout
    parts.append(_ARR[arr.ndim].pack(code, arr.ndim, *arr.shape))
    parts.append(arr.tobytes())


def decode_head(head: bytes | memoryview, version: int) -> dict[str, Any]:
    """The header map of a fixed-layout frame (the same keys a msgpack header has)."""
    if len(head) < HEAD.size:
        raise MalformedFrame(f"fixed-layout frame of {len(head)} bytes is shorter than its "
                             f"{HEAD.size}-byte header")
    _, v, code, src, dst, step, seq = HEAD.unpack_from(head)
    if v != version:
        raise MalformedFrame(f"protocol version {v}, expected {version}")
    kind = KIND_OF.get(code)
    if kind is None:
        raise MalformedFrame(f"unknown fixed-layout kind code {code}")
    return {"v": v, "k": kind, "s": src, "d": dst, "t": step, "q": seq}


def decode_body(kind: str, data: bytes | memoryview) -> dict[str, Any]:
    """The body map of a fixed-layout frame; any byte out of place is a MalformedFrame."""
    view = memoryview(data)
    if kind == "act":
        if len(view) < _T.size:
            raise MalformedFrame("truncated 'act' body")
        (t,) = _T.unpack_from(view)
        a, pos = _take_array(view, _T.size)
        body: dict[str, Any] = {"t": t, "a": a}
    else:
        if len(view) < _T_FLAGS.size:
            raise MalformedFrame("truncated 'step' body")
        t, flags = _T_FLAGS.unpack_from(view)
        if flags & ~(_LAST | _HAS_RESTART | _RESTART) or (flags & _RESTART
                                                          and not flags & _HAS_RESTART):
            raise MalformedFrame(f"bad 'step' flags {flags:#x}")
        body = {"t": t}
        pos = _T_FLAGS.size
        for name in STEP_ARRAYS:
            body[name], pos = _take_array(view, pos)
        body["last"] = bool(flags & _LAST)
        if flags & _HAS_RESTART:
            body["restart"] = bool(flags & _RESTART)
    if pos != len(view):
        raise MalformedFrame(f"{len(view) - pos} bytes after the '{kind}' body")
    return body


def _take_array(view: memoryview, pos: int) -> tuple[np.ndarray, int]:
    if pos + 2 > len(view):
        raise MalformedFrame("truncated array header")
    code, ndim = view[pos], view[pos + 1]
    if code >= len(_DTYPE_OF) or ndim > MAX_NDIM:
        raise MalformedFrame("bad array header")
    layout = _ARR[ndim]
    start = pos + layout.size
    if start > len(view):
        raise MalformedFrame("truncated array header")
    shape = layout.unpack_from(view, pos)[2:]
    dtype = _DTYPE_OF[code]
    count = element_count(shape, dtype.itemsize)
    end = start + count * dtype.itemsize
    if end > len(view):
        raise MalformedFrame("array bytes run past the end of the frame")
    # a read-only view of the frame's bytes, like the msgpack codec's arrays
    return np.ndarray(shape, dtype, buffer=view, offset=start), end
