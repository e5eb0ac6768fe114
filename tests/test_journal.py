"""The coordinator's journal (whole records read back, a torn last one ignored and counted)
and a process's outbox while the coordinator is away (bounded, resent once to a new epoch)."""

from __future__ import annotations

import pytest

from agentd.runtime import outage
from agentd.runtime.outage import Outbox
from coordinator.journal import Journal, JournalError, read_journal


def test_a_torn_last_journal_record_is_ignored_and_counted_and_an_earlier_one_is_an_error(
        tmp_path):
    j = Journal(tmp_path)
    j.write("start", run_id="r", endpoint="tcp://127.0.0.1:1", secure=False, wall=0.0, n=1)
    j.write("running")
    j.close()
    whole = (tmp_path / "journal.jsonl").read_bytes()
    for torn in (b'1234abcd {"r":"ph', b'00000000 {"r":"phase"}\n', b"garbage"):
        (tmp_path / "journal.jsonl").write_bytes(whole + torn)
        got = read_journal(tmp_path)
        assert got.torn == 1 and [r["r"] for r in got.records] == ["start", "running"]
        assert (tmp_path / "journal.jsonl").read_bytes() == whole    # cut off the file
    assert read_journal(tmp_path).torn == 0
    lines = whole.split(b"\n")
    (tmp_path / "journal.jsonl").write_bytes(lines[0][:-3] + b"xyz\n" + lines[1] + b"\n")
    with pytest.raises(JournalError, match="record 1 is damaged and more follow"):
        read_journal(tmp_path)
    with pytest.raises(JournalError, match="no coordinator journal"):
        read_journal(tmp_path / "nothing")


def test_the_outbox_queues_in_an_outage_drops_the_oldest_and_resends_once_to_a_new_epoch(
        monkeypatch):
    monkeypatch.setattr(outage, "QUEUE_MAX", 3)
    box = Outbox()
    ep1 = {"step": 1}
    assert not box.hold("episodes", ep1, 1)          # sent now, kept for a new epoch
    assert not box.hold("metrics", {"step": 1}, 1)   # sent now, not kept
    assert box.end(10.0, 0) == []                    # the same coordinator: nothing again
    box.begin(5.0)
    assert not box.hold("heartbeat", {}, 0)          # heartbeats still go to the socket
    bodies = [{"step": k} for k in range(2, 7)]
    for b in bodies:
        assert box.hold("episodes" if b["step"] % 2 else "metrics", b, b["step"])
    assert box.counts["queued"] == 5 and box.counts["dropped"] == 2
    out = box.end(9.0, 1)                            # back, and resumed from its journal
    steps = [step for _, _, step in out]
    # the latest counted reports first (ep1, 3, 5), then the queue (4, 5, 6): 5 only once
    assert steps == [1, 3, 5, 4, 6], steps
    assert box.counts["outages"] == 1 and box.counts["outage_s"] == 4.0
    assert box.counts["resent"] == 3 and box.epoch == 1 and box.since is None
    assert not box.queued and box.end(10.0, 1) == []


def test_a_report_sent_again_is_counted_once_whatever_the_order(tmp_path):
    """The episodes a resumed coordinator is sent again may come after later ones (those the
    socket held): each env step's episodes are counted once."""
    from coordinator.resume import Resume

    class Counter(Resume):
        pass

    c = Counter()
    c.counted, c.counted_order, c.forgotten_below = {}, __import__("collections").deque(), -1
    assert [c.new_episodes(s, 1) for s in (20, 40)] == [1, 1]
    assert c.new_episodes(100, 2) == 2          # later ones first (held in the socket)
    assert [c.new_episodes(s, 1) for s in (40, 60, 80)] == [0, 1, 1]   # then the resent ones
    assert c.new_episodes(100, 2) == 0 and c.new_episodes(120, 1) == 1
    assert c.new_episodes(100, 3) == 1          # one more copy at that step than counted
