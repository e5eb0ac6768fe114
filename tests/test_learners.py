"""Tabular learners on hand-checkable cases, the registry, and one learning sanity check."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from agentd.algorithms import ALGORITHMS, load_learner_class
from agentd.algorithms.base import LearnerConfigError, LearnerSpec, parse_params
from agentd.algorithms.tabular.central_q import CentralQ
from agentd.algorithms.tabular.dac import DAC
from agentd.algorithms.tabular.iql import IQL
from agentd.algorithms.tabular.random_policy import RandomPolicy
from agentd.envs.random_mdp import RandomMDP

LN3 = math.log(3.0)


def spec(obs_spaces, act_spaces, params=None, num_envs=1, seed=0, shared_reward=True):
    m = len(act_spaces)
    return LearnerSpec(agent_id=0, n_agents=m, neighbours=[], weights={0: 1.0},
                       obs_spaces=obs_spaces, act_spaces=act_spaces, controls=list(range(m)),
                       num_envs=num_envs, seed=seed, params=dict(params or {}),
                       shared_reward=shared_reward)


def discrete(n):
    return {"type": "discrete", "n": n}


def one_step(learner, s, a, r, s_next, terminated=False, truncated=False):
    """Feed one transition of a single copy (K = 1) and return update()'s scalars."""
    learner.observe(np.array([s]), np.array([a]), np.array([r], dtype=float), np.array([s_next]),
                    np.array([terminated]), np.array([truncated]))
    return learner.update()


def set_tables(learner, q=None, zeta=None):
    """Set a DAC's tables through its public state API (keeps its policy cache in step)."""
    state = {k: v.copy() for k, v in learner.state_dict().items()}
    if q is not None:
        state["q"][...] = q
    if zeta is not None:
        state["zeta"][...] = zeta
    learner.load_state_dict(state)


def dac_2x2(**params):
    p = {"gamma": 0.9, "alpha": 0.5, "beta": 0.25, **params}
    learner = DAC(spec([discrete(2)], [discrete(2)], p))
    # Q(s'=1, ·) equal: the sampled ã cannot matter; pi(0, ·) = [1/4, 3/4]
    set_tables(learner, q=[[1.0, 2.0], [3.0, 3.0]], zeta=[[0.0, LN3], [0.0, 0.0]])
    return learner


# ---- DAC --------------------------------------------------------------------------------

def test_dac_update_by_hand():
    learner = dac_2x2()
    scalars = one_step(learner, s=0, a=1, r=1.0, s_next=1)
    # eq. 7:  target = 1 + 0.9 * 3 = 3.7;  td = 3.7 - 2 = 1.7;  Q(0,1) = 2 + 0.5 * 1.7 = 2.85
    assert learner.q[0].tolist() == pytest.approx([1.0, 2.85])
    assert learner.q[1].tolist() == [3.0, 3.0]
    # eq. 32: v = 1/4 * 1 + 3/4 * 2.85 = 2.3875
    # eq. 33: zeta(0,0) += 0.25 * 1/4 * (1 - 2.3875)    = -0.08671875
    #         zeta(0,1) += 0.25 * 3/4 * (2.85 - 2.3875) = +0.08671875
    assert learner.zeta[0].tolist() == pytest.approx([-0.08671875, LN3 + 0.08671875])
    assert learner.zeta[1].tolist() == [0.0, 0.0]
    assert scalars["td_abs"] == pytest.approx(1.7)
    assert scalars["entropy"] == pytest.approx(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)))


def test_dac_terminated_does_not_bootstrap_but_truncated_does():
    learner = dac_2x2()
    one_step(learner, s=0, a=1, r=1.0, s_next=1, terminated=True)
    assert learner.q[0, 1] == pytest.approx(2.0 + 0.5 * (1.0 - 2.0))          # target = r
    learner = dac_2x2()
    one_step(learner, s=0, a=1, r=1.0, s_next=1, truncated=True)
    assert learner.q[0, 1] == pytest.approx(2.85)                              # as if going on


def test_dac_bootstraps_on_a_sampled_action_not_the_max():
    learner = dac_2x2(t_min=-20.0, t_max=20.0)
    # pi(1, ·) = [1 - 4e-18, 4e-18]: ã = 0
    set_tables(learner, q=[[1.0, 2.0], [0.0, 10.0]], zeta=[[0.0, LN3], [20.0, -20.0]])
    one_step(learner, s=0, a=1, r=1.0, s_next=1)
    assert learner.q[0, 1] == pytest.approx(2.0 + 0.5 * (1.0 + 0.9 * 0.0 - 2.0))


