"""Secure mode on real sockets: keys bind identities, every bad client is refused and counted.

Transport-level cases use real Transports in one process (an agent's peer ROUTER, a
neighbour's DEALER) and raw ZeroMQ clients as attackers; the live case attacks a running
``agentd launch --secure`` and checks the run completes untouched.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import zmq
from conftest import read_json, wait_for

from agentd.runtime.keys import load_keys, new_keys
from agentd.runtime.transport import Transport
from protocols import Codec, Guard, encode

PR_BODY = {"qid": 0, "states": np.array([3], dtype=np.int64),
           "values": np.array([[0.25, 0.75]], dtype=np.float64)}


@pytest.fixture
def keydir(tmp_path: Path) -> Path:
    new_keys(tmp_path / "keys", 4)
    return tmp_path / "keys"


def agent_transport(keydir: Path, i: int, neighbours: set[int]) -> Transport:
    return Transport(i, Guard(i, neighbours, {"pr_values"}), None, load_keys(keydir, f"agent-{i}"))


def attacker(ctx: zmq.Context, endpoint: str, keypair: tuple[bytes, bytes] | None = None,
             server_key: bytes | None = None, routing_id: bytes | None = None) -> zmq.Socket:
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    if keypair is not None:
        sock.curve_publickey, sock.curve_secretkey = keypair
        sock.curve_serverkey = server_key
    if routing_id is not None:
        sock.routing_id = routing_id
    sock.connect(endpoint)
    return sock


def serve_until(t: Transport, predicate, timeout: float = 10.0) -> list:
    """Receive on every link until predicate(received) holds; returns what was accepted."""
    got: list = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate(got):
        for link in t.poll(50):
            got += t.recv_all(link)
    return got


def keypair(keydir: Path, name: str) -> tuple[bytes, bytes]:
    k = load_keys(keydir, name).identity
    return k.public, k.secret


def test_spoofed_ids_are_refused_while_the_owner_is_connected_and_after_it_left(keydir):
    """Agent 0's neighbours are 1 and 3. Agent 3's real key claims to be agent 1, by routing
    identity and by header src, while agent 1 is connected and after it has gone."""
    server = agent_transport(keydir, 0, {1, 3})
    one = agent_transport(keydir, 1, {0})
    ctx = zmq.Context()
    codec = Codec()
    try:
        link = server.bind_router("tcp://127.0.0.1:*", "peer")
        to_zero = one.connect_dealer(link.endpoint, "peer", 0)
        one.send(to_zero, "pr_values", 0, PR_BODY, step=1)
        got = serve_until(server, lambda g: len(g) >= 1)
        assert [(m.src, m.kind) for m, _ in got] == [(1, "pr_values")]
        assert got[0][1][0] == 0                       # a routing id ZeroMQ assigned itself
        pub0 = load_keys(keydir, "agent-0").identity.public
        three = keypair(keydir, "agent-3")

        def spoof_round() -> None:
            as_routing = attacker(ctx, link.endpoint, three, pub0, routing_id=b"a1")
            as_src = attacker(ctx, link.endpoint, three, pub0)
            as_routing.send(encode(codec, "pr_values", 3, 0, 2, 1, PR_BODY))
            as_src.send(encode(codec, "pr_values", 1, 0, 2, 1, PR_BODY))
            before = server.stats["peer"].rejected["spoofed"]
            assert serve_until(server, lambda g: server.stats["peer"].rejected["spoofed"]
                               >= before + 2) == []
            as_routing.close()
            as_src.close()

        spoof_round()                                   # agent 1 connected
        one.close()
        time.sleep(0.3)
        spoof_round()                                   # agent 1 gone
        assert server.stats["peer"].rejected == {"spoofed": 4}
        assert server.stats["peer"].msgs_recv == 1      # only agent 1's own message got in
    finally:
        ctx.destroy(linger=0)
        server.close()
        if one.links:
            one.close()


def test_bad_clients_fail_the_handshake_and_are_counted_with_their_address(keydir):
    server = agent_transport(keydir, 0, {1, 3})
    ctx = zmq.Context()
    codec = Codec()
    try:
        link = server.bind_router("tcp://127.0.0.1:*", "peer")
        pub0 = load_keys(keydir, "agent-0").identity.public
        frame = encode(codec, "pr_values", 1, 0, 1, 1, PR_BODY)
        clients = [
            attacker(ctx, link.endpoint),                                   # plaintext
            attacker(ctx, link.endpoint, zmq.curve_keypair(), pub0),        # unknown key
            attacker(ctx, link.endpoint, keypair(keydir, "agent-1"),
                     zmq.curve_keypair()[0]),                               # wrong server key
            attacker(ctx, link.endpoint, keypair(keydir, "envserver"), pub0),  # not a peer
        ]
        for c in clients:
            c.send(frame)
        failed = server.stats["peer"].handshakes_failed
        got = serve_until(server, lambda g: failed["handshake_failed_auth"] >= 2
                          and failed["handshake_failed_protocol"] >= 2, timeout=15)
        assert got == [] and server.stats["peer"].msgs_recv == 0
        assert set(failed) <= {"handshake_failed_auth", "handshake_failed_protocol",
                               "handshake_failed_no_detail"}
        peers = " ".join(server.handshake_peers)
        assert "handshake_failed_auth 127.0.0.1" in peers      # the ZAP request's address
        summary = server.summary()
        assert summary["secure"] is True
        assert summary["planes"]["peer"]["handshakes_failed"] == dict(failed)
    finally:
        ctx.destroy(linger=0)
        server.close()


def test_a_secure_agent_says_why_an_insecure_coordinator_will_not_talk_to_it(runs, tmp_path,
                                                                             keydir):
    run_dir = tmp_path / "run"
    coord = runs.start(["coordinator", "--bind", "tcp://127.0.0.1:*", "--run-dir", str(run_dir),
                        "--n", "1", "--steps", "10", "--quiet"], run_dir)
    wait_for(lambda: (run_dir / "coordinator.json").exists(), 30, "the coordinator")
    endpoint = read_json(run_dir / "coordinator.json")["endpoint"]
    agent = runs.start(["agent", "--join", endpoint, "--keys", str(keydir), "--id", "0",
                        "--join-timeout", "60"])
    out, _ = agent.communicate(timeout=60)
    assert agent.returncode == 1
    assert b"secure handshake with the coordinator" in out and b"with keys" in out
    coord.send_signal(signal.SIGTERM)
    coord.wait(30)


def test_attack_matrix_against_a_live_secure_run(runs, tmp_path):
    """Plaintext client, unknown key, wrong server key, and an enrolled key claiming other
    identities on every plane: each refused and counted by reason, nothing reaches a learner,
    the run completes with sent == received on every legitimate edge."""
    run_dir = tmp_path / "run"
    proc = runs.start(["launch", "--secure", "--run-dir", str(run_dir), "--quiet", "--n", "4",
                       "--algo", "pr", "--env", "digital", "--steps", "1500",
                       "--episode-len", "50"], run_dir)
    wait_for(lambda: (run_dir / "metrics.jsonl").exists() and
             (run_dir / "metrics.jsonl").stat().st_size > 0, 90, "the first episodes")
    ep = read_json(run_dir / "endpoints.json")
    keys = run_dir / "keys"
    registry = load_keys(keys, "agent-3").registry
    peer0, env, coord = (ep["agents"]["0"]["endpoint"], ep["envserver"]["endpoint"],
                         ep["coordinator"]["endpoint"])
    three = keypair(keys, "agent-3")        # agent 3 is a neighbour of 0 on the 4-ring
    codec = Codec()
    ctx = zmq.Context()
    try:
        socks = [
            attacker(ctx, peer0),
            attacker(ctx, peer0, zmq.curve_keypair(), registry.public("agent-0")),
            attacker(ctx, peer0, three, zmq.curve_keypair()[0]),
        ]
        spoof_routing = attacker(ctx, peer0, three, registry.public("agent-0"), b"a1")
        spoof_src = attacker(ctx, peer0, three, registry.public("agent-0"))
        spoof_act = attacker(ctx, env, three, registry.public("envserver"))
        hello_as_1 = attacker(ctx, coord, three, registry.public("coordinator"))
        hello_as_env = attacker(ctx, coord, three, registry.public("coordinator"))
        for s in socks:
            s.send(encode(codec, "pr_values", 1, 0, 1, 1, PR_BODY))
        spoof_routing.send(encode(codec, "pr_values", 3, 0, 5, 1, PR_BODY))
        spoof_src.send(encode(codec, "pr_values", 1, 0, 5, 1, PR_BODY))
        spoof_act.send(encode(codec, "act", 1, -2, 5, 1,
                              {"t": 5, "a": np.zeros((1, 1), dtype=np.int64)}))
        hello = {"role": "agent", "pid": 1, "host": "x", "endpoint": None, "caps": {}}
        hello_as_1.send(encode(codec, "hello", 3, -1, 0, 1, {**hello, "want_id": 1}))
        hello_as_env.send(encode(codec, "hello", 3, -1, 0, 1,
                                 {**hello, "role": "envserver", "want_id": None}))
        time.sleep(1.0)                     # the wrong-server-key client retries meanwhile
    finally:
        ctx.destroy(linger=0)
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, out.decode()[-2000:]

    s = read_json(run_dir / "summary.json")
    assert s["status"] == "done" and s["secure"] is True
    zero = s["agents"]["0"]
    assert zero["rejected"] == {"spoofed": 2}
    assert zero["handshakes_failed"].get("handshake_failed_auth", 0) >= 1      # unknown key
    assert zero["handshakes_failed"].get("handshake_failed_protocol", 0) >= 1  # wrong server key
    assert sum(zero["handshakes_failed"].values()) >= 3
    assert s["envserver"]["rejected"] == {"spoofed": 1}
    assert s["coordinator"]["rejected"] == {"spoofed": 2}
    assert s["security"]["spoofed"] == 5
    assert "agent 0" in " ".join(s["security"]["handshakes_failed_by_process"])
    for other in ("1", "2", "3"):
        assert s["agents"][other]["rejected"] == {}

    audit = runs.start(["audit", str(run_dir)])
    text, _ = audit.communicate(timeout=120)
    assert audit.returncode == 0, text.decode()
    report = json.loads((run_dir / "audit.json").read_text())
    assert report["sent_not_received"] == []
    peer_rows = [e for e in report["edges"] if e["plane"] == "peer"]
    assert len(peer_rows) == 8 and all(e["sent"] == e["received"] == 1500 for e in peer_rows)
    into_zero = sum(e["received"] for e in peer_rows if e["dst"] == "agent 0")
    assert zero["planes"]["peer"]["msgs_recv"] == into_zero == 3000   # nothing else got in
    assert {r["reason"] for r in report["rejections"]} == {"spoofed"}
    assert {h["process"] for h in report["handshakes_failed"]} == {"agent 0"}
    assert b"every process ran CURVE" in text
