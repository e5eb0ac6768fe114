"""The seed-003 games: lstage, stochastic-game, matrix — dynamics, seeding, and their optima
(dynamic programming) checked against brute force on tiny games."""

from __future__ import annotations

import itertools
import subprocess

import numpy as np
import pytest
from conftest import AGENTD, read_json

from agentd.envs import EnvError, make_env
from agentd.envs.lstage import LStage, tree_size
from agentd.envs.stochastic_game import StochasticGame


def build(env_id, n=2, num_envs=1, episode_len=50, seed=0, **kwargs):
    return make_env(env_id, n_agents=n, num_envs=num_envs, episode_len=episode_len, seed=seed,
                    env_kwargs=kwargs)


# ---- lstage -----------------------------------------------------------------------------------

def test_lstage_moves_down_the_tree_and_pays_the_node_left():
    env = LStage(2, num_envs=2, episode_len=50, model_seed=3, L=3)
    assert env.n_nodes == 820 == tree_size(3)
    assert env.obs_spaces[0] == {"type": "discrete", "n": 820}
    assert env.act_spaces == [{"type": "discrete", "n": 3}] * 2
    obs = env.reset(seed=123)
    assert obs[0].tolist() == [0, 0] and obs[1].tolist() == [0, 0]
    path = [np.array([2, 0]), np.array([1, 2])]          # copy 0: (2, 1); copy 1: (0, 2)
    res = env.step(path)
    assert res.final_obs[0].tolist() == [9 * 0 + 3 * 2 + 1 + 1, 9 * 0 + 3 * 0 + 2 + 1]
    assert res.reward.tolist() == [[env.r_f[0]] * 2] * 2
    s1 = res.obs[0].copy()
    res = env.step([np.array([0, 0]), np.array([0, 0])])
    assert res.final_obs[1].tolist() == (9 * s1 + 1).tolist()
    assert res.reward[0].tolist() == env.r_f[s1].tolist()
    assert not res.terminated.any()
    res = env.step([np.array([1, 1]), np.array([1, 1])])
    assert res.terminated.all() and not res.truncated.any()      # L = 3 steps
    assert res.obs[0].tolist() == [0, 0]                           # back at the root


def test_lstage_rewards_come_from_the_seed_only():
    a, b = LStage(2, 1, 50, model_seed=5, L=4), LStage(2, 1, 50, model_seed=5, L=4)
    assert np.array_equal(a.r_f, b.r_f)
    assert not np.array_equal(a.r_f, LStage(2, 1, 50, model_seed=6, L=4).r_f)
    assert a.r_f.min() >= -1 and a.r_f.max() < 1 and len(a.r_f) == tree_size(4)


@pytest.mark.parametrize(("L", "episode_len"), [(1, 50), (2, 50), (3, 50), (4, 3)])
def test_lstage_optimum_equals_brute_force_over_every_joint_action_sequence(L, episode_len):
    horizon = min(L, episode_len)
    seqs = list(itertools.product(range(3), repeat=2 * horizon))    # every joint sequence
    env = LStage(2, num_envs=len(seqs), episode_len=episode_len, model_seed=11, L=L)
    plan = np.array(seqs).reshape(len(seqs), horizon, 2)
    env.reset(seed=0)
    total = np.zeros(len(seqs))
    for t in range(horizon):
        res = env.step([plan[:, t, 0], plan[:, t, 1]])
        total += res.reward[0]
    assert (res.terminated | res.truncated).all()
    known = env.known_returns()
    assert known["optimal_return"] == pytest.approx(total.max(), abs=1e-12)
    assert known["random_return"] == pytest.approx(total.mean(), abs=1e-12)


def test_lstage_errors_name_the_argument():
    with pytest.raises(EnvError, match=r"exactly 2 agents.*--n 2"):
        build("lstage", n=3)
    with pytest.raises(EnvError, match=r"L must be an integer in 1\.\.6, got 7"):
        build("lstage", L=7)
    with pytest.raises(EnvError, match=r"lstage: L must be an integer"):
        build("lstage", L="deep")
    with pytest.raises(EnvError, match=r"unknown env_kwargs \['M'\] for lstage; allowed: \['L'\]"):
        build("lstage", M=3)
    env = build("lstage", num_envs=2)
    env.reset(0)
    with pytest.raises(EnvError, match=r"agent 1.*\[0, 3\)"):
        env.step([np.array([0, 1]), np.array([3, 0])])


