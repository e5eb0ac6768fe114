"""The local env plane: framing over a real Unix socket, who may connect, and live runs that
take it (and give the same run as over ZeroMQ, replayed exactly)."""

from __future__ import annotations

import os
import select
import socket
import struct
import threading
import time

import pytest
from conftest import read_json

from agentd.runtime import localplane
from agentd.runtime.localplane import (
    HEADER,
    LocalClosed,
    LocalConn,
    LocalListener,
    connect,
    machine,
    same_machine,
)
from agentd.tools.replay import compare_state, replay


@pytest.fixture
def pair():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    left, right = LocalConn(a, max_bytes=1 << 20), LocalConn(b, max_bytes=1 << 20)
    try:
        yield left, right
    finally:
        left.close()
        right.close()


@pytest.fixture
def listener():
    lst = LocalListener()
    try:
        yield lst
    finally:
        lst.close()


def _accept(listener, timeout=5.0):
    """What the listener has once its descriptor is readable (the env server polls it)."""
    deadline = time.monotonic() + timeout
    got = listener.accept(1 << 20)
    while got == "no_connection" and time.monotonic() < deadline:
        select.select([listener], [], [], 0.05)
        got = listener.accept(1 << 20)
    return got


def test_frames_arrive_whole_and_in_order(pair):
    left, right = pair
    frames = [b"", b"x", os.urandom(300), os.urandom(200_000), b"last"]
    assert right.recv(None) is None          # nothing yet: no wait, no frame
    for f in frames[:3]:
        left.send(f, 1.0)
    got = [right.recv(1.0) for _ in range(3)]
    # a frame larger than the socket's buffer: the writer blocks until the reader reads
    writer = threading.Thread(target=lambda: [left.send(f, 10.0) for f in frames[3:]])
    writer.start()
    try:
        got += [right.recv(10.0), right.recv(10.0)]
    finally:
        writer.join(20)
    assert got == frames
    assert right.recv(0.01) is None


def test_a_frame_split_across_writes_is_held_until_whole(pair):
    left, right = pair
    raw = HEADER.pack(5) + b"hello" + HEADER.pack(3)
    left.sock.sendall(raw[:6])
    assert right.recv(0.05) is None
    left.sock.sendall(raw[6:])
    assert right.recv(1.0) == b"hello"
    assert right.recv(0.05) is None       # the second header alone is not a frame
    left.sock.sendall(b"abc")
    assert right.recv(1.0) == b"abc"


def test_an_oversize_frame_or_the_end_of_the_stream_closes_the_connection(pair):
    left, right = pair
    left.sock.sendall(struct.pack("<I", (1 << 20) + 1))
    with pytest.raises(LocalClosed, match="over the cap"):
        right.recv(1.0)
    with pytest.raises(LocalClosed):
        right.recv(None)
    left.close()


def test_end_of_stream(pair):
    left, right = pair
    left.send(b"one", 1.0)
    left.close()
    assert right.recv(1.0) == b"one"
    with pytest.raises(LocalClosed, match="closed"):
        right.recv(1.0)


def test_a_connection_gets_its_token_to_the_listener(listener):
    offer = listener.offer()
    assert same_machine(offer)
    conn, token = connect(offer, 1 << 20)
    try:
        got = _accept(listener)
        assert not isinstance(got, str)
        server, seen = got
        assert seen.hex() == token
        conn.send(b"act", 1.0)
        assert server.recv(1.0) == b"act"
        server.close()
    finally:
        conn.close()
    assert listener.accept(1 << 20) == "no_connection"


def test_a_connection_without_its_token_is_refused(listener):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(listener.path)
        sock.sendall(b"short")
        sock.shutdown(socket.SHUT_WR)
        assert _accept(listener) == "no_token"
    finally:
        sock.close()


def test_a_silent_connection_never_stalls_the_listener(listener, monkeypatch):
    """Connections that send nothing cost accept() nothing; they are refused once their
    time is up, or when newer ones push them out; a good connection still gets through."""
    monkeypatch.setattr(localplane, "TOKEN_WAIT", 0.5)
    monkeypatch.setattr(localplane, "MAX_WAITING", 3)
    silent = []
    try:
        for _ in range(4):
            silent.append(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
            silent[-1].connect(listener.path)
        started = time.monotonic()
        seen = [listener.accept(1 << 20) for _ in range(20)]
        assert time.monotonic() - started < 0.2          # no wait for a token
        assert seen.count("no_token") == 1               # the oldest of four, pushed out
        conn, token = connect(listener.offer(), 1 << 20)
        got = _accept(listener)
        assert got == "no_token"                         # the next oldest makes room
        got = _accept(listener)
        assert not isinstance(got, str) and got[1].hex() == token
        got[0].close()
        conn.close()
        time.sleep(0.6)
        assert [_accept(listener, 0.5) for _ in range(2)] == ["no_token"] * 2
        assert listener.accept(1 << 20) == "no_connection" and not listener.waiting
    finally:
        for s in silent:
            s.close()


def test_the_socket_leaves_no_file_and_its_name_is_gone_with_it():
    lst = LocalListener()
    assert lst.path.startswith("\0agentd-env-")      # the abstract namespace: no file
    offer = lst.offer()
    lst.close()
    with pytest.raises(ConnectionRefusedError):
        connect(offer, 1 << 20)


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to connect as another user")
def test_another_user_is_refused(listener):
    pid = os.fork()
    if pid == 0:      # the child: become nobody, connect and send a well-formed token
        code = 1
        try:
            os.setuid(65534)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(listener.path)
            code = 0            # connected; the listener may refuse it before the token
            try:
                s.sendall(b"t" * 16)
                s.recv(1)       # until the listener closes it
            except OSError:
                pass
        finally:
            os._exit(code)
    try:
        assert _accept(listener) == "foreign_uid"
    finally:
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_another_machine_or_namespace_is_not_the_same_machine():
    here = {"path": "/x", **machine()}
    assert same_machine(here)
    assert not same_machine(None) and not same_machine({**here, "path": ""})
    for key, other in (("host", "elsewhere"), ("boot", "x"), ("netns", 1), ("uid", 12345)):
        assert not same_machine({**here, key: other})


def test_a_run_takes_the_local_plane_and_learns_exactly_as_over_zeromq(runs, tmp_path):
    args = ["--n", "3", "--steps", "300", "--seed", "3"]
    local, zmq_dir = tmp_path / "local", tmp_path / "zmq"
    for run_dir, extra in ((local, []), (zmq_dir, ["--env-plane", "zmq"])):
        res = runs.launch(run_dir, *args, *extra)
        assert res.returncode == 0, res.stdout
    s_local, s_zmq = read_json(local / "summary.json"), read_json(zmq_dir / "summary.json")
    assert s_local["envserver"]["env_plane"] == {"local": 3, "zmq": 0}
    assert s_zmq["envserver"]["env_plane"] == {"local": 0, "zmq": 3}
    assert {a["env_plane"] for a in s_local["agents"].values()} == {"local"}
    assert s_local["envserver"]["rejected"] == {}
    assert s_local["final_return"] == s_zmq["final_return"]
    for agent in range(3):       # the same bytes either way: the logs replay exactly
        res = replay(local, agent)
        assert res.actions_compared == 300 and res.first_divergence is None
        assert all(compare_state(res.state, local / "checkpoints" / f"agent-{agent}.npz")
                   .values())