def test_dac_clips_preferences():
    learner = dac_2x2(t_min=-0.05, t_max=0.05)
    set_tables(learner, q=[[0.0, 10.0], [0.0, 0.0]], zeta=0.0)
    one_step(learner, s=0, a=1, r=10.0, s_next=1)       # td = 10 + 0 - 10 = 0
    # raw eq. 33 step: 0.25 * 1/2 * (0 - 5, 10 - 5) = (-0.625, 0.625), clipped by eq. 34
    assert learner.zeta[0].tolist() == pytest.approx([-0.05, 0.05])


def test_dac_act_samples_its_softmax_policy():
    learner = DAC(spec([discrete(2)], [discrete(3)], num_envs=400))
    set_tables(learner, zeta=[[10.0, -10.0, -10.0], [0.0, 0.0, 0.0]])
    a0 = learner.act(np.zeros(400, dtype=np.int64))
    a1 = learner.act(np.ones(400, dtype=np.int64))
    assert a0.shape == (400,) and a0.dtype == np.int64
    assert (a0 == 0).all()
    assert set(a1.tolist()) == {0, 1, 2}
    assert learner.state_dict().keys() == {"q", "zeta"}


def test_dac_params_errors_name_the_field():
    obs, act = [discrete(2)], [discrete(2)]
    with pytest.raises(LearnerConfigError, match=r"unknown parameter.*'nope'.*allowed"):
        DAC(spec(obs, act, {"nope": 1}))
    with pytest.raises(LearnerConfigError, match="'alpha'.*float"):
        DAC(spec(obs, act, {"alpha": "fast"}))
    with pytest.raises(LearnerConfigError, match="beta.*alpha.*time scale"):
        DAC(spec(obs, act, {"alpha": 0.1, "beta": 0.2}))
    with pytest.raises(LearnerConfigError, match="gamma"):
        DAC(spec(obs, act, {"gamma": 1.0}))
    with pytest.raises(LearnerConfigError, match="t_min"):
        DAC(spec(obs, act, {"t_min": 1.0, "t_max": 1.0}))


def test_dac_needs_discrete_spaces():
    box = {"type": "box", "shape": [2], "low": [0, 0], "high": [1, 1], "dtype": "float32"}
    with pytest.raises(LearnerConfigError, match="Discrete observation and action.*random-mdp"):
        DAC(spec([box], [discrete(2)]))


# ---- IQL --------------------------------------------------------------------------------

def iql_2x2():
    learner = IQL(spec([discrete(2)], [discrete(2)], {"gamma": 0.9, "alpha": 0.5}))
    learner.q[...] = [[1.0, 2.0], [3.0, 5.0]]
    return learner


def test_iql_update_by_hand():
    learner = iql_2x2()
    scalars = one_step(learner, s=0, a=1, r=1.0, s_next=1)
    # target = 1 + 0.9 * max(3, 5) = 5.5;  td = 3.5;  Q(0,1) = 2 + 0.5 * 3.5 = 3.75
    assert learner.q.ravel().tolist() == pytest.approx([1.0, 3.75, 3.0, 5.0])
    assert scalars == pytest.approx({"td_abs": 3.5, "epsilon": 0.05})


def test_iql_terminated_does_not_bootstrap():
    learner = iql_2x2()
    one_step(learner, s=0, a=1, r=1.0, s_next=1, terminated=True)
    assert learner.q[0, 1] == pytest.approx(2.0 + 0.5 * (1.0 - 2.0))


def test_iql_breaks_ties_at_random_and_explores():
    learner = IQL(spec([discrete(1)], [discrete(3)], {"epsilon": 0.0}, num_envs=500))
    learner.q[0] = [1.0, 1.0, 0.0]
    actions = learner.act(np.zeros(500, dtype=np.int64))
    assert set(actions.tolist()) == {0, 1}
    learner.params.epsilon = 1.0
    assert set(learner.act(np.zeros(500, dtype=np.int64)).tolist()) == {0, 1, 2}


# ---- central Q ----------------------------------------------------------------------------

def test_central_q_joint_index_round_trip():
    learner = CentralQ(spec([discrete(4)] * 3, [discrete(2), discrete(3), discrete(4)]))
    assert learner.q.shape == (4, 24)
    every = np.arange(24)
    per_agent = learner.joint_actions(every)
    assert per_agent.shape == (24, 3)
    assert (learner.joint_index(per_agent) == every).all()
    # agent 0 is the least significant digit: 1 + 2 * 2 + 3 * (2 * 3) = 23
    assert learner.joint_index(np.array([[1, 2, 3]])).tolist() == [23]
    assert learner.joint_actions(np.array([23])).tolist() == [[1, 2, 3]]


