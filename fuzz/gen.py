"""Fast random cases for the fuzzer: valid bodies drawn from the schemas, hostile values, and
byte and structure mutations of real frames (Hypothesis is too slow for a million cases;
tests/strategies.py holds its strategies for the suite)."""

from __future__ import annotations

import random
import struct
from typing import Any

import msgpack
import numpy as np

from protocols import Codec, encode
from protocols.arrays import Arr
from protocols.codec import DTYPE_CODES, _encode_array
from protocols.envelope import VERSION
from protocols.fixed import HEAD
from protocols.kinds import REGISTRY
from protocols.schema import (
    I64_MAX,
    I64_MIN,
    Bool,
    Bytes,
    DictOf,
    Field,
    Int,
    Json,
    ListOf,
    Num,
    Obj,
    OneOf,
    Opt,
    Str,
    Tup,
    Val,
)

INTERESTING_BYTES = [0x00, 0x01, 0x7F, 0x80, 0xFF, 0xC0, 0xC1, 0xC4, 0xC7, 0xD4, 0xD8, 0xDC,
                     0xDD, 0xDE, 0xDF, 0x90, 0x9F, 0xA0, 0xBF, 0xCF, 0xD3]
INTERESTING_INTS = [0, 1, -1, 2, 255, 256, 65535, 1 << 31, (1 << 31) - 1, -(1 << 31), 1 << 32,
                    I64_MAX, I64_MIN, 1 << 62, (1 << 64) - 1, -3, -2]
_ARRAY_EXT = [struct.pack("<BB2Q", 7, 2, 0, 1 << 63), struct.pack("<BB1Q", 11, 1, 1 << 40),
              struct.pack("<BB", 99, 0), struct.pack("<BB", 0, 9), b"", b"\x0b\x01",
              struct.pack("<BB3Q", 10, 3, 0, 1 << 62, 1 << 62)]


def hostile(rng: random.Random) -> Any:
    """A value no schema declares."""
    pick = rng.randrange(24)
    if pick < 4:
        return rng.choice(INTERESTING_INTS)
    if pick < 6:
        return rng.choice([float("nan"), float("inf"), -float("inf"), 1e308, -0.0, 1.0])
    if pick < 8:
        return rng.choice([True, False, None])
    if pick < 10:
        return rng.choice(["", "\x00", "x" * 300, "logs/../../x", "é" * 70, "tcp://", "a\nb"])
    if pick < 12:
        return rng.choice([b"", b"\x00" * 8, b"\xff" * 300])
    if pick < 14:
        return rng.choice([[], [[]], [1, "a", None], [[1, 2, 3]] * 3, list(range(50))])
    if pick < 17:
        return rng.choice([{}, {0: 1, "x": 1}, {None: 1}, {b"k": 1}, {1.5: 2}, {"a": {"b": {}}},
                           {"peer": 5}, {"x": b"y"}, {"x": [1]}])
    if pick < 20:
        dtype = np.dtype(rng.choice(DTYPE_CODES))
        shape = tuple(rng.randrange(0, 4) for _ in range(rng.randrange(0, 6)))
        arr = np.zeros(shape, dtype=dtype)
        if dtype.kind == "f" and arr.size:
            arr.flat[rng.randrange(arr.size)] = rng.choice([np.nan, np.inf, -np.inf, 1.0])
        return arr
    return msgpack.ExtType(rng.choice([1, 1, 1, 2, 0, 127]), rng.choice(_ARRAY_EXT))


