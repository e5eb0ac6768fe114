"""The ipd env (payoffs, states from each seat, one-hot, horizon), its task sets (reproducible,
disjoint, overlaps refused), and the config errors of the opponent-shaping learners."""

from __future__ import annotations

import numpy as np
import pytest

from agentd.config import ConfigError, resolve
from agentd.configfile import to_toml
from agentd.envs import EnvError, make_env
from agentd.envs.ipd import IPD, PAYOFF, task_ids, task_payoff


def ipd(**kwargs):
    return make_env("ipd", n_agents=2, num_envs=4, episode_len=3, seed=0, env_kwargs=kwargs)


def test_payoffs_and_states_from_each_seat():
    env = ipd()
    assert env.obs_spaces == [{"type": "discrete", "n": 5}] * 2
    assert env.act_spaces == [{"type": "discrete", "n": 2}] * 2 and not env.shared_reward
    assert [o.tolist() for o in env.reset(seed=0)] == [[0] * 4] * 2          # start state
    a0, a1 = np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])                 # CC CD DC DD
    res = env.step([a0, a1])
    assert res.reward.tolist() == [[-1, -3, 0, -2], [-1, 0, -3, -2]]
    assert res.final_obs[0].tolist() == [1, 2, 3, 4]          # own letter first
    assert res.final_obs[1].tolist() == [1, 3, 2, 4]          # CD for agent 0 is DC for 1
    assert not res.truncated.any() and not res.terminated.any()


def test_horizon_truncates_all_copies_and_restarts():
    env = ipd()
    env.reset(seed=0)
    zeros = np.zeros(4, dtype=np.int64)
    flags = [env.step([zeros, zeros]).truncated.tolist() for _ in range(6)]
    assert flags == [[False] * 4, [False] * 4, [True] * 4] * 2
    res = env.step([zeros, zeros])
    assert res.obs[0].tolist() == [1] * 4


def test_onehot_observations():
    env = ipd(onehot=True)
    assert env.obs_spaces[0]["type"] == "box" and env.obs_spaces[0]["shape"] == [5]
    obs = env.reset(seed=0)
    assert obs[0].dtype == np.float32 and obs[0].tolist() == [[1, 0, 0, 0, 0]] * 4
    res = env.step([np.array([1, 1, 1, 1]), np.array([0, 0, 0, 0])])
    assert res.obs[0][0].tolist() == [0, 0, 0, 1, 0] and res.obs[1][0].tolist() == [0, 0, 1, 0, 0]


def test_the_run_default_horizon_is_150_for_ipd_only():
    assert resolve({}, {"env": "ipd", "n": 2, "algo": "random"}).episode_len == 150
    assert resolve({}, {"env": "ipd", "n": 2, "algo": "random", "episode_len": 20}
                   ).episode_len == 20
    assert resolve({}, {}).episode_len == 50


# ---- tasks ---------------------------------------------------------------------------------

def test_task_sets_are_reproducible_and_disjoint():
    train, test = task_ids("meta-train"), task_ids("meta-test")
    assert len(train) == 200 and len(test) == 20 and not set(train) & set(test)
    tables = {i: task_payoff(0, i, 0.25) for i in [*train, *test]}
    assert all(np.array_equal(task_payoff(0, i, 0.25), t) for i, t in tables.items())
    assert len({t.tobytes() for t in tables.values()}) == 220          # no two alike
    assert all(np.abs(t - PAYOFF).max() <= 0.25 for t in tables.values())
    assert not np.array_equal(task_payoff(1, 0, 0.25), tables[0])      # task_seed matters
    np.testing.assert_array_equal(task_payoff(0, 5, 0.0), PAYOFF)


def test_tasks_switch_every_episodes_per_task_within_the_named_set():
    def played(seed, tasks):
        env = IPD(2, 1, 2, payoff_noise=0.25, tasks=tasks, episodes_per_task=3)
        env.reset(seed)
        zeros, ids = np.zeros(1, dtype=np.int64), []
        for _ in range(2 * 3 * 4):
            ids.append(env.task_id)
            env.step([zeros, zeros])
        return ids

    ids = played(7, "meta-test")
    blocks = [ids[i:i + 6] for i in range(0, len(ids), 6)]   # 3 episodes of 2 steps
    assert all(len(set(b)) == 1 for b in blocks) and len({b[0] for b in blocks}) == 4
    assert set(ids) <= set(range(200, 220))
    assert played(7, "meta-test") == ids and played(8, "meta-test") != ids
    assert set(played(7, "meta-train")) <= set(range(200))


