"""Log-ratio consensus of dac-deep (seed 002 eqs. 40, 44-46) and its importance weights."""

from __future__ import annotations

import numpy as np
import pytest

from agentd.algorithms.plugins.consensus import LogRatioConsensus
from topologies import build, mixing_matrix

N, CAP = 4, 50


def ring4():
    g = build("ring", N, seed=0)
    w = mixing_matrix(g, "kernel")
    agents = [LogRatioConsensus(CAP, N, {j: float(w[i, j]) for j in [i, *g.neighbours(i)]}, i)
              for i in range(N)]
    return w, agents


def gossip(agents, t, idx, rounds, prefix=False):
    """Run one step's rounds, delivering every message (the live agents' exchange)."""
    for a in agents:
        a.start(t, idx, rounds, prefix)
    queue = [(i, m) for i, a in enumerate(agents) for m in a.pending_messages()]
    while queue:
        i, (tt, r, wire_idx, x) = queue.pop(0)
        for j in agents[i].w:
            agents[j].receive(i, tt, r, wire_idx, x)
            queue += [(j, m) for m in agents[j].pending_messages()]
    assert all(not a.waiting_for() for a in agents)
    assert all(a.finish() == 0 for a in agents)


def test_bookkeeping_matches_a_direct_computation_on_a_4_ring():
    """x^i_e <- x^i_e + (beta - beta_hat) (eq. 45), then x <- W x (eq. 46), entry by entry."""
    w, agents = ring4()
    rng = np.random.default_rng(0)
    X = np.zeros((N, CAP))        # the direct computation: one row per agent
    B = np.zeros((N, CAP))
    for t in range(1, 30):
        idx = rng.choice(CAP, 12, replace=False)
        beta_new = rng.normal(size=(N, 12))
        for i, a in enumerate(agents):
            a.local_update(idx, beta_new[i])
        X[:, idx] += beta_new - B[:, idx]
        B[:, idx] = beta_new
        rounds = 1 + t % 3
        gossip(agents, t, idx, rounds)
        for _ in range(rounds):
            X[:, idx] = w @ X[:, idx]
        for i, a in enumerate(agents):
            np.testing.assert_allclose(a.x, X[i], atol=1e-12)
            np.testing.assert_allclose(a.beta, B[i], atol=0)
    # the invariant that makes N x an estimate of sum_j beta_j
    np.testing.assert_allclose(sum(a.x for a in agents), sum(a.beta for a in agents),
                               atol=1e-10)
    # c^i = N x^i - beta^i (eq. 40)
    np.testing.assert_allclose(agents[2].c(np.arange(CAP)), N * X[2] - B[2])


def test_x_converges_to_the_average_of_beta_when_mixing_runs_to_convergence():
    _, agents = ring4()
    rng = np.random.default_rng(1)
    idx = np.arange(CAP)
    beta = rng.normal(size=(N, CAP))
    for i, a in enumerate(agents):
        a.local_update(idx, beta[i])
    gossip(agents, 1, idx, rounds=200, prefix=True)
    for i, a in enumerate(agents):
        np.testing.assert_allclose(N * a.x, beta.sum(axis=0), atol=1e-9)
        np.testing.assert_allclose(a.c(idx), beta.sum(axis=0) - beta[i], atol=1e-9)


def test_a_bad_or_stale_neighbour_message_is_counted_and_its_weight_stays_home():
    w, agents = ring4()
    a0 = agents[0]
    idx = np.array([3, 7])
    a0.local_update(idx, np.array([1.0, 2.0]))
    a0.start(5, idx, 1)
    sent = a0.pending_messages()
    assert [(t, r) for t, r, _, _ in sent] == [(5, 0)]
    a0.receive(1, 5, 0, idx, np.array([1.0, 2.0, 3.0]))     # wrong length
    a0.receive(3, 4, 0, idx, np.array([9.0, 9.0]))          # stale step
    a0.receive(2, 5, 0, idx, np.array([9.0, 9.0]))          # not a neighbour
    assert a0.rejected == 3 and a0.waiting_for() == {3}
    a0.receive(3, 5, 0, idx, np.array([4.0, 6.0]))
    assert a0.pending_messages() == [] and not a0.waiting_for()
    # agent 1's malformed x counts as missing: its weight stays with agent 0
    expected = (w[0, 0] + w[0, 1]) * np.array([1.0, 2.0]) + w[0, 3] * np.array([4.0, 6.0])
    np.testing.assert_allclose(a0.x[idx], expected)


