"""Fixed binary layouts for the two hot kinds, ``act`` and ``step`` (every joint step).

A fixed-layout frame replaces the envelope's msgpack header and body with structs and raw
array bytes; it decodes to the same header and body a msgpack frame of the same message would,
and logs, replay and audit read it the same way. Version 2 (this one)::

    u16 0xFFFF | u8 version | u8 kind (1 act, 2 step) | i32 src | i32 dst | i64 step | i64 seq
    act:  i64 t | array headers (a) | array bytes
    step: i64 t | u8 flags (1 last, 2 restart present, 4 restart) | array headers (obs,
          final_obs, reward, terminated, truncated) | array bytes, in the same order
    array header: u8 dtype code | u8 ndim | ndim x u64 shape; bytes little-endian, C order

Validated while decoding: the array headers of a frame (its *layout*: dtypes and shapes) are
checked once against the kind's schema (allowed dtypes, ranks, sizes) and the verdict is kept,
keyed by the layout's bytes, so a frame of a known layout costs a slice, a dict look-up and
one ``np.frombuffer`` per array; only the finiteness of float arrays is looked at per frame.
The guard runs no second schema check on a fixed frame. Encoding keeps the same verdicts
keyed by the arrays' dtypes and shapes. Version 1 (each array's header right before its
bytes; ``act`` frames are the same in both) is still read, for the logs of earlier runs.

The prefix 0xFFFF cannot start a msgpack envelope (its u16 header length is a few dozen
bytes). A body that does not fit a layout exactly (other fields, a non-array, an odd dtype)
is sent as msgpack instead, so the layouts never change what a message says.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from protocols.arrays import Arr, all_finite
from protocols.codec import _CODE_OF, _DTYPE_OF, MAX_NDIM, element_count
from protocols.errors import MalformedFrame, SchemaMismatch

PREFIX = b"\xff\xff"
VERSION = 2
HEAD = struct.Struct("<HBBiiqq")
_T = struct.Struct("<q")
_T_FLAGS = struct.Struct("<qB")
_ARR = [struct.Struct(f"<BB{k}Q") for k in range(MAX_NDIM + 1)]
CODES = {"act": 1, "step": 2}
KIND_OF = {code: name for name, code in CODES.items()}
STEP_ARRAYS = ("obs", "final_obs", "reward", "terminated", "truncated")
ARRAYS = {"act": ("a",), "step": STEP_ARRAYS}
_STEP_KEYS = frozenset(("t", *STEP_ARRAYS, "last"))
_LAST, _HAS_RESTART, _RESTART = 1, 2, 4
_MAX_PLANS = 1024      # layouts remembered per direction (a flood of new ones costs a parse)


def is_fixed(frame: bytes | memoryview) -> bool:
    return frame[:2] == PREFIX


# ---- the kinds' array fields, as the schema declares them --------------------------------

def _specs(kind: str) -> tuple[Arr, ...]:
    from protocols.kinds import REGISTRY  # the registry imports the envelope's users
    return tuple(REGISTRY[kind].fields[name] for name in ARRAYS[kind])


def _problem(kind: str, name: str, spec: Arr, dtype: np.dtype, shape: tuple[int, ...],
             count: int) -> str | None:
    """What the schema says against this array's dtype and shape (None: nothing)."""
    if dtype not in spec._dtype_set:
        return f"field '{kind}.{name}' has dtype {dtype}, allowed {sorted(spec.dtypes)}"
    if len(shape) not in spec.ndims:
        return f"field '{kind}.{name}' has rank {len(shape)}, allowed {spec.ndims}"
    if count > spec.max_size:
        return f"field '{kind}.{name}' has {count} elements, max {spec.max_size}"
    return None


# ---- encoding ----------------------------------------------------------------------------

# (kind code, (dtype, shape) per array) -> (layout bytes, indices of float arrays to check
# for finiteness, the schema's objection or None)
_ENCODE: dict[tuple, tuple[bytes, tuple[int, ...], str | None]] = {}


