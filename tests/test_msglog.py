"""Message logs compressed on the fly: what the writer writes reads back record for record
(held against a parser of the file format that uses no agentd code), a torn last chunk costs
that chunk and nothing before it, version 1 logs still read, and a live run's compressed logs
replay exactly."""

from __future__ import annotations

import os
import subprocess

import msgpack
import numpy as np
import pytest
from conftest import AGENTD
from rawlog import CHUNK, LEN, items, raw_log, write_v1, write_v2

from agentd.runtime import msglog
from agentd.runtime.msglog import MessageLog, open_log, repair_tail
from protocols import Codec, encode


def frames(codec: Codec, t: int) -> list[bytes]:
    """A real envelope: a step reply with an observation that changes a little each step."""
    body = {"t": t, "obs": np.arange(16, dtype=np.float32) + t % 7, "reward": float(t % 3),
            "done": t % 50 == 0}
    return [encode(codec, "step", 0, 1, t, t, body)]


def write_steps(log: MessageLog, steps: range, flush_every: int = 1) -> None:
    codec = Codec()
    for t in steps:
        log.record("in", "env", frames(codec, t))
        log.record("out", "env", [b"\x01act" + t.to_bytes(4, "little")])
        if t % flush_every == 0:
            log.flush()


def as_tuples(path) -> list[tuple]:
    return [(r.direction, r.plane, r.reason, r.frames, r.kind) for r in open_log(path)]


def test_round_trip_matches_the_raw_format_and_is_compressed(tmp_path):
    path = tmp_path / "logs" / "agent-0.log"
    log = MessageLog("agent ?")
    log.record("out", "control", [b"hello before the file is known"])
    log.attach(path, "agent 0", private=False, meta={"secure": False})
    write_steps(log, range(1, 301))
    log.record("rej", "peer", [b"\xc1" * 10], "malformed")
    log.note("restart", {"checkpoint": None, "step": 300})
    log.close()

    assert os.stat(path).st_mode & 0o777 == 0o600
    meta, records = raw_log(path)
    assert meta["process"] == "agent 0" and meta["version"] == 2 and meta["private"] is False
    log_file = open_log(path)
    got = list(log_file)
    assert not log_file.truncated_tail and log_file.meta == meta
    assert len(got) == len(records) == 1 + 600 + 2
    for rec, raw in zip(got, records, strict=True):
        assert [rec.direction, rec.time] == raw[:2]
        if len(raw) == 5:
            assert [rec.plane, rec.reason, rec.frames] == raw[2:]
    assert got[0].frames == [b"hello before the file is known"]
    assert [r.body["t"] for r in got if r.kind == "step"] == list(range(1, 301))
    assert got[-2].reason == "malformed" and got[-1].direction == "restart"
    # one chunk per flush after the meta record, and far smaller than the records themselves
    kinds, whole = items(path)
    assert whole == path.stat().st_size
    assert [k for k, _ in kinds] == ["plain"] + ["chunk"] * (300 + 1)   # the note flushes
    plain = sum(len(LEN.pack(0)) + len(r) for r in _packed(records))
    assert path.stat().st_size < plain / 3


def _packed(records: list[list]) -> list[bytes]:
    import msgpack

    return [msgpack.packb(r, use_bin_type=True) for r in records]


