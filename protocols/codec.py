"""msgpack codec with numpy arrays as an extension type (dtype, shape, raw bytes; never pickle).

Ext payload layout: ``u8 dtype code | u8 ndim | ndim x u64 shape | raw bytes``.
Only little-endian numeric and bool dtypes travel; anything else is refused on both ends.
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack
import numpy as np

from protocols.errors import MalformedFrame, SchemaMismatch

NDARRAY_EXT = 1
# Wire code of each dtype that may travel (little-endian numeric and bool only).
DTYPE_CODES = ("|b1", "|i1", "|u1", "<i2", "<u2", "<i4", "<u4", "<i8", "<u8", "<f2", "<f4", "<f8")
ALLOWED_DTYPES = frozenset(DTYPE_CODES)
_CODE_OF = {np.dtype(d): i for i, d in enumerate(DTYPE_CODES)}
_DTYPE_OF = [np.dtype(d) for d in DTYPE_CODES]
MAX_NDIM = 8
MAX_ARRAY_BYTES = 1 << 62     # numpy refuses larger shapes, even ones with a zero dimension
_SHAPE = [struct.Struct(f"<BB{k}Q") for k in range(MAX_NDIM + 1)]


def _encode_array(arr: np.ndarray) -> msgpack.ExtType:
    code = _CODE_OF.get(arr.dtype)
    if code is None:
        native = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else None
        code = _CODE_OF.get(native) if native is not None else None
        if code is None:
            raise SchemaMismatch(f"dtype {arr.dtype} cannot be sent (allowed: numeric, bool)")
        arr = arr.astype(native)
    if arr.ndim > MAX_NDIM:
        raise SchemaMismatch(f"arrays of rank {arr.ndim} cannot be sent (max {MAX_NDIM})")
    head = _SHAPE[arr.ndim].pack(code, arr.ndim, *arr.shape)
    return msgpack.ExtType(NDARRAY_EXT, head + arr.tobytes())


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return _encode_array(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot encode {type(obj).__name__}")


def _decode_array(data: bytes) -> np.ndarray:
    """Ext payload: ``u8 dtype code | u8 ndim | ndim x u64 shape | raw bytes``."""
    if len(data) < 2 or data[0] >= len(_DTYPE_OF) or data[1] > MAX_NDIM:
        raise MalformedFrame("bad array extension header")
    ndim = data[1]
    layout = _SHAPE[ndim]
    if len(data) < layout.size:
        raise MalformedFrame("truncated array extension")
    shape = layout.unpack_from(data)[2:]
    dtype = _DTYPE_OF[data[0]]
    count = element_count(shape, dtype.itemsize)
    if count * dtype.itemsize != len(data) - layout.size:
        raise MalformedFrame("array byte length does not match its dtype and shape")
    return np.frombuffer(data, dtype=dtype, offset=layout.size, count=count).reshape(shape)


def element_count(shape: tuple[int, ...], itemsize: int) -> int:
    """The element count of an array of this shape; a shape numpy cannot make (even with no
    elements: it sizes the non-zero dimensions) is a MalformedFrame."""
    count, nonzero = 1, itemsize
    for dim in shape:
        count *= dim
        nonzero *= max(dim, 1)
    if nonzero >= MAX_ARRAY_BYTES:
        raise MalformedFrame(f"array shape {list(shape)[:8]} is too large")
    return count


def _ext_hook(code: int, data: bytes) -> Any:
    if code != NDARRAY_EXT:
        raise MalformedFrame(f"unknown msgpack extension type {code}")
    return _decode_array(data)


class Codec:
    """A reusable packer/unpacker pair (reusing the packer saves ~7 us per message)."""

    def __init__(self) -> None:
        self._packer = msgpack.Packer(default=_default, use_bin_type=True)

    def pack(self, obj: Any) -> bytes:
        return self._packer.pack(obj)

    @staticmethod
    def unpack(data: bytes, max_objects: int | None = None) -> Any:
        """Decode one msgpack value. ``max_objects`` caps the maps, lists and arrays it may
        hold (default: one per 4 bytes of input, at least 65,536): a 16 MiB frame of empty
        lists would otherwise become a gigabyte of Python objects. What they hold is capped
        too, at ``ITEMS_PER_OBJECT`` times that (a map's key and value count one each; no
        single container may hold more): 16 MiB of short strings in one list would otherwise
        become ~330 MB of str objects."""
        cap = max(1 << 16, len(data) // 4) if max_objects is None else max_objects
        budget = _Budget(cap)
        try:
            return msgpack.unpackb(data, ext_hook=budget.ext, list_hook=budget.take,
                                   object_hook=budget.take, raw=False, strict_map_key=False,
                                   max_array_len=budget.items, max_map_len=budget.items // 2)
        except MalformedFrame:
            raise
        except ValueError as exc:
            if "exceeds max_" in str(exc):       # one container over the items cap
                raise MalformedFrame(f"more items in one container than a message of this "
                                     f"kind may hold ({exc})") from None
            raise MalformedFrame(f"not valid msgpack: ValueError: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - msgpack raises many unrelated types on garbage
            raise MalformedFrame(f"not valid msgpack: {type(exc).__name__}: {exc}") from None


ITEMS_PER_OBJECT = 8


class _Budget:
    """Counts the containers and arrays one decode makes, and the items in the containers;
    past either cap it stops the decode."""

    __slots__ = ("items", "left")

    def __init__(self, cap: int) -> None:
        self.left = cap
        self.items = ITEMS_PER_OBJECT * cap

    def take(self, obj: Any) -> Any:
        self.left -= 1
        self.items -= 2 * len(obj) if type(obj) is dict else len(obj)
        if self.left < 0 or self.items < 0:
            raise MalformedFrame("more maps, lists and arrays, or more items in them, than a "
                                 "message of this kind may hold")
        return obj

    def ext(self, code: int, data: bytes) -> Any:
        self.left -= 1
        if self.left < 0:
            raise MalformedFrame("more maps, lists and arrays than a message of this kind may "
                                 "hold")
        return _ext_hook(code, data)