def encode_fixed(kind: str, src: int, dst: int, step: int, seq: int,
                 body: dict[str, Any], check: bool = False) -> bytes | None:
    """The fixed-layout frame of this message, or None if it has no layout (use msgpack).
    ``check``: refuse (SchemaMismatch) a body the kind's schema refuses, as the guard would."""
    code = CODES.get(kind)
    if code is None or type(body) is not dict:
        return None
    t = body.get("t")
    if type(t) is not int:
        return None
    if code == 1:
        if len(body) != 2 or type(body.get("a")) is not np.ndarray:
            return None
        arrays: tuple = (body["a"],)
        flags = -1
    else:
        restart = body.get("restart")
        last = body.get("last")
        if (type(last) is not bool or body.keys() - {"restart"} != _STEP_KEYS
                or (restart is not None and type(restart) is not bool)):
            return None
        flags = (_LAST if last else 0) | (0 if restart is None else
                                          _HAS_RESTART | (_RESTART if restart else 0))
        arrays = (body["obs"], body["final_obs"], body["reward"], body["terminated"],
                  body["truncated"])
        for arr in arrays:
            if type(arr) is not np.ndarray:
                return None
    key = (code, *[(a.dtype, a.shape) for a in arrays])
    plan = _ENCODE.get(key)
    if plan is None:
        plan = _encode_plan(kind, arrays, key)
        if plan is None:
            return None
    layout, floats, problem = plan
    if check:
        if problem is not None:
            raise SchemaMismatch(problem)
        for i in floats:
            if not all_finite(arrays[i]):
                raise SchemaMismatch(f"field '{kind}.{ARRAYS[kind][i]}' has NaN or infinite "
                                     "values")
    try:
        head = HEAD.pack(0xFFFF, VERSION, code, src, dst, step, seq)
        tail = _T.pack(t) if flags < 0 else _T_FLAGS.pack(t, flags)
    except struct.error:       # an int out of range: msgpack then
        return None
    return b"".join([head, tail, layout, *[a.tobytes() for a in arrays]])


def _encode_plan(kind: str, arrays: tuple, key: tuple
                 ) -> tuple[bytes, tuple[int, ...], str | None] | None:
    parts, floats, problem = [], [], None
    for i, (name, spec, arr) in enumerate(zip(ARRAYS[kind], _specs(kind), arrays)):
        code = _CODE_OF.get(arr.dtype)
        if code is None or arr.ndim > MAX_NDIM:
            return None       # an odd dtype: msgpack's codec converts or refuses it
        parts.append(_ARR[arr.ndim].pack(code, arr.ndim, *arr.shape))
        problem = problem or _problem(kind, name, spec, arr.dtype, arr.shape, arr.size)
        if spec.finite and arr.dtype.kind == "f":
            floats.append(i)
    if len(_ENCODE) >= _MAX_PLANS:
        _ENCODE.clear()
    plan = _ENCODE[key] = (b"".join(parts), tuple(floats), problem)
    return plan


# ---- decoding ----------------------------------------------------------------------------

class _Plan:
    """A layout, parsed and checked: per array its name, dtype, shape, element count, byte
    count and whether it must be finite; the bytes of all arrays; the schema's objection."""

    __slots__ = ("arrays", "nbytes", "problem")

    def __init__(self, arrays: tuple, nbytes: int, problem: str | None) -> None:
        self.arrays, self.nbytes, self.problem = arrays, nbytes, problem


_DECODE: dict[tuple[str, bytes], _Plan] = {}


def head(part: bytes | memoryview, versions: int | tuple[int, ...] = (VERSION,)
         ) -> tuple[int, str, int, int, int, int]:
    """(version, kind, src, dst, step, seq) of a fixed-layout frame's header."""
    if len(part) < HEAD.size:
        raise MalformedFrame(f"fixed-layout frame of {len(part)} bytes is shorter than its "
                             f"{HEAD.size}-byte header")
    _, v, code, src, dst, step, seq = HEAD.unpack_from(part)
    if v != versions if type(versions) is int else v not in versions:
        raise MalformedFrame(f"protocol version {v}, expected {VERSION}")
    kind = KIND_OF.get(code)
    if kind is None:
        raise MalformedFrame(f"unknown fixed-layout kind code {code}")
    return v, kind, src, dst, step, seq


def decode_head(part: bytes | memoryview, versions: int | tuple[int, ...] = (VERSION,)
                ) -> dict[str, Any]:
    """The header map of a fixed-layout frame (the same keys a msgpack header has), of one
    of ``versions`` (a version or a tuple of them)."""
    v, kind, src, dst, step, seq = head(part, versions)
    return {"v": v, "k": kind, "s": src, "d": dst, "t": step, "q": seq}