@pytest.mark.parametrize("cut", [1, 3, 4, 5, "half", "all-but-word"])
def test_a_torn_last_chunk_costs_that_chunk_only_and_repair_cuts_it(tmp_path, cut):
    path = tmp_path / "agent-0.log"
    log = MessageLog("agent 0", path)
    write_steps(log, range(1, 41), flush_every=10)
    log.close()
    kinds, _ = items(path)
    last = len(kinds[-1][1])
    whole = as_tuples(path)
    data = path.read_bytes()
    tail = len(data) - _last_item_start(data)
    n = {"half": tail // 2, "all-but-word": tail - 2}.get(cut, cut)
    path.write_bytes(data[:-n])

    log_file = open_log(path)
    assert as_tuples(path) == whole[:-last] and last == 20
    assert log_file.truncated_tail is False          # known only after reading
    list(log_file)
    assert log_file.truncated_tail is True
    assert repair_tail(path) == tail - n
    assert path.read_bytes() == data[:-tail]
    # the restarted process appends after the cut: a second meta record, a new stream
    again = MessageLog("agent 0", path)
    write_steps(again, range(41, 44))
    again.close()
    after = list(open_log(path))
    assert [r.direction for r in after[len(whole) - last:len(whole) - last + 2]] == ["meta", "in"]
    assert [r.body["t"] for r in after if r.kind == "step"] == [*range(1, 31), 41, 42, 43]


def _last_item_start(data: bytes) -> int:
    pos = last = 0
    while pos < len(data):
        last = pos
        pos += 4 + (LEN.unpack_from(data, pos)[0] & ~CHUNK)
    return last


def test_a_chunk_that_does_not_decompress_ends_the_log_cleanly(tmp_path):
    path = tmp_path / "agent-0.log"
    log = MessageLog("agent 0", path)
    write_steps(log, range(1, 11))
    log.close()
    whole = as_tuples(path)
    with open(path, "ab") as f:
        f.write(LEN.pack(16 | CHUNK) + b"\x00garbage-garbage")
    log_file = open_log(path)
    assert [(r.direction, r.plane, r.reason, r.frames, r.kind) for r in log_file] == whole
    assert log_file.truncated_tail is True


def test_version_1_logs_still_read_and_a_restart_appends_a_compressed_part(tmp_path):
    codec = Codec()
    records = [["meta", 1.0, {"format": "agentd-msglog", "version": 1, "process": "agent 0",
                              "private": True}]]
    for t in range(1, 21):
        records.append(["in", 1.0 + t, "env", None, frames(codec, t)])
    v1, v2 = tmp_path / "v1.log", tmp_path / "v2.log"
    write_v1(v1, records)
    write_v2(v2, [records[:1], records[1:11], records[11:]])
    assert as_tuples(v1) == as_tuples(v2)
    assert [r.body["t"] for r in open_log(v1) if r.kind == "step"] == list(range(1, 21))
    assert open_log(v1).meta["version"] == 1

    v1.write_bytes(v1.read_bytes()[:-3])             # a torn version 1 record
    log_file = open_log(v1)
    assert len(list(log_file)) == 19 and log_file.truncated_tail
    log = MessageLog("agent 0", v1)                   # repair, then append compressed
    write_steps(log, range(100, 103))
    log.close()
    steps = [r.body["t"] for r in open_log(v1) if r.kind == "step"]
    assert steps == [*range(1, 20), 100, 101, 102]


def test_records_reach_the_file_at_a_flush_at_the_size_cap_and_after_the_time_cap(
        tmp_path, monkeypatch):
    path = tmp_path / "agent-0.log"
    log = MessageLog("agent 0", path)
    codec = Codec()
    log.record("in", "env", frames(codec, 1))
    log._file.flush()
    assert list(open_log(path)) == []                # buffered, not yet a chunk
    log.flush()
    assert len(list(open_log(path))) == 1
    monkeypatch.setattr(msglog, "FLUSH_BYTES", 2000)
    t = 2
    while len(list(open_log(path))) == 1:
        log.record("in", "env", frames(codec, t))
        log._file.flush()                           # the OS file buffer is not the point
        t += 1
        assert t < 100, "no chunk written at the size cap"
    monkeypatch.setattr(msglog, "FLUSH_SECONDS", 0.0)
    log.record("in", "env", frames(codec, t))
    assert len(list(open_log(path))) == t             # written and flushed by itself
    log.close()


def test_a_live_runs_logs_are_compressed_and_replay_exactly(runs, tmp_path):
    run_dir = tmp_path / "run"
    done = runs.launch(run_dir, "--n", "3", "--steps", "300", "--episode-len", "20")
    assert done.returncode == 0, done.stdout
    for path in (run_dir / "logs").glob("*.log"):
        kinds, whole = items(path)
        assert whole == path.stat().st_size and kinds[0][0] == "plain"
        assert {k for k, _ in kinds[1:]} == {"chunk"}, path
    res = subprocess.run([*AGENTD, "replay", str(run_dir), "--agent", "1"], check=False,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "identical to the log at all 300 steps" in res.stdout
    assert "bit-for-bit identical to the checkpoint" in res.stdout


def test_a_chunk_that_inflates_past_any_writers_chunk_ends_the_log_without_inflating_it(
        tmp_path, monkeypatch):
    """A decompression bomb appended to a log (a few hundred KiB that inflate to 256 MiB):
    the reader stops there, as at a torn chunk, holding at most MAX_CHUNK_OUT of it."""
    import resource

    import zstandard

    path = tmp_path / "agent-0.log"
    log = MessageLog("agent 0", path)
    write_steps(log, range(1, 11))
    log.close()
    whole = as_tuples(path)
    # a restart's part of the log: a meta record, then the zstd stream of its chunks - here
    # one chunk that is a whole frame of 256 MiB of zeros
    meta = msgpack.packb(["meta", 0.0, {"format": "agentd-msglog", "version": 2,
                                         "process": "agent 0", "compression": "zstd"}])
    bomb = zstandard.ZstdCompressor(level=1).compressobj()
    zeros = bytes(1 << 20)
    out = b"".join(bomb.compress(zeros) for _ in range(256)) + bomb.flush()
    assert len(out) < 1 << 20 < msglog.MAX_CHUNK_OUT < 256 << 20
    with open(path, "ab") as f:
        f.write(LEN.pack(len(meta)) + meta + LEN.pack(len(out) | CHUNK) + out)
    inflated = []
    real = msglog._Capped.write

    def write(self, data):
        try:
            return real(self, data)
        except msglog._Inflated:
            inflated.append(len(self.buf))
            raise

    monkeypatch.setattr(msglog._Capped, "write", write)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    log_file = open_log(path)
    read = [(r.direction, r.plane, r.reason, r.frames, r.kind) for r in log_file]
    assert read[:-1] == whole and read[-1][0] == "meta"    # the restart's meta record
    assert log_file.truncated_tail is True
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 2 * msglog.MAX_CHUNK_OUT // 1024, grown_kib
    assert inflated and inflated[0] <= msglog.MAX_CHUNK_OUT   # stopped by the cap
