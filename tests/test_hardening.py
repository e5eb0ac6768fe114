"""Regression tests for what hostile peers found in the protocol layer and in the coordinator's
control handlers: each frame here once crashed a receiver (or slipped past its guard); now it
is refused with a named reason, counted, and the coordinator still writes its summary."""

from __future__ import annotations

import json
import struct
import time
import tracemalloc

import msgpack
import numpy as np
import pytest
from hostile import AGENT_IDS, ENV_ID, CoordinatorUnderAttack, frame_for

from agentd.runtime.sentinel import HandshakeEvent
from agentd.runtime.tally import MAX_PEER_KEYS, Tally
from protocols import COORDINATOR, Codec, Guard, encode, peer_identity
from protocols.envelope import VERSION
from protocols.errors import MalformedFrame, SchemaMismatch
from protocols.fixed import HEAD

codec = Codec()


def raw_frame(header: dict, body: object = None) -> bytes:
    """An envelope with any header at all (the hostile side packs what it likes)."""
    head = codec.pack(header)
    return struct.pack("<H", len(head)) + head + msgpack.packb(body or {})


def header(**changes) -> dict:
    return {"v": VERSION, "k": "heartbeat", "s": 0, "d": COORDINATOR, "t": 0, "q": 1, **changes}


@pytest.mark.parametrize("bad", [
    {"v": np.array([1, 1])}, {"v": [1, 1]}, {"v": 1.0}, {"v": True}, {"v": "1"},
    {"s": True}, {"s": 1.0}, {"d": 1 << 40}, {"t": (1 << 64) - 1}, {"q": None},
    {"k": 7}, {"k": "x" * 100}, {"extra": 1},
], ids=repr)
def test_header_field_types_are_checked_exactly(bad):
    """An array as 'v' raised 'truth value ambiguous'; 1.0 and True passed as version 1."""
    guard = Guard(COORDINATOR)
    with pytest.raises(MalformedFrame):
        guard.incoming([raw_frame(header(**bad))], "control")


def test_zero_element_array_with_a_huge_dimension_is_a_malformed_frame():
    """A dimension >= 2**63 (in a zero-element array) raised numpy's bare ValueError."""
    dims = struct.pack("<BB2Q", 7, 2, 0, 1 << 63)
    fixed_act = HEAD.pack(0xFFFF, 1, 1, 0, -2, 0, 0) + struct.pack("<q", 0) + dims
    with pytest.raises(MalformedFrame):
        Guard(-2).incoming([fixed_act], "env", peer_identity(0))
    body = msgpack.packb({"t": 0, "a": msgpack.ExtType(1, dims)})
    with pytest.raises(MalformedFrame):
        codec.unpack(body)


@pytest.mark.parametrize("kind,body", [
    ("metrics", {"step": 1, "scalars": {}, 0: 1, "x": 1}),     # keys that do not sort
    ("metrics", {0: 1, "x": 1}),
    ("heartbeat", {None: 1, b"k": 2, 1.5: 3}),
])
def test_unexpected_body_keys_of_any_type_are_a_schema_mismatch(kind, body):
    with pytest.raises(SchemaMismatch):
        Guard(COORDINATOR).incoming([frame_for(kind, body, src=0)], "control")


@pytest.mark.parametrize("kind,field,value", [
    ("pr_values", "values", np.array([[np.nan, 1.0]])),
    ("pr_values", "values", np.array([[np.inf, 1.0]])),
    ("consensus", "x", np.array([1.0, -np.inf])),
    ("consensus_sum", "w", float("nan")),
    ("latent", "z", np.full((1, 4), np.nan, dtype=np.float32)),
    ("happo_factor", "factor", np.array([np.inf])),
    ("policy_params", "logits", np.array([[0.5, np.nan]])),
])
def test_peer_numbers_must_be_finite(kind, field, value):
    bodies = {"pr_values": {"qid": 1, "states": np.array([3]), "values": np.ones((1, 2))},
              "consensus": {"t": 1, "r": 0, "idx": np.arange(2), "x": np.zeros(2)},
              "consensus_sum": {"t": 1, "r": 0, "idx": np.arange(2), "s": np.zeros(2),
                                "w": 0.5},
              "latent": {"t": 1, "z": np.zeros((1, 4), dtype=np.float32)},
              "happo_factor": {"it": 0, "factor": np.ones(3)},
              "policy_params": {"episode": 0, "logits": np.zeros((1, 2))}}
    guard = Guard(0, {1}, list(bodies), declared={"latent": {"z": ((1, 4), "float32")}})
    good = encode(codec, kind, 1, 0, 1, 1, bodies[kind])
    assert guard.incoming([good], "peer", peer_identity(1)).kind == kind
    bad = encode(codec, kind, 1, 0, 1, 1, {**bodies[kind], field: value})
    with pytest.raises(SchemaMismatch):
        guard.incoming([bad], "peer", peer_identity(1))