def decode_body(kind: str, data: bytes | memoryview, version: int = VERSION) -> dict[str, Any]:
    """The body map of a fixed-layout frame, checked against the kind's schema; any byte out
    of place is a MalformedFrame, an array the schema refuses a SchemaMismatch."""
    view = memoryview(data)
    size = len(view)
    if kind == "act":
        if size < _T.size:
            raise MalformedFrame("truncated 'act' body")
        (t,) = _T.unpack_from(view)
        body: dict[str, Any] = {"t": t}
        start = _T.size
    else:
        if size < _T_FLAGS.size:
            raise MalformedFrame("truncated 'step' body")
        t, flags = _T_FLAGS.unpack_from(view)
        if flags & ~(_LAST | _HAS_RESTART | _RESTART) or (flags & _RESTART
                                                          and not flags & _HAS_RESTART):
            raise MalformedFrame(f"bad 'step' flags {flags:#x}")
        body = {"t": t}
        start = _T_FLAGS.size
    if version == 1 and kind == "step":
        _decode_v1_arrays(view, start, body)
    else:
        _decode_arrays(kind, view, start, body)
    if kind == "step":
        body["last"] = bool(flags & _LAST)
        if flags & _HAS_RESTART:
            body["restart"] = bool(flags & _RESTART)
    return body


def _decode_arrays(kind: str, view: memoryview, start: int, body: dict[str, Any]) -> None:
    size, pos = len(view), start
    for _ in ARRAYS[kind]:      # the layout's end: each header is 2 + 8 ndim bytes
        if pos + 2 > size:
            raise MalformedFrame("truncated array header")
        if view[pos] >= len(_DTYPE_OF) or view[pos + 1] > MAX_NDIM:
            raise MalformedFrame("bad array header")
        pos += 2 + 8 * view[pos + 1]
    if pos > size:
        raise MalformedFrame("truncated array header")
    key = (kind, view[start:pos].tobytes())
    plan = _DECODE.get(key)
    if plan is None:
        plan = _decode_plan(kind, view, start, key)
    end = pos + plan.nbytes
    if end > size:
        raise MalformedFrame("array bytes run past the end of the frame")
    if end < size:
        raise MalformedFrame(f"{size - end} bytes after the '{kind}' body")
    if plan.problem is not None:
        raise SchemaMismatch(plan.problem)
    for name, dtype, shape, count, nbytes, finite in plan.arrays:
        # a read-only view of the frame's bytes, like the msgpack codec's arrays
        arr = body[name] = np.frombuffer(view, dtype, count, pos).reshape(shape)
        if finite and not all_finite(arr):
            raise SchemaMismatch(f"field '{kind}.{name}' has NaN or infinite values")
        pos += nbytes


def _decode_plan(kind: str, view: memoryview, pos: int, key: tuple[str, bytes]) -> _Plan:
    arrays, nbytes, problem = [], 0, None
    for name, spec in zip(ARRAYS[kind], _specs(kind)):
        code, ndim = view[pos], view[pos + 1]
        shape = _ARR[ndim].unpack_from(view, pos)[2:]
        pos += _ARR[ndim].size
        dtype = _DTYPE_OF[code]
        count = element_count(shape, dtype.itemsize)
        problem = problem or _problem(kind, name, spec, dtype, shape, count)
        arrays.append((name, dtype, shape, count, count * dtype.itemsize,
                       spec.finite and dtype.kind == "f"))
        nbytes += count * dtype.itemsize
    if len(_DECODE) >= _MAX_PLANS:
        _DECODE.clear()
    plan = _DECODE[key] = _Plan(tuple(arrays), nbytes, problem)
    return plan


def _decode_v1_arrays(view: memoryview, pos: int, body: dict[str, Any]) -> None:
    """Version 1 of ``step``: each array's header right before its bytes (logs only)."""
    for name in STEP_ARRAYS:
        body[name], pos = _take_array(view, pos)
    if pos != len(view):
        raise MalformedFrame(f"{len(view) - pos} bytes after the 'step' body")


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
    return np.ndarray(shape, dtype, buffer=view, offset=start), end
