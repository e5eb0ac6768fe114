"""The off-policy core's one replay buffer (wrap-around, seeding, snapshot round trip) and a deep
learner with its buffer through a recovery checkpoint and through its state_dict."""

from __future__ import annotations

import numpy as np
import pytest

from agentd.agent import recovery
from agentd.agent.core import AgentCore
from agentd.algorithms.offpolicy.buffer import ReplayBuffer
from agentd.launch.inprocess import build_env, make_learners, run_in_process

FIELDS = {"s": ((2,), np.float32), "a": ((), np.int64), "img": ((2, 3, 1), np.uint8)}


def rows(first: int, k: int) -> dict[str, np.ndarray]:
    """k entries numbered first.. (every field carries the number)."""
    n = np.arange(first, first + k)
    return {"s": np.stack([n, -n], 1).astype(np.float32), "a": n,
            "img": np.broadcast_to(n[:, None, None, None], (k, 2, 3, 1)).astype(np.uint8)}


def test_the_ring_wraps_around_and_overwrites_the_oldest_entries():
    buf = ReplayBuffer(5, FIELDS, rng=0)
    assert buf.size == 0
    assert buf.add(**rows(0, 3)).tolist() == [0, 1, 2]
    assert buf.add(**rows(3, 3)).tolist() == [3, 4, 0]         # the sixth entry wraps to 0
    assert buf.add(**rows(6, 1)).tolist() == [1]
    assert (buf.count, buf.size) == (7, 5)
    assert buf["a"].tolist() == [5, 6, 2, 3, 4]
    assert buf["s"][:, 1].tolist() == [-5, -6, -2, -3, -4]
    assert buf["img"].dtype == np.uint8 and buf["img"][1].max() == 6
    got = buf.get(np.array([4, 1]))
    assert got["a"].tolist() == [4, 6] and got["s"].tolist() == [[4, -4], [6, -6]]
    assert buf.skip(2).tolist() == [2, 3] and buf["a"][2] == 2    # skipped entries stay
    assert (buf.count, buf.size) == (9, 5)


def test_sampling_is_uniform_over_the_filled_entries_and_seeded():
    def filled(seed, n=7):
        buf = ReplayBuffer(10, FIELDS, rng=seed)
        buf.add(**rows(0, n))
        return buf

    a, b, other = filled(3), filled(3), filled(4)
    draws = [a.sample(64) for _ in range(3)]
    assert all(np.array_equal(x, b.sample(64)) for x in draws)          # same seed, same draws
    assert not np.array_equal(draws[0], other.sample(64))
    many = filled(5).sample(7000)
    assert many.min() == 0 and many.max() == 6                  # only filled positions
    assert np.all(np.abs(np.bincount(many) / 7000 - 1 / 7) < 0.02)
    shared = np.random.default_rng(9)
    assert np.array_equal(a.sample(5, shared), np.random.default_rng(9).integers(0, 7, 5))
    with pytest.raises(ValueError, match="empty"):
        ReplayBuffer(3, FIELDS).sample(1)


def test_a_learner_hands_its_own_generator_and_keeps_one_stream():
    rng = np.random.default_rng(1)
    buf = ReplayBuffer(4, FIELDS, rng=rng)
    buf.add(**rows(0, 4))
    assert buf.rng is rng
    want = np.random.default_rng(1)
    want.random()
    rng.random()                                        # the learner draws in between
    assert np.array_equal(buf.sample(6), want.integers(0, 4, 6))


