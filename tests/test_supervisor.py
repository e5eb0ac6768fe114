"""The one supervisor both launchers share, over real child processes of this test (each
ended by its PID)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from agentd.launch.local import LocalChild
from agentd.launch.supervisor import LaunchError, Supervisor, Unreachable


def python(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], start_new_session=True)


def child(name: str, code: str) -> LocalChild:
    return LocalChild(name, lambda: python(code))


SLEEP = "import time; time.sleep(60)"
STUBBORN = ("import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "sys.stdout.write('ready\\n'); sys.stdout.flush(); time.sleep(60)")


def test_a_member_that_failed_is_restarted_up_to_max_restarts_a_clean_exit_never(tmp_path,
                                                                                capsys):
    sup = Supervisor(tmp_path, max_restarts=2)
    coord = child("coordinator", SLEEP)
    failing, clean = child("agent-0", "raise SystemExit(3)"), child("agent-1", "pass")
    sup.members += [coord, failing, clean]
    try:
        first = failing.proc.pid
        for _ in range(4):
            failing.proc.wait(10)
            clean.proc.wait(10)
            sup.supervise()
        assert sup.restarts == {"agent-0": 2} and failing.proc.pid != first
        assert "agent-0 (pid" in capsys.readouterr().err
    finally:
        sup.cleanup(grace=0.1)
    assert all(m.proc.poll() is not None for m in sup.members)


def test_cleanup_terminates_then_kills_whoever_is_left(tmp_path):
    sup = Supervisor(tmp_path, max_restarts=0)
    stubborn = LocalChild("agent-0", lambda: subprocess.Popen(
        [sys.executable, "-c", STUBBORN], stdout=subprocess.PIPE, start_new_session=True))
    sup.members += [child("coordinator", SLEEP), stubborn]
    assert stubborn.proc.stdout.readline() == b"ready\n"     # SIGTERM is ignored from here
    started = time.monotonic()
    sup.cleanup(grace=0.2)
    assert sup.members[0].proc.returncode == -signal.SIGTERM
    assert stubborn.proc.returncode == -signal.SIGKILL
    assert time.monotonic() - started < 10
    stubborn.proc.stdout.close()


def test_the_endpoint_or_a_clear_error(tmp_path):
    sup = Supervisor(tmp_path, max_restarts=0)
    gone = child("coordinator", "raise SystemExit(2)")
    gone.proc.wait(10)
    with pytest.raises(LaunchError, match="exited with code 2 before it was ready"):
        sup.wait_endpoint(gone, timeout=5)
    (tmp_path / "coordinator.json").write_text(json.dumps({"endpoint": "tcp://127.0.0.1:5"}))
    coord = child("coordinator", SLEEP)
    try:
        assert sup.wait_endpoint(coord, timeout=5) == "tcp://127.0.0.1:5"
    finally:
        coord.send_signal(signal.SIGKILL)
        coord.proc.wait(10)


def test_wait_forwards_a_stop_signal_to_the_coordinator_and_returns_its_code(tmp_path):
    sup = Supervisor(tmp_path, max_restarts=0)
    coord = child("coordinator", SLEEP)
    sup.members.append(coord)
    sup.stop_signal = signal.SIGTERM       # as if Ctrl-C had reached the launcher
    assert sup.wait(coord) == -signal.SIGTERM


def test_an_unreachable_member_is_skipped(tmp_path):
    class Lost:
        name = "agent-0"

        def poll(self):
            raise Unreachable("its actor is gone")

        def restart(self):
            raise AssertionError("never restarted")

        def send_signal(self, signum):
            raise AssertionError("never signalled")

    sup = Supervisor(tmp_path, max_restarts=3)
    sup.members += [child("coordinator", "pass"), Lost()]
    sup.supervise()
    sup.cleanup(grace=0.5)
    assert sup.restarts == {}


def test_a_dead_coordinator_with_a_journal_is_resumed_until_it_writes_the_summary(tmp_path,
                                                                                 capsys):
    """Killed (no summary.json yet, a journal there): started again with its resume command,
    up to max(max_restarts, 3) times; one that wrote summary.json and exited is the end."""
    (tmp_path / "journal.jsonl").write_text("")
    sup = Supervisor(tmp_path, max_restarts=0)
    summary = tmp_path / "summary.json"
    ends = f"open({str(summary)!r}, 'w').write('{{}}'); raise SystemExit(1)"
    coord = LocalChild("coordinator", lambda: python("import os; os.kill(os.getpid(), 9)"),
                       lambda: python(ends if sup.restarts.get("coordinator") == 2 else
                                      "import os; os.kill(os.getpid(), 9)"))
    sup.members.append(coord)
    try:
        assert sup.wait(coord) == 1          # the run's own code, once it had ended it
    finally:
        sup.cleanup(grace=0.1)
    assert sup.restarts == {"coordinator": 2}
    assert capsys.readouterr().err.count("resuming it from its journal") == 2


def test_a_coordinator_that_keeps_dying_is_resumed_three_times_then_its_code_is_returned(
        tmp_path):
    (tmp_path / "journal.jsonl").write_text("")
    sup = Supervisor(tmp_path, max_restarts=1)
    coord = LocalChild("coordinator", lambda: python("raise SystemExit(5)"),
                       lambda: python("raise SystemExit(5)"))
    sup.members.append(coord)
    try:
        assert sup.wait(coord) == 5
    finally:
        sup.cleanup(grace=0.1)
    assert sup.restarts == {"coordinator": 3}
    # without a journal (it never started the run) it is not resumed at all
    (tmp_path / "journal.jsonl").unlink()
    sup = Supervisor(tmp_path, max_restarts=1)
    coord = LocalChild("coordinator", lambda: python("raise SystemExit(2)"),
                       lambda: python("raise SystemExit(2)"))
    sup.members.append(coord)
    assert sup.wait(coord) == 2 and sup.restarts == {}
