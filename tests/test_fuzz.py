"""Property-based fuzzing with a small budget (fuzz/run.py runs the million-case version):
whatever bytes or bodies arrive, the codec, the fixed layout, the envelope and the guard of
every receiver refuse them with a named ProtocolError or accept them, and the coordinator's
handlers take every accepted body without raising, its summary still a valid JSON file."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import strategies
from hostile import AGENT_IDS, ENV_ID, CoordinatorUnderAttack, receiver_guards
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols import COORDINATOR, Codec, ProtocolError, encode, fixed, peer_identity
from protocols.kinds import REGISTRY

FAST = settings(max_examples=150, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))
codec = Codec()
GUARDS = receiver_guards()
CONTROL_IN = sorted(k for k, v in REGISTRY.items() if v.plane == "control")


def refused_or_accepted(fn, *args) -> None:
    try:
        fn(*args)
    except ProtocolError:
        pass


@FAST
@given(st.binary(max_size=300))
def test_codec_and_fixed_layout_take_any_bytes(data):
    refused_or_accepted(codec.unpack, data)
    for kind in ("act", "step"):
        refused_or_accepted(fixed.decode_body, kind, data)
    refused_or_accepted(fixed.decode_head, fixed.PREFIX + data, 1)


@FAST
@given(st.sampled_from(sorted(GUARDS)), st.binary(max_size=200),
       st.sampled_from([None, b"a1", b"a2", b"\x00xx"]), st.sampled_from([None, 1, 2, -2]))
def test_every_guard_takes_any_frame(receiver, data, identity, sender):
    guard, plane = GUARDS[receiver]
    refused_or_accepted(guard.incoming, [data], plane, identity, sender)
    refused_or_accepted(guard.incoming, [fixed.PREFIX + data], plane, identity, sender)


@FAST
@given(st.sampled_from(sorted(GUARDS)), st.data())
def test_every_guard_takes_any_body_of_any_kind(receiver, data):
    guard, plane = GUARDS[receiver]
    kind = data.draw(st.sampled_from(sorted(REGISTRY)))
    body = data.draw(st.one_of(strategies.body(REGISTRY[kind]),
                               strategies.hostile_body(REGISTRY[kind])))
    src = data.draw(st.sampled_from([1, 2, -1, -2, 7]))
    frame = encode(codec, kind, src, guard.me, 1, 1, body)
    refused_or_accepted(guard.incoming, [frame], plane, peer_identity(src) if src >= 0 else
                        None)


@FAST
@given(st.data())
def test_a_mutated_real_frame_is_refused_or_accepted(data):
    kind = data.draw(st.sampled_from(sorted(REGISTRY)))
    frame = bytearray(encode(codec, kind, 1, 0, 1, 1, data.draw(strategies.body(REGISTRY[kind]))))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(frame) - 1))
        frame[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(frame)))
    for guard, plane in GUARDS.values():
        refused_or_accepted(guard.incoming, [bytes(frame[:cut] or frame)], plane, b"a1")


@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    h = CoordinatorUnderAttack(tmp_path_factory.mktemp("fuzz") / "run")
    yield h
    assert h.summary()["status"] == "done"      # what the handlers kept still writes
    h.close()


@settings(max_examples=400, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(st.data())
def test_every_control_handler_takes_any_body(attacked, data):
    """A real Coordinator (admitted run, bound on loopback) is fed hostile and valid bodies
    of every control kind, from its env server, its agents and strangers, during the run and
    in the end-of-run phase: the outcome is a refusal, an acceptance or the run's orderly
    end, never an exception."""
    kind = data.draw(st.sampled_from(CONTROL_IN))
    body = data.draw(st.one_of(strategies.body(REGISTRY[kind]),
                               strategies.hostile_body(REGISTRY[kind])))
    who = data.draw(st.sampled_from([(ENV_ID, -2), *((a, i) for i, a in enumerate(AGENT_IDS)),
                                     (b"\x00stranger", 5)]))
    attacked.end_of_run(data.draw(st.booleans()))
    frame = encode(codec, kind, who[1], COORDINATOR, 1, 1, body)
    assert attacked.feed(frame, who[0]) in ("rejected", "accepted", "ended")


def test_the_fuzzed_coordinator_still_summarises(attacked):
    s = attacked.summary()
    assert s["status"] == "done" and isinstance(s["coordinator"]["rejected"], dict)


def test_struct_sizes_the_layouts_rely_on():
    assert fixed.HEAD.size == struct.calcsize("<HBBiiqq") and np.dtype("<f8").itemsize == 8
