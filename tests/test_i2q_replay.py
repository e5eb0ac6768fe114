"""Tabular I2Q's private replay (the official code's L-stage setting): the synchronous minibatch
backup by hand, the replay schedule, the parameter ranges, ``ideal = false`` as IQL, and the
buffer in checkpoints, in an exact ``agentd replay`` and in a checkpoint restore."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from conftest import AGENTD, read_json

from agentd.algorithms.base import LearnerConfigError, LearnerSpec
from agentd.algorithms.offpolicy.buffer import rng_state, set_rng_state
from agentd.algorithms.tabular.i2q import I2Q
from agentd.algorithms.tabular.iql import IQL

ONLINE = {"replay_batches": 0, "replay_start": 0, "q_init": 0.0}    # hand-checkable
REPLAY_ONE = {"replay_batches": 1, "replay_batch": 3, "replay_every": 1, "replay_capacity": 1}


def learner(cls=I2Q, num_envs=1, **params):
    return cls(LearnerSpec(agent_id=0, n_agents=1, neighbours=[], weights={0: 1.0},
                           obs_spaces=[{"type": "discrete", "n": 30}],
                           act_spaces=[{"type": "discrete", "n": 3}], controls=[0],
                           num_envs=num_envs, seed=0,
                           params={**ONLINE, "alpha": 0.5, **params}))


def feed(lr, s, a, r, s2, terminated=False):
    lr.observe(np.array([s]), np.array([a]), np.array([r], dtype=float), np.array([s2]),
               np.array([terminated]), np.array([False]))
    return lr.update()


def test_replay_backs_up_a_minibatch_synchronously_by_hand():
    # capacity 1: every draw is the newest transition, drawn 3 times in one minibatch; the
    # synchronous backup moves each entry once from its pre-minibatch value (0.5, not 0.875)
    lr = learner(**REPLAY_ONE)
    feed(lr, 1, 0, 1.0, 4, terminated=True)
    assert lr.qss == {(1, 4): 0.5} and lr.q[1, 0] == 0.5
    feed(lr, 1, 1, 3.0, 5, terminated=True)
    assert lr.qss == {(1, 4): 0.5, (1, 5): 1.5} and lr.q[1].tolist() == [0.5, 1.5, 0.0]
    feed(lr, 0, 0, 0.0, 1)
    # (1) Q_ss(0,1) = 0.5 * max(0.5, 1.5) = 0.75; (3) on s'* = 1: Q(0,0) = 0.5 * 1.5 = 0.75
    assert lr.qss[(0, 1)] == 0.75 and lr.q[0, 0] == 0.75
    scalars = feed(lr, 0, 0, -5.0, 2)
    # M(0,0) = {1, 2} was learned when the transition was stored; (1) Q_ss(0,2) = -2.5;
    # (2) s'* = 1; (3) Q(0,0) = 0.75 + 0.5 * (0 + 1.5 - 0.75) = 1.125
    assert lr.qss[(0, 2)] == -2.5 and lr.ideal(0, 0) == 1
    assert lr.q[0, 0] == 1.125 and scalars["ideal_differs"] == 1.0
    assert scalars["td_abs"] == pytest.approx(0.75)
    # ideal = false on the same stream: Q(0,0) = 0.75 + 0.5 * (-5 + 0 - 0.75) = -2.125
    iql = learner(ideal=False, **REPLAY_ONE)
    for tr in [(1, 0, 1.0, 4, True), (1, 1, 3.0, 5, True), (0, 0, 0.0, 1, False)]:
        feed(iql, *tr)
    feed(iql, 0, 0, -5.0, 2)
    assert iql.q[0, 0] == -2.125    # and Q_ss, not learned without ideal, is still 0:
    assert set(iql.qss.values()) == {0.0}


def test_replay_rounds_fall_every_replay_every_stored_transitions_from_replay_start():
    calls = []

    class Counting(I2Q):
        def replay_minibatch(self):
            calls.append(self.stored)
            return super().replay_minibatch()

    lr = learner(Counting, num_envs=4, replay_batches=2, replay_batch=5, replay_every=50,
                 replay_start=100)
    rng = np.random.default_rng(1)
    for _ in range(50):         # 4 transitions a step: 200 stored
        s = rng.integers(0, 20, 4)
        lr.observe(s, rng.integers(0, 3, 4), rng.random(4), s + 1, np.zeros(4, bool),
                   np.zeros(4, bool))
        scalars = lr.update()
        assert ("td_abs" in scalars) == (lr.stored in (100, 152, 200))
    # rounds at 100, 150 (due in the step that reaches 152) and 200; two minibatches each
    assert calls == [100, 100, 152, 152, 200, 200]
    assert lr.stored == 200 and len(lr.state_dict()["buf_a"]) == 200


def test_defaults_are_the_official_replay_setting():
    from agentd.algorithms.tabular.i2q import I2qParams

    p = I2qParams()
    assert (p.alpha, p.epsilon, p.gamma) == (0.1, 0.5, 1.0)
    assert (p.replay_batches, p.replay_batch, p.replay_every, p.replay_start,
            p.replay_capacity, p.q_init) == (10, 100, 50, 10_000, 100_000, 0.5)


def test_online_mode_backs_up_once_and_ideal_false_is_iql():
    stream = [(1, 0, 1.0, 4, True), (0, 0, 0.0, 1, False), (0, 0, -5.0, 2, False),
              (0, 2, 0.5, 6, False), (6, 2, 2.0, 20, True), (0, 0, 0.0, 1, False)]
    plain, online_iql = learner(), learner(ideal=False)
    iql = IQL(LearnerSpec(agent_id=0, n_agents=1, neighbours=[], weights={0: 1.0},
                          obs_spaces=[{"type": "discrete", "n": 30}],
                          act_spaces=[{"type": "discrete", "n": 3}], controls=[0],
                          num_envs=1, seed=0, params={"alpha": 0.5, "gamma": 1.0}))
    assert not np.any(plain.q) and plain.stored == 0 and len(plain.buf_a) == 0
    for tr in stream:
        feed(plain, *tr)
        feed(online_iql, *tr)
        feed(iql, *tr)
    np.testing.assert_array_equal(online_iql.q, iql.q)
    assert plain.q[0, 0] > 0 > iql.q[0, 0]
    assert not any(k.startswith("buf") for k in plain.state_dict())


@pytest.mark.parametrize("bad", [{"replay_batches": -1}, {"replay_batch": 0},
                                 {"replay_every": 0}, {"replay_start": -5},
                                 {"replay_capacity": 0}, {"q_init": -0.1},
                                 {"ideal": "maybe"}, {"replay_batch": 2.5}])
def test_bad_replay_parameters_are_config_errors(bad):
    name = next(iter(bad))
    with pytest.raises(LearnerConfigError, match=f"'{name}'"):
        learner(**bad)


def test_q_init_draws_q_and_new_qss_entries_uniformly():
    lr = learner(q_init=0.5)
    assert np.all(np.abs(lr.q) <= 0.5) and lr.q.std() > 0.1
    lr.record(3, 1, 0.0, 7)
    assert -0.5 <= lr.qss[(3, 7)] <= 0.5 and lr.qss[(3, 7)] != 0.0


def test_checkpoint_holds_the_buffer_and_a_restored_learner_goes_on_identically():
    params = {"replay_batches": 2, "replay_batch": 4, "replay_every": 3, "replay_capacity": 5,
              "q_init": 0.5}
    a, b = learner(**params), learner(**params)
    rng = np.random.default_rng(7)
    stream = [(int(s), int(rng.integers(3)), float(rng.random()), int(s) + 1 + int(rng.integers(2)),
               bool(rng.random() < 0.2)) for s in rng.integers(0, 25, 20)]
    for tr in stream[:8]:                                    # 8 stored: the ring has wrapped
        feed(a, *tr)
    state = a.state_dict()
    assert len(state["buf_a"]) == 5 and int(state["stored"]) == 8
    b.load_state_dict(state)
    set_rng_state(b.rng, rng_state(a.rng))
    for tr in stream[8:]:
        assert feed(a, *tr) == feed(b, *tr)
    for key, value in a.state_dict().items():
        np.testing.assert_array_equal(value, b.state_dict()[key], err_msg=key)
    small = learner(**{**params, "replay_capacity": 4})
    with pytest.raises(LearnerConfigError, match="replay_capacity"):
        small.load_state_dict(state)


def test_live_run_with_replay_is_replayed_exactly_and_its_checkpoint_restores(tmp_path):
    from agentd.agent.core import build_learner
    from agentd.tools.replay import compare_state, read_agent_log, replay

    run_dir = tmp_path / "run"
    res = subprocess.run(
        [*AGENTD, "launch", "--quiet", "--run-dir", str(run_dir), "--algo", "i2q",
         "--env", "lstage", "--n", "2", "--topology", "line", "--num-envs", "2",
         "--steps", "200", "--seed", "3", "--param", "gamma=1", "--param", "q_init=0.5",
         "--param", "replay_batches=2", "--param", "replay_batch=16", "--param",
         "replay_every=10", "--param", "replay_start=50", "--param", "replay_capacity=300"],
        capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    for agent in range(read_json(run_dir / "summary.json")["processes"]):
        out = replay(run_dir, agent)
        assert out.steps == 200 and out.first_divergence is None
        assert int(out.state["stored"]) == 400 and len(out.state["buf_a"]) == 300
        same = compare_state(out.state, run_dir / "checkpoints" / f"agent-{agent}.npz")
        assert same and all(same.values())
    restored = build_learner(read_agent_log(run_dir, 0).info)
    with np.load(run_dir / "checkpoints" / "agent-0.npz") as saved:
        restored.load_state_dict({k: saved[k] for k in saved.files})
        for key, value in restored.state_dict().items():
            np.testing.assert_array_equal(value, saved[key], err_msg=key)