def valid(spec: Field, rng: random.Random, depth: int = 0) -> Any:
    """A random value that passes ``spec.check`` (small containers)."""
    if isinstance(spec, Int):
        return rng.choice([max(spec.lo, min(spec.hi, rng.randrange(-50, 1000))), spec.lo,
                           spec.hi, max(spec.lo, 0)])
    if isinstance(spec, Num):
        v = rng.choice([rng.uniform(-1e3, 1e3), 0.0, 1e300])
        if not spec.finite and rng.random() < 0.2:
            v = rng.choice([float("nan"), float("inf")])
        return v if not spec.ints or rng.random() < 0.7 else rng.randrange(-100, 100)
    if isinstance(spec, Str):
        if spec.choices:
            return rng.choice(spec.choices)
        if spec.pattern is not None:
            return _pattern_example(spec.pattern, rng)
        return "".join(rng.choice("abcxyz-._/0") for _ in range(rng.randrange(0, 12)))
    if isinstance(spec, Bytes):
        return rng.randbytes(rng.randrange(0, 40))
    if isinstance(spec, Bool):
        return rng.random() < 0.5
    if isinstance(spec, Opt):
        return None if rng.random() < 0.3 else valid(spec.inner, rng, depth)
    if isinstance(spec, ListOf):
        n = rng.randrange(spec.min_len, max(spec.min_len, min(spec.max_len, 3)) + 1)
        return [valid(spec.item, rng, depth + 1) for _ in range(n)]
    if isinstance(spec, Tup):
        return [valid(i, rng, depth + 1) for i in spec.items]
    if isinstance(spec, DictOf):
        return {valid(spec.key, rng, depth + 1): valid(spec.value, rng, depth + 1)
                for _ in range(rng.randrange(0, min(spec.max_len, 3) + 1))}
    if isinstance(spec, Obj):
        return valid_fields(spec.fields, spec.optional, rng, depth + 1)
    if isinstance(spec, OneOf):
        return valid(rng.choice(spec.options), rng, depth)
    if isinstance(spec, Json):
        return _json(rng, min(2, spec.max_depth))
    if isinstance(spec, Arr):
        return _array(spec, rng)
    if isinstance(spec, Val):
        t = rng.choice(spec.types)
        return {int: 7, float: 0.5, str: "s", dict: {"a": [1, 2.5]}, bool: True, list: [1],
                type(None): None, bytes: b"b"}[t]
    raise TypeError(f"no generator for {spec!r}")


def valid_fields(fields: dict, optional: frozenset, rng: random.Random, depth: int = 0) -> dict:
    return {k: valid(v, rng, depth) for k, v in fields.items()
            if k not in optional or rng.random() < 0.5}


def _pattern_example(pattern: str, rng: random.Random) -> str:
    if "0-9a-f" in pattern:
        return "".join(rng.choice("0123456789abcdef") for _ in range(64))
    if pattern.startswith("-?[0-9]"):
        return str(rng.randrange(0, 50))
    return rng.choice(["tcp://127.0.0.1:5555", "ipc:///tmp/agentd-x", "tcp://h:1"])


def _json(rng: random.Random, depth: int) -> Any:
    if depth <= 0 or rng.random() < 0.5:
        return rng.choice([None, True, 3, -1.5, "s", float("nan")])
    if rng.random() < 0.5:
        return [_json(rng, depth - 1) for _ in range(rng.randrange(3))]
    return {f"k{i}": _json(rng, depth - 1) for i in range(rng.randrange(3))}


def _array(spec: Arr, rng: random.Random) -> np.ndarray:
    dtype = np.dtype(rng.choice(sorted(spec.dtypes)))
    ndim = rng.choice([d for d in spec.ndims if d <= 4] or [min(spec.ndims)])
    shape = tuple(rng.randrange(0, 4) for _ in range(ndim))
    return (np.arange(int(np.prod(shape))) % 3).astype(dtype).reshape(shape)


