"""The fixed binary layouts of act and step: the same message as msgpack, every bad byte a
counted rejection, and the hot-socket waits of the transport."""

from __future__ import annotations

import time

import msgpack
import numpy as np
import pytest

from agentd.runtime.transport import FULL_POLL_EVERY_S, Transport
from protocols import ENVSERVER, Codec, Guard, MalformedFrame, ProtocolError, SchemaMismatch, fixed
from protocols.envelope import VERSION, decode_body, decode_header, encode, split

STEP = {"t": 12, "obs": np.arange(6, dtype=np.float32).reshape(2, 1, 3),
        "final_obs": np.arange(6, 12, dtype=np.float32).reshape(2, 1, 3),
        "reward": np.array([[0.5], [-1.25]]), "terminated": np.array([False, True]),
        "truncated": np.array([True, False]), "last": False}
ACT = {"t": 12, "a": np.array([[2], [0]], dtype=np.int64)}


def msgpack_frame(kind: str, src: int, dst: int, step: int, seq: int, body: dict) -> bytes:
    """The same message in the general envelope (what encode sent before the layouts)."""
    codec = Codec()
    header = codec.pack({"v": VERSION, "k": kind, "s": src, "d": dst, "t": step, "q": seq})
    return len(header).to_bytes(2, "little") + header + codec.pack(body)


