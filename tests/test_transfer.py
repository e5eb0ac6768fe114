"""The run-directory transfer under attack: what a sender announces is checked against its own
expected files and the run's limits before anything touches the disk, no link is followed,
a sender that stalls is given up, and a live run with a hostile enrolled client completes
with every refusal counted and nothing written outside the run directory."""

from __future__ import annotations

import os
import time
import zlib
from pathlib import Path

import pytest
from hostile import AGENT_IDS, CoordinatorUnderAttack, frame_for

from agentd.runtime.msglog import MessageLog
from agentd.runtime.runfiles import RunFiles, own_files
from coordinator.collect import Collector, Limits, limits
from protocols import COORDINATOR, Guard
from protocols.errors import ProtocolError

SHA = "0" * 64
BIG = Limits(max_files=20, process_bytes=1 << 30, log_bytes=1 << 20)


def collector(run: Path) -> tuple[Collector, list]:
    run.mkdir(exist_ok=True)
    outbox: list = []
    return Collector(run, lambda k, kind, body: outbox.append((k, kind, body)), 1 << 20), outbox


def serve(c: Collector, outbox: list, content: dict[str, bytes]) -> None:
    while outbox:
        name, kind, body = outbox.pop(0)
        if kind == "file_get":
            data = content[body["path"]][body["offset"]:body["offset"] + body["length"]]
            c.on_chunk(name, {**body, "data": data, "crc32": zlib.crc32(data)})


@pytest.mark.parametrize("entry,reason", [
    (["logs/agent-2.log\x00.x", 5, SHA], "not_its_file"),         # ValueError before
    (["logs/" + "a" * 300 + ".log", 5, SHA], "not_its_file"),     # ENAMETOOLONG before
    (["logs/agent-2.log", 1 << 62, SHA], "too_large"),            # EFBIG before
    (["logs/agent-2.log", 1 << 40, SHA], "too_large"),            # 1 TiB was pulled
    (["checkpoints/agent-2/step-1.npz", 1 << 31, SHA], "too_large"),
    (["logs/agent-3.log", 5, SHA], "not_its_file"),
    (["checkpoints/agent-2/sub/step-1.npz", 5, SHA], "not_its_file"),
])
def test_announced_entries_are_checked_before_the_disk(tmp_path, entry, reason):
    c, _ = collector(tmp_path / "run")
    small = Limits(max_files=20, process_bytes=1 << 30, log_bytes=1 << 20)
    c.announce("agent-2", [entry], small)
    assert c.refusals == {reason: 1} and c.shipments["agent-2"].files == {}
    assert sorted(p.name for p in (tmp_path / "run").rglob("*")) == []


def test_too_many_entries_are_refused_by_the_guard_or_the_file_cap(tmp_path):
    entries = [[f"checkpoints/agent-0/step-{i}.npz", 1, SHA] for i in range(20_000)]
    with pytest.raises(ProtocolError):      # 20,000 entries were accepted before
        Guard(COORDINATOR).incoming([frame_for("files", {"files": entries}, src=0)],
                                    "control")
    c, _ = collector(tmp_path / "run")
    c.announce("agent-0", entries[:100], Limits(max_files=30, process_bytes=1 << 20,
                                               log_bytes=1 << 20))
    assert len(c.shipments["agent-0"].files) == 30 and c.refusals == {"too_many_files": 70}
    assert len(c.refused) == 70 and c.report()["refusals"] == {"too_many_files": 70}


def test_what_one_process_ships_is_capped_as_a_whole(tmp_path):
    c, _ = collector(tmp_path / "run")
    c.announce("agent-0", [["checkpoints/agent-0.npz", 600 << 20, SHA],
                           ["checkpoints/agent-0/step-1.npz", 600 << 20, SHA]], BIG)
    assert list(c.shipments["agent-0"].files) == ["checkpoints/agent-0.npz"]
    assert c.refusals == {"over_process_cap": 1}


def test_limits_follow_from_the_run(tmp_path):
    stats = {"bytes_sent": 1000, "bytes_recv": 2000, "msgs_sent": 10, "msgs_recv": 20,
             "rejected": {"malformed": 2}, "handshakes_failed": {}}
    lim = limits(steps=1000, checkpoint_every=100, stats=stats, free_bytes=11 << 30,
                 shippers=2)
    assert lim.max_files == 3 + 10 + 16
    assert lim.process_bytes == 5 << 30
    assert lim.log_bytes == 3000 + 64 * 30 + 2 * (4096 + 64) + (1 << 20)
    assert lim.file_cap("logs/agent-0.log") == lim.log_bytes
    small = limits(10, 0, None, 512 << 20, 4)          # a 512 MiB disk keeps 64 MiB free
    assert small.process_bytes == (448 << 20) // 4 and small.log_bytes == small.process_bytes
    assert limits(10, 0, None, 0, 1).process_bytes == 0                 # no room: nothing


