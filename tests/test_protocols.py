"""Codec round-trips for every kind and dtype; the guard's verdicts on bad input."""

from __future__ import annotations

import math
import time

import msgpack
import numpy as np
import pytest
import strategies
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols import (
    COORDINATOR,
    REGISTRY,
    Codec,
    DuplicateKind,
    Guard,
    Kind,
    KindNotPermitted,
    MalformedFrame,
    NotANeighbour,
    Oversize,
    SchemaMismatch,
    Spoofed,
    UnknownKind,
    WrongDestination,
    encode,
    peer_identity,
    register,
)
from protocols.codec import DTYPE_CODES
from protocols.kinds import Arr, Val

ALL_DTYPES = [np.dtype(d) for d in DTYPE_CODES]


@pytest.mark.parametrize("name", sorted(REGISTRY))
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_every_kind_round_trips(name, data):
    kind = REGISTRY[name]
    body = data.draw(strategies.body(kind))
    me = 3
    guard = Guard(me, neighbours=[1], permitted_peer_kinds=[name])
    frame = encode(Codec(), name, 1, me, 11, 5, body)
    msg = guard.incoming([frame], kind.plane, peer_identity(1) if kind.plane == "peer" else None)
    assert (msg.kind, msg.src, msg.dst, msg.step, msg.seq) == (name, 1, me, 11, 5)
    assert msg.body.keys() == body.keys()
    for key, value in body.items():
        if isinstance(value, np.ndarray):
            assert msg.body[key].dtype == value.dtype
            np.testing.assert_array_equal(msg.body[key], value)
        else:
            assert _same(msg.body[key], value)


