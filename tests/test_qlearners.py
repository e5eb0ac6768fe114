"""The Q-learners of seed 003 on hand-checkable cases: the double-DQN target, the turn schedule
of MA2QL, the QSS backup and ideal next state of I2Q, and their checkpoints."""

from __future__ import annotations

import numpy as np
import pytest

from agentd.algorithms.base import LearnerConfigError, LearnerSpec
from agentd.algorithms.offpolicy.buffer import rng_state, set_rng_state


def spec(obs, act, params=None, num_envs=1, seed=0, agent_id=0, n_agents=1):
    return LearnerSpec(agent_id=agent_id, n_agents=n_agents, neighbours=[],
                       weights={agent_id: 1.0}, obs_spaces=[obs], act_spaces=[act],
                       controls=[agent_id], num_envs=num_envs, seed=seed,
                       params=dict(params or {}))


def discrete(n):
    return {"type": "discrete", "n": n}


def box(n):
    return {"type": "box", "shape": [n], "low": [-1.0] * n, "high": [1.0] * n,
            "dtype": "float32"}


def feed(learner, s, a, r, s2, terminated=False):
    learner.observe(np.array([s]), np.array([a]), np.array([r], dtype=float), np.array([s2]),
                    np.array([terminated]), np.array([False]))
    return learner.update()


# ---- iql-deep ---------------------------------------------------------------------------

def test_double_dqn_target_by_hand():
    import torch

    from agentd.algorithms.offpolicy.iql_deep import double_dqn_target

    online = torch.tensor([[1.0, 5.0, 2.0], [0.0, -1.0, 3.0]])
    target = torch.tensor([[9.0, 4.0, 7.0], [8.0, 6.0, 1.0]])
    r, done = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 1.0])
    y = double_dqn_target(online, target, r, done, 0.5)
    # row 0: the online net picks a = 1, the target values it 4 (not its own max 9): 1 + 2
    # row 1: terminated, y = r
    assert y.tolist() == pytest.approx([3.0, 2.0])


def test_iql_deep_learner_uses_the_double_target_of_its_own_networks():
    import torch

    from agentd.algorithms.offpolicy.iql_deep import IqlDeep

    learner = IqlDeep(spec(box(2), discrete(3), {"gamma": 0.9, "start": 2, "batch": 2}))
    s2 = torch.tensor([[0.1, -0.3], [0.5, 0.2]])
    with torch.no_grad():       # make the target net differ from the online one
        for p in learner.q_bar.parameters():
            p.add_(0.3)
        qo, qt = learner.q(s2), learner.q_bar(s2)
    y = learner.td_target(s2, torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0]))
    for k in range(2):
        assert y[k].item() == pytest.approx(float([1.0, 0.0][k] + 0.9 * qt[k, qo[k].argmax()]))


def test_iql_deep_epsilon_schedule_discrete_obs_and_checkpoint_round_trip():
    from agentd.algorithms.offpolicy.iql_deep import IqlDeep

    p = {"start": 4, "batch": 4, "eps_steps": 10, "eps_start": 1.0, "eps_end": 0.1,
         "target_every": 3}
    a, b = (IqlDeep(spec(discrete(5), discrete(2), p, seed=3)) for _ in range(2))
    assert a.epsilon() == 1.0
    for t in range(6):
        feed(a, t % 5, t % 2, 1.0, (t + 1) % 5, terminated=t == 4)
    assert a.epsilon() == pytest.approx(1.0 - 0.6 * 0.9)
    assert a.updates == 3 and a.buf.count == 6
    b.load_state_dict(a.state_dict())     # networks, Adam moments, buffer, counters, RNG
    for t in range(6, 12):
        sa, sb = feed(a, t % 5, t % 2, 0.5, (t + 2) % 5), feed(b, t % 5, t % 2, 0.5, (t + 2) % 5)
        assert sa == sb
        obs = np.array([t % 5])
        assert (a.act(obs) == b.act(obs)).all()
    for key, value in a.state_dict().items():
        np.testing.assert_array_equal(value, b.state_dict()[key], err_msg=key)


