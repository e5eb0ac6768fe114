"""Spaces on the wire (compact, dtype kept, flattened kinds) and agents that finish early."""

from __future__ import annotations

import numpy as np
import pytest

from agentd.algorithms.base import LearnerSpec
from agentd.algorithms.tabular.random_policy import RandomPolicy
from agentd.envs import make_env
from agentd.envs.base import EnvError
from agentd.launch.inprocess import run_in_process
from protocols.codec import Codec
from protocols.spaces import box_bounds, box_space


def toy(obs: str = "box", num_envs: int = 2, episode_len: int = 50, **kwargs):
    return make_env("pz_toy:parallel_env", n_agents=3, num_envs=num_envs,
                    episode_len=episode_len, seed=0, env_kwargs={"obs": obs, **kwargs})


def test_uniform_bounds_are_one_number_and_mixed_bounds_an_array():
    image = box_space([457, 120, 3], 0, 255, "uint8")
    assert image == {"type": "box", "shape": [457, 120, 3], "low": 0.0, "high": 255.0,
                     "dtype": "uint8"}
    assert len(Codec().pack(image)) < 100       # per-element lists were ~59 MB
    mixed = box_space([3], [0.0, -1.0, -np.inf], np.inf)
    assert isinstance(mixed["low"], np.ndarray) and mixed["high"] == np.inf
    back = Codec.unpack(Codec().pack(mixed))
    low, high = box_bounds(back)
    assert low.tolist() == [0.0, -1.0, -np.inf] and high.shape == (3,)
    # a run written before scalar bounds (per-element lists) still reads
    assert box_bounds({"shape": [2, 2], "low": [0, 1, 2, 3], "high": 9})[0].shape == (2, 2)


def test_pistonball_images_stay_uint8_and_describe_small():
    env = make_env("pettingzoo.butterfly.pistonball_v6:parallel_env", n_agents=20,
                   num_envs=1, episode_len=5, seed=0, env_kwargs={})
    try:
        obs_space = env.obs_spaces[0]
        assert obs_space["dtype"] == "uint8" and obs_space["low"] == 0.0
        hello = Codec().pack({"obs": env.obs_spaces, "act": env.act_spaces})
        assert len(hello) < 10_000
        obs = env.reset(0)
        assert obs[0].dtype == np.uint8 and obs[0].shape == (1, 457, 120, 3)
        res = env.step([np.zeros((1, 1), np.float32)] * 20)
        assert res.obs[3].dtype == np.uint8 and res.final_obs[3].dtype == np.uint8
    finally:
        env.close()


@pytest.mark.parametrize(("kind", "shape", "dtype", "first"), [
    ("image", (4, 5, 3), np.uint8, 0),
    ("multibinary", (4,), np.int8, 0),
    ("multidiscrete", (2,), np.int64, 0),
    ("dict", (5,), np.float64, 1.0),     # {"id": one-hot of 3, "pos": 2}, keys sorted
    ("tuple", (4,), np.float64, 1.0),    # (one-hot of 2, box of 2)
])
def test_observation_spaces_are_carried_or_flattened(kind, shape, dtype, first):
    env = toy(kind)
    space = env.obs_spaces[0]
    assert space["type"] == "box" and tuple(space["shape"]) == shape
    obs = env.reset(0)[1]
    assert obs.dtype == dtype and obs.shape == (2, *shape)
    assert obs[0].ravel()[0] == first
    low, high = box_bounds(space)
    res = env.step([np.zeros(2, np.int64)] * 3)
    assert np.all(res.obs[2] >= low) and np.all(res.obs[2] <= high)


def test_an_agent_that_finishes_early_leaves_the_others_playing():
    env = toy("box", num_envs=2, steps=4, a0_steps=2)
    env.reset(0)
    act = [np.zeros(2, np.int64)] * 3
    seen = [env.step(act) for _ in range(4)]
    a0_term = [r.agent_terminated[0].tolist() for r in seen]
    assert a0_term == [[False] * 2, [True] * 2, [True] * 2, [True] * 2]
    assert [r.reward[0, 0] for r in seen] == [1.0, 1.0, 0.0, 0.0]   # none after it finished
    assert [r.reward[1, 0] for r in seen] == [1.0] * 4
    assert [bool(r.terminated[0]) for r in seen] == [False, False, False, True]
    # a0's final observation stays its last one until the copy resets
    assert seen[2].final_obs[0][0].tolist() == [2.0, 2.0]
    assert seen[3].obs[1][0].tolist() == [0.0, 0.0]          # copy reset after step 4
    assert not seen[3].agent_truncated.any()


class Recorder(RandomPolicy):
    """The random policy, keeping what the agent loop hands its learner."""

    def observe(self, obs, action, reward, next_obs, terminated, truncated) -> None:
        self.seen = [*getattr(self, "seen", []), (reward.copy(), next_obs.copy(),
                                                    terminated.copy(), truncated.copy())]


def test_the_learner_of_an_early_finisher_sees_a_terminal_transition():
    env = toy("box", num_envs=1, steps=4, a0_steps=2)
    learners = [Recorder(LearnerSpec(agent_id=i, n_agents=3, neighbours=[], weights={i: 1.0},
                                     obs_spaces=[env.obs_spaces[i]],
                                     act_spaces=[env.act_spaces[i]], controls=[i], num_envs=1,
                                     seed=i)) for i in range(3)]
    run_in_process(env, learners, steps=4)
    a0 = learners[0].seen
    assert [bool(t[2][0]) for t in a0] == [False, True, True, True]
    assert [float(t[0][0]) for t in a0] == [1.0, 1.0, 0.0, 0.0]
    assert a0[1][1][0].tolist() == [2.0, 2.0]       # s' of its terminal transition
    assert [bool(t[2][0]) for t in learners[1].seen] == [False, False, False, True]


def test_a_space_that_cannot_be_carried_names_the_agent():
    from gymnasium import spaces

    from agentd.envs.pz_spaces import describe_space

    with pytest.raises(EnvError, match="agent a0: unsupported action space MultiBinary"):
        describe_space(spaces.MultiBinary(3), "a0", "action")
    with pytest.raises(EnvError, match="agent a1: Box observation space of dtype bool"):
        describe_space(spaces.Box(0, 1, (2,), bool), "a1")


def test_live_run_gives_an_early_finisher_its_own_done_flags(runs, tmp_path):
    import os
    from pathlib import Path

    from agentd.runtime.msglog import open_log

    tests = str(Path(__file__).parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")])}
    run_dir = tmp_path / "run"
    proc = runs.start(["launch", "--run-dir", str(run_dir), "--quiet", "--n", "3", "--algo",
                       "random", "--env", "pz_toy:parallel_env", "--env-arg", "steps=4",
                       "--env-arg", "a0_steps=2", "--steps", "5"], run_dir, env=env)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out.decode()
    flags = {}
    for i in range(3):
        records = list(open_log(run_dir / "logs" / f"agent-{i}.log"))
        welcome = next(r.body for r in records if r.kind == "welcome")
        steps = [r.body for r in records if r.direction == "in" and r.kind == "step"][1:]
        flags[welcome["info"]["controls"][0]] = (
            [bool(b["terminated"][0]) for b in steps], [float(b["reward"][0, 0]) for b in steps])
    assert flags[0] == ([False, True, True, True, False], [1.0, 1.0, 0.0, 0.0, 1.0])
    assert flags[1] == ([False, False, False, True, False], [1.0] * 5)
