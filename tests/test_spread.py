"""The built-in spread env, the "state" observation mode and config obs / action defaults."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import read_json
from gymnasium import spaces
from pettingzoo.utils.env import ParallelEnv

from agentd.algorithms import ALGORITHMS
from agentd.algorithms.base import Learner
from agentd.config import ConfigError, resolve
from agentd.configfile import to_toml
from agentd.envs import EnvError, make_env
from agentd.envs.spread import parallel_env as spread_parallel_env
from agentd.runtime.msglog import open_log

SPREAD = "mpe2.simple_spread_v3:parallel_env"


def spread(n=3, num_envs=1, episode_len=50, obs_mode="local", **kwargs):
    return make_env("spread", n_agents=n, num_envs=num_envs, episode_len=episode_len, seed=0,
                    env_kwargs=kwargs, obs_mode=obs_mode)


def world(vec, k=0):
    """The mpe2 World of copy k of a spread VecEnv."""
    return vec.envs[k].unwrapped.world


def uniform_actions(env, rng):
    return [rng.random((env.num_envs, *sp["shape"])).astype(np.float32) for sp in env.act_spaces]


def zero_actions(env):
    return [np.zeros((env.num_envs, *sp["shape"]), dtype=np.float32) for sp in env.act_spaces]


def expected_rewards(w) -> np.ndarray:
    """r_i = -||p_i - l_i|| - #(other agents within 0.3), computed from the world by hand."""
    n = len(w.agents)
    out = np.zeros(n)
    for i, a in enumerate(w.agents):
        out[i] = -np.linalg.norm(a.state.p_pos - w.landmarks[i].state.p_pos)
        for j, b in enumerate(w.agents):
            if j != i and np.linalg.norm(a.state.p_pos - b.state.p_pos) < 0.3:
                out[i] -= 1.0
    return out


# ---- spread -------------------------------------------------------------------------------

def test_spread_spaces_shapes_and_truncation_after_max_cycles():
    env = spread(episode_len=50)
    assert env.agent_names == ["agent_0", "agent_1", "agent_2"]
    assert env.shared_reward and env.obs_mode == "local"
    assert env.obs_spaces[0]["type"] == "box" and env.obs_spaces[0]["shape"] == [14]  # 4N + 2
    assert env.act_spaces[0] == {"type": "box", "shape": [5], "low": 0.0,
                                 "high": 1.0, "dtype": "float32"}
    obs = env.reset(seed=1)
    assert len(obs) == 3 and obs[0].shape == (1, 14) and obs[0].dtype == np.float32
    rng = np.random.default_rng(0)
    for t in range(1, 51):
        res = env.step(uniform_actions(env, rng))
        assert res.reward.shape == (3, 1) and res.final_obs[1].shape == (1, 14)
        assert not res.terminated.any()
        assert res.truncated.tolist() == [t % 25 == 0]           # max_cycles = 25
    env.close()


def test_spread_episode_len_and_max_cycles_kwargs():
    env = spread(episode_len=10, max_cycles=4)
    env.reset(seed=0)
    flags = [env.step(zero_actions(env)).truncated[0] for _ in range(8)]
    assert flags == [False, False, False, True] * 2
    with pytest.raises(EnvError, match=r"unknown env_kwargs \['N'\]"):
        spread(N=3)                                    # n comes from the run
    with pytest.raises(EnvError, match="continuous_actions must be true or false"):
        spread(continuous_actions="false")
    discrete = spread(continuous_actions=False)
    assert discrete.act_spaces[0] == {"type": "discrete", "n": 5}


def test_spread_local_observation_and_state_layout_match_the_world():
    penv = spread_parallel_env(N=3)
    obs, _ = penv.reset(seed=5)
    w = penv.unwrapped.world
    rng = np.random.default_rng(2)
    for _ in range(3):     # velocities are non-zero after a few steps
        obs, *_ = penv.step({a: rng.random(5).astype(np.float32) for a in penv.agents})
    pos = [a.state.p_pos for a in w.agents]
    vel = [a.state.p_vel for a in w.agents]
    lm = [m.state.p_pos for m in w.landmarks]
    assert np.abs(np.concatenate(vel)).sum() > 0
    state = penv.state()
    assert state.dtype == np.float32 and state.shape == (18,) == penv.state_space.shape
    np.testing.assert_allclose(state, np.concatenate(pos + vel + lm).astype(np.float32))
    for i, name in enumerate(penv.possible_agents):
        want = np.concatenate([vel[i], pos[i], lm[i] - pos[i],
                               *(lm[j] - pos[i] for j in range(3) if j != i),
                               *(pos[j] - pos[i] for j in range(3) if j != i)])
        np.testing.assert_allclose(obs[name], want.astype(np.float32), rtol=1e-6)
    penv.close()