def test_a_frame_of_a_million_empty_lists_is_refused_before_it_is_built():
    """16 MiB of msgpack empty lists decoded to 1.2 GB of Python objects in 6 s."""
    inner = b"\xdc" + (65535).to_bytes(2, "big") + b"\x90" * 65535
    body = b"\xdc" + (250).to_bytes(2, "big") + inner * 250
    head = codec.pack(header(k="metrics"))
    frame = struct.pack("<H", len(head)) + head + body
    with pytest.raises(MalformedFrame, match="than a message of this kind may hold"):
        Guard(COORDINATOR).incoming([frame], "control")


@pytest.mark.parametrize("nested", [False, True])
def test_16_mib_of_short_strings_is_refused_before_it_is_built(nested):
    """One list of 5.6 M two-character strings (or 700 lists of 8,000, each under the
    per-container cap) decoded to ~330 MB of str objects: the items are capped too."""
    strings = [["ab"] * 8000 for _ in range(700)] if nested else ["ab"] * ((16 << 20) // 3)
    head = codec.pack(header(k="metrics"))
    body = codec.pack({"step": 1, "scalars": {"x": strings}})
    frame = struct.pack("<H", len(head)) + head + body
    tracemalloc.start()
    try:
        with pytest.raises(MalformedFrame, match="than a message of this kind may hold"):
            Guard(COORDINATOR, max_bytes=32 << 20).incoming([frame], "control")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, peak


@pytest.fixture
def attacked(tmp_path):
    h = CoordinatorUnderAttack(tmp_path / "run")
    try:
        yield h
    finally:
        h.close()


def agent_says(h: CoordinatorUnderAttack, kind: str, body: object, i: int = 0) -> str:
    return h.feed(frame_for(kind, body, src=i), AGENT_IDS[i])


@pytest.mark.parametrize("kind,body", [
    ("security", {"counts": {"peer": 5}, "peers": []}),          # AttributeError before
    ("security", {"counts": {"peer": {"x": "y"}}, "peers": []}),
    ("security", {"counts": {}, "peers": [["a", "b", "c"]]}),
    ("security", {"counts": {}, "peers": [5]}),
    ("metrics", {"step": 1, "scalars": {"loss": b"bytes"}}),      # TypeError in json.dumps
    ("metrics", {"step": 1, "scalars": {"x": [1, 2]}}),
    ("bye", {"stats": {"planes": {"peer": {"handshakes_failed": {"x": b"1"}}}}}),
    ("bye", {"stats": {"dp": {"edges": {"x": {}}}}}),
    ("bye", {"stats": {"note": b"raw"}}),
    ("bye", {"stats": {"steps_per_s": "fast"}}),
    ("restarted", {"agent": 0, "checkpoint": None, "sha256": None, "step": 1.5,
                   "env_step": 1, "resumed_step": 1, "lost": 0}),
    ("error", {"message": "x", "files": "elsewhere"}),
    ("hello", {"role": "agent", "pid": -1, "host": "h", "endpoint": "x", "want_id": 0,
               "caps": {}}),
])
def test_control_bodies_of_the_wrong_shape_are_refused_and_the_summary_is_written(
        attacked, kind, body):
    assert agent_says(attacked, kind, body) == "rejected"
    s = attacked.summary()
    assert s["coordinator"]["rejected"] == {"schema_mismatch": 1}


def test_only_the_env_server_speaks_for_the_env(attacked):
    h = attacked
    assert agent_says(h, "env_ready", {"spaces": {"obs": [], "act": []}}) == "accepted"
    assert h.coord.spaces["obs"] != []                          # the agent changed nothing
    assert agent_says(h, "episodes", {"step": 1, "returns": np.ones(1),
                                      "lengths": np.ones(1, dtype=np.int64)}) == "accepted"
    assert h.coord.metrics.returns == []
    big = {"step": 1, "truncated": 1 << 40, "reset_seed": 1}
    assert h.feed(frame_for("env_restarted", big, src=-2), ENV_ID) == "rejected"
    five = {"step": 1, "truncated": 5, "reset_seed": 1}             # the run has 1 env copy
    assert h.feed(frame_for("env_restarted", five, src=-2), ENV_ID) == "accepted"
    assert h.coord.restarts.records == []
    many = {"step": 1, "returns": np.ones(60_000), "lengths": np.ones(60_000, dtype=np.int64)}
    assert h.feed(frame_for("episodes", many, src=-2), ENV_ID) == "accepted"
    assert h.coord.metrics.returns == []           # 60,000 episodes from 1 env copy: no
    rejected = h.summary()["coordinator"]["rejected"]
    assert rejected == {"wrong_role": 2, "schema_mismatch": 1, "bad_value": 2}


def test_file_transfer_during_the_run_is_refused_and_listed(attacked):
    h = attacked
    files = {"files": [["logs/agent-0.log", 10, "0" * 64]]}
    assert agent_says(h, "files", files) == "accepted"
    chunk = {"path": "logs/agent-0.log", "offset": 0, "data": b"x", "crc32": 0}
    assert agent_says(h, "file_chunk", chunk) == "accepted"
    assert h.coord.collector.shipments == {}
    s = h.summary()
    assert s["files"]["refusals"] == {"out_of_phase": 2}
    assert s["coordinator"]["rejected"] == {"out_of_phase": 2}
    assert not (h.coord.run_dir / "logs" / "agent-0.log.part").exists()


def test_failed_handshakes_are_kept_per_address_up_to_a_cap():
    """2,300 unauthenticated connections kept 2,300 records (131 KB in summary.json)."""
    tally = Tally(0)
    for i in range(2300):
        tally.handshake(HandshakeEvent("peer", "handshake_failed_auth",
                                       f"10.0.{i // 250}.{i % 250}:{40000 + i}", "no", True),
                        None)
    for port in range(50):      # one client's many connections are one address
        tally.handshake(HandshakeEvent("control", "handshake_failed_protocol",
                                       f"127.0.0.1:{port}", "no", True), None)
    summary = tally.summary({})
    assert summary["handshakes_failed"] == {"handshake_failed_auth": 2300,
                                            "handshake_failed_protocol": 50}
    peers = summary["handshake_peers"]
    assert len(peers) == MAX_PEER_KEYS + 2 and sum(peers.values()) == 2350
    assert peers["peer handshake_failed_auth other"] == 2300 - MAX_PEER_KEYS
    assert peers["control handshake_failed_protocol other"] == 50
    assert len(json.dumps(summary)) < 8000


def test_a_frame_over_the_cap_is_dropped_by_the_socket_and_the_drop_counted():
    """No socket set ZMQ_MAXMSGSIZE: a 128 MiB frame was received and decrypted in full
    before the guard's 16 MiB check. Now ZeroMQ drops the connection on the first bytes."""
    import zmq

    from agentd.runtime.transport import Transport
    server = Transport(0, Guard(0, {1}, ["pr_values"]), None)
    ctx = zmq.Context()
    try:
        link = server.bind_router("tcp://127.0.0.1:*", "peer")
        assert link.sock.getsockopt(zmq.MAXMSGSIZE) == 16 << 20
        client = ctx.socket(zmq.DEALER)
        client.linger = 0
        client.connect(link.endpoint)
        client.send(b"\x00" * (17 << 20))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and server.stats["peer"].disconnects == 0:
            for ready in server.poll(50):
                server.recv_all(ready)
        assert server.stats["peer"].disconnects >= 1
        assert server.stats["peer"].msgs_recv == 0 and server.stats["peer"].rejected == {}
        assert server.summary()["planes"]["peer"]["disconnects"] >= 1
    finally:
        ctx.destroy(linger=0)
        server.close()


def test_an_admitted_agents_bad_action_is_named_not_fatal():
    """The env server refused (and counted) what once ended the run (RunFailed)."""
    from protocols.spaces import action_problem

    discrete, box = {"type": "discrete", "n": 3}, {"type": "box", "shape": [2], "low": 0.0,
                                                  "high": 1.0, "dtype": "float32"}
    assert action_problem(np.zeros((4, 1), np.int64), [discrete], 4) == ""
    assert action_problem(np.zeros((4, 1, 2), np.float32), [box], 4) == ""
    for a, spaces, why in [
        (np.zeros((4, 2), np.int64), [discrete], "bad_action_shape"),
        (np.zeros((3, 1), np.int64), [discrete], "bad_action_shape"),
        (np.zeros(4, np.int64), [discrete], "bad_action_shape"),
        (np.zeros((4, 1, 1), np.int64), [discrete], "bad_action_shape"),
        (np.zeros((4, 1), np.float64), [discrete], "bad_action_dtype"),
        (np.full((4, 1), 3, np.int64), [discrete], "bad_action_value"),
        (np.full((4, 1), -1, np.int64), [discrete], "bad_action_value"),
        (np.zeros((4, 1, 3), np.float32), [box], "bad_action_shape"),
        (np.zeros((4, 1, 2), bool), [box], "bad_action_dtype"),
        (np.full((4, 1, 2), np.nan, np.float32), [box], "bad_action_value"),
    ]:
        assert action_problem(a, spaces, 4) == why, (a.shape, a.dtype, why)


def test_a_welcomes_info_is_checked_field_by_field():
    from protocols.kinds import lookup

    welcome = lookup("welcome")
    base = {"config": {"algo": "dac"}, "run_dir": "/r", "run_id": "x", "n_procs": 3}
    welcome.check_body({"id": 1, "info": {**base, "neighbours": {0: "tcp://h:1", 2: None},
                                          "weights": {0: 0.5, 1: 0.5}, "controls": [1],
                                          "graph_edges": [[0, 1], [1, 2]], "seed": 7}})
    for bad in ({"n_procs": "3"}, {"neighbours": {"0": "tcp://h:1"}},
                {"weights": {0: float("nan")}}, {"graph_edges": [[0, 1, 2]]},
                {"controls": [-1]}, {"config": {"x": b"bytes"}}, {"spaces": {"obs": 1}}):
        with pytest.raises(SchemaMismatch):
            welcome.check_body({"id": 1, "info": {**base, **bad}})
    with pytest.raises(SchemaMismatch):
        welcome.check_body({"id": 1, "info": {"config": {}}})


def test_a_message_cap_above_the_sockets_frame_cap_is_a_config_error():
    """The sockets drop frames over 16 MiB (ZMQ_MAXMSGSIZE, set before a process knows its
    run); a larger --max-msg-bytes would let the guard admit what the sockets drop."""
    from agentd.config import ConfigError, resolve
    from protocols.guard import DEFAULT_MAX_BYTES

    assert resolve({}, {"max_msg_bytes": DEFAULT_MAX_BYTES}).max_msg_bytes == DEFAULT_MAX_BYTES
    with pytest.raises(ConfigError, match="max_msg_bytes.*16 MiB"):
        resolve({}, {"max_msg_bytes": DEFAULT_MAX_BYTES + 1})


def test_a_tally_not_due_is_refused_not_a_crash(attacked):
    """Found by fuzz/run.py: a tally in the end-of-run phase before the coordinator counted
    which were due (and a second tally from the same agent) is a counted refusal."""
    assert agent_says(attacked, "bye", {"stats": {}}) == "accepted"
    attacked.end_of_run()
    tally = {"stats": {"planes": {}}}
    assert agent_says(attacked, "tally", tally) == "accepted"      # handled, refused inside
    assert attacked.coord.transport.stats["control"].rejected["unexpected"] == 1
    attacked.coord.tallies = {0}
    assert agent_says(attacked, "tally", tally) == "accepted"
    assert agent_says(attacked, "tally", tally) == "accepted"
    assert attacked.coord.transport.stats["control"].rejected["unexpected"] == 2
    assert attacked.summary()["status"] == "done"
