"""A hand-started process that joins a run says, within a few seconds and again every few
seconds, what it waits for and until when: nothing listening at the endpoint, a coordinator
that has not welcomed it yet, or a coordinator endpoint file not yet written."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time

import zmq


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def agent_lines(join: str, join_timeout: float) -> tuple[list[tuple[float, str]], int]:
    """Run ``agentd agent --join JOIN`` to its end: (its stderr lines with the seconds since
    start at which each came, its exit code)."""
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "agentd", "agent", "--join", join,
                             "--join-timeout", str(join_timeout)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[tuple[float, str]] = []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append((time.monotonic() - started, line.strip()))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        code = proc.wait(timeout=join_timeout + 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(10)
    return lines, code


def test_nothing_listening_is_said_within_seconds_and_again_until_the_timeout():
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    lines, code = agent_lines(endpoint, 9)
    said = [(t, text) for t, text in lines if f"nothing answers at {endpoint}" in text]
    assert len(said) >= 2, lines
    assert said[0][0] < 6.0, said          # ~2 s after it starts (plus its start-up)
    assert said[1][0] - said[0][0] > 3.0   # again, a few seconds later
    for _, text in said:
        assert "still trying until " in text and "left of the join timeout" in text
    assert code == 1
    assert f"nothing answered at {endpoint} within 9 s" in lines[-1][1]


def test_a_coordinator_that_has_not_welcomed_yet_is_waited_for_and_named():
    """A ROUTER that takes the hello and never answers: the agent says it is connected and
    waits for the welcome."""
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.linger = 0
    try:
        port = router.bind_to_random_port("tcp://127.0.0.1")
        endpoint = f"tcp://127.0.0.1:{port}"
        lines, code = agent_lines(endpoint, 6)
        assert router.poll(0), "the agent sent no hello"
    finally:
        router.close()
        ctx.term()
    said = [text for _, text in lines if f"connected to the coordinator at {endpoint}" in text]
    assert said and "for its welcome" in said[0] and "waiting until " in said[0], lines
    assert not any("nothing answers" in text for _, text in lines)
    assert code == 1 and "no welcome from the coordinator within 6 s" in lines[-1][1]


def test_an_endpoint_file_not_yet_written_is_waited_for_and_named(tmp_path):
    path = tmp_path / "coordinator.json"
    lines, code = agent_lines(f"@{path}", 8)
    said = [(t, text) for t, text in lines
            if f"for the coordinator's endpoint in {path}" in text]
    assert len(said) >= 2 and said[0][0] < 6.0, lines
    assert "waiting until " in said[0][1]
    assert code != 0 and f"no coordinator endpoint in {path} after 8 s" in lines[-1][1]
