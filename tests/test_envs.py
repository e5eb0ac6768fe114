"""The built-in random-mdp, the PettingZoo wrapper and make_env's error messages."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from agentd.envs import EnvError, check_env_id, joint_mdp, make_env
from agentd.envs.random_mdp import RandomMDP

SPREAD = "mpe2.simple_spread_v3:parallel_env"


def roll(env, seed, steps, rng_seed=0):
    """Step env with uniform random actions; return the list of StepResults."""
    rng = np.random.default_rng(rng_seed)
    env.reset(seed)
    return [env.step([rng.integers(3, size=env.num_envs) for _ in range(env.n_agents)])
            for _ in range(steps)]


# ---- random-mdp -----------------------------------------------------------------------------

def test_random_mdp_rows_depend_only_on_model_seed():
    a = RandomMDP(n_agents=4, num_envs=1, episode_len=10, model_seed=7)
    b = RandomMDP(n_agents=4, num_envs=1, episode_len=10, model_seed=7)
    cdf_a, r_a = a.row(3, 17)
    b.row(5, 2)                       # a different cache history
    cdf_b, r_b = b.row(3, 17)
    b._cache.clear()
    cdf_c, r_c = b.row(3, 17)
    assert np.array_equal(cdf_a, cdf_b) and np.array_equal(cdf_a, cdf_c)
    assert r_a == r_b == r_c
    other_cdf, other_r = RandomMDP(4, 1, 10, model_seed=8).row(3, 17)
    assert other_r != r_a and not np.array_equal(other_cdf, cdf_a)


def test_random_mdp_rows_are_distributions():
    env = RandomMDP(n_agents=64, num_envs=1, episode_len=10, model_seed=0)
    for s, j in [(0, 0), (99, 5), (42, 3 ** 64 - 1)]:
        cdf, reward = env.row(s, j)
        p = np.diff(cdf, prepend=0.0)
        assert cdf.shape == (100,) and (p > 0).all()
        assert p.sum() == pytest.approx(1.0) and cdf[-1] == 1.0
        assert np.isfinite(reward)


def test_random_mdp_shapes_truncation_and_auto_reset():
    env = make_env("random-mdp", n_agents=2, num_envs=3, episode_len=5, seed=0, env_kwargs={})
    assert env.obs_spaces == [{"type": "discrete", "n": 100}] * 2
    assert env.act_spaces == [{"type": "discrete", "n": 3}] * 2
    assert env.shared_reward
    obs = env.reset(seed=1)
    assert len(obs) == 2 and obs[0].shape == (3,) and obs[0].dtype == np.int64
    results = roll(env, seed=1, steps=10)
    for t, res in enumerate(results, start=1):
        assert res.reward.shape == (2, 3) and res.reward.dtype == np.float64
        assert (res.reward[0] == res.reward[1]).all()                 # shared reward
        assert res.terminated.shape == res.truncated.shape == (3,)
        assert res.terminated.dtype == res.truncated.dtype == bool
        assert not res.terminated.any()
        assert res.truncated.all() == (t % 5 == 0) and res.truncated.any() == (t % 5 == 0)
        for o, f in zip(res.obs, res.final_obs):
            assert o.shape == f.shape == (3,) and o.dtype == f.dtype == np.int64
            assert ((o == f) | res.truncated).all()     # obs differs only where reset
            assert ((0 <= o) & (o < 100)).all()


def test_random_mdp_reward_and_next_state_come_from_the_row():
    env = RandomMDP(n_agents=3, num_envs=4, episode_len=50, model_seed=3)
    state = env.reset(seed=9)[0].copy()
    actions = [np.array([0, 1, 2, 0]), np.array([2, 2, 1, 0]), np.array([1, 0, 0, 2])]
    res = env.step(actions)
    for k in range(4):
        joint = actions[0][k] + 3 * actions[1][k] + 9 * actions[2][k]
        cdf, reward = env.row(state[k], joint)
        assert res.reward[0, k] == reward
        assert np.diff(cdf, prepend=0.0)[res.final_obs[0][k]] > 0


def test_random_mdp_results_do_not_depend_on_caching(monkeypatch):
    cached = roll(RandomMDP(3, 2, 7, model_seed=1), seed=5, steps=30)
    monkeypatch.setattr(joint_mdp, "CACHE_LIMIT", 1)   # every row regenerated
    env = RandomMDP(3, 2, 7, model_seed=1)
    uncached = roll(env, seed=5, steps=30)
    assert len(env._cache) <= 1
    for a, b in zip(cached, uncached):
        assert np.array_equal(a.reward, b.reward) and np.array_equal(a.obs[0], b.obs[0])


def test_random_mdp_with_64_agents():
    env = RandomMDP(n_agents=64, num_envs=2, episode_len=3, model_seed=0)
    results = roll(env, seed=0, steps=4)
    assert results[-1].reward.shape == (64, 2) and len(results[-1].obs) == 64
    assert [r.truncated.all() for r in results] == [False, False, True, False]


def test_random_mdp_rejects_bad_actions():
    env = RandomMDP(n_agents=2, num_envs=3, episode_len=5, model_seed=0)
    env.reset(seed=0)
    good = np.array([0, 1, 2])
    with pytest.raises(EnvError, match=r"agent 1.*\[0, 3\)"):
        env.step([good, np.array([0, 3, 1])])
    with pytest.raises(EnvError, match=r"agent 0.*shape \(3,\)"):
        env.step([np.array([0, 1]), good])
    with pytest.raises(EnvError, match="agent 1.*integers"):
        env.step([good, good.astype(float)])
    with pytest.raises(EnvError, match="2 agents, got 1"):
        env.step([good])


def test_make_env_random_mdp_kwargs():
    env = make_env("random-mdp", n_agents=2, num_envs=1, episode_len=5, seed=0,
                   env_kwargs={"n_states": "7", "n_actions": 4})
    assert env.obs_spaces[0]["n"] == 7 and env.act_spaces[0]["n"] == 4
    with pytest.raises(EnvError, match=r"unknown env_kwargs \['size'\].*n_states"):
        make_env("random-mdp", n_agents=2, num_envs=1, episode_len=5, seed=0,
                 env_kwargs={"size": 3})


# ---- PettingZoo -----------------------------------------------------------------------------

def spread(num_envs=2, episode_len=6, **kwargs):
    kwargs = {"continuous_actions": True, "N": 3, **kwargs}
    return make_env(SPREAD, n_agents=3, num_envs=num_envs, episode_len=episode_len, seed=0,
                    env_kwargs=kwargs)


def uniform_actions(env, rng):
    return [rng.random((env.num_envs, *sp["shape"])).astype(np.float32) for sp in env.act_spaces]


def test_pettingzoo_spaces_and_steps():
    env = spread()
    assert env.agent_names == ["agent_0", "agent_1", "agent_2"]
    assert not env.shared_reward
    obs_space, act_space = env.obs_spaces[0], env.act_spaces[0]
    assert obs_space["type"] == "box" and obs_space["shape"] == [18]
    assert act_space == {"type": "box", "shape": [5], "low": 0.0, "high": 1.0,
                         "dtype": "float32"}
    obs = env.reset(seed=3)
    assert obs[0].shape == (2, 18) and obs[0].dtype == np.float32
    rng = np.random.default_rng(0)
    for t in range(1, 13):
        res = env.step(uniform_actions(env, rng))
        assert res.reward.shape == (3, 2) and res.reward.dtype == np.float64
        assert res.final_obs[2].shape == (2, 18) and res.final_obs[2].dtype == np.float32
        assert not res.terminated.any()
        assert res.truncated.tolist() == [t % 6 == 0] * 2       # episode_len = 6
        for o, f in zip(res.obs, res.final_obs):
            assert (np.all(o == f, axis=1) | res.truncated).all()
    env.close()


def test_pettingzoo_env_truncation_and_reproducible_resets():
    # The env's own max_cycles = 3 ends episodes before episode_len = 10.
    a, b = spread(max_cycles=3, episode_len=10), spread(max_cycles=3, episode_len=10)
    assert np.array_equal(a.reset(seed=4)[0], b.reset(seed=4)[0])
    rng_a, rng_b = np.random.default_rng(1), np.random.default_rng(1)
    for t in range(1, 7):
        ra, rb = a.step(uniform_actions(a, rng_a)), b.step(uniform_actions(b, rng_b))
        assert ra.truncated.tolist() == [t % 3 == 0] * 2
        assert np.array_equal(ra.obs[1], rb.obs[1]) and np.array_equal(ra.reward, rb.reward)


def test_pettingzoo_discrete_actions_and_bad_actions():
    env = spread(continuous_actions=False)
    assert env.act_spaces[0] == {"type": "discrete", "n": 5}
    env.reset(seed=0)
    good = np.array([0, 4])
    res = env.step([good, good, good])
    assert res.reward.shape == (3, 2)
    with pytest.raises(EnvError, match=r"agent_1.*\[0, 5\)"):
        env.step([good, np.array([0, 5]), good])
    box_env = spread()
    box_env.reset(seed=0)
    with pytest.raises(EnvError, match="agent_2.*outside the Box"):
        box_env.step([np.zeros((2, 5)), np.zeros((2, 5)), np.full((2, 5), 2.0)])


def test_describe_space_refuses_actions_it_cannot_carry():
    from gymnasium import spaces

    from agentd.envs.pettingzoo_env import describe_space

    with pytest.raises(EnvError, match="agent_7.*action space MultiDiscrete.*Discrete and Box"):
        describe_space(spaces.MultiDiscrete([2, 2]), "agent_7", "action")
    with pytest.raises(EnvError, match="agent_3.*observation space Sequence"):
        describe_space(spaces.Sequence(spaces.Discrete(2)), "agent_3")


# ---- make_env errors --------------------------------------------------------------------------

@pytest.mark.parametrize(("env_id", "words"), [
    ("cartpole", ["unknown env id 'cartpole'", "random-mdp", "module:callable"]),
    ("a:b:c", ["bad env factory", "module.path:callable"]),
    ("no_such_module_xyz:make", ["module 'no_such_module_xyz' not found"]),
    ("mpe2.simple_spread_v3:nope", ["has no attribute 'nope'"]),
    ("mpe2.simple_spread_v3:__name__", ["not callable"]),
    ("mpe2.simple_spread_v3:env", ["AEC", "parallel_env"]),
])
def test_make_env_errors(env_id, words):
    with pytest.raises(EnvError) as info:
        make_env(env_id, n_agents=3, num_envs=1, episode_len=5, seed=0, env_kwargs={})
    for word in words:
        assert word in str(info.value)


def test_make_env_agent_count_mismatch():
    with pytest.raises(EnvError) as info:
        make_env(SPREAD, n_agents=5, num_envs=1, episode_len=5, seed=0, env_kwargs={})
    message = str(info.value)
    assert "has 3 agents but n=5" in message and "--env-arg N=5" in message


def test_bad_factory_kwargs():
    with pytest.raises(EnvError, match="creating the env with"):
        make_env(SPREAD, n_agents=3, num_envs=1, episode_len=5, seed=0,
                 env_kwargs={"no_such_kwarg": 1})


def test_check_env_id_imports_nothing():
    check_env_id("random-mdp")
    with pytest.raises(EnvError, match="unknown env id"):
        check_env_id("random_mdp")
    code = ("import sys; from agentd.envs import check_env_id; "
            f"check_env_id({SPREAD!r}); "
            "print([m for m in ('pettingzoo', 'gymnasium', 'mpe2') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
