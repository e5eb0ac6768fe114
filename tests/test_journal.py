"""The coordinator's journal: whole records read back, a torn last one ignored and counted."""

from __future__ import annotations

import pytest

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
