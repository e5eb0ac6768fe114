"""The built-in digital env (seed 000 §V-A) and its digit adjacency."""

from __future__ import annotations

import numpy as np
import pytest

from agentd.envs import BUILTIN_ENVS, EnvError, check_env_id, joint_mdp, make_env
from agentd.envs.digital import Digital, digit_adjacency


def roll(env, seed, steps, rng_seed=0):
    """Step env with uniform random binary actions; return (states before, actions, results)."""
    rng = np.random.default_rng(rng_seed)
    state = env.reset(seed)[0]
    log = []
    for _ in range(steps):
        actions = [rng.integers(2, size=env.num_envs) for _ in range(env.n_agents)]
        res = env.step(actions)
        log.append((state, actions, res))
        state = res.obs[0]
    return log


def test_model_depends_only_on_model_seed():
    a = Digital(n_agents=4, num_envs=1, episode_len=10, model_seed=7)
    b = Digital(n_agents=4, num_envs=1, episode_len=10, model_seed=7)
    cdf_a, mu_a = a.row(3, 9)
    b.row(5, 2)                       # a different cache history
    cdf_b, mu_b = b.row(3, 9)
    b._cache.clear()
    cdf_c, mu_c = b.row(3, 9)
    assert np.array_equal(cdf_a, cdf_b) and np.array_equal(cdf_a, cdf_c)
    assert np.array_equal(mu_a, mu_b) and np.array_equal(mu_a, mu_c)
    other_cdf, other_mu = Digital(4, 1, 10, model_seed=8).row(3, 9)
    assert not np.array_equal(other_mu, mu_a) and not np.array_equal(other_cdf, cdf_a)


def test_rows_are_distributions_and_means_lie_in_unit_interval():
    env = Digital(n_agents=5, num_envs=1, episode_len=10, model_seed=0)
    for s, j in [(0, 0), (19, 31), (7, 12)]:
        cdf, mu = env.row(s, j)
        p = np.diff(cdf, prepend=0.0)
        assert cdf.shape == (20,) and (p > 0).all()
        assert p.sum() == pytest.approx(1.0) and cdf[-1] == 1.0
        assert mu.shape == (5,) and ((0 <= mu) & (mu < 1)).all()
        assert len(set(mu.tolist())) == 5            # individual, not shared, means


def test_rewards_are_individual_means_plus_bounded_noise():
    env = Digital(n_agents=5, num_envs=3, episode_len=50, model_seed=3, reward_noise=0.5)
    deviations = []
    for state, actions, res in roll(env, seed=9, steps=40):
        joint = env.joint_index(np.stack(actions))
        for k in range(3):
            cdf, mu = env.row(state[k], joint[k])
            deviation = res.reward[:, k] - mu
            assert (np.abs(deviation) <= 0.5).all()
            assert np.diff(cdf, prepend=0.0)[res.final_obs[0][k]] > 0
            assert len(set(res.reward[:, k].tolist())) == 5   # agents' rewards differ
            deviations.extend(deviation.tolist())
    assert np.std(deviations) > 0.2                   # U(-0.5, 0.5) has sd 0.29


def test_zero_noise_gives_the_mean_reward():
    env = Digital(n_agents=3, num_envs=2, episode_len=50, model_seed=1, reward_noise=0.0)
    for state, actions, res in roll(env, seed=0, steps=5):
        joint = env.joint_index(np.stack(actions))
        for k in range(2):
            assert np.array_equal(res.reward[:, k], env.row(state[k], joint[k])[1])


def test_shapes_truncation_and_auto_reset():
    env = make_env("digital", n_agents=5, num_envs=3, episode_len=4, seed=0, env_kwargs={})
    assert env.obs_spaces == [{"type": "discrete", "n": 20}] * 5
    assert env.act_spaces == [{"type": "discrete", "n": 2}] * 5
    assert not env.shared_reward
    obs = env.reset(seed=1)
    assert len(obs) == 5 and obs[0].shape == (3,) and obs[0].dtype == np.int64
    for t, (_, _, res) in enumerate(roll(env, seed=1, steps=9), start=1):
        assert res.reward.shape == (5, 3) and res.reward.dtype == np.float64
        assert res.terminated.shape == res.truncated.shape == (3,)
        assert res.terminated.dtype == res.truncated.dtype == bool
        assert not res.terminated.any()
        assert res.truncated.tolist() == [t % 4 == 0] * 3
        assert len(res.obs) == len(res.final_obs) == 5
        for o, f in zip(res.obs, res.final_obs):
            assert o.shape == f.shape == (3,) and o.dtype == f.dtype == np.int64
            assert ((o == f) | res.truncated).all()     # obs differs only where reset
            assert ((0 <= o) & (o < 20)).all()


