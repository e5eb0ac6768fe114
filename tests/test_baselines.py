"""The seed-001 baselines on the on-policy core, on hand-checkable cases: COMA's counterfactual
baseline, HAPPO's compound factor against a direct product and its message over a real socket
and guard, MAT's autoregressive order and teacher forcing, the centralised mode's seating, the
non-private labels. (Each learner's live run, replay and checkpoint: tests/test_replay.py.)"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
import zmq

from agentd.algorithms import load_learner_class
from agentd.algorithms.base import LearnerConfigError, LearnerSpec
from agentd.algorithms.onpolicy.happo import HAPPO, happo_order
from agentd.algorithms.onpolicy.losses import a2c_loss, coma_advantage
from agentd.config import RunConfig, seating
from agentd.launch.inprocess import build_env, make_learners, run_in_process
from agentd.runtime.msglog import MessageLog, open_log
from agentd.runtime.transport import Transport
from protocols import Codec, Guard, encode, lookup, peer_identity
from protocols.errors import SchemaMismatch

SPREAD = "mpe2.simple_spread_v3:parallel_env"
NEW = ["ia2c", "maa2c", "mappo", "coma", "happo", "mat"]


def discrete(n):
    return {"type": "discrete", "n": n}


def central_spec(m=2, obs=3, actions=2, params=None, num_envs=2):
    return LearnerSpec(agent_id=0, n_agents=1, neighbours=[], weights={0: 1.0},
                       obs_spaces=[discrete(obs)] * m, act_spaces=[discrete(actions)] * m,
                       controls=list(range(m)), num_envs=num_envs, seed=0,
                       params=dict(params or {}))


# ---- COMA -----------------------------------------------------------------------------------

def test_coma_counterfactual_baseline_by_hand_two_agents_two_actions():
    # q[i, u'] = Q(s, (u^{-i}, u')); the taken joint action u = (1, 0)
    q = torch.tensor([[1.0, 3.0], [2.0, 0.0]])
    pi = torch.tensor([[0.25, 0.75], [0.5, 0.5]])
    adv = coma_advantage(q, pi, torch.tensor([1, 0]))
    # A^0 = Q(s, u) - (0.25 * 1 + 0.75 * 3) = 3 - 2.5 = 0.5;  A^1 = 2 - (0.5 * 2 + 0.5 * 0) = 1
    assert adv.tolist() == pytest.approx([0.5, 1.0])
    # a deterministic policy on the taken action: no advantage at all
    assert coma_advantage(q, torch.tensor([[0.0, 1.0], [1.0, 0.0]]),
                          torch.tensor([1, 0])).tolist() == [0.0, 0.0]
    logp = torch.log(torch.tensor([0.75, 0.5]))
    assert a2c_loss(logp, adv).item() == pytest.approx(-(0.5 * logp[0] + 1.0 * logp[1]) / 2)


def test_coma_critic_holds_the_others_actions_fixed_and_ignores_its_own():
    coma = load_learner_class("coma")(central_spec())
    x = torch.as_tensor(coma.encode(np.array([[0, 2], [1, 1]])))
    a = torch.tensor([[0, 1], [1, 1]])
    q = coma.critic(x, a)
    assert q.shape == (2, 2, 2)                          # (copies, agents, own actions)
    flip_own0 = coma.critic(x, torch.tensor([[1, 1], [0, 1]]))
    assert torch.equal(flip_own0[:, 0], q[:, 0])         # agent 0's row: own action not input
    assert not torch.equal(flip_own0[:, 1], q[:, 1])     # agent 1 sees agent 0's action
    values = coma.q_values(x.numpy(), a)                 # Q(s, u) of the taken actions
    assert values.shape == (2, 2)


def test_coma_critic_steps_once_per_time_step_last_first_then_the_actors_once():
    rollout, k = 5, 3
    coma = load_learner_class("coma")(central_spec(params={"rollout": rollout}, num_envs=k))
    seen, actor_steps = [], []
    critic_values = coma.critic_values
    coma.critic_values = lambda mb: (seen.append(mb["obs"].clone()), critic_values(mb))[1]
    step = coma.opt_actor.step
    coma.opt_actor.step = lambda: (actor_steps.append(1), step())[1]
    rng = np.random.default_rng(0)
    obs, by_time = rng.integers(0, 3, (k, 2)), []
    for t in range(rollout):
        by_time.append(sorted(map(tuple, coma.encode(obs).reshape(k, -1).tolist())))
        nxt = rng.integers(0, 3, (k, 2))
        coma.act(obs)
        coma.observe(obs, None, np.full((k, 2), float(t)), nxt, np.zeros(k, bool),
                     np.zeros(k, bool))
        obs = nxt
    scalars = coma.update()
    assert scalars["critic_steps"] == rollout and len(actor_steps) == 1
    # one critic step per time step, last first, each on that step's k rows
    assert [sorted(map(tuple, x.reshape(k, -1).tolist())) for x in seen] == by_time[::-1]


# ---- HAPPO ----------------------------------------------------------------------------------

def happo_iteration(rollout=20):
    """Three HAPPO agents on simple_spread, in one process, for exactly one iteration; returns
    the learners, what each trained on (batch) and the factors they sent."""
    env = build_env(SPREAD, 3, num_envs=2, episode_len=25, seed=3)
    learners = make_learners("happo", env, 3, topology="complete", seed=3,
                             params={"rollout": rollout, "epochs": 3})
    batches, sent = {}, {}
    for lr in learners:
        def record(batch, lr=lr, train=lr.update_on):
            batches[lr.spec.agent_id] = {k: v.copy() for k, v in batch.items()}
            return train(batch)

        def outbox(lr=lr, emit=lr.outbox):
            out = emit()
            for m in out:
                sent[lr.spec.agent_id] = (m.dst, m.body["factor"])
            return out

        lr.update_on, lr.outbox = record, outbox
    run_in_process(env, learners, rollout, reset_seed=3)
    env.close()
    return learners, batches, sent


def ratio(learner, batch):
    """pi_new(a|o) / pi_old(a|o) of one agent over its batch, after its update."""
    with torch.no_grad():
        dist = learner.actor(torch.as_tensor(batch["obs"]))
        logp = learner.head.log_prob(dist, torch.as_tensor(batch["act"])).numpy()
    return np.exp(logp.astype(np.float64) - batch["logp"])


def test_happo_compound_factor_across_three_agents_is_the_direct_product():
    learners, batches, sent = happo_iteration()
    order = happo_order(3, 0, 3)
    first, second, last = order
    assert set(sent) == {first, second}                   # the last agent sends nothing
    assert sent[first][0] == second and sent[second][0] == last
    r = {i: ratio(learners[i], batches[i]) for i in order}
    assert np.all(batches[first]["factor"] == 1.0)        # the first agent's M is 1
    np.testing.assert_allclose(batches[second]["factor"], r[first], rtol=1e-5)
    np.testing.assert_allclose(batches[last]["factor"], r[first] * r[second], rtol=1e-5)
    np.testing.assert_array_equal(sent[second][1], batches[last]["factor"].astype(np.float32))
    assert not np.allclose(r[first] * r[second], 1.0)     # the actors did move


def test_happo_agents_hold_the_same_critic_and_advantage_from_the_joint_observation():
    learners, batches, _ = happo_iteration()
    states = [lr.state_dict() for lr in learners]
    critic = [k for k in states[0] if k.startswith("critic")]
    assert critic and all(np.array_equal(states[0][k], s[k]) for s in states[1:] for k in critic)
    assert all(np.array_equal(batches[0]["adv"], b["adv"]) for b in batches.values())
    assert batches[0]["obs"].shape[1:] == (3, 18)         # each row: all three observations
    actor = [k for k in states[0] if k.startswith("actor.")]
    assert not np.array_equal(states[0][actor[0]], states[1][actor[0]])   # own actors


def test_happo_factor_schema_and_guard_reject_wrong_bodies_over_a_real_socket(tmp_path):
    """Agent 1 (a real HAPPO learner behind a real transport and guard, rollout 1, K = 2, so
    a factor is float32 (2,)) receives from agent 0 over tcp: a factor of the wrong shape, of
    the wrong dtype, with a NaN, of the wrong rank — each rejected, counted and logged — then
    the right one, which its learner takes to finish its iteration."""
    kind = lookup("happo_factor")
    with pytest.raises(SchemaMismatch):
        kind.check_body({"it": 0, "factor": np.ones(2, np.int64)})
    learner = HAPPO(LearnerSpec(
        agent_id=1, n_agents=3, neighbours=[0, 2], weights={0: 1 / 3, 1: 1 / 3, 2: 1 / 3},
        obs_spaces=[discrete(3)] * 3, act_spaces=[discrete(2)], controls=[1], view=[0, 1, 2],
        num_envs=2, seed=0, params={"rollout": 1, "epochs": 1}, shared_seed=0))
    assert happo_order(0, 0, 3)[:2] == [0, 1]            # agent 0 comes right before agent 1
    assert learner.peer_shapes() == {"happo_factor": {"factor": ((2,), "float32")}}
    log = MessageLog("agent 1", tmp_path / "agent-1.log")
    receiver = Transport(1, Guard(1, [0, 2], learner.peer_kinds, 1 << 20,
                                  learner.peer_shapes()), log)
    ctx = zmq.Context()
    try:
        link = receiver.bind_router("tcp://127.0.0.1:*", "peer")
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.IDENTITY, peer_identity(0))
        sock.setsockopt(zmq.LINGER, 1000)
        sock.connect(link.endpoint)
        good = np.array([1.5, 0.5], np.float32)
        bodies = [np.ones(3, np.float32), np.ones(2, np.float64), np.array([1, np.nan], np.float32),
                  np.ones((2, 1), np.float32), good]
        codec = Codec()
        for q, factor in enumerate(bodies):
            sock.send(encode(codec, "happo_factor", 0, 1, 1, q, {"it": 0, "factor": factor}))
        obs = np.array([[0, 1, 2], [2, 1, 0]])
        learner.act(obs)
        learner.observe(obs, None, np.zeros((2, 3)), obs, np.zeros(2, bool), np.zeros(2, bool))
        assert learner.awaiting() == {0} and learner.outbox() == []
        got, deadline = [], time.monotonic() + 20
        while not got and time.monotonic() < deadline:
            if receiver.poll(200):
                got += receiver.recv_all(link)
        assert [m.kind for m, _ in got] == ["happo_factor"]
        learner.inbox(0, "happo_factor", got[0][0].body)
        assert learner.awaiting() == frozenset()
        out = learner.outbox()                            # trains, passes M * ratio to agent 2
        assert [(m.kind, m.dst) for m in out] == [("happo_factor", 2)]
        assert learner.update()["factor_mean"] == pytest.approx(1.0)
        assert dict(receiver.stats["peer"].rejected) == {"schema_mismatch": 4}
        receiver.flush()
        rejected = [r for r in open_log(tmp_path / "agent-1.log") if r.direction == "rej"]
        assert [r.reason for r in rejected] == ["schema_mismatch"] * 4
    finally:
        sock.close()
        ctx.term()
        receiver.close()


def test_happo_ignores_a_factor_from_anyone_but_its_predecessor_and_needs_a_complete_graph():
    learners, _, _ = happo_iteration(rollout=5)
    lr = learners[happo_order(3, 1, 3)[1]]               # second in iteration 1's order
    wrong = happo_order(3, 1, 3)[2]
    lr.inbox(wrong, "happo_factor", {"it": 1, "factor": np.ones(10, np.float32)})
    assert lr.ignored == 1 and 1 not in lr.factors
    with pytest.raises(LearnerConfigError, match="--topology complete"):
        HAPPO.check_run({"topology": "ring", "n": 4})
    with pytest.raises(LearnerConfigError, match="every other agent as a neighbour"):
        HAPPO(LearnerSpec(agent_id=0, n_agents=4, neighbours=[1, 3], weights={0: 1.0},
                          obs_spaces=[discrete(3)] * 4, act_spaces=[discrete(2)], controls=[0],
                          view=[0, 1, 2, 3], num_envs=1, seed=0))


# ---- MAT ------------------------------------------------------------------------------------

def test_mat_samples_agent_by_agent_and_teacher_forcing_gives_the_same_logits():
    mat = load_learner_class("mat")(central_spec(m=3, obs=4, actions=3, num_envs=5))
    net = mat.mat
    x = torch.as_tensor(mat.encode(np.array([[0, 1, 2], [3, 3, 3], [1, 0, 1], [2, 2, 0],
                                             [0, 0, 0]])))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        act, logits = net.sample(x, lambda lg: mat.head.sample(lg, gen))
        forced = net(x, act)
    torch.testing.assert_close(forced, logits)            # teacher forcing = the sampled pass
    with torch.no_grad():
        for j in range(3):                                 # change agent j's action only
            other = act.clone()
            other[:, j] = (other[:, j] + 1) % 3
            changed = net(x, other)
            torch.testing.assert_close(changed[:, :j + 1], forced[:, :j + 1])   # agents <= j
            if j < 2:
                assert not torch.allclose(changed[:, j + 1:], forced[:, j + 1:])  # agents > j


# ---- centralised mode, labels ---------------------------------------------------------------

def test_one_centralised_mode_seats_every_centralised_learner():
    everyone = [0, 1, 2]
    for algo in ("maddpg", "central-q", "maa2c", "mappo", "coma", "mat"):
        assert seating(RunConfig(algo=algo, n=3)) == ({0: everyone}, {0: everyone}), algo
    assert seating(RunConfig(algo="happo", n=3)) == ({i: [i] for i in everyone},
                                                     {i: everyone for i in everyone})
    for algo in ("ia2c", "ippo", "dpo"):
        assert seating(RunConfig(algo=algo, n=3)) == ({i: [i] for i in everyone},) * 2, algo


def test_non_private_labels():
    for algo in NEW:
        reason = load_learner_class(algo).non_private_reason({})
        assert (reason == "") is (algo == "ia2c"), algo
    assert "happo_factor" in load_learner_class("happo").non_private_reason({})


@pytest.mark.parametrize("algo", ["maa2c", "mappo", "coma", "mat"])
def test_centralised_learners_act_for_all_agents_and_train(algo):
    env = build_env(SPREAD, 3, num_envs=2, episode_len=25, seed=0)
    [learner] = make_learners(algo, env, 3, seed=0, params={"rollout": 10, "epochs": 2})
    res = run_in_process(env, [learner], 20, metrics_every=10)
    env.close()
    scalars = [s for _, _, s in res.scalars if "policy_loss" in s]
    assert len(scalars) == 2 and all(np.isfinite(s["policy_loss"]) for s in scalars)
    assert learner.store.data["act"].shape == (10, 2, 3)