def test_central_q_matches_random_mdp_joint_order():
    env = RandomMDP(n_agents=3, num_envs=2, episode_len=5, model_seed=0)
    learner = CentralQ(spec(env.obs_spaces, env.act_spaces, num_envs=2))
    actions = np.array([[0, 2], [1, 1], [2, 0]])                   # (N, K) as the env sees them
    assert env.joint_index(actions) == learner.joint_index(actions.T).tolist()


def test_central_q_update_and_act():
    learner = CentralQ(spec([discrete(2)] * 2, [discrete(3)] * 2,
                            {"gamma": 0.9, "alpha": 0.5}, num_envs=2, shared_reward=False))
    learner.q[1, :] = 0.0
    learner.q[1, 4] = 2.0
    obs = np.array([[0, 0], [1, 1]])
    actions = learner.act(obs)
    assert actions.shape == (2, 2) and actions.dtype == np.int64
    # copy 0: joint (2, 1) -> index 2 + 1 * 3 = 5; rewards (1, 3) -> mean 2;
    # target = 2 + 0.9 * max Q(1, ·) = 2 + 1.8 = 3.8;  Q(0, 5) = 0 + 0.5 * 3.8 = 1.9
    learner.observe(np.array([[0, 0]]), np.array([[2, 1]]), np.array([[1.0, 3.0]]),
                    np.array([[1, 1]]), np.array([False]), np.array([False]))
    scalars = learner.update()
    assert learner.q[0, 5] == pytest.approx(1.9)
    assert scalars["td_abs"] == pytest.approx(3.8)


def test_central_q_refuses_huge_joint_tables():
    with pytest.raises(LearnerConfigError, match="joint action space is too large"):
        CentralQ(spec([discrete(100)] * 64, [discrete(3)] * 64))


# ---- random policy ----------------------------------------------------------------------

def test_random_policy_box_and_discrete():
    box = {"type": "box", "shape": [3], "low": [0.0, -math.inf, 5.0],
           "high": [1.0, math.inf, math.inf], "dtype": "float32"}
    learner = RandomPolicy(spec([box], [box], num_envs=200))
    a = learner.act(np.zeros((200, 3), dtype=np.float32))
    assert a.shape == (200, 3) and a.dtype == np.float32
    assert (a[:, 0] >= 0).all() and (a[:, 0] <= 1).all()
    assert (a[:, 1] >= -1).all() and (a[:, 1] <= 1).all()
    assert (a[:, 2] >= 5).all() and (a[:, 2] <= 7).all()
    learner = RandomPolicy(spec([box], [discrete(4)], num_envs=200))
    a = learner.act(np.zeros((200, 3), dtype=np.float32))
    assert a.dtype == np.int64 and set(a.tolist()) == {0, 1, 2, 3}


# ---- registry -----------------------------------------------------------------------------

def test_registry_loads_every_algorithm_by_name():
    for name in ALGORITHMS:
        assert load_learner_class(name).name == name
    with pytest.raises(LearnerConfigError, match=r"unknown algo 'ppo'.*central-q.*dac"):
        load_learner_class("ppo")