def test_trajectories_repeat_and_do_not_depend_on_caching(monkeypatch):
    cached = roll(Digital(3, 2, 7, model_seed=1), seed=5, steps=30)
    again = roll(Digital(3, 2, 7, model_seed=1), seed=5, steps=30)
    monkeypatch.setattr(joint_mdp, "CACHE_LIMIT", 1)   # every row regenerated
    env = Digital(3, 2, 7, model_seed=1)
    uncached = roll(env, seed=5, steps=30)
    assert len(env._cache) <= 1
    for (_, _, a), (_, _, b), (_, _, c) in zip(cached, again, uncached):
        assert np.array_equal(a.reward, b.reward) and np.array_equal(a.reward, c.reward)
        assert np.array_equal(a.obs[0], b.obs[0]) and np.array_equal(a.obs[0], c.obs[0])


@pytest.mark.parametrize("n_agents", [10, 70])
def test_many_agents(n_agents):
    env = Digital(n_agents=n_agents, num_envs=2, episode_len=3, model_seed=0)
    log = roll(env, seed=0, steps=4)
    assert log[-1][2].reward.shape == (n_agents, 2) and len(log[-1][2].obs) == n_agents
    assert [res.truncated.all() for _, _, res in log] == [False, False, True, False]


def test_rejects_bad_actions():
    env = Digital(n_agents=2, num_envs=3, episode_len=5, model_seed=0)
    env.reset(seed=0)
    good = np.array([0, 1, 1])
    with pytest.raises(EnvError, match=r"digital: action of agent 1.*\[0, 2\)"):
        env.step([good, np.array([0, 2, 1])])
    with pytest.raises(EnvError, match=r"agent 0.*\[0, 2\)"):
        env.step([np.array([-1, 0, 0]), good])
    with pytest.raises(EnvError, match=r"agent 0.*shape \(3,\)"):
        env.step([np.array([0, 1]), good])
    with pytest.raises(EnvError, match="agent 1.*integers"):
        env.step([good, good.astype(float)])
    with pytest.raises(EnvError, match="2 agents, got 1"):
        env.step([good])


@pytest.mark.parametrize("kwargs, field", [({"n_states": 0}, "n_states"),
                                            ({"reward_noise": -0.1}, "reward_noise"),
                                            ({"reward_noise": float("nan")}, "reward_noise")])
def test_rejects_bad_parameters(kwargs, field):
    with pytest.raises(EnvError, match=f"digital: {field}"):
        Digital(n_agents=2, num_envs=1, episode_len=5, model_seed=0, **kwargs)


def test_digit_adjacency():
    assert digit_adjacency(5, 20, 1) == [4, 6]
    assert digit_adjacency(0, 20, 1) == [1]
    assert digit_adjacency(19, 20, 1) == [18]
    assert digit_adjacency(5, 20, 2) == [3, 4, 6, 7]
    assert digit_adjacency(1, 20, 2) == [0, 2, 3]
    assert digit_adjacency(18, 20, 2) == [16, 17, 19]
    assert digit_adjacency(0, 1, 3) == [] and digit_adjacency(4, 20, 0) == []
    with pytest.raises(EnvError, match="outside"):
        digit_adjacency(20, 20, 1)


def test_make_env_digital_kwargs():
    assert "digital" in BUILTIN_ENVS
    check_env_id("digital")
    env = make_env("digital", n_agents=3, num_envs=1, episode_len=5, seed=0,
                   env_kwargs={"n_states": "7", "reward_noise": "0.25"})
    assert isinstance(env, Digital)
    assert env.obs_spaces[0]["n"] == 7 and env.reward_noise == 0.25
    with pytest.raises(EnvError, match=r"unknown env_kwargs \['n_actions'\].*"
                                       r"\['n_states', 'reward_noise'\]"):
        make_env("digital", n_agents=2, num_envs=1, episode_len=5, seed=0,
                 env_kwargs={"n_actions": 3})
    with pytest.raises(EnvError, match="digital: reward_noise must be a number"):
        make_env("digital", n_agents=2, num_envs=1, episode_len=5, seed=0,
                 env_kwargs={"reward_noise": "loud"})
