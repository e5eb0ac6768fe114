"""The external-env matrix: real PettingZoo envs from other packages, a few steps each with
``random`` and with a learner that fits their spaces (ippo: Discrete or Box actions, any Box
or Discrete observation), and pistonball as a live 20-agent run whose images arrive as uint8."""

from __future__ import annotations

import numpy as np
import pytest

from agentd.envs import make_env
from agentd.launch.inprocess import make_learners, run_in_process
from agentd.runtime.msglog import open_log
from protocols.spaces import box_bounds, obs_dtype

MATRIX = {
    "spread-discrete": ("mpe2.simple_spread_v3:parallel_env",
                        {"N": 2, "continuous_actions": False}, 2),
    "spread-continuous": ("mpe2.simple_spread_v3:parallel_env",
                          {"N": 2, "continuous_actions": True}, 2),
    "speaker-listener": ("mpe2.simple_speaker_listener_v4:parallel_env", {}, 2),
    "pursuit": ("pettingzoo.sisl.pursuit_v5:parallel_env", {"n_pursuers": 2, "n_evaders": 2}, 2),
    "pistonball": ("pettingzoo.butterfly.pistonball_v6:parallel_env", {"n_pistons": 3}, 3),
    "knights-archers-zombies": ("pettingzoo.butterfly.knights_archers_zombies_v11:parallel_env",
                                {}, 4),
    "battle": ("magent2.environments.battle_v4:parallel_env", {"map_size": 12}, 4),
    "mamujoco-halfcheetah-2x3": ("gymnasium_robotics.mamujoco_v1:parallel_env",
                                 {"scenario": "HalfCheetah", "agent_conf": "2x3"}, 2),
}
# Small networks and a 2-step rollout: one PPO update happens within the 4 steps.
IPPO = {"hidden": 8, "layers": 1, "rollout": 2, "epochs": 1}


@pytest.mark.parametrize("algo", ["random", "ippo"])
@pytest.mark.parametrize("name", list(MATRIX))
def test_external_env_runs_a_few_steps(name, algo):
    spec, kwargs, n = MATRIX[name]
    env = make_env(spec, n_agents=n, num_envs=1, episode_len=3, seed=0, env_kwargs=kwargs)
    try:
        obs = env.reset(1)
        for space, o in zip(env.obs_spaces, obs):
            assert o.dtype == obs_dtype(space)
            if space["type"] == "box":
                low, high = box_bounds(space)
                assert np.all((o[0] >= low) & (o[0] <= high))
        learners = make_learners(algo, env, n, params=IPPO if algo == "ippo" else None)
        out = run_in_process(env, learners, steps=4, metrics_every=1)
        assert len(out.returns) == 1 and np.isfinite(out.returns[0][1])   # episode_len 3
        if algo == "ippo":
            updates = [s for _, _, s in out.scalars if s]
            assert updates and all(np.isfinite(v) for s in updates for v in s.values())
    finally:
        env.close()


def test_pistonball_runs_live_with_20_agents_and_images_arrive_as_uint8(runs, tmp_path):
    run_dir = tmp_path / "pistonball"
    done = runs.launch(run_dir, "--n", "20", "--algo", "random", "--env",
                       "pettingzoo.butterfly.pistonball_v6:parallel_env", "--steps", "3",
                       timeout=180)
    assert done.returncode == 0, done.stdout
    steps = [r.body for r in open_log(run_dir / "logs" / "agent-7.log")
             if r.direction == "in" and r.kind == "step"]
    assert len(steps) == 4                                 # the reset and 3 steps
    assert all(b["obs"].dtype == np.uint8 and b["obs"].shape == (1, 1, 457, 120, 3)
               for b in steps)


def test_knights_archers_zombies_agent_that_dies_early_stays_done_without_reward():
    env = make_env("pettingzoo.butterfly.knights_archers_zombies_v11:parallel_env",
                   n_agents=4, num_envs=1, episode_len=1000, seed=0,
                   env_kwargs={"line_death": True})
    try:
        env.reset(0)
        rng = np.random.default_rng(0)
        dead, after = None, 0
        for _ in range(400):
            res = env.step([rng.integers(6, size=1) for _ in range(4)])
            gone = (res.agent_terminated | res.agent_truncated)[:, 0]
            if dead is None and gone.any() and not gone.all():
                dead = int(np.flatnonzero(gone)[0])
                last_obs = res.final_obs[dead][0].copy()
            elif dead is not None:
                if res.terminated[0] or res.truncated[0]:
                    break
                assert res.agent_terminated[dead, 0] or res.agent_truncated[dead, 0]
                assert res.reward[dead, 0] == 0.0
                assert np.array_equal(res.final_obs[dead][0], last_obs)
                after += 1
        assert dead is not None and after > 0, "no agent died early within 400 steps"
    finally:
        env.close()