# ---- stochastic-game ----------------------------------------------------------------------

def test_stochastic_game_tables_start_state_and_horizon():
    env = build("stochastic-game", n=3, num_envs=4, seed=2)
    assert (env.n_states, env.n_actions, env.n_joint, env.horizon) == (30, 5, 125, 30)
    assert env.R.shape == (30, 125) and env.P.shape == (30, 125, 30)
    assert env.R.min() >= -5 and env.R.max() < 5
    assert (env.P > 0).all() and np.allclose(env.P.sum(axis=-1), 1.0)
    assert env.obs_spaces[0] == {"type": "discrete", "n": 30}
    assert env.reset(seed=1)[2].tolist() == [0, 0, 0, 0]
    rng = np.random.default_rng(0)
    for t in range(1, 62):
        acts = [rng.integers(5, size=4) for _ in range(3)]
        state = env._state.copy()
        res = env.step(acts)
        joint = acts[0] + 5 * acts[1] + 25 * acts[2]
        assert res.reward[1].tolist() == env.R[state, joint].tolist()
        assert res.truncated.all() == (t % 30 == 0) and not res.terminated.any()
        if t % 30 == 0:
            assert res.obs[0].tolist() == [0, 0, 0, 0]


def test_stochastic_game_samples_next_states_from_its_row():
    k = 20_000
    env = StochasticGame(2, num_envs=k, episode_len=50, model_seed=0, n_states=6, n_actions=2)
    env.reset(seed=3)
    res = env.step([np.ones(k, dtype=np.int64), np.zeros(k, dtype=np.int64)])
    freq = np.bincount(res.final_obs[0], minlength=6) / k
    p = env.P[0, 1]
    assert np.all(np.abs(freq - p) < 5 * np.sqrt(p * (1 - p) / k))


def test_stochastic_game_is_seeded_and_replays_its_trajectories():
    def rollout(model_seed, reset_seed):
        env = StochasticGame(3, 2, 50, model_seed=model_seed, n_states=8, n_actions=3)
        env.reset(reset_seed)
        rng = np.random.default_rng(9)
        return [env.step([rng.integers(3, size=2) for _ in range(3)]).final_obs[0]
                for _ in range(40)], env.R

    (a, ra), (b, rb) = rollout(1, 4), rollout(1, 4)
    assert np.array_equal(ra, rb) and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(rollout(2, 4)[1], ra)
    assert not all(np.array_equal(x, y) for x, y in zip(a, rollout(1, 5)[0]))


def test_stochastic_game_one_hot_observations():
    env = build("stochastic-game", n=2, num_envs=3, n_states=4, n_actions=2, one_hot=True)
    assert env.obs_spaces[0]["type"] == "box" and env.obs_spaces[0]["shape"] == [4]
    obs = env.reset(0)[1]
    assert obs.dtype == np.float32 and obs.tolist() == [[1, 0, 0, 0]] * 3
    res = env.step([np.zeros(3, dtype=np.int64)] * 2)
    assert (res.final_obs[0].sum(axis=1) == 1).all()


def tiny_game():
    return StochasticGame(2, 1, 50, model_seed=7, n_states=2, n_actions=2, horizon=3)


def expected_return(env, plan, start=0):
    """Exact expected return of a closed-loop plan: plan[t][s] = joint action index."""
    dist = np.zeros(env.n_states)
    dist[start] = 1.0
    total = 0.0
    for t in range(env.horizon):
        joint = np.asarray(plan[t])
        total += dist @ env.R[np.arange(env.n_states), joint]
        dist = dist @ env.P[np.arange(env.n_states), joint]
    return total


def test_stochastic_game_optimum_equals_brute_force_over_all_policies():
    env = tiny_game()
    S, H, J = env.n_states, env.horizon, env.n_joint
    best = max(expected_return(env, np.array(flat).reshape(H, S))
               for flat in itertools.product(range(J), repeat=H * S))   # 4^6 policies
    # the uniform-random policy is the average over open-loop joint-action sequences
    mean = np.mean([expected_return(env, np.repeat(np.array(seq)[:, None], S, axis=1))
                    for seq in itertools.product(range(J), repeat=H)])
    known = env.known_returns()
    assert known["optimal_return"] == pytest.approx(best, abs=1e-12)
    assert known["random_return"] == pytest.approx(mean, abs=1e-12)


