"""Image observations: both cores pick their encoder from the space with one function
(``nets.obs_encoder``: rows for vectors, a small CNN on [0, 1] channels-first pixels for uint8
H x W x C images), and deep learners learn from pistonball's pixels at smoke scale."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from agentd.algorithms import load_learner_class, nets
from agentd.algorithms.base import LearnerConfigError, LearnerSpec
from agentd.envs import make_env
from agentd.launch.inprocess import make_learners, run_in_process
from protocols.spaces import box_space

PISTONBALL = "pettingzoo.butterfly.pistonball_v6:parallel_env"
IMAGE = box_space([12, 10, 3], 0, 255, "uint8")


def test_the_encoder_follows_the_space():
    onehot = nets.obs_encoder({"type": "discrete", "n": 4}, "x")
    assert (onehot.kind, onehot.width, onehot.torso()) == ("vector", 4, None)
    assert onehot.prepare(np.array([[2]])).tolist() == [[0, 0, 1, 0]]
    flat = nets.obs_encoder(box_space([2, 3], -1, 1), "x")
    assert (flat.kind, flat.width, flat.row_dtype) == ("vector", 6, np.float32)
    assert flat.prepare(np.ones((5, 2, 3), np.float64)).shape == (5, 6)
    counts = nets.obs_encoder(box_space([7], 0, 9, "uint8"), "x")      # not an image: rank 1
    assert counts.kind == "vector" and counts.prepare(np.ones((1, 7), np.uint8)).dtype == \
        np.float32
    image = nets.obs_encoder(IMAGE, "x", features=24)
    assert (image.kind, image.width, image.row_shape, image.row_dtype) == \
        ("image", 24, (12, 10, 3), np.uint8)
    assert isinstance(image.torso(), nets.ImageTorso) and image.torso() is not image.torso()
    assert image.prepare(np.zeros((2, 12, 10, 3), np.uint8)).dtype == np.uint8
    with pytest.raises(LearnerConfigError, match="x does not take image observations"):
        nets.obs_encoder(IMAGE, "x", images=False)
    with pytest.raises(LearnerConfigError, match="at most 4096"):
        nets.obs_encoder({"type": "discrete", "n": 5000}, "x")


def test_the_cnn_sees_pixels_scaled_to_unit_range_and_channels_first():
    torso = nets.ImageTorso((12, 10, 3), 8)
    seen = []
    torso.conv[0].register_forward_hook(lambda mod, inp, out: seen.append(inp[0]))
    x = np.random.default_rng(0).integers(0, 256, (2, 12, 10, 3)).astype(np.uint8)
    x[0, 0, 0] = 255
    out = torso(torch.as_tensor(x))
    assert out.shape == (2, 8) and torch.all(out >= 0)
    assert seen[0].shape == (2, 3, 12, 10) and seen[0].max().item() == 1.0
    assert torch.allclose(seen[0], torch.as_tensor(x).float().permute(0, 3, 1, 2) / 255.0)
    for shape in [(2, 2, 1), (457, 120, 3), (64, 64, 4)]:     # any size: the same width
        assert nets.ImageTorso(shape, 8)(torch.zeros(1, *shape, dtype=torch.uint8)).shape == (1, 8)


def spec(obs, act, n=1, controls=(0,)):
    return LearnerSpec(agent_id=0, n_agents=n, neighbours=[], weights={0: 1.0},
                       obs_spaces=[obs] * len(controls), act_spaces=[act] * len(controls),
                       controls=list(controls), num_envs=1, seed=0)


@pytest.mark.parametrize("algo,act,controls", [
    ("i2q-deep", {"type": "discrete", "n": 3}, (0,)),
    ("maddpg", box_space([1], -1, 1), (0, 1)),
    ("mappo", {"type": "discrete", "n": 3}, (0, 1)),
    ("mdpo", {"type": "discrete", "n": 3}, (0,)),
])
def test_learners_that_cannot_read_images_say_so(algo, act, controls):
    with pytest.raises(LearnerConfigError, match=f"{algo} does not take image observations"):
        load_learner_class(algo)(spec(IMAGE, act, len(controls), controls))


def torso_weights(net):
    return [p.detach().clone() for p in net.parameters()]


def moved(before, after):
    return any(not torch.equal(a, b) for a, b in zip(before, after))


@pytest.fixture(scope="module")
def pistonball():
    env = make_env(PISTONBALL, n_agents=3, num_envs=1, episode_len=12, seed=0,
                   env_kwargs={"n_pistons": 3, "continuous": False})
    yield env
    env.close()


def test_iql_deep_learns_from_pistonball_pixels(pistonball):
    params = {"start": 8, "batch": 4, "hidden": 16, "buffer": 32, "target_every": 5,
              "lr": 3e-3}
    learners = make_learners("iql-deep", pistonball, 3, params=params)
    lr = learners[0]
    assert isinstance(lr.q[0], nets.ImageTorso) and isinstance(lr.q_bar[0], nets.ImageTorso)
    init = torso_weights(lr.q[0])
    out = run_in_process(pistonball, learners, 20, metrics_every=1)
    losses = [s["q_loss"] for _, i, s in out.scalars if i == 0 and "q_loss" in s]
    assert len(losses) == 13 and all(np.isfinite(losses))
    assert lr.buf["s"].dtype == np.uint8 and lr.buf["s"].shape[1:] == (457, 120, 3)
    assert lr.buf["s"][:20].max() > 1                           # raw pixels are stored
    assert moved(init, torso_weights(lr.q[0]))                 # the TD gradient reaches the CNN
    # and Q fits its pixels: the learner's own TD steps on everything it stored lower the loss
    b = lr.batch(np.arange(lr.buf.size))
    y = lr.td_target(b["s2"], b["r"], b["done"])
    fit = [lr.q_step(b["s"], b["a"], y) for _ in range(30)]
    assert fit[-1] < fit[0] and min(fit[20:]) < min(fit[:10]), fit


def test_ippo_reads_pistonball_pixels_through_the_cnn(pistonball):
    params = {"rollout": 6, "epochs": 2, "hidden": 16}
    learners = make_learners("ippo", pistonball, 3, params=params)
    lr = learners[1]
    assert isinstance(lr.actor.body[0], nets.ImageTorso)
    assert isinstance(lr.critic.body[0], nets.ImageTorso)
    assert lr.store.data["obs"].dtype == np.uint8
    actor0, critic0 = torso_weights(lr.actor.body[0]), torso_weights(lr.critic.body[0])
    out = run_in_process(pistonball, learners, 12, metrics_every=1)
    updates = [s for _, i, s in out.scalars if i == 1 and "value_loss" in s]
    assert len(updates) == 2 and all(np.isfinite(u["value_loss"]) for u in updates)
    assert moved(actor0, torso_weights(lr.actor.body[0]))
    assert moved(critic0, torso_weights(lr.critic.body[0]))


@pytest.mark.parametrize("algo", ["isac", "dac-deep"])
def test_the_actor_critics_read_pistonball_pixels_through_their_own_cnns(algo):
    env = make_env(PISTONBALL, n_agents=3, num_envs=1, episode_len=12, seed=0,
                   env_kwargs={"n_pistons": 3, "continuous": True})
    try:
        params = {"start": 6, "batch": 4, "hidden": 16, "buffer": 16}
        learners = make_learners(algo, env, 3, params=params)
        lr = learners[2]
        torsos = [lr.actor.torso, lr.critic.torso, lr.target.torso]
        assert all(isinstance(t, nets.ImageTorso) for t in torsos)
        assert len({id(t) for t in torsos}) == 3               # each network owns its CNN
        before = [torso_weights(t) for t in torsos[:2]]
        out = run_in_process(env, learners, 10, metrics_every=1)
        updates = [s for _, i, s in out.scalars if i == 2 and "critic_loss" in s]
        assert len(updates) == 5 and all(np.isfinite(u["critic_loss"]) for u in updates)
        assert ("c_abs" in updates[0]) == (algo == "dac-deep")
        assert all(moved(b, torso_weights(t)) for b, t in zip(before, torsos[:2]))
        assert lr.buf["s"].dtype == np.uint8
    finally:
        env.close()