def same(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for key, value in a.items():
        if isinstance(value, np.ndarray):
            if value.dtype != b[key].dtype or not np.array_equal(value, b[key]):
                return False
        elif type(value) is not type(b[key]) or value != b[key]:
            return False
    return True


@pytest.mark.parametrize("extra", [{}, {"restart": True}, {"restart": False}, {"last": True}])
def test_step_in_the_fixed_layout_decodes_as_the_msgpack_frame_does(extra):
    body = {**STEP, **extra}
    frame = encode(Codec(), "step", ENVSERVER, 3, 12, 99, body)
    assert fixed.is_fixed(frame)
    assert len(frame) < len(msgpack_frame("step", ENVSERVER, 3, 12, 99, body))
    guard = Guard(3)
    fast = guard.incoming([frame], "env")
    slow = guard.incoming([msgpack_frame("step", ENVSERVER, 3, 12, 99, body)], "env")
    assert (fast.kind, fast.src, fast.dst, fast.step, fast.seq) == \
        (slow.kind, slow.src, slow.dst, slow.step, slow.seq) == ("step", ENVSERVER, 3, 12, 99)
    assert same(fast.body, slow.body) and same(fast.body, body)
    assert not fast.body["obs"].flags.writeable       # a view of the frame, like msgpack's


def test_act_round_trips_and_the_log_reader_decodes_both_formats():
    codec = Codec()
    frame = encode(codec, "act", 4, ENVSERVER, 7, 1, ACT)
    assert fixed.is_fixed(frame)
    for f in (frame, msgpack_frame("act", 4, ENVSERVER, 7, 1, ACT)):
        head, body = split(f)
        header = decode_header(codec, head)
        assert header == {"v": VERSION, "k": "act", "s": 4, "d": ENVSERVER, "t": 7, "q": 1}
        assert same(decode_body(codec, head, body), ACT)


@pytest.mark.parametrize("body", [
    {**ACT, "note": 1},                                    # a field the layout does not have
    {"t": 3, "a": [1, 2]},                                 # a list, not an array
    {"t": 2 ** 63, "a": ACT["a"]},                         # out of i64 (msgpack: u64)
    {**STEP, "obs": STEP["obs"].astype(">f4")},            # big-endian: msgpack converts it
])
def test_a_body_without_a_layout_falls_back_to_msgpack(body):
    kind = "act" if "a" in body else "step"
    frame = encode(Codec(), kind, 1, ENVSERVER, 0, 1, body)
    assert not fixed.is_fixed(frame)


def test_every_truncation_and_byte_flip_is_a_protocol_error_never_a_crash():
    guard = Guard(3)
    frame = encode(Codec(), "step", ENVSERVER, 3, 12, 99, STEP)
    accepted = 0
    for cut in range(len(frame)):
        with pytest.raises(ProtocolError):
            guard.incoming([frame[:cut]], "env")
    rng = np.random.default_rng(0)
    for _ in range(3000):
        bad = bytearray(frame)
        for pos in rng.integers(0, len(bad), size=rng.integers(1, 4)):
            bad[pos] = int(rng.integers(0, 256))
        try:
            guard.incoming([bytes(bad)], "env")
            accepted += 1      # a flip inside array data or ids can still be well formed
        except ProtocolError:
            pass
    assert 0 < accepted < 3000


@pytest.mark.parametrize("mutate, error", [
    (lambda f: f[:2] + bytes([9]) + f[3:], "protocol version 9"),
    (lambda f: f[:3] + bytes([7]) + f[4:], "unknown fixed-layout kind code 7"),
    (lambda f: f + b"\x00", "bytes after the 'step' body"),
    (lambda f: f[:fixed.HEAD.size + 8] + bytes([0x40]) + f[fixed.HEAD.size + 9:],
     "bad 'step' flags"),
    (lambda f: f[:fixed.HEAD.size + 9] + bytes([200]) + f[fixed.HEAD.size + 10:],
     "bad array header"),
])
def test_malformed_fixed_frames_name_what_is_wrong(mutate, error):
    frame = encode(Codec(), "step", ENVSERVER, 3, 12, 99, STEP)
    with pytest.raises(MalformedFrame, match=error):
        Guard(3).incoming([mutate(frame)], "env")


def test_an_array_that_claims_more_bytes_than_the_frame_has_is_refused():
    frame = bytearray(encode(Codec(), "act", 1, ENVSERVER, 0, 1, ACT))
    dims_at = fixed.HEAD.size + 8 + 2          # after t, the dtype code and ndim
    frame[dims_at:dims_at + 8] = (10 ** 12).to_bytes(8, "little")
    with pytest.raises(MalformedFrame, match="past the end"):
        Guard(ENVSERVER).incoming([bytes(frame)], "env")


def test_the_schema_still_applies_to_fixed_frames():
    body = {**ACT, "a": np.zeros((2, 1), dtype=np.float64) + 0.5}   # float actions are numeric
    Guard(ENVSERVER).incoming([encode(Codec(), "act", 1, ENVSERVER, 0, 1, body)], "env")
    bad = {**STEP, "reward": np.zeros((2, 1), dtype=np.int32)}       # rewards must be floats
    frame = fixed.encode_fixed("step", ENVSERVER, 3, 0, 1, bad)
    assert frame is not None
    with pytest.raises(SchemaMismatch, match="reward"):
        Guard(3).incoming([frame], "env")


def test_the_msgpack_frame_cannot_be_mistaken_for_a_fixed_one():
    frame = msgpack_frame("step", ENVSERVER, 3, 1, 1, STEP)
    assert not fixed.is_fixed(frame)
    assert msgpack.unpackb(bytes(split(frame)[0]))["k"] == "step"


# ---- the transport's waits on hot sockets ---------------------------------------------------

@pytest.fixture
def pair():
    """A ROUTER (the 'env server') with a hot DEALER peer, and a second DEALER on a cold link."""
    server = Transport(ENVSERVER, Guard(ENVSERVER), None)
    client = Transport(0, Guard(0), None)
    try:
        router = server.bind_router("tcp://127.0.0.1:*", "env")
        control = server.bind_router("tcp://127.0.0.1:*", "control")
        env = client.connect_dealer(router.endpoint, "env", ENVSERVER, b"a0")
        cold = client.connect_dealer(control.endpoint, "control", ENVSERVER, b"a0")
        yield server, client, router, control, env, cold
    finally:
        client.close()
        server.close()


def _act(t: int) -> dict:
    return {"t": t, "a": np.array([[t]], dtype=np.int64)}


def test_a_single_hot_socket_delivers_every_message_in_order(pair):
    server, client, router, _control, env, _ = pair
    server.set_hot([router])
    for t in range(50):
        client.send(env, "act", ENVSERVER, _act(t), t)
    got = []
    deadline = time.monotonic() + 10
    while len(got) < 50 and time.monotonic() < deadline:
        for link in server.poll(100):
            got += [m.body["t"] for m, _ in server.recv_all(link)]
    assert got == list(range(50))


def test_cold_sockets_are_still_read_while_the_hot_one_is_busy(pair):
    server, client, router, control, env, cold = pair
    server.set_hot([router])
    client.send(cold, "heartbeat", ENVSERVER, {}, 0)
    seen_cold = None
    start = time.monotonic()
    t = 0
    while seen_cold is None and time.monotonic() - start < 5:
        client.send(env, "act", ENVSERVER, _act(t), t)     # the hot socket never goes quiet
        t += 1
        for link in server.poll(100):
            msgs = server.recv_all(link)
            if link is control and msgs:
                seen_cold = time.monotonic() - start
    assert seen_cold is not None and seen_cold < 20 * FULL_POLL_EVERY_S + 0.5