def test_iql_deep_refuses_box_actions_and_huge_one_hots():
    from agentd.algorithms.offpolicy.iql_deep import IqlDeep

    with pytest.raises(LearnerConfigError, match="Discrete action space"):
        IqlDeep(spec(box(2), box(2)))
    with pytest.raises(LearnerConfigError, match="at most 4096"):
        IqlDeep(spec(discrete(10_000), discrete(2)))
    with pytest.raises(LearnerConfigError, match="batch <= start <= buffer"):
        IqlDeep(spec(box(2), discrete(2), {"start": 10, "batch": 20}))


def test_rng_state_round_trip():
    rng = np.random.default_rng(7)
    rng.random(3)
    words = rng_state(rng)
    other = np.random.default_rng(0)
    set_rng_state(other, words)
    assert (rng.random(5) == other.random(5)).all()


# ---- ma2ql: the turn schedule -----------------------------------------------------------

def test_turn_schedule_is_round_robin_or_a_seeded_permutation():
    from agentd.algorithms.plugins.turns import TurnSchedule, truncation_sweeps

    rr = TurnSchedule.build(3, 5, "round-robin", seed=1)
    assert [rr.agent_at(t) for t in range(0, 35, 5)] == [0, 1, 2, 0, 1, 2, 0]
    assert rr.agent_at(4) == 0 and rr.agent_at(5) == 1
    perm = TurnSchedule.build(4, 2, "random", seed=9)
    assert sorted(perm.order) == [0, 1, 2, 3]
    assert perm == TurnSchedule.build(4, 2, "random", seed=9)
    for bad in ({"order": [0, 0, 1], "turn_len": 5}, {"order": [0, 1, 2], "turn_len": 0},
                {"order": "012", "turn_len": 5}):
        with pytest.raises(LearnerConfigError, match="bad turn schedule"):
            TurnSchedule.from_body(bad, 3)
    # seed 003's bound: gamma = 0.99, R = 5, eps = 1 -> 706 sweeps (research §1)
    assert truncation_sweeps(0.99, 5.0, 1.0) == 706


