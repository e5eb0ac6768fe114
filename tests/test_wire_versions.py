"""Wire format versions: the logs of a run made with version 1 frames (tests/data/wire_v1_run,
launched with the code before version 2: ``agentd launch --algo dac --n 3 --num-envs 2
--steps 40 --episode-len 10 --seed 4``) still replay bit for bit and audit; a live process
takes version 2 frames only, and counts a version 1 frame as malformed."""

from __future__ import annotations

import shutil
from pathlib import Path

import msgpack
import numpy as np
import pytest

from agentd.runtime.msglog import open_log
from agentd.tools.audit import audit_run
from agentd.tools.replay import compare_state, replay
from protocols import ENVSERVER, Codec, Guard, MalformedFrame, fixed
from protocols.envelope import READABLE, VERSION, decode_body, decode_header, encode, split

V1_RUN = Path(__file__).parent / "data" / "wire_v1_run"
STEP = {"t": 3, "obs": np.arange(4, dtype=np.int64).reshape(2, 2),
        "final_obs": np.arange(4, 8, dtype=np.int64).reshape(2, 2),
        "reward": np.array([[0.5, 1.0], [-1.0, 0.0]]), "terminated": np.array([False, True]),
        "truncated": np.array([True, False]), "last": False}


@pytest.fixture
def v1_run(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(V1_RUN, run)
    return run


def test_the_fixture_holds_version_1_frames_of_both_layouts():
    versions = {"fixed": set(), "msgpack": set()}
    kinds = set()
    for path in (V1_RUN / "logs").glob("*.log"):
        for rec in open_log(path):
            if rec.header is None:
                continue
            frame = rec.frames[0]
            head = split(frame)[0]
            if fixed.is_fixed(frame):
                versions["fixed"].add(frame[2])
            else:
                versions["msgpack"].add(msgpack.unpackb(bytes(head))["v"])
            kinds.add(rec.header["k"])
    assert versions == {"fixed": {1}, "msgpack": {1}}
    assert {"act", "step", "hello", "welcome", "episodes", "bye"} <= kinds
    assert VERSION == 2 and READABLE == (1, 2)


def test_version_1_logs_replay_bit_for_bit_and_audit(v1_run):
    for agent in range(3):
        res = replay(v1_run, agent)
        assert res.steps == 40 and res.actions_compared == 40
        assert res.first_divergence is None
        same = compare_state(res.state, v1_run / "checkpoints" / f"agent-{agent}.npz")
        assert same == {"q": True, "zeta": True}
    report = audit_run(v1_run)
    assert report["private"] is True and report["peer"]["only_permitted"]


def test_a_version_1_step_decodes_to_what_version_2_carries():
    for path in (V1_RUN / "logs").glob("agent-*.log"):
        for rec in open_log(path):
            if rec.header is not None and rec.header["k"] == "step":
                h, b = rec.header, rec.body
                again = encode(Codec(), "step", h["s"], h["d"], h["t"], h["q"], b)
                assert again[2] == 2 and again != rec.frames[0]
                head, part = split(again)
                body = decode_body(Codec(), head, part)
                assert body.keys() == b.keys()
                for key, value in b.items():
                    assert np.array_equal(value, body[key]), key
                return
    raise AssertionError("no step in the fixture's agent logs")


def test_a_live_guard_refuses_version_1_frames():
    v1 = None
    for rec in open_log(V1_RUN / "logs" / "agent-0.log"):
        if rec.header is not None and rec.header["k"] == "step" and rec.direction == "in":
            v1 = rec.frames[0]
            break
    assert v1 is not None
    with pytest.raises(MalformedFrame, match="protocol version 1, expected 2"):
        Guard(0).incoming([v1], "env")
    head = msgpack.packb({"v": 1, "k": "heartbeat", "s": 0, "d": -1, "t": 0, "q": 1})
    frame = len(head).to_bytes(2, "little") + head + msgpack.packb({})
    with pytest.raises(MalformedFrame, match="protocol version 1, expected 2"):
        Guard(-1).incoming([frame], "control")
    assert decode_header(Codec(), split(frame)[0], READABLE)["v"] == 1


def test_version_2_step_keeps_every_array_header_before_the_bytes():
    frame = encode(Codec(), "step", ENVSERVER, 0, 3, 1, STEP)
    layout_at = fixed.HEAD.size + 9
    codes = [frame[layout_at + 18 * i] for i in range(3)]     # obs, final_obs, reward: rank 2
    assert codes == [fixed._CODE_OF[np.dtype("<i8")]] * 2 + [fixed._CODE_OF[
        np.dtype("<f8")]]
    body = Guard(0).incoming([frame], "env").body
    assert body["reward"].tolist() == STEP["reward"].tolist() and body["last"] is False
