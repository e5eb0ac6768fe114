"""Deep policy reciprocity plug-in (seed 000 Algorithm 2, DESIGN §5.2): protocol and a live run."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from conftest import AGENTD, read_json

from agentd.algorithms.plugins.deep_pr import DeepPR
from agentd.tools.audit import audit_run
from agentd.tools.replay import compare_state, replay


def answers_for(pr: DeepPR, table: dict[int, np.ndarray], qid: int):
    for j, v in table.items():
        pr.receive(j, "pr_values", {"qid": qid, "states": np.zeros(0, np.int64), "values": v},
                   lambda s, q: None)


def test_mixed_target_by_hand():
    pr = DeepPR([1, 3], weight=0.25, eps=0.0, samples=0, rng=np.random.default_rng(0))
    out = pr.query(7, np.zeros((2, 4)))
    assert [(o.kind, o.dst, o.body["qid"]) for o in out] == [("pr_query", 1, 7), ("pr_query", 3, 7)]
    assert pr.waiting_for() == {1, 3}
    answers_for(pr, {1: np.array([2.0, 4.0]), 3: np.array([6.0, 0.0])}, 7)
    assert not pr.waiting_for()
    mixed, missing = pr.mixed(np.array([1.0, 1.0]))
    # (1 - w) own + w mean_j V^j = 0.75 * 1 + 0.25 * [4, 2]
    np.testing.assert_allclose(mixed, [1.75, 1.25])
    assert missing == 0


def test_adjacency_states_are_averaged_per_next_state():
    pr = DeepPR([1], weight=1.0, eps=0.1, samples=2, rng=np.random.default_rng(0))
    s2 = np.array([[0.0, 0.0], [1.0, 1.0]])
    states = pr.query(1, s2)[0].body["states"]
    assert states.shape == (6, 2)
    np.testing.assert_array_equal(states[:2], s2)                       # the exact states first
    assert np.abs(states[2:] - np.tile(s2, (2, 1))).max() <= 0.1         # then within eps
    answers_for(pr, {1: np.array([1.0, 10.0, 2.0, 20.0, 3.0, 30.0])}, 1)
    mixed, _ = pr.mixed(np.zeros(2))
    np.testing.assert_allclose(mixed, [2.0, 20.0])


def test_a_reply_with_the_wrong_shape_is_rejected_and_the_agent_carries_on():
    pr = DeepPR([1, 2], weight=0.5, eps=0.0, samples=0, rng=np.random.default_rng(0))
    pr.query(3, np.zeros((2, 4)))
    answers_for(pr, {1: np.array([1.0, 2.0, 3.0])}, 3)                   # 3 values for 2 states
    answers_for(pr, {2: np.array([np.nan, 0.0])}, 3)                     # not finite
    assert pr.rejected == 2 and not pr.waiting_for()                     # no stall
    mixed, missing = pr.mixed(np.array([5.0, 6.0]))
    np.testing.assert_allclose(mixed, [5.0, 6.0])                        # own values only
    assert missing == 2
    answers_for(pr, {1: np.array([1.0, 2.0])}, 2)                        # stale: counted
    assert pr.rejected == 3


def test_a_query_is_answered_and_unfit_states_get_an_empty_answer():
    pr = DeepPR([1], weight=0.5, eps=0.0, samples=0, rng=np.random.default_rng(0))
    pr.receive(1, "pr_query", {"qid": 4, "states": np.ones((3, 2))}, lambda s, q: s.sum(1) + q)
    pr.receive(1, "pr_query", {"qid": 5, "states": np.ones((3, 7))}, lambda s, q: None)
    pr.receive(2, "pr_query", {"qid": 5, "states": np.ones((3, 2))}, lambda s, q: s.sum(1))
    out = pr.outbox()
    assert [(o.kind, o.dst, o.body["qid"]) for o in out] == [("pr_values", 1, 4),
                                                             ("pr_values", 1, 5)]
    np.testing.assert_array_equal(out[0].body["values"], [6.0, 6.0, 6.0])
    assert len(out[1].body["values"]) == 0 and pr.rejected == 2 and pr.outbox() == []


torch = pytest.importorskip("torch")


def test_answers_do_not_depend_on_whether_the_own_update_came_first():
    from agentd.launch.inprocess import build_env, make_learners

    env = build_env("spread", 3, obs_mode="state")
    a0 = make_learners("isac", env, 3, params={"start": 8, "batch": 8, "pr_weight": 0.5})[0]
    obs = env.reset(0)
    for _ in range(8):
        act = a0.act(obs[0])
        res = env.step([act, act, act])
        a0.observe(obs[0], act, res.reward[0], res.final_obs[0], res.terminated, res.truncated)
        obs = res.obs
    env.close()
    t = a0.steps
    states = a0.buf["s2"][:5]
    before = a0.target_values(states, t)
    for j in (1, 2):                       # the neighbours' answers to a0's own query
        a0.inbox(j, "pr_values", {"qid": t, "states": np.zeros(0, np.int64),
                                  "values": np.zeros(8, np.float32)})
    a0.outbox()
    assert a0.update()                     # a0 updates at step t
    np.testing.assert_array_equal(a0.target_values(states, t), before)      # still pre-update
    assert not np.array_equal(a0.target_values(states, t + 1), before)     # t+1: the new nets


def test_live_isac_with_pr_exchanges_only_pr_messages_and_replays_exactly(tmp_path):
    run_dir = tmp_path / "run"
    res = subprocess.run([*AGENTD, "launch", "--quiet", "--run-dir", str(run_dir), "--n", "3",
                          "--algo", "isac", "--env", "spread", "--steps", "200", "--pr-weight",
                          "0.3", "--param", "start=64", "--param", "batch=32"],
                         capture_output=True, text=True, timeout=180, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    report = audit_run(run_dir)
    assert report["peer"]["kinds_seen"] == ["pr_query", "pr_values"]
    assert report["peer"]["only_permitted"] and report["rejections"] == []
    summary = read_json(run_dir / "summary.json")
    # one query and one answer of 32 next states per edge per step once updates run
    assert summary["peer_bytes_per_edge_last_step"] > 32 * 18 * 4
    rep = replay(run_dir, 1)
    assert rep.first_divergence is None and rep.actions_compared == 200
    assert all(compare_state(rep.state, run_dir / "checkpoints" / "agent-1.npz").values())


def test_pr_weight_on_a_learner_without_the_plug_in_is_a_config_error(tmp_path):
    res = subprocess.run([*AGENTD, "launch", "--quiet", "--run-dir", str(tmp_path / "r"),
                          "--algo", "iql", "--pr-weight", "0.3"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 2 and "pr_weight" in res.stderr