def test_ma2ql_only_the_agent_on_turn_changes_its_table():
    from agentd.launch.inprocess import build_env, make_learners

    env = build_env("stochastic-game", 3, num_envs=2, episode_len=30, seed=2,
                    env_args={"n_states": 4, "n_actions": 2})
    learners = make_learners("ma2ql", env, 3, seed=2, params={"turn_len": 5, "epsilon": 0.5})
    obs = env.reset(0)
    changed = {0: 0, 1: 0, 2: 0}
    for t in range(30):
        before = [lr.q.copy() for lr in learners]
        actions = [lr.act(obs[i]) for i, lr in enumerate(learners)]
        res = env.step(actions)
        for i, lr in enumerate(learners):
            lr.observe(obs[i], actions[i], res.reward[i], res.final_obs[i], res.terminated,
                       res.truncated)
            scalars = lr.update()
            assert scalars["on_turn"] == float(i == (t // 5) % 3)
            if not np.array_equal(before[i], lr.q):
                assert i == (t // 5) % 3, f"agent {i} learned at step {t}"
                changed[i] += 1
        obs = res.obs
    assert all(v > 0 for v in changed.values()), changed


def test_ma2ql_off_turn_acts_greedily_when_asked_and_explores_on_turn():
    from agentd.algorithms.tabular.ma2ql import MA2QL

    def learner(**params):
        lr = MA2QL(spec(discrete(3), discrete(4), {"epsilon": 1.0, "turn_len": 50, **params},
                        num_envs=8, n_agents=2))
        lr.set_turns({"order": [0, 1], "turn_len": 50})   # agent 0: steps 0-49, 100-149
        lr.q[:, 2] = 1.0                                      # action 2 is greedy everywhere
        return lr

    obs = np.zeros(8, dtype=np.int64)
    for explore, off_turn_all_greedy in ((True, False), (False, True)):
        lr = learner(explore_off_turn=explore)
        greedy_by_step = []
        for t in range(150):
            greedy_by_step.append(bool(np.all(lr.act(obs) == 2)))
            lr.update()                    # no transition: only the turn clock moves
        on_turn = [(t // 50) % 2 == 0 for t in range(150)]
        # epsilon = 1: 8 uniform actions are all 2 with probability 4^-8
        assert not any(g for g, on in zip(greedy_by_step, on_turn) if on)
        off = [g for g, on in zip(greedy_by_step, on_turn) if not on]
        assert all(off) if off_turn_all_greedy else not any(off)
    with pytest.raises(LearnerConfigError, match="explore_off_turn"):
        MA2QL(spec(discrete(2), discrete(2), {"explore_off_turn": "sometimes"}))


def test_ma2ql_turn_clock_skips_the_steps_of_a_gap():
    from agentd.algorithms.tabular.ma2ql import MA2QL, Ma2qlDeep

    lr = MA2QL(spec(discrete(2), discrete(2), {"turn_len": 10}, n_agents=2))
    lr.set_turns({"order": [0, 1], "turn_len": 10})
    for _ in range(4):
        feed(lr, 0, 1, 1.0, 1)
    lr.on_gap(9)                  # restored: the run went on for 9 joint steps without it
    assert lr.turn_step == 13 and not lr.acts_on_turn()       # step 13 is agent 1's
    before = lr.q.copy()
    assert feed(lr, 0, 1, 5.0, 1)["on_turn"] == 0.0 and np.array_equal(lr.q, before)
    deep = Ma2qlDeep(spec(box(2), discrete(2), {"turn_len": 10}, n_agents=2))
    deep.on_gap(7)
    assert deep.turn_step == 7


def test_ma2ql_without_a_schedule_says_so():
    from agentd.algorithms.tabular.ma2ql import MA2QL

    learner = MA2QL(spec(discrete(2), discrete(2)))
    with pytest.raises(LearnerConfigError, match="no turn schedule"):
        feed(learner, 0, 1, 1.0, 1)
    with pytest.raises(LearnerConfigError, match="turn_order"):
        MA2QL(spec(discrete(2), discrete(2), {"turn_order": "sometimes"}))


def test_ma2ql_live_run_logs_the_schedule_and_replays_exactly(tmp_path):
    import subprocess

    from conftest import AGENTD

    from agentd.tools.replay import compare_state, read_agent_log, replay

    run_dir = tmp_path / "run"
    res = subprocess.run([*AGENTD, "launch", "--quiet", "--run-dir", str(run_dir), "--algo",
                          "ma2ql", "--env", "stochastic-game", "--n", "3", "--steps", "120",
                          "--seed", "5", "--param", "turn_len=10", "--param",
                          "turn_order=random"], capture_output=True, text=True, timeout=120,
                         check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    schedules = []
    for agent in range(3):
        log = read_agent_log(run_dir, agent)
        schedules.append(log.info["turn"])
        out = replay(run_dir, agent)
        assert out.steps == 120 and out.first_divergence is None
        assert all(compare_state(out.state, run_dir / "checkpoints" / f"agent-{agent}.npz")
                   .values())
    assert schedules[0] == schedules[1] == schedules[2]
    assert schedules[0]["turn_len"] == 10 and sorted(schedules[0]["order"]) == [0, 1, 2]


# ---- iql / ma2ql: step-size and exploration schedules ----------------------------------

def test_visit_count_step_size_averages_and_floors_by_hand():
    from agentd.algorithms.tabular.iql import IQL

    # alpha (1 + n)^-1 with alpha = 1: the steps are 1, 1/2, 1/3, Q is the running mean
    iql = IQL(spec(discrete(2), discrete(2), {"alpha": 1.0, "alpha_omega": 1.0}))
    for r, mean in ((3.0, 3.0), (6.0, 4.5), (9.0, 6.0)):
        feed(iql, 0, 1, r, 1, terminated=True)
        assert iql.q[0, 1] == pytest.approx(mean)
    assert iql.visits.tolist() == [[0, 3], [0, 0]]
    # the floor: steps 1, 0.5, then max(0.4, 1/3) = 0.4
    floored = IQL(spec(discrete(2), discrete(2),
                       {"alpha": 1.0, "alpha_omega": 1.0, "alpha_min": 0.4}))
    for r in (3.0, 6.0, 9.0):
        feed(floored, 0, 1, r, 1, terminated=True)
    assert floored.q[0, 1] == pytest.approx(4.5 + 0.4 * (9.0 - 4.5))
    # omega = 0.5, alpha = 0.5: the second step is 0.5 / sqrt(2)
    half = IQL(spec(discrete(2), discrete(2), {"alpha": 0.5, "alpha_omega": 0.5}))
    feed(half, 0, 0, 4.0, 1, terminated=True)
    feed(half, 0, 0, 0.0, 1, terminated=True)
    assert half.q[0, 0] == pytest.approx(2.0 - 2.0 * 0.5 / np.sqrt(2.0))
    # default: the constant alpha, no schedule state in the checkpoint
    const = IQL(spec(discrete(2), discrete(2), {"alpha": 0.5}))
    for r in (4.0, 4.0):
        feed(const, 0, 0, r, 1, terminated=True)
    assert const.q[0, 0] == pytest.approx(3.0) and set(const.state_dict()) == {"q"}


def test_epsilon_falls_linearly_then_acts_greedily():
    from agentd.algorithms.tabular.iql import IQL, epsilon_at

    p = {"epsilon": 1.0, "epsilon_final": 0.0, "epsilon_decay": 4}
    iql = IQL(spec(discrete(1), discrete(2), p, seed=1))
    assert [epsilon_at(iql.params, t) for t in (0, 1, 2, 4, 9)] == \
        pytest.approx([1.0, 0.75, 0.5, 0.0, 0.0])
    iql.q[0] = [0.0, 1.0]
    early = [int(iql.act(np.array([0]))[0]) for _ in range(4)]      # epsilon 1 .. 0.25
    assert iql.act_step == 4
    assert [int(iql.act(np.array([0]))[0]) for _ in range(200)] == [1] * 200
    assert len(early) == 4
    # a checkpoint keeps the schedule's clock and the visit counts
    other = IQL(spec(discrete(1), discrete(2), p, seed=1))
    other.load_state_dict(iql.state_dict())
    assert other.act_step == 204 and np.array_equal(other.q, iql.q)


def test_ma2ql_restarts_its_visit_counts_at_each_of_its_turns():
    from agentd.algorithms.tabular.ma2ql import MA2QL

    learner = MA2QL(spec(discrete(2), discrete(2), {"alpha": 1.0, "alpha_omega": 1.0,
                                                    "turn_len": 3}))
    learner.set_turns({"order": [0], "turn_len": 3})     # a lone agent: every turn is its own
    for r in (3.0, 6.0, 9.0):                             # turn 0: steps 1, 1/2, 1/3
        feed(learner, 0, 1, r, 1, terminated=True)
    assert learner.q[0, 1] == pytest.approx(6.0)
    feed(learner, 0, 1, 0.0, 1, terminated=True)          # turn 1 starts afresh: step 1
    assert learner.q[0, 1] == 0.0 and learner.visits[0, 1] == 1
    state = learner.state_dict()
    assert int(state["visits_turn"]) == 1 and int(state["turn_step"]) == 4
    # without the reset the 4th step would have been 1/4 (Q = 4.5); a constant alpha
    # (alpha_omega = 0, epsilon constant) keeps the checkpoint's old keys
    const = MA2QL(spec(discrete(2), discrete(2), {"alpha": 0.5, "alpha_omega": 0.0}))
    assert set(const.state_dict()) == {"q", "turn_step"}
    # the defaults are the reproduction's setting: a decaying step restarted each turn,
    # greedy off turn
    default = MA2QL(spec(discrete(2), discrete(2)))
    assert (default.params.alpha_omega, default.params.epsilon,
            default.params.explore_off_turn) == (0.7, 0.1, False)
    assert {"visits", "visits_turn"} <= set(default.state_dict())


@pytest.mark.parametrize("bad", [{"alpha_omega": 1.5}, {"alpha_omega": -0.1},
                                 {"alpha_min": -0.1}, {"alpha": 0.1, "alpha_min": 0.2},
                                 {"epsilon_decay": -1}, {"epsilon_decay": 2.5},
                                 {"epsilon_final": 1.2}])
def test_schedule_parameters_out_of_range_are_config_errors(bad):
    from agentd.algorithms.tabular.iql import IQL
    from agentd.algorithms.tabular.ma2ql import MA2QL

    for cls in (IQL, MA2QL):
        with pytest.raises(LearnerConfigError, match="alpha|epsilon"):
            cls(spec(discrete(2), discrete(2), bad))


def test_i2q_keeps_the_plain_q_parameters():
    from agentd.algorithms.tabular.i2q import I2Q

    with pytest.raises(LearnerConfigError, match="unknown parameter"):
        I2Q(spec(discrete(2), discrete(2), {"alpha_omega": 0.7}))


# ---- i2q (tabular) ----------------------------------------------------------------------

def i2q_learner(**params):
    from agentd.algorithms.tabular.i2q import I2Q

    online = {"replay_batches": 0, "replay_start": 0, "q_init": 0.0}    # hand-checkable
    return I2Q(spec(discrete(30), discrete(3), {**online, "alpha": 0.5, **params}))


def test_i2q_qss_backup_and_ideal_next_state_by_hand():
    learner = i2q_learner()
    feed(learner, 1, 0, 1.0, 4, terminated=True)
    feed(learner, 1, 1, 3.0, 5, terminated=True)
    # (1) terminal: Q_ss(1,4) = 0.5 * 1 = 0.5, Q_ss(1,5) = 1.5; (3) Q(1,0) = 0.5, Q(1,1) = 1.5
    assert learner.qss == {(1, 4): 0.5, (1, 5): 1.5}
    assert learner.q[1].tolist() == [0.5, 1.5, 0.0]
    feed(learner, 0, 0, 0.0, 1)
    # (1) N(1) = {4, 5}: Q_ss(0,1) = 0.5 * (0 + max(0.5, 1.5)) = 0.75; (3) Q(0,0) = 0.5 * 1.5
    assert learner.qss[(0, 1)] == 0.75 and learner.q[0, 0] == 0.75
    # the partner plays otherwise: the same own action 0 now leads to 2, with reward -5
    scalars = feed(learner, 0, 0, -5.0, 2)
    assert learner.qss[(0, 2)] == -2.5                   # (1) N(2) is empty: bootstrap 0
    assert learner.ideal(0, 0) == 1                      # (2) argmax over M(0,0) = {1, 2}
    # (3) on s'* = 1 with the reward of 0 -> 1: 0.75 + 0.5 * (0 + 1.5 - 0.75) = 1.125
    # (IQL, on the sampled s' = 2: 0.75 + 0.5 * (-5 + 0 - 0.75) = -2.125)
    assert learner.q[0, 0] == 1.125 and scalars["ideal_differs"] == 1.0
    # the mask: own action 1 has only ever led to 3, so Q_ss(0,1) = 0.75 is not its to take
    feed(learner, 0, 1, 0.0, 3)
    assert learner.mask[(0, 1)] == [3] and learner.ideal(0, 1) == 3
    assert learner.q[0, 1] == 0.0


def test_i2q_checkpoint_round_trip_and_iql_on_the_same_stream_differs():
    from agentd.algorithms.tabular.iql import IQL

    a, b = i2q_learner(), i2q_learner()
    iql = IQL(spec(discrete(30), discrete(3), {"alpha": 0.5, "gamma": 1.0}))
    stream = [(1, 0, 1.0, 4, True), (0, 0, 0.0, 1, False), (0, 0, -5.0, 2, False),
              (0, 2, 0.5, 6, False), (6, 2, 2.0, 20, True)]
    for tr in stream[:3]:
        feed(a, *tr)
        feed(iql, *tr)
    b.load_state_dict(a.state_dict())
    for tr in stream[3:]:
        assert feed(a, *tr) == feed(b, *tr)
    for key, value in a.state_dict().items():
        np.testing.assert_array_equal(value, b.state_dict()[key], err_msg=key)
    assert iql.q[0, 0] < 0 < a.q[0, 0]


def test_i2q_refuses_non_deterministic_and_non_discrete_envs(tmp_path):
    import subprocess

    from conftest import AGENTD

    from agentd.algorithms.tabular.i2q import I2Q

    for env in ("stochastic-game", "random-mdp", "mpe2.simple_spread_v3:parallel_env"):
        with pytest.raises(LearnerConfigError, match="deterministic env"):
            I2Q.check_run({"env": env, "params": {}})
    assert I2Q.check_run({"env": "lstage", "params": {"gamma": 1.0}}) == {}
    with pytest.raises(LearnerConfigError, match="Discrete observation"):
        I2Q(spec(box(3), discrete(3)))
    res = subprocess.run([*AGENTD, "launch", "--run-dir", str(tmp_path / "run"), "--algo", "i2q",
                          "--env", "stochastic-game", "--n", "3", "--steps", "10"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode != 0 and "deterministic env" in res.stdout + res.stderr
    assert not (tmp_path / "run" / "logs").exists()
    res = subprocess.run([*AGENTD, "launch", "--run-dir", str(tmp_path / "run2"), "--algo",
                          "iql", "--env", "random-mdp", "--param", "gamma=1", "--steps", "10"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode != 0 and "episodes terminate" in res.stdout + res.stderr


# ---- i2q-deep ---------------------------------------------------------------------------

def test_i2q_deep_target_takes_the_model_state_only_where_qss_prefers_it():
    import torch

    from agentd.algorithms.offpolicy.i2q_deep import I2qDeep
    from agentd.algorithms.offpolicy.iql_deep import double_dqn_target

    learner = I2qDeep(spec(box(3), discrete(2), {"gamma": 0.9, "start": 8, "batch": 8}))
    gen = torch.Generator().manual_seed(0)
    s, s2 = torch.randn(8, 3, generator=gen), torch.randn(8, 3, generator=gen)
    a, r, done = torch.tensor([0, 1] * 4), torch.arange(8.0), torch.zeros(8)
    y, better = learner.ideal_target(s, a, r, s2, done)
    with torch.no_grad():
        pred = learner.predict(s, a)
        own = double_dqn_target(learner.q(s2), learner.q_bar(s2), r, done, 0.9)
        ideal = double_dqn_target(learner.q(pred), learner.q_bar(pred), r, done, 0.9)
        prefer = learner.value_ss(learner.qss, s, pred) > learner.value_ss(learner.qss, s, s2)
    assert 0 < int(prefer.sum()) < 8, "the random networks should prefer some, not all"
    assert better.tolist() == prefer.tolist()
    for k in range(8):
        assert y[k].item() == pytest.approx((ideal if prefer[k] else own)[k].item())


def test_i2q_deep_learns_its_forward_model_and_checkpoints_all_five_networks():
    from agentd.algorithms.offpolicy.i2q_deep import I2qDeep

    p = {"start": 16, "batch": 16, "lam": 0.0, "lr": 0.01}
    a, b = (I2qDeep(spec(box(2), discrete(2), p, seed=4)) for _ in range(2))
    rng = np.random.default_rng(0)
    first = last = None
    for t in range(300):            # a deterministic 1-D walk: s' = s + (a == 1 ? +0.1 : -0.1)
        s = rng.uniform(-1, 1, 2).astype(np.float32)
        act = int(rng.integers(2))
        s2 = s + (0.1 if act else -0.1)
        a.observe(s[None], np.array([act]), np.array([0.0]), s2[None], np.array([False]),
                  np.array([False]))
        out = a.update()
        if "model_err" in out:
            first = out["model_err"] if first is None else first
            last = out["model_err"]
    assert last < 0.1 * first, (first, last)
    state = a.state_dict()
    assert {"f.0.weight", "qss.0.weight", "qss_bar.0.weight", "q.0.weight", "q_bar.0.weight"} \
        <= state.keys() and any(k.startswith("opt_f.") for k in state)
    b.load_state_dict(state)
    for key, value in b.state_dict().items():
        np.testing.assert_array_equal(value, state[key], err_msg=key)
