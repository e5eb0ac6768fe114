"""The on-policy core's math on hand-checkable cases: GAE (termination vs truncation), PPO's
clipped loss, the value loss, DPO's surrogate and beta rule, the KLs, MDPO's model and
predictor losses, checkpoints with optimiser state."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from agentd.algorithms.base import LearnerConfigError, LearnerSpec
from agentd.algorithms.onpolicy.dpo import DPO, adapt_betas
from agentd.algorithms.onpolicy.ippo import IPPO
from agentd.algorithms.onpolicy.losses import dpo_loss, ppo_clip_loss, value_loss
from agentd.algorithms.onpolicy.mdpo import MDPO
from agentd.algorithms.onpolicy.mdpo_model import LatentModel
from agentd.algorithms.onpolicy.policy import BoxMap, CategoricalHead, GaussianHead
from agentd.algorithms.onpolicy.rollout import RolloutStore, gae

BOX2 = {"type": "box", "shape": [2], "low": [-1.0, 0.0], "high": [1.0, 4.0], "dtype": "float32"}


def spec(obs, act, params=None, num_envs=2, neighbours=(), n_agents=1, seed=0):
    return LearnerSpec(agent_id=0, n_agents=n_agents, neighbours=list(neighbours),
                       weights={0: 1.0}, obs_spaces=[obs], act_spaces=[act], controls=[0],
                       num_envs=num_envs, seed=seed, params=dict(params or {}))


def discrete(n):
    return {"type": "discrete", "n": n}


# ---- GAE and the rollout store -------------------------------------------------------------

def test_gae_by_hand_bootstraps_on_truncation_not_on_termination():
    # copy 0: step 1 truncated (bootstrap from V(s'_1) = 4, the episode's real last obs, not
    # V(s_2) = 1.5 of the reset obs), step 2 terminated (no bootstrap); copy 1: no episode end
    reward = np.array([[1.0, 1.0], [2.0, 1.0], [3.0, 1.0]])
    value = np.array([[0.5, 0.0], [1.0, 0.0], [1.5, 0.0]])
    next_value = np.array([[1.0, 0.0], [4.0, 0.0], [2.0, 2.0]])
    terminated = np.array([[False, False], [False, False], [True, False]])
    done = np.array([[False, False], [True, False], [True, False]])
    adv, ret = gae(reward, value, next_value, terminated, done, gamma=0.5, lam=0.5)
    # copy 0: d2 = 3 - 1.5 = 1.5; d1 = 2 + 0.5*4 - 1 = 3 (done: no carry); d0 = 1 + 0.5 - 0.5
    #         A = [1 + 0.25*3, 3, 1.5]
    # copy 1: d = [1, 1, 1 + 0.5*2] ; A2 = 2, A1 = 1 + 0.25*2, A0 = 1 + 0.25*1.5
    np.testing.assert_allclose(adv[:, 0], [1.75, 3.0, 1.5])
    np.testing.assert_allclose(adv[:, 1], [1.375, 1.5, 2.0])
    np.testing.assert_allclose(ret, adv + value)


def test_rollout_store_rows_are_joint_steps_and_flatten_step_major():
    store = RolloutStore(2, 3, {"x": ((), np.float64), "o": ((2,), np.float32)})
    store.add(x=np.array([0.0, 1.0, 2.0]), o=np.zeros((3, 2)))
    assert not store.full
    store.add(x=np.array([10.0, 11.0, 12.0]), o=np.ones((3, 2)))
    assert store.full
    assert store.flat("x").tolist() == [0.0, 1.0, 2.0, 10.0, 11.0, 12.0]
    assert store.flat("o").shape == (6, 2)
    with pytest.raises(RuntimeError, match="full"):
        store.add(x=np.zeros(3), o=np.zeros((3, 2)))
    store.reset()
    with pytest.raises(KeyError, match="lacks"):
        store.add(x=np.zeros(3))


def test_learner_stores_the_value_of_the_final_observation_on_truncation():
    learner = IPPO(spec(discrete(4), discrete(2), {"rollout": 4}, num_envs=2))
    obs = np.array([0, 1])
    learner.act(obs)
    # copy 1 is truncated: its final obs is 3, the env server already reset it to 0
    learner.observe(obs, None, np.array([1.0, 1.0]), np.array([2, 3]), np.array([False, False]),
                    np.array([False, True]))
    row = {k: v[0] for k, v in learner.store.data.items()}
    np.testing.assert_array_equal(row["next_value"], learner.values(learner.encode([2, 3])))
    assert row["done"].tolist() == [False, True] and row["terminated"].tolist() == [False, False]


# ---- losses ------------------------------------------------------------------------------------

def t(x):
    return torch.tensor(x, dtype=torch.float64)


def test_ppo_clip_loss_by_hand():
    logp_old, logp = t(np.log([0.5, 0.5])), t(np.log([0.8, 0.3]))     # ratios 1.6 and 0.6
    adv = t([1.0, -2.0])
    # min(1.6, 1.2) * 1 = 1.2 ;  min(0.6 * -2, 0.8 * -2) = -1.6 ;  loss = -(1.2 - 1.6) / 2
    assert ppo_clip_loss(logp, logp_old, adv, 0.2).item() == pytest.approx(0.2)
    assert ppo_clip_loss(logp, logp_old, adv, 0.9).item() == pytest.approx(-(1.6 - 1.2) / 2)


def test_value_loss_plain_and_clipped_by_hand():
    v, v_old, target = t([2.0, 0.0]), t([1.0, 0.0]), t([3.0, 1.0])
    assert value_loss(v, v_old, target, 0.0).item() == pytest.approx(0.5 * (1 + 1) / 2)
    # clipped: V_old + clip(1, +-0.5) = 1.5 -> (1.5 - 3)^2 = 2.25 > 1 ; second sample unchanged
    assert value_loss(v, v_old, target, 0.5).item() == pytest.approx(0.5 * (2.25 + 1) / 2)


def test_dpo_loss_by_hand_both_sqrt_readings():
    logp_old, logp = t(np.log([0.5, 0.5])), t(np.log([0.8, 0.3]))
    adv, kl = t([1.0, -2.0]), t([0.04, 0.01])
    # surrogate = 0.5 * mean(1.6, -1.2) = 0.1 ; E sqrt KL = 0.15 ; E KL = 0.025
    sample = dpo_loss(logp, logp_old, adv, kl, 2.0, 3.0, 0.5, "sample").item()
    assert sample == pytest.approx(-0.1 + 2 * 0.15 + 3 * 0.025, abs=1e-6)
    mean = dpo_loss(logp, logp_old, adv, kl, 2.0, 3.0, 0.5, "mean").item()
    assert mean == pytest.approx(-0.1 + 2 * math.sqrt(0.025) + 3 * 0.025, abs=1e-6)
    # no clipping: a huge ratio counts in full
    big = dpo_loss(t([np.log(10.0)]), t([0.0]), t([1.0]), t([0.0]), 0.0, 0.0, 1.0, "sample")
    assert big.item() == pytest.approx(-10.0)


def test_beta_rule_moves_each_beta_on_its_own_term_within_bounds():
    b = np.array([1.0, 4.0])
    kw = {"d_target": 0.01, "delta": 1.5, "omega": 2.0}
    # beta_1 on E[sqrt KL] against sqrt(0.01) = 0.1 (band 0.0667 .. 0.15), beta_2 on E[KL]
    assert adapt_betas(b, 0.02, 0.2, **kw).tolist() == [2.0, 8.0]       # both above
    assert adapt_betas(b, 0.005, 0.05, **kw).tolist() == [0.5, 2.0]     # both below
    assert adapt_betas(b, 0.01, 0.1, **kw).tolist() == [1.0, 4.0]       # both inside
    # the terms disagree (KL spread over few samples): each beta follows its own
    assert adapt_betas(b, 0.02, 0.05, **kw).tolist() == [0.5, 8.0]
    assert adapt_betas(b, 0.01, 0.2, **kw).tolist() == [2.0, 4.0]
    assert adapt_betas(np.array([1e3, 1e-3]), 1.0, 1.0, **kw).tolist() == [1e3, 2e-3]
    assert adapt_betas(np.array([1e3, 1e-3]), 0.0, 0.0, **kw).tolist() == [500.0, 1e-3]


def test_dpo_learner_adapts_betas_after_each_rollout():
    learner = DPO(spec(discrete(3), discrete(3), {"rollout": 4, "epochs": 2}))
    learner.sqrt_kl = 1.0
    assert learner.after_update(1.0) == {"beta_sqrt": 2.0, "beta_kl": 2.0, "sqrt_kl": 1.0}
    learner.sqrt_kl = 0.0
    assert learner.after_update(0.0) == {"beta_sqrt": 1.0, "beta_kl": 1.0, "sqrt_kl": 0.0}
    assert learner.state_dict()["betas"].tolist() == [1.0, 1.0]


def test_categorical_kl_is_exact():
    head = CategoricalHead(4, 3)
    old, new = t(np.log([[0.5, 0.25, 0.25]])), t(np.log([[0.25, 0.5, 0.25]]))
    # 0.5 ln 2 + 0.25 ln(1/2) = 0.25 ln 2
    assert head.kl(old, new).item() == pytest.approx(0.25 * math.log(2))
    assert head.kl(old, old).item() == pytest.approx(0.0)


def test_gaussian_kl_is_the_closed_form_and_sampling_agrees():
    head = GaussianHead(4, 2, 0.0)
    # dimension 0: N(0, 1) -> N(0.3, 1.2^2); dimension 1: N(1, 0.5^2) -> N(1, 0.5^2)
    old = torch.tensor([[0.0, 1.0, 0.0, math.log(0.5)]], dtype=torch.float64)
    new = torch.tensor([[0.3, 1.0, math.log(1.2), math.log(0.5)]], dtype=torch.float64)
    exact = math.log(1.2) + (1 + 0.3 ** 2) / (2 * 1.44) - 0.5
    assert head.kl(old, new).item() == pytest.approx(exact, rel=1e-12)
    assert head.kl(old, old).item() == pytest.approx(0.0, abs=1e-15)
    # the Monte-Carlo mean of log pi_old(u) - log pi_new(u), u ~ pi_old, is the same number
    gen = torch.Generator().manual_seed(0)
    u = head.sample(old.expand(200_000, 4), gen)
    mc = (head.log_prob(old, u) - head.log_prob(new, u)).mean().item()
    assert mc == pytest.approx(exact, rel=0.03)


def test_box_map_clips_and_rescales():
    box = BoxMap(BOX2)
    out = box(np.array([[-3.0, 0.0], [0.5, 1.0]]))
    np.testing.assert_allclose(out, [[-1.0, 2.0], [0.5, 4.0]])


# ---- MDPO's model ------------------------------------------------------------------------------

def tiny_model():
    torch.manual_seed(0)
    return LatentModel(obs_dim=2, act_in=2, latent_dim=1, nb_dim=0, history=3, hidden=4,
                       discrete_obs=True)


def test_mdpo_model_and_predictor_losses_by_hand():
    m = tiny_model()
    with torch.no_grad():
        for p in [*m.next_head.parameters(), *m.reward_head.parameters(),
                  *m.predictor.parameters()]:
            p.zero_()
        m.next_head.bias[:] = torch.log(torch.tensor([0.75, 0.25]))
        m.reward_head.bias[:] = 2.0
        m.predictor.out.bias[:] = torch.tensor([0.5, math.log(0.5)])   # mu tanh(.5), sd 0.5
    o = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    o_next = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    trans, rew = m.model_loss(o, a, torch.zeros(2, 1), torch.zeros(2, 0), o_next,
                              torch.tensor([3.0, 2.0]))
    assert trans.item() == pytest.approx(-(math.log(0.75) + math.log(0.25)) / 2, rel=1e-6)
    assert rew.item() == pytest.approx((1.0 + 0.0) / 2)
    z_prev, z_last = torch.zeros(1, 2), torch.tensor([[math.tanh(0.5) + 0.5]])   # 1 sd away
    nll = m.predictor_loss(z_prev, z_last).item()
    assert nll == pytest.approx(0.5 + math.log(0.5) + 0.5 * math.log(2 * math.pi), rel=1e-6)


def test_mdpo_model_fits_a_deterministic_game_and_only_the_newest_psi_learns():
    learner = MDPO(spec(discrete(2), discrete(2), {"rollout": 8, "model_steps": 300,
                                                   "model_batch": 32}, num_envs=4))
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 2, 32)
    act = rng.integers(0, 2, 32)
    real = {"obs": np.eye(2, dtype=np.float32)[obs], "act": act,
            "reward": (obs == act).astype(np.float64),             # r = 1 iff a = o
            "next_obs": np.eye(2, dtype=np.float32)[(obs + act) % 2],   # o' = o xor a
            "z_nb": np.zeros((32, 0), np.float32)}
    before = [p.detach().clone() for p in learner.model.encoders[0].parameters()]
    newest = [p.detach().clone() for p in learner.model.encoders[-1].parameters()]
    fit = learner.fit_model([learner._tensors(real)])
    assert fit["model_nll"] < 0.05 and fit["model_reward_mse"] < 0.01
    assert all(torch.equal(a, b) for a, b in zip(before, learner.model.encoders[0].parameters()))
    assert not all(torch.equal(a, b) for a, b in
                   zip(newest, learner.model.encoders[-1].parameters()))
    learner.model.shift()       # psi_1 <- psi_2 <- psi_3
    for a, b in zip(learner.model.encoders[1].parameters(),
                    learner.model.encoders[2].parameters()):
        assert torch.equal(a, b)


def test_mdpo_declares_its_latent_shape_and_permits_latent_only_when_sharing():
    on = MDPO(spec(discrete(3), discrete(2), {"share_latent": True, "latent_dim": 4},
                   num_envs=5, neighbours=[1, 2], n_agents=3))
    assert on.peer_kinds == {"latent"}
    assert on.peer_shapes() == {"latent": {"z": ((5, 4), "float32")}}
    off = MDPO(spec(discrete(3), discrete(2), num_envs=5, neighbours=[1, 2], n_agents=3))
    assert off.peer_kinds == frozenset() and off.peer_shapes() == {}
    with pytest.raises(LearnerConfigError, match="base"):
        MDPO(spec(discrete(3), discrete(2), {"base": "trpo"}))


# ---- checkpoints ----------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [IPPO, DPO, MDPO])
def test_checkpoint_round_trips_with_optimiser_state(cls):
    params = {"rollout": 3, "epochs": 2, "model_steps": 2, "pred_steps": 2} if cls is MDPO \
        else {"rollout": 3, "epochs": 2}
    learner = cls(spec(BOX2, BOX2, params, num_envs=2))
    rng = np.random.default_rng(1)
    for _ in range(3):
        o = rng.normal(size=(2, 2)).astype(np.float32)
        a = learner.act(o)
        learner.observe(o, a, rng.normal(size=2), o + 0.1, np.zeros(2, bool), np.zeros(2, bool))
    assert "iteration" in learner.update()
    state = learner.state_dict()
    assert any(k.startswith("opt_actor.") and k.endswith("exp_avg_sq") for k in state)
    fresh = cls(spec(BOX2, BOX2, params, num_envs=2, seed=9))
    fresh.load_state_dict(state)
    restored = fresh.state_dict()
    assert restored.keys() == state.keys()
    for key, value in state.items():
        np.testing.assert_array_equal(restored[key], value, err_msg=key)


def test_onpolicy_runs_keep_the_short_heartbeat_timeout():
    """Heartbeats flow from inside the update (keepalive), so nothing raises the timeout
    (tests/test_recovery.py checks a long update and a dead agent live)."""
    from agentd.config import resolve

    assert resolve({}, {"algo": "mdpo"}).heartbeat_timeout == 5.0
    assert resolve({}, {"algo": "dac"}).heartbeat_timeout == 5.0
    assert resolve({}, {"algo": "ippo", "heartbeat_timeout": 7.0}).heartbeat_timeout == 7.0