def _same(a, b) -> bool:
    """Equal, NaN equal to NaN (a metrics scalar may be NaN)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b and type(a) is type(b)


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(), (0,), (5,), (2, 3), (1, 2, 1, 2)])
def test_array_round_trip_every_dtype(dtype, shape):
    codec = Codec()
    arr = np.asarray(np.arange(int(np.prod(shape))).reshape(shape) % 2 == 1) if dtype == bool else \
        np.arange(int(np.prod(shape)), dtype=dtype).reshape(shape)
    out = codec.unpack(codec.pack({"a": arr}))["a"]
    assert out.dtype == arr.dtype and out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)


def test_big_endian_and_noncontiguous_arrays_travel_as_little_endian():
    codec = Codec()
    arr = np.arange(6, dtype=">f8").reshape(2, 3).T
    out = codec.unpack(codec.pack({"a": arr}))["a"]
    assert out.dtype == np.dtype("<f8")
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize("bad", [np.array(["text"]), np.array([object()], dtype=object),
                                 np.zeros(2, dtype=complex)], ids=["str", "object", "complex"])
def test_refused_dtypes_are_never_sent(bad):
    with pytest.raises(SchemaMismatch):
        Codec().pack({"a": bad})


def test_unknown_ext_type_and_lying_array_header_are_malformed():
    codec = Codec()
    with pytest.raises(MalformedFrame):
        codec.unpack(msgpack.packb(msgpack.ExtType(42, b"xx")))
    good = codec.pack({"a": np.zeros(4)})
    with pytest.raises(MalformedFrame):
        codec.unpack(good[:-3])   # shape says 4 float64, bytes say fewer


def test_duplicate_registration_is_an_error():
    with pytest.raises(DuplicateKind):
        register(Kind("consensus", "peer", {}))


# -- the guard --------------------------------------------------------------------------------
@pytest.fixture
def guard():
    return Guard(0, neighbours=[1, 3], permitted_peer_kinds=["consensus"], max_bytes=4096)


def consensus_frame(src=1, dst=0, n=4, x_dtype=np.float64, kind="consensus"):
    body = {"t": 1, "r": 0, "idx": np.arange(n, dtype=np.int64), "x": np.ones(n, dtype=x_dtype)}
    return encode(Codec(), kind, src, dst, 1, 1, body)


def test_guard_accepts_a_good_peer_message(guard):
    msg = guard.incoming([consensus_frame()], "peer", peer_identity(1))
    assert msg.kind == "consensus" and msg.nbytes > 0


@pytest.mark.parametrize("frames, error", [
    ([b"\x00garbage\xff\xfe"], MalformedFrame),
    ([b"\xc1"], MalformedFrame),
    ([], MalformedFrame),
    ([b"a", b"b"], MalformedFrame),
], ids=["garbage", "short", "no-frame", "two-frames"])
def test_guard_rejects_garbage(guard, frames, error):
    with pytest.raises(error):
        guard.incoming(frames, "peer", peer_identity(1))


def test_guard_rejects_truncated_frame(guard):
    frame = consensus_frame()
    with pytest.raises(MalformedFrame):
        guard.incoming([frame[: len(frame) - 5]], "peer", peer_identity(1))


def test_guard_rejects_each_rule(guard):
    cases = [
        (consensus_frame(kind="no_such_kind"), peer_identity(1), UnknownKind),
        (consensus_frame(src=2), peer_identity(2), NotANeighbour),
        (consensus_frame(src=1), peer_identity(3), NotANeighbour),     # identity spoof
        (consensus_frame(dst=5), peer_identity(1), WrongDestination),
        (consensus_frame(n=1000), peer_identity(1), Oversize),
        (consensus_frame(x_dtype=np.int32), peer_identity(1), SchemaMismatch),
        (encode(Codec(), "latent", 1, 0, 1, 1, {"z": np.zeros(2)}), peer_identity(1),
         KindNotPermitted),
        (encode(Codec(), "heartbeat", 1, 0, 1, 1, {}), peer_identity(1), KindNotPermitted),
    ]
    for frame, ident, error in cases:
        with pytest.raises(error):
            guard.incoming([frame], "peer", ident)


def test_guard_checks_the_header_before_the_body(guard):
    # A non-neighbour's frame whose body is garbage is refused for the sender, not the body.
    frame = consensus_frame(src=2)
    with pytest.raises(NotANeighbour):
        guard.incoming([frame[:-10] + b"\xc1" * 10], "peer", peer_identity(2))


def test_guard_on_send(guard):
    guard.outgoing("consensus", 1, {"t": 1, "r": 0, "idx": np.arange(2), "x": np.zeros(2)}, "peer")
    with pytest.raises(NotANeighbour):
        guard.outgoing("consensus", 2, {"t": 1, "r": 0, "idx": np.arange(2), "x": np.zeros(2)}, "peer")
    with pytest.raises(KindNotPermitted):
        guard.outgoing("latent", 1, {"z": np.zeros(2)}, "peer")
    with pytest.raises(UnknownKind):
        guard.outgoing("secrets", 1, {}, "peer")
    with pytest.raises(SchemaMismatch):
        guard.outgoing("consensus", 1, {"t": 1, "r": 0, "idx": np.arange(2)}, "peer")


def test_schema_rejects_extra_fields_and_wrong_types():
    kind = REGISTRY["metrics"]
    with pytest.raises(SchemaMismatch):
        kind.check_body({"step": 1, "scalars": {}, "extra": 1})
    with pytest.raises(SchemaMismatch):
        kind.check_body({"step": "one", "scalars": {}})
    assert Val((int,)) and Arr()


def test_secure_mode_the_key_decides_who_sent_it():
    """With the connection's key owner known (sender), the header src and a client-chosen
    routing identity must name that owner; an identity ZeroMQ assigned is fine."""
    body = {"t": 1, "r": 0, "idx": np.arange(2), "x": np.zeros(2)}
    guard = Guard(0, neighbours=[1, 3], permitted_peer_kinds=["consensus"])
    codec = Codec()
    as_three = encode(codec, "consensus", 3, 0, 1, 1, body)
    msg = guard.incoming([as_three], "peer", b"\x00\x12\x34\x56\x78", sender=3)
    assert msg.src == 3
    assert guard.incoming([as_three], "peer", peer_identity(3), sender=3).src == 3
    with pytest.raises(Spoofed, match="routing identity"):
        guard.incoming([as_three], "peer", peer_identity(1), sender=3)
    with pytest.raises(Spoofed, match="header src is agent 1"):
        guard.incoming([encode(codec, "consensus", 1, 0, 1, 1, body)], "peer", None, sender=3)
    with pytest.raises(Spoofed):       # a key that names no process: nobody may be claimed
        guard.incoming([as_three], "peer", None, sender=-999)
    coord = Guard(COORDINATOR)
    hello = {"role": "agent", "pid": 1, "host": "h", "endpoint": None, "want_id": 3, "caps": {}}
    assert coord.incoming([encode(codec, "hello", 3, -1, 0, 1, hello)], "control",
                          None, sender=3).body["want_id"] == 3
    for claim in ({"want_id": 1}, {"role": "envserver", "want_id": None}):
        with pytest.raises(Spoofed, match="key of agent 3"):
            coord.incoming([encode(codec, "hello", 3, -1, 0, 1, {**hello, **claim})],
                           "control", None, sender=3)
    assert Spoofed.reason == "spoofed"


def test_welcome_then_heartbeat_in_one_batch_is_not_refused():
    """The coordinator's welcome assigns the agent its id, and the next message (a heartbeat)
    is addressed to that id; when both arrive together the agent must take the id before the
    guard checks the heartbeat, not refuse it as wrong_destination (nor drop it)."""
    from agentd.runtime.control import ControlPlane
    from agentd.runtime.transport import Transport
    from protocols import COORDINATOR, UNASSIGNED, Guard

    coord = Transport(COORDINATOR, Guard(COORDINATOR), None)
    agent = Transport(UNASSIGNED, Guard(UNASSIGNED), None)
    try:
        server = coord.bind_router("tcp://127.0.0.1:*", "control")
        control = ControlPlane(agent, server.endpoint)
        control.hello("agent", None, 3)
        ident = None
        deadline = time.monotonic() + 10
        while ident is None and time.monotonic() < deadline:
            for msg, who in coord.recv_all(server) if server in coord.poll(100) else []:
                assert msg.kind == "hello"
                ident = who
        assert ident is not None
        info = {"config": {}, "run_dir": "/r", "run_id": "r", "n_procs": 4}
        coord.send(server, "welcome", UNASSIGNED, {"id": 3, "info": info}, to=ident)
        coord.send(server, "heartbeat", 3, {}, to=ident)
        time.sleep(0.3)                       # both queued before the agent looks
        assert control.wait_welcome(10)["id"] == 3
        assert agent.me == agent.guard.me == 3
        later = []
        while not later and time.monotonic() < deadline:
            later = agent.recv_all(control.link) if control.link in agent.poll(100) else []
        assert [m.kind for m, _ in later] == ["heartbeat"]
        assert not agent.stats["control"].rejected
    finally:
        agent.close()
        coord.close()
