"""The opponent-shaping family's math on small hand-checkable cases: the closed-form IPD value,
LOLA's correction term, the meta-gradient's two shaping terms, DiCE, the private opponent
model, and each learner's step taken from what it observed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agentd.algorithms.shaping import game as g
from agentd.algorithms.shaping.core import softmax
from agentd.algorithms.shaping.lola import Lola
from agentd.algorithms.shaping.naive_pg import NaivePG
from agentd.envs.ipd import IPD, PAYOFF, SWAP, task_payoff
from agentd.launch.inprocess import build_env, make_learners, run_in_process
from protocols import Codec, Guard, encode, peer_identity
from protocols.errors import KindNotPermitted

GAMMA = 0.96


def value_by_iteration(theta_self, theta_other, payoff, gamma, steps=2000):
    """sum_t gamma^t E[r_t] by pushing the state distribution forward (no matrix inverse)."""
    p = softmax(theta_self)[:, 0]
    q = softmax(theta_other)[SWAP, 0]
    dist, total = np.eye(5)[0], 0.0
    for t in range(steps):
        joint = dist[:, None] * np.stack([p * q, p * (1 - q), (1 - p) * q,
                                          (1 - p) * (1 - q)], 1)      # (state, outcome)
        total += gamma ** t * joint.sum(0) @ payoff.reshape(4)
        dist = np.concatenate([[0.0], joint.sum(0)])
    return total


def chain_value_np(theta_self, theta_other, payoff=PAYOFF, gamma=GAMMA):
    """The closed form again, in numpy (fast enough for nested finite differences)."""
    p = softmax(theta_self)[:, 0]
    q = softmax(theta_other)[SWAP, 0]
    out = np.stack([p * q, p * (1 - q), (1 - p) * q, (1 - p) * (1 - q)], 1)
    return float(out[0] @ np.linalg.solve(np.eye(4) - gamma * out[1:], payoff.reshape(4)))


def chain_value_torch(theta_self, theta_other, payoff=PAYOFF, gamma=GAMMA):
    return float(g.chain_value(g.tensor(theta_self), g.tensor(theta_other), g.tensor(payoff),
                               gamma))


def random_theta(seed):
    return np.random.default_rng(seed).normal(0.0, 1.0, (5, 2))


# ---- the closed-form value ------------------------------------------------------------------

def test_closed_form_value_of_fixed_strategies_by_hand():
    always_c = np.array([[5.0, -5.0]] * 5) * 10
    always_d = -always_c
    # CC forever: -1 / (1 - gamma) = -25;  I cooperate, you defect: -3 / (1 - gamma) = -75
    assert chain_value_torch(always_c, always_c) == pytest.approx(-25.0)
    assert chain_value_torch(always_c, always_d) == pytest.approx(-75.0)
    assert chain_value_torch(always_d, always_c) == pytest.approx(0.0, abs=1e-9)
    # tit-for-tat against always-defect: C first (-3), then D forever (-2 each step)
    tft = np.array([[50.0, -50.0], [50.0, -50.0], [-50.0, 50.0], [50.0, -50.0],
                    [-50.0, 50.0]])
    assert chain_value_torch(tft, always_d) == pytest.approx(-3.0 - 2.0 * GAMMA / (1 - GAMMA))


def test_closed_form_value_matches_iteration_from_both_seats():
    payoff = task_payoff(3, 7, 0.25)
    a, b = random_theta(0), random_theta(1)
    for x, y in ((a, b), (b, a)):
        expected = value_by_iteration(x, y, payoff, GAMMA)
        assert chain_value_torch(x, y, payoff) == pytest.approx(expected, rel=1e-10)
        assert chain_value_np(x, y, payoff) == pytest.approx(expected, rel=1e-10)


def test_closed_form_value_matches_monte_carlo_on_the_env():
    gamma, horizon, k = 0.8, 60, 4000                 # 0.8^60 ~ 2e-6: the tail is negligible
    env = IPD(2, k, horizon + 1, payoff_noise=0.25, task_seed=5)     # one task throughout
    obs = env.reset(seed=0)
    thetas, rng = [random_theta(2), random_theta(3)], np.random.default_rng(1)
    returns = np.zeros((2, k))
    for t in range(horizon):
        actions = [(rng.random(k) >= softmax(th)[o, 0]).astype(np.int64)
                   for th, o in zip(thetas, obs)]
        res = env.step(actions)
        returns += gamma ** t * res.reward
        obs = res.obs
    for i in (0, 1):
        exact = chain_value_torch(thetas[i], thetas[1 - i], env.payoff, gamma)
        mean, se = returns[i].mean(), returns[i].std() / np.sqrt(k)
        assert abs(mean - exact) < 4 * se, (i, mean, exact, se)


# ---- LOLA's correction term -----------------------------------------------------------------

def bilinear(a, b):
    """seed 004's Remark 1 zero-sum game: V1 = a.b, V2 = -a.b."""
    return (a * b).sum(), -(a * b).sum()