def test_best_response_gain_equals_brute_force():
    env = tiny_game()
    policies = np.array([[1, 0], [0, 0]])                   # agent i's action in state s
    S, H = env.n_states, env.horizon
    stationary = env.joint_policy(policies)[:, 0]
    own = expected_return(env, [stationary] * H)
    for agent in (0, 1):
        gains = []
        for flat in itertools.product(range(2), repeat=H * S):     # agent's every plan
            mine = np.array(flat).reshape(H, S)
            plan = [stationary - policies[agent] * env.places[agent]
                    + mine[t] * env.places[agent] for t in range(H)]
            gains.append(expected_return(env, plan) - own)
        at_start, _ = env.best_response_gain(policies, agent)
        assert at_start == pytest.approx(max(gains), abs=1e-12)
        assert at_start >= 0


def test_discounted_best_response_gain_equals_the_best_stationary_deviation():
    env = StochasticGame(2, 1, 50, model_seed=3, n_states=3, n_actions=3)
    policies, gamma = np.array([[2, 0, 1], [1, 1, 0]]), 0.9

    def value(joint):        # exact discounted value of a stationary joint policy
        rows = np.arange(env.n_states)
        return np.linalg.solve(np.eye(env.n_states) - gamma * env.P[rows, joint],
                               env.R[rows, joint])

    own = value(env.joint_policy(policies)[:, 0])
    for agent in (0, 1):
        best = np.max([value(env.unilateral(policies, agent)[np.arange(3), list(mine)])
                       for mine in itertools.product(range(3), repeat=3)], axis=0)
        at_start, largest = env.best_response_gain(policies, agent, gamma=gamma)
        assert at_start == pytest.approx(best[0] - own[0], abs=1e-8)
        assert largest == pytest.approx((best - own).max(), abs=1e-8)


def test_stochastic_game_errors_name_the_argument():
    with pytest.raises(EnvError, match=r"n_actions must be an integer >= 1, got 0"):
        build("stochastic-game", n=3, n_actions=0)
    with pytest.raises(EnvError, match=r"transition entries.*fewer agents \(--n\)"):
        build("stochastic-game", n=8)
    with pytest.raises(EnvError, match=r"one_hot must be true or false"):
        build("stochastic-game", n=3, one_hot="yes")


# ---- matrix -------------------------------------------------------------------------------

def test_matrix_climbing_pays_every_cell_and_ends_each_episode():
    env = build("matrix", num_envs=9, game="climbing")
    a0, a1 = np.repeat(np.arange(3), 3), np.tile(np.arange(3), 3)
    assert env.reset(0)[0].tolist() == [0] * 9
    res = env.step([a0, a1])
    assert res.reward[0].tolist() == [11, -30, 0, -30, 7, 6, 0, 0, 5]
    assert res.terminated.all() and not res.truncated.any()
    assert env.known_returns() == {"optimal_return": 11.0, "random_return": -31.0 / 9}


def test_matrix_penalty_k_and_payoff_files(tmp_path):
    env = build("matrix", game="penalty", k=-25)
    assert env.payoff[0, 2] == env.payoff[2, 0] == -25 and env.known_returns()["optimal_return"] == 10
    text = tmp_path / "game.txt"
    text.write_text("1, 2\n3, 4\n5, -6\n")
    env = build("matrix", game="file", payoff=str(text))
    assert [sp["n"] for sp in env.act_spaces] == [3, 2]
    assert env.known_returns()["optimal_return"] == 5.0
    cube = np.arange(8.0).reshape(2, 2, 2)
    np.save(tmp_path / "three.npy", cube)
    env = build("matrix", n=3, num_envs=1, game="file", payoff=str(tmp_path / "three.npy"))
    env.reset(0)
    assert env.step([np.array([1]), np.array([0]), np.array([1])]).reward[2, 0] == 5.0
    assert env.known_returns()["optimal_return"] == 7.0