@pytest.mark.parametrize("kwargs, words", [
    ({"tasks": "meta-val"}, "tasks must be one of meta-train, meta-test"),
    ({"train_tasks": "0:200", "test_tasks": "150:170"}, "overlap.*150..169"),
    ({"train_tasks": "9"}, "train_tasks must be a range 'A:B'"),
    ({"test_tasks": "5:5"}, "non-empty range"),
    ({"payoff_noise": -1}, "payoff_noise must be a finite number >= 0"),
    ({"episodes_per_task": 0}, "episodes_per_task must be an integer >= 1"),
    ({"noise": 0.1}, r"unknown env_kwargs \['noise'\].*allowed.*payoff_noise"),
])
def test_bad_env_args_name_the_field(kwargs, words):
    with pytest.raises(EnvError, match=words):
        ipd(**kwargs)


def test_ipd_needs_two_agents():
    with pytest.raises(EnvError, match="two-agent game.*--n 2"):
        make_env("ipd", n_agents=3, num_envs=1, episode_len=5, seed=0, env_kwargs={})


# ---- config of the shaping learners ----------------------------------------------------------

def run_config(algo, **extra):
    return {"algo": algo, "env": "ipd", "n": 2, "topology": "line", **extra}


@pytest.mark.parametrize("cli, words", [
    ({"algo": "lola", "env": "random-mdp", "n": 2}, "'env'.*use --env ipd"),
    (run_config("lola", n=3), "'n'.*two-agent learner.*--n 2"),
    (run_config("lola", params={"opponent": "spy"}),
     "'opponent' for algo 'lola' must be one of model, shared, got 'spy'"),
    (run_config("naive-pg", params={"estimator": "mc"}),
     "'estimator' for algo 'naive-pg' must be one of exact, dice, got 'mc'"),
    (run_config("lola", params={"model_decay": 2}),
     r"'model_decay' for algo 'lola' must be in \[0.0, 1.0\], got 2.0"),
    (run_config("meta-mapg", params={"estimator": "dice"}),
     "'estimator' for algo 'meta-mapg' must be one of exact, got 'dice'"),
    (run_config("meta-pg", env_args={"episodes_per_task": 2}), "episodes_per_task = 2.*chain"),
    (run_config("meta-pg", params={"init": "/nonexistent"}), "'init': cannot read theta"),
    (run_config("lola", env_args={"tasks": "meta-val"}), "'env_args'.*tasks must be one of"),
])
def test_bad_shaping_configs_name_the_field(cli, words):
    with pytest.raises(ConfigError, match=words):
        resolve({}, cli)


def test_meta_learners_set_episodes_per_task_to_the_chain():
    config = resolve({}, run_config("meta-mapg", params={"chain": 3}))
    assert config.env_args == {"episodes_per_task": 4}
    assert "episodes_per_task = 4" in to_toml(config)


def fake_trained_run(path, env_args):
    (path / "checkpoints").mkdir(parents=True)
    for i in (0, 1):
        np.savez(path / "checkpoints" / f"agent-{i}.npz", theta=np.zeros((5, 2)))
    config = resolve({}, run_config("meta-mapg", env_args=env_args, run_dir=str(path)))
    (path / "config.toml").write_text(to_toml(config))


def test_meta_test_on_the_meta_training_tasks_is_refused(tmp_path):
    fake_trained_run(tmp_path / "trained", {"payoff_noise": 0.25})
    init = {"init": str(tmp_path / "trained"), "lr": 0.0}
    with pytest.raises(ConfigError, match=r"overlap the tasks .* meta-trained on \(ids 0..199"):
        resolve({}, run_config("meta-mapg", params=init, env_args={"payoff_noise": 0.25}))
    ok = resolve({}, run_config("meta-mapg", params=init,
                                env_args={"payoff_noise": 0.25, "tasks": "meta-test"}))
    assert ok.params["init"] == str(tmp_path / "trained")
    # another task seed draws other tasks: no overlap
    resolve({}, run_config("meta-mapg", params=init,
                           env_args={"payoff_noise": 0.25, "task_seed": 1}))