def test_lola_on_the_bilinear_zero_sum_game_by_hand():
    a, b = torch.tensor([0.5], dtype=torch.float64, requires_grad=True), \
        torch.tensor([-1.5], dtype=torch.float64, requires_grad=True)
    # naive: dV1/da = b.  LOLA adds eta * d/da( stop(dV1/db) * dV2/db ) = eta * d/da(0.5 * -a)
    # = -0.5 eta (without the stop it would be d/da(-a^2) = -2a = -1)
    assert g.naive_step(bilinear, a, b).tolist() == [-1.5]
    assert g.lola_step(bilinear, a, b, eta=0.3).tolist() == pytest.approx([-1.5 - 0.3 * 0.5])


def test_lola_correction_term_matches_finite_differences_on_the_ipd():
    payoff, h, eta = task_payoff(0, 1, 0.25), 1e-4, 0.7
    a, b = random_theta(4), random_theta(5)

    def v(i, x, y):          # agent i's value with agent 0 at x, agent 1 at y
        return chain_value_np(x, y, payoff) if i == 0 else chain_value_np(y, x, payoff)

    def bump(x, idx, d):
        out = x.copy()
        out[idx] += d
        return out

    idx = list(np.ndindex(5, 2))
    grad_v1_b = np.array([(v(0, a, bump(b, k, h)) - v(0, a, bump(b, k, -h))) / (2 * h)
                          for k in idx])
    correction = np.zeros((5, 2))
    for i in idx:            # d/da_i sum_k dV1/db_k d2V2/(da_i db_k), all by differences
        mixed = [(v(1, bump(a, i, h), bump(b, k, h)) - v(1, bump(a, i, h), bump(b, k, -h))
                  - v(1, bump(a, i, -h), bump(b, k, h)) + v(1, bump(a, i, -h), bump(b, k, -h)))
                 / (4 * h * h) for k in idx]
        correction[i] = grad_v1_b @ np.array(mixed)
    values = g.exact_values(payoff, payoff, GAMMA)
    ta, tb = g.tensor(a, grad=True), g.tensor(b, grad=True)
    naive = g.naive_step(values, ta, tb).numpy()
    lola = g.lola_step(values, ta, tb, eta).numpy()
    assert np.abs(correction).max() > 1.0            # the term is not trivially zero here
    np.testing.assert_allclose((lola - naive) / eta, correction, rtol=1e-4, atol=1e-4)


# ---- the meta-gradient's two shaping terms ---------------------------------------------------

def fd_grad(f, x, h=1e-5):
    out = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[i] += h
        down[i] -= h
        out[i] = (f(up) - f(down)) / (2 * h)
    return out


def reference_chain(theta, theta_other, payoff, alpha, chain, frozen_other=None):
    """The chain of seed eq. 3 with inner gradients by finite differences; returns the
    meta-value and the opponent's chain. ``frozen_other`` replays a given opponent chain."""
    me, other, total, others = theta.copy(), theta_other.copy(), 0.0, [theta_other.copy()]
    for j in range(chain):
        opp = other if frozen_other is None else frozen_other[j]
        step_me = fd_grad(lambda x, o=opp: chain_value_np(x, o, payoff), me, 1e-4)
        step_other = fd_grad(lambda y, m=me: chain_value_np(y, m, payoff), opp, 1e-4)
        me, other = me + alpha * step_me, opp + alpha * step_other
        others.append(other.copy())
        nxt = other if frozen_other is None else frozen_other[j + 1]
        total += chain_value_np(me, nxt, payoff)
    return total / chain, others


