"""The message-log file format, read and written here without any agentd code, so tests can
hold agentd's reader and writer against it.

A log is a sequence of items ``u32 LE word | payload``. A word below 2**31 is the length of a
plain msgpack record (a meta record: each process's part of the file starts with one; a
version 1 log has only plain records). With the top bit set, the low 31 bits are the length of
a chunk: the next piece of the zstandard stream begun after the last meta record, which
decompresses to whole msgpack records, back to back.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import msgpack
import zstandard

LEN = struct.Struct("<I")
CHUNK = 0x8000_0000


def items(path: Path) -> tuple[list[tuple[str, list[list]]], int]:
    """(("plain" | "chunk", its records) for every whole item, bytes of whole items)."""
    data, pos, out, stream = path.read_bytes(), 0, [], None
    while pos + 4 <= len(data):
        (word,) = LEN.unpack_from(data, pos)
        end = pos + 4 + (word & ~CHUNK)
        if end > len(data):
            break
        payload = data[pos + 4:end]
        if word & CHUNK:
            out.append(("chunk", unpack_records(stream.decompress(payload))))
        else:
            out.append(("plain", [msgpack.unpackb(payload, raw=False)]))
            stream = zstandard.ZstdDecompressor().decompressobj()
        pos = end
    return out, pos


def unpack_records(data: bytes) -> list[list]:
    return list(msgpack.Unpacker(io.BytesIO(data), raw=False))


def raw_log(path: Path) -> tuple[dict, list[list]]:
    """The meta record's body and every other whole record, in order."""
    records = [r for _, rs in items(path)[0] for r in rs]
    return records[0][2], records[1:]


def pack_records(records: list[list]) -> bytes:
    out = bytearray()
    for record in records:
        packed = msgpack.packb(record, use_bin_type=True)
        out += LEN.pack(len(packed)) + packed
    return bytes(out)


def write_v1(path: Path, records: list[list]) -> None:
    """Write records (meta first) as a version 1 log: plain records only, uncompressed."""
    path.write_bytes(pack_records(records))


def write_v2(path: Path, groups: list[list[list]]) -> None:
    """Write a version 2 log: the meta record, then one chunk per group of records."""
    (meta,), *chunks = groups
    stream = zstandard.ZstdCompressor().compressobj()
    out = bytearray(pack_records([meta]))
    for group in chunks:
        plain = b"".join(msgpack.packb(r, use_bin_type=True) for r in group)
        data = stream.compress(plain) + stream.flush(
            zstandard.COMPRESSOBJ_FLUSH_BLOCK)
        out += LEN.pack(len(data) | CHUNK) + data
    path.write_bytes(bytes(out))