def test_a_name_that_is_a_directory_is_given_up_not_fatal(tmp_path):
    c, outbox = collector(tmp_path / "run")
    (tmp_path / "run" / "logs" / "agent-2.log").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints").mkdir()
    (tmp_path / "run" / "checkpoints" / "agent-2").write_bytes(b"a file, not a directory")
    content = {"logs/agent-2.log": b"abc", "checkpoints/agent-2/step-1.npz": b"xyz"}
    import hashlib
    c.announce("agent-2", [[p, len(d), hashlib.sha256(d).hexdigest()]
                           for p, d in content.items()], BIG)
    serve(c, outbox, content)
    ship = c.shipments["agent-2"]
    assert ship.finished and sorted(ship.failed) == sorted(content)
    assert c.refusals == {"disk_refused": 2}


@pytest.mark.parametrize("plant", ["logs", "part", "checkpoints"])
def test_no_link_in_the_run_directory_is_followed(tmp_path, plant):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "target").write_bytes(b"keep me")
    run = tmp_path / "run"
    run.mkdir()
    if plant == "logs":
        (run / "logs").symlink_to(outside, target_is_directory=True)
        path = "logs/agent-2.log"
    elif plant == "part":
        (run / "logs").mkdir()
        (run / "logs" / "agent-2.log.part").symlink_to(outside / "target")
        path = "logs/agent-2.log"
    else:
        (run / "checkpoints").mkdir()
        (run / "checkpoints" / "agent-2").symlink_to(outside, target_is_directory=True)
        path = "checkpoints/agent-2/step-5.npz"
    c, outbox = collector(run)
    import hashlib
    data = b"hostile bytes"
    c.announce("agent-2", [[path, len(data), hashlib.sha256(data).hexdigest()]], BIG)
    serve(c, outbox, {path: data})
    assert c.refusals == {"disk_refused": 1}
    assert sorted(p.name for p in outside.iterdir()) == ["target"]
    assert (outside / "target").read_bytes() == b"keep me"


def test_a_sender_that_serves_nothing_is_given_up_however_alive_it_is(tmp_path):
    c, outbox = collector(tmp_path / "run")
    c.announce("agent-2", [["checkpoints/agent-2.npz", 3 << 20, SHA]], BIG, silence=0.2)
    assert [k for _, k, _ in outbox].count("file_get") == 8      # the window
    assert c.overdue("agent-2", time.monotonic(), 0.2) is None
    time.sleep(0.3)
    assert "no chunk" in c.overdue("agent-2", time.monotonic(), 0.2)
    # the deadline stands even for a sender that keeps delivering
    assert "deadline" in c.overdue("agent-2", time.monotonic() + 10, 100)
    c.abandon("agent-2", "stalled")
    assert c.busy() == [] and c.refusals == {"abandoned": 1}
    assert not list((tmp_path / "run").rglob("*.part"))


def test_a_sender_offers_only_names_the_coordinator_accepts(tmp_path):
    root = tmp_path / "local"
    for rel in ["logs/agent-1.log", "logs/agent-1.out", "logs/agent-1.weird",
                "checkpoints/agent-1.npz", "checkpoints/agent-1/step-10.npz",
                "checkpoints/agent-1/deep/step-1.npz"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    (root / "logs" / "agent-1.link").symlink_to(root / "logs" / "agent-1.log")
    names = [p.relative_to(root).as_posix() for p in own_files(root, "agent-1")]
    assert names == ["logs/agent-1.log", "logs/agent-1.out", "checkpoints/agent-1.npz",
                     "checkpoints/agent-1/step-10.npz"]


def test_run_directories_and_logs_are_owner_only_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        files = RunFiles.choose({"run_dir": str(tmp_path / "coord"), "run_id": "x"},
                                "agent-0", str(tmp_path / "mine" / "run"))
        log = MessageLog("agent 0", files.log_path)
        log.close()
    finally:
        os.umask(old)
    for d in (tmp_path / "mine", files.root, files.root / "logs"):
        assert d.stat().st_mode & 0o777 == 0o700, d
    assert files.log_path.stat().st_mode & 0o777 == 0o600


def test_the_coordinator_run_directory_is_owner_only(tmp_path):
    h = CoordinatorUnderAttack(tmp_path / "run")
    try:
        assert (tmp_path / "run").stat().st_mode & 0o777 == 0o700
        assert (tmp_path / "run" / "logs" / "coordinator.log").stat().st_mode & 0o777 == 0o600
        h.end_of_run()     # the end of the run: a shipment from an agent is taken
        files = {"files": [["logs/agent-0.log", 3, SHA], ["logs/envserver.log", 3, SHA]]}
        assert h.feed(frame_for("files", files, src=0), AGENT_IDS[0]) == "accepted"
        assert list(h.coord.collector.shipments["agent-0"].files) == ["logs/agent-0.log"]
        assert h.summary()["files"]["refusals"] == {"not_its_file": 1}
    finally:
        h.close()