def test_meta_gradient_self_and_opponent_shaping_terms_match_finite_differences():
    payoff, alpha, chain = task_payoff(0, 3, 0.25), 0.4, 2
    theta, theta_other = random_theta(6) * 0.5, random_theta(7) * 0.5
    values = g.exact_values(payoff, payoff, GAMMA)

    def meta(shape):
        t = g.tensor(theta, grad=True)
        m = g.meta_value(values, t, g.tensor(theta_other, grad=True), alpha, chain, shape)
        return float(m.detach()), g.gradient(m, t)

    full_value, full = meta(True)            # Meta-MAPG: self- and opponent-shaping
    pg_value, self_only = meta(False)        # Meta-PG: self-shaping only
    ref_value, base_other = reference_chain(theta, theta_other, payoff, alpha, chain)
    assert full_value == pytest.approx(ref_value, rel=1e-6) and pg_value == full_value
    fd_full = fd_grad(lambda x: reference_chain(x, theta_other, payoff, alpha, chain)[0],
                      theta, 1e-4)
    fd_self = fd_grad(lambda x: reference_chain(x, theta_other, payoff, alpha, chain,
                                                frozen_other=base_other)[0], theta, 1e-4)
    np.testing.assert_allclose(full, fd_full, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(self_only, fd_self, rtol=1e-4, atol=1e-4)
    opponent_shaping = full - self_only
    assert np.abs(opponent_shaping).max() > 0.05 * np.abs(full).max()


# ---- DiCE -----------------------------------------------------------------------------------

def dice_batch(thetas, payoff, gamma, horizon, k, seed):
    env = IPD(2, k, horizon, payoff_noise=0.0)
    obs, rng = env.reset(seed=0), np.random.default_rng(seed)
    cols = {"state": [], "own": [], "other": [], "reward": [], "reward_other": []}
    for _ in range(horizon):
        acts = [(rng.random(k) >= softmax(th)[o, 0]).astype(np.int64) for th, o in zip(thetas, obs)]
        res = env.step(acts)
        for key, value in zip(cols, (obs[0], acts[0], acts[1], res.reward[0], res.reward[1])):
            cols[key].append(value)
        obs = res.obs
    return {key: np.stack(v) for key, v in cols.items()}


def test_dice_value_is_the_discounted_return_and_its_gradient_is_the_policy_gradient():
    gamma, horizon, k = 0.8, 50, 4000
    thetas = [random_theta(8) * 0.5, random_theta(9) * 0.5]
    batch = dice_batch(thetas, PAYOFF, gamma, horizon, k, seed=3)
    values = g.dice_values(batch, gamma)
    a, b = g.tensor(thetas[0], grad=True), g.tensor(thetas[1], grad=True)
    v_self, v_other = values(a, b)
    disc = gamma ** np.arange(horizon)[:, None]
    assert float(v_self.detach()) == pytest.approx((disc * batch["reward"]).sum(0).mean())
    assert float(v_other.detach()) == pytest.approx((disc * batch["reward_other"]).sum(0).mean())
    exact = g.naive_step(g.exact_values(PAYOFF, PAYOFF, gamma), a, b).numpy()
    sampled = g.naive_step(values, a, b).numpy()
    assert np.linalg.norm(sampled - exact) < 0.1 * np.linalg.norm(exact)


def test_dice_lola_step_points_like_the_exact_one():
    gamma, horizon, k = 0.8, 50, 4000
    thetas = [random_theta(10) * 0.5, random_theta(11) * 0.5]
    batch = dice_batch(thetas, PAYOFF, gamma, horizon, k, seed=4)
    a, b = g.tensor(thetas[0], grad=True), g.tensor(thetas[1], grad=True)
    exact = g.lola_step(g.exact_values(PAYOFF, PAYOFF, gamma), a, b, 0.5).numpy()
    naive = g.naive_step(g.exact_values(PAYOFF, PAYOFF, gamma), a, b).numpy()
    sampled = g.lola_step(g.dice_values(batch, gamma), a, b, 0.5).numpy()
    cos = (sampled * exact).sum() / np.linalg.norm(sampled) / np.linalg.norm(exact)
    assert cos > 0.9, cos
    # the second-order part is estimated too, not only the naive gradient
    corr_s, corr_e = (sampled - g.naive_step(g.dice_values(batch, gamma), a, b).numpy()), \
        exact - naive
    cos_corr = (corr_s * corr_e).sum() / np.linalg.norm(corr_s) / np.linalg.norm(corr_e)
    assert cos_corr > 0.5, cos_corr


def test_dice_lola_correction_at_the_operating_point(one_torch_thread):
    """The sampled LOLA correction (the shaping term, LOLA step minus naive step) against the
    exact one where the learner runs: K = 64 episodes of H = 150 steps, gamma 0.96, on 24
    fixed policy pairs drawn like the learner's initial logits. Mao et al.'s baseline is what
    makes this work: the original DiCE baseline gives a median cosine of about 0.4 here."""
    gamma, horizon, k = 0.96, 150, 64
    exact_values = g.exact_values(PAYOFF, PAYOFF, gamma)
    cosines, errors = [], []
    for i in range(24):
        rng = np.random.default_rng(1000 + i)
        thetas = [rng.normal(0.0, 0.7071, (5, 2)), rng.normal(0.0, 0.7071, (5, 2))]
        batch = dice_batch(thetas, PAYOFF, gamma, horizon, k, seed=2000 + i)
        a, b = g.tensor(thetas[0], grad=True), g.tensor(thetas[1], grad=True)
        pair = []
        for values in (exact_values, g.dice_values(batch, gamma)):
            pair.append((g.lola_step(values, a, b, 0.5) - g.naive_step(values, a, b)).numpy())
        exact, sampled = pair
        cosines.append((sampled * exact).sum() / np.linalg.norm(sampled) / np.linalg.norm(exact))
        errors.append(np.linalg.norm(sampled - exact) / np.linalg.norm(exact))
    assert np.median(cosines) >= 0.7, np.round(cosines, 2)
    assert np.median(errors) < 1.5, np.round(errors, 2)


# ---- the private opponent model and the learners' steps --------------------------------------

def frozen_pair(algo, episodes, k, params=None, seed=0):
    """Two learners with lr = 0 (fixed policies) after ``episodes`` episodes of 40 steps."""
    env = build_env("ipd", 2, num_envs=k, episode_len=40)
    learners = make_learners(algo, env, 2, "line", seed, {"lr": 0.0, "model_decay": 1.0,
                                                           **(params or {})})
    learners[1].theta[...] = [[1.0, 0.0], [2.0, 0.0], [-1.0, 0.0], [0.5, 0.0], [0.0, 0.3]]
    run_in_process(env, learners, 40 * episodes, metrics_every=40)
    return learners


def model_error(learners):
    return np.abs(softmax(learners[0].model.logits())[:, 0]
                  - softmax(learners[1].theta)[:, 0]).max()


def test_opponent_model_converges_to_a_fixed_opponents_true_policy():
    learners = frozen_pair("naive-pg", 60, k=8)
    errors = [model_error(frozen_pair("naive-pg", 1, k=8)), model_error(learners)]
    assert errors[1] < 0.03 and errors[1] < errors[0] / 3, errors
    # the logits themselves, up to the softmax's free constant per state
    fitted = learners[0].model.logits()
    true = learners[1].theta
    np.testing.assert_allclose(fitted[:, 0] - fitted[:, 1], true[:, 0] - true[:, 1], atol=0.2)


def test_learners_take_the_rule_step_on_what_they_fitted():
    for cls, rule in ((NaivePG, lambda v, a, b: g.naive_step(v, a, b)),
                      (Lola, lambda v, a, b: g.lola_step(v, a, b, 0.5))):
        learners = frozen_pair(cls.name, 3, k=4, params={"lr": 0.0})
        me = learners[0]
        before = me.theta.copy()
        me.params.lr = 0.5
        env = build_env("ipd", 2, num_envs=4, episode_len=40)
        run_in_process(env, learners, 40, metrics_every=40)    # one more episode
        # its step: the rule on the payoffs and opponent model fitted with that episode
        values = g.exact_values(me.payoff.table, me.payoff.table, GAMMA)
        expected = before + 0.5 * rule(values, g.tensor(before, grad=True),
                                       g.tensor(me.model.logits(), grad=True)).numpy()
        np.testing.assert_allclose(me.theta, expected, rtol=1e-12)
        np.testing.assert_array_equal(me.payoff.table, PAYOFF)     # all four outcomes seen


# ---- the guard keeps policy_params out of private runs ------------------------------------------

def test_the_guard_permits_policy_params_only_with_opponent_shared():
    codec = Codec()
    body = {"episode": 0, "logits": np.zeros((5, 2))}
    frame = encode(codec, "policy_params", 1, 0, 150, 1, body)
    for params, allowed in (({}, False), ({"opponent": "model"}, False),
                            ({"opponent": "shared"}, True)):
        guard = Guard(0, [1], Lola.permitted_kinds(params))
        if allowed:
            guard.outgoing("policy_params", 1, body, "peer")
            assert guard.incoming([frame], "peer", peer_identity(1)).body["episode"] == 0
        else:
            with pytest.raises(KindNotPermitted):
                guard.outgoing("policy_params", 1, body, "peer")
            with pytest.raises(KindNotPermitted):
                guard.incoming([frame], "peer", peer_identity(1))
        assert bool(Lola.non_private_reason(params)) == allowed


def test_one_hot_observations_give_the_same_run_as_indices():
    thetas = []
    for onehot in (False, True):
        env = build_env("ipd", 2, num_envs=3, episode_len=30, env_args={"onehot": onehot})
        learners = make_learners("lola", env, 2, "line", 5, {})
        run_in_process(env, learners, 90, metrics_every=30)
        thetas.append([lr.theta.copy() for lr in learners])
    assert not np.allclose(thetas[0][0], make_learners(
        "lola", build_env("ipd", 2), 2, "line", 5, {})[0].theta)        # they did learn
    for a, b in zip(*thetas):
        np.testing.assert_array_equal(a, b)