def test_a_snapshot_round_trip_restores_entries_position_and_draws():
    buf = ReplayBuffer(6, FIELDS, rng=2)
    buf.add(**rows(0, 8))                               # wrapped
    buf.sample(3)
    state = buf.state_dict()
    assert len(state["buf.a"]) == 6 and int(state["buf.count"]) == 8
    back = ReplayBuffer(6, FIELDS, rng=99)
    back.load_state_dict(state)
    for name in FIELDS:
        assert np.array_equal(back[name], buf[name]), name
    assert back.count == 8 and np.array_equal(back.sample(20), buf.sample(20))
    assert back.add(**rows(8, 1)).tolist() == buf.add(**rows(8, 1)).tolist() == [2]
    part = ReplayBuffer(4, FIELDS)
    part.add(**rows(0, 2))
    bigger = ReplayBuffer(9, FIELDS)
    bigger.load_state_dict(part.state_dict())           # partly filled: the rest stays empty
    assert (bigger.count, bigger.size) == (2, 2) and bigger["a"][:3].tolist() == [0, 1, 0]
    with pytest.raises(ValueError, match="capacity is 5"):
        ReplayBuffer(5, FIELDS).load_state_dict(state)
    with pytest.raises(KeyError, match="img"):
        ReplayBuffer(6, FIELDS).load_state_dict({k: v for k, v in state.items()
                                                 if k != "buf.img"})
    with pytest.raises(ValueError, match="shape"):
        ReplayBuffer(6, {**FIELDS, "s": ((3,), np.float32)}).load_state_dict(state)
    with pytest.raises(ValueError, match="fields"):
        buf.add(s=rows(0, 1)["s"])


# -- deep learners: buffer and RNGs survive a recovery checkpoint and a state_dict ---------------
DEEP = {
    "iql-deep": ("random-mdp", "local", {"start": 8, "batch": 4, "hidden": 8, "buffer": 16}),
    "isac": ("spread", "state", {"start": 8, "batch": 4, "hidden": 8, "buffer": 16}),
    "maddpg": ("spread", "local", {"start": 8, "batch": 4, "hidden": 8, "buffer": 16}),
}


def _learners(algo):
    env_id, obs, params = DEEP[algo]
    env = build_env(env_id, 2, episode_len=5, seed=1, obs_mode=obs)
    return env, make_learners(algo, env, 2, seed=3, params=params)


@pytest.mark.parametrize("algo", sorted(DEEP))
def test_a_deep_learner_restored_from_its_state_dict_goes_on_identically(algo):
    env, learners = _learners(algo)
    run_in_process(env, learners, 20)                   # buffer 16: wrapped, updates ran
    saved = learners[0]
    state = saved.state_dict()
    assert int(state["buf.count"]) == 20 and state["steps"] == 20
    fresh = _learners(algo)[1][0]
    fresh.load_state_dict(state)
    obs = env.reset(7)
    o = obs[0] if not saved.centralised else np.stack(obs, 1)
    for _ in range(3):
        assert np.array_equal(saved.act(o), fresh.act(o))
    for lr in (saved, fresh):
        lr.observe(o, lr.act(o), np.zeros(lr.spec.num_envs), o, np.zeros(1, bool),
                   np.zeros(1, bool))
    assert saved.update().keys() == fresh.update().keys()
    after, again = saved.state_dict(), fresh.state_dict()
    assert after.keys() == again.keys()
    assert all(np.array_equal(after[k], again[k]) for k in after), algo
    env.close()


def test_a_deep_learner_and_its_buffer_survive_a_recovery_checkpoint():
    """iql-deep in an AgentCore: snapshot, go on, restore, go on again -- the same actions,
    buffer, networks and draws."""
    env, learners = _learners("iql-deep")
    run_in_process(env, learners, 12)
    info = {"config": {"episode_len": 5}, "controls": [0]}
    core = AgentCore(info, learners[0])
    saved = recovery.snapshot(core)
    back = recovery.load(saved, AgentCore(info, _learners("iql-deep")[1][0])).learner
    assert back is not learners[0] and back.buf.count == learners[0].buf.count == 12
    before = learners[0].state_dict()
    assert all(np.array_equal(before[k], back.state_dict()[k]) for k in before)
    obs = env.reset(5)[0]
    taken = []
    for lr in (learners[0], back):
        taken.append([])
        for _ in range(6):
            taken[-1].append(lr.act(obs))
            lr.observe(obs, taken[-1][-1], np.ones(1), obs, np.zeros(1, bool), np.zeros(1, bool))
            lr.update()
    assert np.array_equal(taken[0], taken[1])
    assert back.updates == learners[0].updates > 0
    after, again = learners[0].state_dict(), back.state_dict()
    assert all(np.array_equal(after[k], again[k]) for k in after)
    env.close()
