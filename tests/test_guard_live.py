"""The guard on a live run: bad frames sent to a real agent's socket are dropped, counted by
reason and logged, and the agent keeps learning to the end of the run."""

from __future__ import annotations

import signal
import time

import numpy as np
from conftest import read_json, send_raw, wait_for

from agentd.runtime.msglog import open_log
from protocols import Codec, encode, peer_identity


def test_bad_messages_are_rejected_and_the_agent_keeps_learning(runs, tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text("max_msg_bytes = 4096\n")
    run_dir = tmp_path / "run"
    proc = runs.start(["launch", "--run-dir", str(run_dir), "--quiet", "--config", str(cfg),
                       "--n", "4", "--steps", "10000000", "--episode-len", "20"], run_dir)
    wait_for(lambda: (run_dir / "metrics.jsonl").exists() and
             (run_dir / "metrics.jsonl").stat().st_size > 0, 60, "the first episodes")
    target = read_json(run_dir / "endpoints.json")["agents"]["0"]["endpoint"]
    codec = Codec()
    body = {"t": 1, "r": 0, "idx": np.arange(4), "x": np.zeros(4)}
    good = encode(codec, "consensus", 1, 0, 5, 1, body)
    # Agent 0 on a 4-ring has neighbours 1 and 3. The intruder connects as agent 2 (not a
    # neighbour); ZeroMQ itself ignores a second connection claiming a live neighbour's id.
    intruder = peer_identity(2)
    injections = [
        ([b"\x00\x01garbage bytes\xff"], "malformed"),
        ([good[:12]], "malformed"),                                  # truncated in the header
        ([b"a", b"b"], "malformed"),                                          # two frames
        ([encode(codec, "gossip", 2, 0, 5, 1, {})], "unknown_kind"),
        ([encode(codec, "consensus", 2, 0, 5, 1, body)], "not_a_neighbour"),
        ([good], "not_a_neighbour"),                  # claims to be agent 1: identity mismatch
        ([encode(codec, "consensus", 2, 0, 5, 1,
                 {"t": 1, "r": 0, "idx": np.arange(600), "x": np.zeros(600)})], "oversize"),
    ]
    sent_at = time.time()
    send_raw(target, intruder, [frames for frames, _ in injections])
    # the env server and the coordinator take garbage the same way
    endpoints = read_json(run_dir / "endpoints.json")
    for name in ("envserver", "coordinator"):
        send_raw(endpoints[name]["endpoint"], b"garbage", [[b"\xc1\xc1"], [good[:12]]])
    log_path = run_dir / "logs" / "agent-0.log"

    seen = {"rejected": 0, "acts_after": 0}

    def rejected_all_and_learned_on() -> bool:
        log = list(open_log(log_path))
        seen["rejected"] = sum(r.direction == "rej" for r in log)
        seen["acts_after"] = sum(r.kind == "act" and r.time > sent_at for r in log)
        return seen["rejected"] >= len(injections) and seen["acts_after"] > 200

    try:
        wait_for(rejected_all_and_learned_on, 120, "the rejections and 200 more actions")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; saw {seen}, run alive: {proc.poll() is None}") from None
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 130

    summary = read_json(run_dir / "summary.json")
    agent = summary["agents"]["0"]
    expected: dict[str, int] = {}
    for _, reason in injections:
        expected[reason] = expected.get(reason, 0) + 1
    assert agent["rejected"] == expected
    assert agent["planes"]["peer"]["msgs_recv"] == 0      # nothing got through
    assert agent["steps"] > 200                            # it went on learning
    for other in ("1", "2", "3"):
        assert summary["agents"][other]["rejected"] == {}
    assert summary["envserver"]["rejected"] == {"malformed": 2}
    assert summary["coordinator"]["rejected"] == {"malformed": 2}

    log = list(open_log(run_dir / "logs" / "agent-0.log"))
    rejections = [r.reason for r in log if r.direction == "rej"]
    assert sorted(rejections) == sorted(reason for _, reason in injections)
    updates = [r for r in log if r.kind == "metrics" and r.direction == "out"]
    assert updates and updates[-1].time > sent_at          # learner scalars still reported