class Mutator:
    """Turns a frame (or nothing) into a hostile one; each method one kind of attack."""

    def __init__(self, rng: random.Random, corpus: list[bytes]) -> None:
        self.rng = rng
        self.corpus = corpus
        self.codec = Codec()

    def bytes_level(self, frame: bytes) -> bytes:
        """Flip, set, insert, delete, truncate, repeat or splice bytes."""
        rng, data = self.rng, bytearray(frame)
        for _ in range(rng.randrange(1, 5)):
            how = rng.randrange(8)
            pos = rng.randrange(len(data)) if data else 0
            if how == 0 and data:
                data[pos] ^= 1 << rng.randrange(8)
            elif how == 1 and data:
                data[pos] = rng.choice(INTERESTING_BYTES)
            elif how == 2:
                data[pos:pos] = bytes([rng.choice(INTERESTING_BYTES)] * rng.randrange(1, 9))
            elif how == 3 and data:
                del data[pos:pos + rng.randrange(1, 9)]
            elif how == 4:
                data = data[:pos]
            elif how == 5 and data:
                data[pos:pos] = data[pos:pos + rng.randrange(1, 64)] * rng.randrange(2, 5)
            elif how == 6:
                other = rng.choice(self.corpus)
                data = data[:pos] + other[rng.randrange(len(other) or 1):]
            elif how == 7 and len(data) >= 8:
                at = rng.randrange(len(data) - 7)
                value = rng.choice(INTERESTING_INTS) & ((1 << 64) - 1)
                data[at:at + 8] = value.to_bytes(8, "little")
        return bytes(data)

    def structured(self, frame: bytes) -> bytes:
        """Decode a msgpack frame and replace, drop or add one value anywhere in it (the
        header included); a fixed-layout frame gets one of its fields rewritten."""
        rng = self.rng
        if frame[:2] == b"\xff\xff":
            return self.bytes_level(frame)
        try:
            (hlen,) = struct.unpack_from("<H", frame)
            header = msgpack.unpackb(frame[2:2 + hlen], strict_map_key=False)
            body = msgpack.unpackb(frame[2 + hlen:], strict_map_key=False)
        except Exception:  # noqa: BLE001 - a corpus frame that is not msgpack: bytes then
            return self.bytes_level(frame)
        target = header if rng.random() < 0.25 else body
        _spoil(target, rng)
        head = msgpack.packb(header, default=_raw)
        return struct.pack("<H", len(head) & 0xFFFF) + head + msgpack.packb(body, default=_raw)

    def generated(self, kind: str, src: int, dst: int) -> bytes:
        """A body drawn from the kind's schema, then (mostly) one value in it spoiled."""
        rng = self.rng
        spec = REGISTRY[kind]
        body: Any = valid_fields(spec.fields, spec.optional, rng)
        if rng.random() < 0.8:
            body = _spoil_top(body, rng)
        try:
            return encode(self.codec, kind, src, dst, rng.randrange(0, 100), 1, body)
        except Exception:  # noqa: BLE001 - our own encoder refuses it: pack it raw
            head = msgpack.packb({"v": VERSION, "k": kind, "s": src, "d": dst, "t": 0, "q": 1})
            return struct.pack("<H", len(head)) + head + msgpack.packb(body, default=_raw)


def _spoil_top(body: dict, rng: random.Random) -> Any:
    if rng.random() < 0.05:
        return hostile(rng)
    _spoil(body, rng)
    return body


def _spoil(tree: Any, rng: random.Random) -> None:
    """Replace, drop or add one value somewhere in a decoded map/list tree."""
    node = tree
    for _ in range(rng.randrange(0, 4)):
        children = list(node.values()) if isinstance(node, dict) else \
            node if isinstance(node, list) else []
        containers = [c for c in children if isinstance(c, dict | list) and c]
        if not containers:
            break
        node = rng.choice(containers)
    if isinstance(node, dict):
        keys = list(node)
        how = rng.randrange(3)
        if how == 0 and keys:
            node[rng.choice(keys)] = hostile(rng)
        elif how == 1 and keys:
            del node[rng.choice(keys)]
        else:
            node[rng.choice(["x", 0, None, "files", "v", "stats"])] = hostile(rng)
    elif isinstance(node, list) and node:
        node[rng.randrange(len(node))] = hostile(rng)


def _raw(obj: Any) -> Any:
    """Pack what the hostile side put anywhere: arrays as the codec's extension (any dtype
    the codec knows, raw bytes otherwise)."""
    if isinstance(obj, np.ndarray):
        try:
            return _encode_array(obj)
        except Exception:  # noqa: BLE001 - a dtype the codec refuses: its raw bytes
            return msgpack.ExtType(1, obj.tobytes())
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(type(obj).__name__)


def retarget(frame: bytes, src: int, dst: int) -> bytes:
    """The same frame addressed from ``src`` to ``dst`` (so the guard looks past the header)."""
    try:
        if frame[:2] == b"\xff\xff" and len(frame) >= HEAD.size:
            fields = list(HEAD.unpack_from(frame))
            fields[3], fields[4] = src, dst
            return HEAD.pack(*fields) + frame[HEAD.size:]
        (hlen,) = struct.unpack_from("<H", frame)
        header = msgpack.unpackb(frame[2:2 + hlen])
        header.update(s=src, d=dst)
        head = msgpack.packb(header)
        return struct.pack("<H", len(head)) + head + frame[2 + hlen:]
    except Exception:  # noqa: BLE001 - not a frame we can readdress: as it is
        return frame