@pytest.mark.parametrize(("placed", "collisions"), [
    ([(0.0, 0.0), (0.1, 0.0), (0.9, 0.9)], [1, 1, 0]),       # agents 0 and 1 touch
    ([(0.0, 0.0), (0.2, 0.0), (0.1, 0.15)], [2, 2, 2]),      # all three touch
    ([(-0.8, 0.0), (0.0, 0.0), (0.8, 0.0)], [0, 0, 0]),      # 0.8 apart: no collision
])
def test_spread_reward_is_the_team_mean_of_distance_and_collision_terms(placed, collisions):
    env = spread()
    env.reset(seed=0)
    w = world(env)
    for agent, xy in zip(w.agents, placed):
        agent.state.p_pos = np.array(xy, dtype=np.float64)
        agent.state.p_vel = np.zeros(2)
    for landmark, xy in zip(w.landmarks, [(0.5, -0.5), (-0.5, 0.5), (0.3, 0.3)]):
        landmark.state.p_pos = np.array(xy, dtype=np.float64)
    res = env.step(zero_actions(env))
    # At rest with no action the positions do not move during the step (velocity integrates
    # first), so the reward is computed at the placed positions.
    np.testing.assert_allclose([a.state.p_pos for a in w.agents], placed)
    r = expected_rewards(w)
    dist = [np.linalg.norm(np.subtract(p, lm.state.p_pos)) for p, lm in zip(placed, w.landmarks)]
    np.testing.assert_allclose(r, -np.asarray(dist) - collisions)
    assert np.all(res.reward == res.reward[0])                 # every agent gets the same
    np.testing.assert_allclose(res.reward[:, 0], r.mean())
    individual = env.envs[0].unwrapped.scenario.individual_rewards(w)
    np.testing.assert_allclose(individual, r)


def test_spread_k_copies_shared_reward_and_reproducible_resets():
    a, b = spread(num_envs=2), spread(num_envs=2)
    oa, ob = a.reset(seed=7), b.reset(seed=7)
    assert oa[0].shape == (2, 14)
    assert np.array_equal(oa[2], ob[2])
    assert not np.array_equal(oa[0][0], oa[0][1])              # copies start apart
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    for _ in range(30):
        ra, rb = a.step(uniform_actions(a, rng_a)), b.step(uniform_actions(b, rng_b))
        assert ra.reward.shape == (3, 2)
        assert np.all(ra.reward == ra.reward[0])               # shared within each copy
        assert np.array_equal(ra.reward, rb.reward) and np.array_equal(ra.obs[1], rb.obs[1])
        for k in np.flatnonzero(~ra.truncated):     # a truncated copy was reset already
            np.testing.assert_allclose(ra.reward[:, k], expected_rewards(world(a, k)).mean())


def test_spread_state_mode_observes_the_compact_state():
    env = spread(num_envs=2, obs_mode="state", max_cycles=3)
    assert env.obs_spaces[0]["shape"] == [18] and env.obs_spaces == [env.obs_spaces[0]] * 3
    obs = env.reset(seed=1)
    rng = np.random.default_rng(0)
    for _ in range(3):
        last = [env.envs[k].state() for k in range(2)]
        for i in range(3):
            for k in range(2):
                assert np.array_equal(obs[i][k], last[k])
        res = env.step(uniform_actions(env, rng))
        obs = res.obs
    assert res.truncated.all()
    for k in range(2):    # final_obs ends the episode; obs starts the next one
        w = world(env, k)
        assert not np.array_equal(res.final_obs[0][k], res.obs[0][k])
        assert np.array_equal(res.obs[0][k], env.envs[k].state())
        np.testing.assert_allclose(res.obs[0][k][:6],
                                   np.concatenate([a.state.p_pos for a in w.agents]))