def test_importing_algorithms_stays_light():
    code = ("import sys, agentd.algorithms; "
            "print([m for m in ('torch', 'pettingzoo', 'gymnasium', 'agentd.algorithms.tabular.dac') "
            "if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


# ---- learning sanity ----------------------------------------------------------------------

def test_dac_learns_on_a_single_agent_random_mdp():
    env = RandomMDP(n_agents=1, num_envs=1, episode_len=50, model_seed=0)
    learner = DAC(spec(env.obs_spaces, env.act_spaces, seed=1))
    obs = env.reset(seed=2)
    rewards = []
    for _ in range(20_000):
        action = learner.act(obs[0])
        res = env.step([action])
        learner.observe(obs[0], action, res.reward[0], res.final_obs[0], res.terminated,
                        res.truncated)
        learner.update()
        rewards.append(res.reward[0, 0])
        obs = res.obs
    # Seen: ~0.19 per step at first, ~0.85 at the end (a 50-step optimum is ~0.87 per step).
    first, last = np.mean(rewards[:2000]), np.mean(rewards[-2000:])
    assert last > first + 0.3, (first, last)


def test_params_coercion_is_strict():
    """A bool is never read from "False" as True, an int never truncates 0.5 to 0, and a
    number never comes from a bool (each names the field instead)."""
    from dataclasses import dataclass

    from agentd.algorithms.base import parse_params

    @dataclass
    class P:
        flag: bool = True
        count: int = 3
        rate: float = 0.5
        name: str = "x"

    assert parse_params(P, {"flag": "False", "count": 4.0, "rate": 1}, "t") == P(False, 4, 1.0)
    assert parse_params(P, {"flag": "true"}, "t").flag is True
    assert parse_params(P, {"flag": 0}, "t").flag is False
    for bad in ({"flag": "maybe"}, {"flag": 2}, {"count": 0.5}, {"count": True},
                {"rate": False}, {"rate": "fast"}):
        field = next(iter(bad))
        with pytest.raises(LearnerConfigError, match=f"'{field}'"):
            parse_params(P, bad, "t")


@pytest.mark.parametrize(("raw", "words"), [
    ({"gamma": 1.5}, "parameter 'gamma' for algo 'iql' must be in [0.0, 1.0], got 1.5"),
    ({"alpha": 0.0}, "parameter 'alpha' for algo 'iql' must be in (0.0, 1.0], got 0.0"),
    ({"epsilon": -0.1}, "parameter 'epsilon' for algo 'iql' must be in [0.0, 1.0], got -0.1"),
])
def test_declared_constraints_name_the_field_and_what_is_allowed(raw, words):
    from agentd.algorithms.tabular.iql import QParams

    with pytest.raises(LearnerConfigError) as info:
        parse_params(QParams, raw, "iql")
    assert str(info.value) == words
    assert parse_params(QParams, {"gamma": 0.0, "alpha": 1.0}, "iql").gamma == 0.0


def test_declared_choices_and_one_sided_bounds():
    from dataclasses import dataclass

    from agentd.algorithms.base import param

    @dataclass
    class P:
        act: str = param("relu", choices=("relu", "tanh"))
        hidden: int = param(64, ge=1)

    with pytest.raises(LearnerConfigError, match="'act' for algo 'x' must be one of relu, tanh"):
        parse_params(P, {"act": "gelu"}, "x")
    with pytest.raises(LearnerConfigError, match="'hidden' for algo 'x' must be >= 1, got 0"):
        parse_params(P, {"hidden": 0}, "x")


# One declared bound per learner, at its edge where the bound is open or closed; central-q,
# ia2c and coma change a parent's default and must keep the parent's declared range.
DECLARED_BOUND = {
    "dac": ("gamma", 1.0, "in [0.0, 1.0)"),
    "iql": ("epsilon", 1.5, "in [0.0, 1.0]"),
    "central-q": ("alpha", 0.0, "in (0.0, 1.0]"),
    "pr": ("beta", 1.0, "in [0.0, 1.0)"),
    "i2q": ("gamma", -0.1, "in [0.0, 1.0]"),
    "dac-deep": ("mode", "gossip", "one of batch, full, off"),
    "isac": ("pr_weight", 1.5, "in [0.0, 1.0]"),
    "maddpg": ("tau", 0.0, "in (0.0, 1.0]"),
    "iql-deep": ("eps_end", 1.5, "in [0.0, 1.0]"),
    "ma2ql": ("turn_order", "shuffled", "one of round-robin, random"),
    "ma2ql-deep": ("turn_len", 0, ">= 1"),
    "i2q-deep": ("lam", -0.01, ">= 0.0"),
    "ippo": ("clip", 1.0, "in (0.0, 1.0)"),
    "happo": ("clip", 0.0, "in (0.0, 1.0)"),
    "dpo": ("delta", 1.0, "> 1.0"),
    "mdpo": ("history", 1, ">= 2"),
    "mappo": ("activation", "gelu", "one of relu, tanh"),
    "mat": ("heads", 0, ">= 1"),
    "ia2c": ("epochs", 0, ">= 1"),
    "maa2c": ("value_clip", -0.1, ">= 0.0"),
    "coma": ("gamma", 1.0, "in [0.0, 1.0)"),
    "naive-pg": ("opponent", "spy", "one of model, shared"),
    "lola": ("eta", -1.0, ">= 0.0"),
    "meta-pg": ("chain", 0, ">= 1"),
    "meta-mapg": ("estimator", "dice", "one of exact"),
}


@pytest.mark.parametrize("algo", sorted(ALGORITHMS))
def test_every_learner_has_valid_defaults_and_refuses_a_declared_bound(algo):
    params_cls = load_learner_class(algo).Params
    assert parse_params(params_cls, {}, algo) == params_cls()
    if algo == "random":
        return                                  # no hyper-parameters
    field, bad, allowed = DECLARED_BOUND[algo]
    with pytest.raises(LearnerConfigError) as info:
        parse_params(params_cls, {field: bad}, algo)
    assert str(info.value) == (f"parameter '{field}' for algo '{algo}' must be {allowed}, "
                               f"got {bad!r}")