def test_matrix_errors_name_the_argument(tmp_path):
    with pytest.raises(EnvError, match=r"game must be one of climbing, penalty, file, got 'x'"):
        build("matrix", game="x")
    with pytest.raises(EnvError, match=r"penalty k must be <= 0, got 5"):
        build("matrix", game="penalty", k=5)
    with pytest.raises(EnvError, match=r"payoff=PATH"):
        build("matrix", game="file")
    with pytest.raises(EnvError, match=r"does not exist"):
        build("matrix", game="file", payoff=str(tmp_path / "none.txt"))
    with pytest.raises(EnvError, match=r"2 players but n = 3 \(pass --n 2\)"):
        build("matrix", n=3)


# ---- live: the summary reports the optimum --------------------------------------------------

def test_launch_reports_the_normalised_return(tmp_path):
    run_dir = tmp_path / "run"
    res = subprocess.run([*AGENTD, "launch", "--quiet", "--run-dir", str(run_dir), "--n", "2",
                          "--algo", "random", "--env", "lstage", "--env-arg", "L=3",
                          "--steps", "300", "--seed", "5"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    summary = read_json(run_dir / "summary.json")
    from coordinator.rundir import derive_seed

    env = LStage(2, 1, 50, model_seed=derive_seed(5, "env_model"), L=3)
    assert summary["optimal_return"] == env.known_returns()["optimal_return"]
    assert summary["normalised_return"] == pytest.approx(
        summary["final_return"] / summary["optimal_return"])
    assert f"normalised_return {summary['normalised_return']:.3f}" in res.stdout
    assert "greedy_return" not in summary      # random keeps no Q table to be greedy on


def test_greedy_return_matches_the_games_own_dynamics():
    """greedy_return of a deterministic joint policy equals stepping the env with it, and
    its best over all first-step joint actions is the optimum of a one-step horizon."""
    env = LStage(2, 1, episode_len=4, model_seed=11, L=4)
    rng = np.random.default_rng(0)
    policies = [rng.integers(3, size=env.n_nodes) for _ in range(2)]
    obs, total = env.reset(0), 0.0
    for _ in range(env.horizon):
        s = int(obs[0][0])
        res = env.step([np.array([policies[0][s]]), np.array([policies[1][s]])])
        total += float(res.reward[0, 0])
        obs = res.obs
    assert env.greedy_return(policies) == pytest.approx(total, abs=1e-12)
    one = LStage(2, 1, episode_len=1, model_seed=11, L=3)
    best = max(one.greedy_return([np.full(one.n_nodes, a), np.full(one.n_nodes, b)])
               for a in range(3) for b in range(3))
    assert best == pytest.approx(one.known_returns()["optimal_return"])
    game = tiny_game()
    pol = [rng.integers(game.n_actions, size=game.n_states) for _ in game.agent_names]
    plan = np.repeat(game.joint_policy(np.stack(pol)).T, game.horizon, axis=0)
    assert game.greedy_return(pol) == pytest.approx(expected_return(game, plan), abs=1e-12)
    climbing = make_env("matrix", n_agents=2, num_envs=1, episode_len=1, seed=0,
                        env_kwargs={"game": "climbing"})
    assert climbing.greedy_return([np.array([0]), np.array([0])]) == \
        climbing.known_returns()["optimal_return"]


def test_launch_reports_the_greedy_return_of_tabular_q_learners(tmp_path):
    run_dir = tmp_path / "run"
    res = subprocess.run([*AGENTD, "launch", "--quiet", "--run-dir", str(run_dir), "--n", "2",
                          "--topology", "line", "--algo", "i2q", "--env", "lstage",
                          "--env-arg", "L=3", "--param", "gamma=1", "--param", "epsilon=0.5",
                          "--num-envs", "4", "--steps", "1500", "--seed", "2"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    summary = read_json(run_dir / "summary.json")
    from coordinator.rundir import derive_seed

    env = LStage(2, 1, 50, model_seed=derive_seed(2, "env_model"), L=3)
    tables = []
    for i in range(2):
        with np.load(run_dir / "checkpoints" / f"agent-{i}.npz") as saved:
            tables.append(saved["q"].argmax(axis=1))
    assert summary["greedy_return"] == pytest.approx(env.greedy_return(tables))
    assert summary["greedy_normalised_return"] == pytest.approx(
        summary["greedy_return"] / summary["optimal_return"])
    assert "greedy policy: return" in res.stdout