def test_import_and_check_of_spread_imports_no_mpe2():
    code = ("import sys; from agentd.envs import check_env_id; check_env_id('spread'); "
            "print([m for m in ('pettingzoo', 'gymnasium', 'mpe2', 'pygame') "
            "if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


# ---- obs_mode "state" on PettingZoo envs ------------------------------------------------------

def mpe_spread(obs_mode, num_envs=2, max_cycles=4):
    return make_env(SPREAD, n_agents=3, num_envs=num_envs, episode_len=50, seed=0,
                    env_kwargs={"continuous_actions": True, "max_cycles": max_cycles},
                    obs_mode=obs_mode)


def test_state_mode_on_mpe_gives_every_agent_env_state():
    env = mpe_spread("state")
    assert env.obs_spaces == [env.obs_spaces[0]] * 3 and env.obs_spaces[0]["shape"] == [54]
    obs = env.reset(seed=2)
    rng = np.random.default_rng(0)
    for t in range(1, 4):
        for k in range(2):
            state = env.envs[k].state()
            assert state.dtype == np.float32
            for i in range(3):
                assert np.array_equal(obs[i][k], state)
        res = env.step(uniform_actions(env, rng))
        assert not res.truncated.any()
        for i in range(3):
            assert np.array_equal(res.final_obs[i], res.obs[i])
        obs = res.obs
    env.close()


def test_state_mode_final_obs_is_the_state_before_the_auto_reset():
    # simple_spread's state() is its agents' local observations concatenated, so the state at
    # the end of an episode can be checked against a local-mode twin stepped alike.
    state_env, local_env = mpe_spread("state"), mpe_spread("local")
    state_env.reset(seed=9)
    local_env.reset(seed=9)
    rng = np.random.default_rng(1)
    for t in range(1, 9):
        actions = uniform_actions(state_env, rng)
        rs, rl = state_env.step(actions), local_env.step(actions)
        assert rs.truncated.tolist() == rl.truncated.tolist() == [t % 4 == 0] * 2  # max_cycles
        for k in range(2):
            final = np.concatenate([rl.final_obs[i][k] for i in range(3)])
            start = np.concatenate([rl.obs[i][k] for i in range(3)])
            for i in range(3):
                assert np.array_equal(rs.final_obs[i][k], final)
                assert np.array_equal(rs.obs[i][k], start)
            if rs.truncated[k]:
                assert not np.array_equal(final, start)
        np.testing.assert_array_equal(rs.reward, rl.reward)


class NoStateEnv(ParallelEnv):
    """Two agents, Discrete(2) actions, observation = steps taken; no global state."""

    def __init__(self) -> None:
        self.metadata = {"name": "no_state"}
        self.possible_agents = ["a", "b"]
        self.agents: list[str] = []
        self.t = 0

    def observation_space(self, agent: str) -> spaces.Space:
        return spaces.Box(0.0, np.inf, (1,), np.float32)

    def action_space(self, agent: str) -> spaces.Space:
        return spaces.Discrete(2)

    def reset(self, seed=None, options=None):
        self.agents, self.t = list(self.possible_agents), 0
        return {a: np.zeros(1, np.float32) for a in self.agents}, {a: {} for a in self.agents}

    def step(self, actions):
        self.t += 1
        obs = {a: np.full(1, self.t, np.float32) for a in self.agents}
        flags = {a: False for a in self.agents}
        return obs, {a: 0.0 for a in self.agents}, flags, dict(flags), {a: {} for a in obs}


class StateSpaceOnlyEnv(NoStateEnv):
    """Declares a state_space but leaves ParallelEnv.state() unimplemented."""

    state_space = spaces.Box(-1.0, 1.0, (3,), np.float32)


def test_state_mode_on_an_env_without_state_is_a_clear_error():
    local = make_env("test_spread:NoStateEnv", n_agents=2, num_envs=1, episode_len=5, seed=0,
                     env_kwargs={})
    assert local.reset(seed=0)[0].shape == (1, 1)
    with pytest.raises(EnvError) as info:
        make_env("test_spread:NoStateEnv", n_agents=2, num_envs=1, episode_len=5, seed=0,
                 env_kwargs={}, obs_mode="state")
    assert "no global state" in str(info.value) and "--obs local" in str(info.value)
    half = make_env("test_spread:StateSpaceOnlyEnv", n_agents=2, num_envs=1, episode_len=5,
                    seed=0, env_kwargs={}, obs_mode="state")
    assert half.obs_spaces[0]["shape"] == [3]
    with pytest.raises(EnvError, match=r"does not implement state\(\).*--obs local"):
        half.reset(seed=0)


@pytest.mark.parametrize("env_id", ["random-mdp", "digital"])
def test_builtin_tabular_envs_observe_the_state_in_both_modes(env_id):
    envs = {mode: make_env(env_id, n_agents=2, num_envs=2, episode_len=5, seed=0,
                           env_kwargs={}, obs_mode=mode) for mode in ("local", "state")}
    assert envs["local"].obs_spaces == envs["state"].obs_spaces
    obs = {mode: env.reset(seed=4) for mode, env in envs.items()}
    assert all(np.array_equal(a, b) for a, b in zip(obs["local"], obs["state"]))


def test_make_env_rejects_an_unresolved_obs_mode():
    with pytest.raises(EnvError, match="obs_mode must be one of local, state, got 'auto'"):
        make_env("random-mdp", n_agents=2, num_envs=1, episode_len=5, seed=0, env_kwargs={},
                 obs_mode="auto")


# ---- config: obs and continuous_actions defaults ----------------------------------------------

class BoxStateLearner(Learner):
    """Stands in for a deep learner: wants the global state, acts in Box spaces."""

    name = "test-box-state"
    wants_state = True
    action_type = "box"


class AnyLocalLearner(Learner):
    """The Learner defaults: local observations, any action space."""

    name = "test-any-local"


@pytest.fixture
def stub_learners(monkeypatch):
    monkeypatch.setitem(ALGORITHMS, "test-box-state", "test_spread:BoxStateLearner")
    monkeypatch.setitem(ALGORITHMS, "test-any-local", "test_spread:AnyLocalLearner")


def cfg(**values):
    return resolve({}, {"n": 3, **values})


def test_obs_auto_follows_the_learners_wants_state(stub_learners):
    assert cfg(algo="test-box-state", env="spread").obs == "state"
    assert cfg(algo="test-any-local").obs == "local"
    assert cfg(algo="random").obs == "local"
    assert cfg(algo="test-box-state", env="spread", obs="local").obs == "local"  # explicit wins
    assert cfg(algo="test-any-local", obs="state").obs == "state"
    assert 'obs = "state"' in to_toml(cfg(algo="test-box-state", env="spread"))


def test_continuous_actions_default_only_for_box_learners_on_mpe2(stub_learners):
    c = cfg(algo="test-box-state", env=SPREAD)
    assert c.env_args == {"continuous_actions": True}
    assert "[env_args]\ncontinuous_actions = true" in to_toml(c)
    kept = resolve({"env_args": {"continuous_actions": False, "N": 3}},
                   {"algo": "test-box-state", "env": SPREAD, "n": 3})
    assert kept.env_args == {"continuous_actions": False, "N": 3}          # given: kept
    assert cfg(algo="test-any-local", env=SPREAD).env_args == {}          # not a Box learner
    assert cfg(algo="test-box-state", env="spread").env_args == {}        # not an mpe2 module
    assert cfg(algo="test-box-state", env="test_spread:NoStateEnv").env_args == {}


def test_bad_obs_value_names_the_field():
    with pytest.raises(ConfigError) as info:
        cfg(obs="global")
    assert "'obs'" in str(info.value) and "auto, local, state" in str(info.value)


def test_bad_obs_flag_fails_at_start(runs, tmp_path):
    res = runs.launch(tmp_path / "run", "--obs", "global", timeout=60)
    assert res.returncode == 2 and "'obs'" in res.stdout and "auto, local, state" in res.stdout
    assert not (tmp_path / "run").exists()


# ---- a run ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("extra", "obs", "shape"), [
    ([], "local", [14]),
    (["--obs", "state"], "state", [18]),
])
def test_launch_random_on_spread(runs, tmp_path, extra, obs, shape):
    run_dir = tmp_path / "run"
    res = runs.launch(run_dir, "--n", "3", "--topology", "ring", "--algo", "random", "--env",
                      "spread", "--steps", "60", "--episode-len", "25", *extra)
    assert res.returncode == 0, res.stdout
    assert f'obs = "{obs}"' in (run_dir / "config.toml").read_text()
    s = read_json(run_dir / "summary.json")
    assert s["status"] == "done" and s["steps_done"] == 60 and s["episodes"] == 2
    assert s["final_return"] < 0
    welcome = next(r for r in open_log(run_dir / "logs" / "agent-0.log") if r.kind == "welcome")
    sp = welcome.body["info"]["spaces"]
    assert sp["shared_reward"] is True
    assert sp["obs"][0]["shape"] == shape and sp["act"][0]["shape"] == [5]
    step = next(r for r in open_log(run_dir / "logs" / "agent-1.log")
                if r.direction == "in" and r.kind == "step")
    assert step.body["obs"].shape == (1, 1, *shape)
