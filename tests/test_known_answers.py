"""Each learner family reaches a known answer on a small problem: the optimum of a game or an
MDP computed exactly, a best response, or a network average. Budgets are small; every test
fails when its learner's update is broken (a sign flipped, a term dropped)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agentd.launch.inprocess import build_env, make_learners, run_in_process


def payoff_file(tmp_path: Path, table: np.ndarray) -> str:
    path = tmp_path / "payoff.npy"
    np.save(path, np.asarray(table, dtype=np.float64))
    return str(path)


# ---- tabular Q-learners: I2Q, MA2QL, IQL --------------------------------------------------------

def test_i2q_reaches_the_optimum_of_an_l2_game():
    """Two I2Q agents (their default replay setting, started early for the small budget) find
    the optimal joint action of an L = 2 stage game."""
    for game in (0, 1):
        env = build_env("lstage", 2, num_envs=4, episode_len=2, seed=game, env_args={"L": 2})
        learners = make_learners("i2q", env, 2, topology="line", seed=game,
                                 params={"replay_start": 400})
        run_in_process(env, learners, 1000, reset_seed=game)
        greedy = env.greedy_return([lr.q.argmax(axis=1) for lr in learners])
        assert greedy == pytest.approx(env.known_returns()["optimal_return"]), game


def test_ma2ql_agent_on_turn_reaches_the_best_response_within_one_long_turn():
    """In the climbing game with agent 1 held at action 1, agent 0's first turn drives its
    Q-values to its payoffs against that action (-30, 7, 0), and its greedy action to the
    best response (1); agent 1, off turn, does not change."""
    env = build_env("matrix", 2, num_envs=8, episode_len=1, seed=0, env_args={"game": "climbing"})
    learners = make_learners("ma2ql", env, 2, topology="line", seed=0,
                             params={"turn_len": 1000})
    learners[1].q[0] = [0.0, 1.0, 0.0]
    held = learners[1].q.copy()
    run_in_process(env, learners, 600)                   # all inside agent 0's first turn
    np.testing.assert_allclose(learners[0].q[0], env.payoff[:, 1], atol=0.1)
    assert learners[0].q[0].argmax() == 1
    np.testing.assert_array_equal(learners[1].q, held)


def mdp_model(env, n_agents: int, n_actions: int) -> tuple[np.ndarray, np.ndarray]:
    """P[s, joint, s'] and R[s, joint] of a random-mdp, read from its own rows."""
    n_joint = n_actions ** n_agents
    p = np.zeros((env.n_states, n_joint, env.n_states))
    r = np.zeros((env.n_states, n_joint))
    for s in range(env.n_states):
        for j in range(n_joint):
            cdf, r[s, j] = env.row(s, j)
            p[s, j] = np.diff(np.concatenate([[0.0], cdf]))
    return p, r


def greedy_gap(env, tables: list[np.ndarray], n_actions: int, gamma: float) -> float:
    """max_s V*(s) - V^greedy(s): value iteration against exact evaluation of the joint
    greedy policy of the agents' tables."""
    p, r = mdp_model(env, len(tables), n_actions)
    v_star = np.zeros(env.n_states)
    for _ in range(2000):
        v_star = (r + gamma * p @ v_star).max(axis=1)
    joint = sum(t.argmax(axis=1) * n_actions ** i for i, t in enumerate(tables))
    states = np.arange(env.n_states)
    v = np.linalg.solve(np.eye(env.n_states) - gamma * p[states, joint], r[states, joint])
    return float((v_star - v).max())


@pytest.mark.parametrize(("algo", "n", "seed", "steps"), [("dac", 2, 1, 1000),
                                                          ("iql", 1, 0, 1500)])
def test_tabular_learner_reaches_the_optimum_of_a_tiny_mdp(algo, n, seed, steps):
    """Tabular DAC (two agents, the joint action's optimum) and IQL (one agent: Q-learning)
    on a 3-state, 2-action random MDP whose optimal values are computed exactly."""
    env = build_env("random-mdp", n, num_envs=8, episode_len=20, seed=seed,
                    env_args={"n_states": 3, "n_actions": 2})
    learners = make_learners(algo, env, n, seed=seed)
    run_in_process(env, learners, steps, reset_seed=seed)
    tables = [lr.zeta if algo == "dac" else lr.q for lr in learners]
    assert greedy_gap(env, tables, 2, learners[0].params.gamma) < 1e-9


# ---- on-policy: IPPO, DPO ---------------------------------------------------------------------

@pytest.mark.parametrize("algo", ["ippo", "dpo"])
def test_onpolicy_learner_solves_a_one_state_matrix_game(algo, tmp_path):
    """Two agents, payoffs [[5, 0], [0, 1]]: both must come to play the optimum (0, 0)."""
    import torch

    env = build_env("matrix", 2, num_envs=16, episode_len=1, seed=0,
                    env_args={"game": "file", "payoff": payoff_file(tmp_path, [[5, 0], [0, 1]])})
    learners = make_learners(algo, env, 2, topology="line", seed=0, params={"rollout": 8})
    run_in_process(env, learners, 120)
    for lr in learners:
        with torch.no_grad():
            pi = lr.actor(torch.as_tensor(lr.encode(np.array([0])))).softmax(-1).numpy()[0]
        assert pi[0] > 0.9, pi


# ---- off-policy: a deep Q learner, dac-deep's consensus ----------------------------------------

def test_deep_q_learner_finds_the_values_of_a_three_armed_bandit(tmp_path):
    """iql-deep alone on a one-step task with rewards (0, 1, 0.5): Q(0, .) -> the rewards."""
    import torch

    arms = [0.0, 1.0, 0.5]
    env = build_env("matrix", 1, num_envs=16, episode_len=1, seed=0,
                    env_args={"game": "file", "payoff": payoff_file(tmp_path, arms)})
    learners = make_learners("iql-deep", env, 1, seed=0, params={"eps_steps": 150})
    run_in_process(env, learners, 300)
    with torch.no_grad():
        q = learners[0].q(torch.as_tensor(learners[0].encode(np.array([0])))).numpy()[0]
    np.testing.assert_allclose(q, arms, atol=0.1)
    assert q.argmax() == 1


def test_dac_deep_consensus_reaches_the_network_average_on_a_fixed_beta_sequence():
    """Four agents on a ring follow a fixed sequence of log-ratios beta^i_t (one gossip round
    per step, as dac-deep's full mode); once it stops changing, every N x^i reaches
    sum_j beta^j and c^i = N x^i - beta^i the other agents' sum (eqs. 40, 45, 46)."""
    from test_deep_consensus import CAP, N, gossip, ring4

    _, agents = ring4()
    idx = np.arange(CAP)
    final = None
    for t in range(1, 121):
        if t <= 20:              # the sequence: beta^i_t = sin(t + i + e / 7), then held
            final = np.array([np.sin(t + i + idx / 7.0) for i in range(N)])
            for i, a in enumerate(agents):
                a.local_update(idx, final[i])
        gossip(agents, t, idx, rounds=1, prefix=True)
        np.testing.assert_allclose(sum(a.x for a in agents), final.sum(axis=0), atol=1e-9)
    for i, a in enumerate(agents):
        np.testing.assert_allclose(N * a.x, final.sum(axis=0), atol=1e-6)
        np.testing.assert_allclose(a.c(idx), final.sum(axis=0) - final[i], atol=1e-6)


# ---- opponent shaping: exact LOLA ---------------------------------------------------------------

def test_exact_lola_cooperates_on_the_ipd_where_naive_learners_defect(one_torch_thread):
    """The official exact setting (lr = eta = 0.5 on two logits per state, gamma 0.96, 200
    updates, both agents learning): LOLA ends near mutual cooperation (-1 per step), naive
    learners at mutual defection (-2)."""
    from agentd.algorithms.shaping import game as g
    from agentd.envs.ipd import PAYOFF

    gamma, lr, eta = 0.96, 0.5, 0.5
    values = g.exact_values(PAYOFF, PAYOFF, gamma)
    finals = {}
    for rule, seeds in (("lola", (0, 1, 2)), ("naive", (0,))):
        per_seed = []
        for seed in seeds:
            rng = np.random.default_rng(seed)
            thetas = [rng.normal(0.0, 0.7071, (5, 2)) for _ in range(2)]
            for _ in range(200):
                steps = []
                for me in (0, 1):
                    a, b = g.tensor(thetas[me], grad=True), g.tensor(thetas[1 - me], grad=True)
                    step = (g.lola_step(values, a, b, eta) if rule == "lola"
                            else g.naive_step(values, a, b))
                    steps.append(step.numpy())
                thetas = [th + lr * s for th, s in zip(thetas, steps)]
            v = [float(values(g.tensor(thetas[0]), g.tensor(thetas[1]))[k]) for k in (0, 1)]
            per_seed.append(np.mean(v) * (1 - gamma))
        finals[rule] = per_seed
    assert all(v > -1.1 for v in finals["lola"]), finals
    assert all(v < -1.9 for v in finals["naive"]), finals