def test_early_messages_of_the_next_step_are_kept():
    _, agents = ring4()
    a0 = agents[0]
    idx = np.array([1, 2])
    a0.receive(1, 8, 0, idx, np.array([1.0, 1.0]))    # before this agent reached step 8
    a0.start(8, idx, 1)
    assert a0.waiting_for() == {3}


# -- importance weights and the critic loss on a hand-checkable batch -----------------------
torch = pytest.importorskip("torch")


def deep_learner(**params):
    from agentd.algorithms.base import LearnerSpec
    from agentd.algorithms.offpolicy.dac_deep import DacDeep

    box = {"type": "box", "shape": [2], "low": [-1.0, -1.0], "high": [1.0, 1.0],
           "dtype": "float32"}
    return DacDeep(LearnerSpec(agent_id=0, n_agents=3, neighbours=[1, 2],
                               weights={0: 1 / 3, 1: 1 / 3, 2: 1 / 3}, obs_spaces=[box],
                               act_spaces=[box], controls=[0], num_envs=1, seed=0,
                               params={"start": 4, "batch": 4, **params}))


def constant(module, value):
    with torch.no_grad():
        for p in module.parameters():
            p.zero_()
        module.body[-1].bias.fill_(value)


@pytest.mark.parametrize("how", ["selfnorm", "clip", "none"])
def test_importance_weighted_critic_loss_by_hand(how):
    lr = deep_learner(weights=how, c_clip=1.0, gamma=0.5)
    idx = np.arange(4)
    # N x - beta = c: choose x and beta so that c = [0, 0.5, 2 (clipped to 1), -1]
    lr.cons.beta[idx] = [0.0, 0.5, 1.0, 0.0]
    lr.cons.x[idx] = (np.array([0.0, 0.5, 2.0, -1.0]) + lr.cons.beta[idx]) / 3
    np.testing.assert_allclose(lr.cons.c(idx), [0.0, 0.5, 2.0, -1.0])
    raw = np.exp([0.0, 0.5, 1.0, -1.0])
    want_w = {"selfnorm": raw / raw.mean(), "clip": raw, "none": np.ones(4)}[how]
    np.testing.assert_allclose(lr.weights(idx), want_w)
    constant(lr.critic, 2.0)          # Q(s, a) = 2 everywhere
    constant(lr.target, 4.0)          # target Q = 4 everywhere
    r = torch.tensor([1.0, 0.0, -1.0, 3.0])
    done = torch.tensor([0.0, 0.0, 1.0, 0.0])
    s = torch.zeros(4, 2)
    loss = lr.critic_loss(s, torch.zeros(4, 2), r, s, done, torch.as_tensor(want_w))
    y = np.array([1 + 0.5 * 4, 0 + 0.5 * 4, -1.0, 3 + 0.5 * 4])
    assert loss.item() == pytest.approx(float(np.mean(want_w * (2.0 - y) ** 2)), rel=1e-6)


def test_beta_is_zero_until_the_policy_changes_and_then_matches_the_densities():
    lr = deep_learner()
    obs = np.array([[0.1, -0.2]], np.float32)
    for _ in range(4):
        a = lr.act(obs)
        lr.observe(obs, a, np.array([0.0]), obs, np.array([False]), np.array([False]))
    np.testing.assert_allclose(lr._beta(np.arange(4)), 0.0, atol=1e-6)
    with torch.no_grad():
        lr.actor.body[-1].bias.add_(0.3)
    beta = lr._beta(np.arange(4))
    s, u = torch.as_tensor(lr.buf["s"][:4]), torch.as_tensor(lr.buf["u"][:4])
    want = lr.actor.log_prob_u(s, u).detach().double().numpy() - lr.buf["logp_old"][:4]
    np.testing.assert_allclose(beta, want)
    assert np.abs(beta).max() > 1e-3
