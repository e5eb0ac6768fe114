"""Act-ahead: the act of a step leaves before the update of the previous one; live runs with it
replay exactly; the config option follows each learner's ``act_ahead``."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import read_json

from agentd.agent.core import AgentCore, drive
from agentd.algorithms.base import Learner, LearnerSpec, Outgoing
from agentd.config import ConfigError, resolve
from agentd.runtime.msglog import open_log
from agentd.tools.replay import compare_state, replay

BOX = {"type": "box", "shape": [2], "low": -1.0, "high": 1.0, "dtype": "float32"}


class Recording(Learner):
    """Records every hook call; waits for one message from neighbour 1 per learned step."""

    act_ahead = True
    act_ahead_why = "test learner"

    def __init__(self, spec: LearnerSpec) -> None:
        super().__init__(spec)
        self.calls: list[str] = []
        self.waiting: frozenset[int] = frozenset()

    def act(self, obs):
        self.calls.append("act")
        return np.zeros((len(obs), 2), np.float32)

    def observe(self, obs, action, reward, next_obs, terminated, truncated):
        self.calls.append("observe")
        self.waiting = frozenset({1})

    def outbox(self):
        self.calls.append("outbox")
        return [Outgoing("x", 1, {})] if self.waiting else []

    def inbox(self, src, kind, body):
        self.calls.append("inbox")
        self.waiting = frozenset()

    def awaiting(self):
        return self.waiting

    def update(self):
        self.calls.append("update")
        return {}


def _core(act_ahead: str) -> tuple[AgentCore, Recording]:
    learner = Recording(LearnerSpec(agent_id=0, n_agents=2, neighbours=[1],
                                    weights={0: 0.5, 1: 0.5}, obs_spaces=[BOX], act_spaces=[BOX],
                                    controls=[0], num_envs=1, seed=0))
    info = {"config": {"episode_len": 100, "act_ahead": act_ahead}, "controls": [0]}
    return AgentCore(info, learner), learner


def _body(t: int, last: bool = False) -> dict:
    z = np.zeros((1, 1, 2), np.float32)
    return {"t": t, "obs": z, "final_obs": z, "reward": np.zeros((1, 1)),
            "terminated": np.zeros(1, bool), "truncated": np.zeros(1, bool), "last": last}


def test_the_act_is_emitted_and_the_core_paused_before_the_update_runs():
    core, learner = _core("on")
    assert [e.what for e in core.on_step(_body(0))] == ["act"] and not core.paused
    effects = core.on_step(_body(1))
    assert [e.what for e in effects] == ["act", "peer"] and effects[0].step == 1
    assert core.paused and learner.calls[-3:] == ["observe", "act", "outbox"]
    assert "update" not in learner.calls    # the caller sends the act before this happens
    assert core.resume() == [] and core.waiting() == {1}    # now it waits for the neighbour
    # the env server answers step 1's act before the update of step 1 has run: held
    assert core.on_step(_body(2)) == [] and core.early_replies == 1
    assert learner.calls.count("observe") == 1
    after = core.on_peer(1, "x", {})
    assert learner.calls[-3:] == ["inbox", "outbox", "update"] and after == [] and core.paused
    effects = core.resume()     # the held reply: observed (after the update), acted upon
    assert [e.what for e in effects] == ["act", "peer"] and effects[0].step == 2
    assert learner.calls[-3:] == ["observe", "act", "outbox"]
    core.resume()
    core.on_peer(1, "x", {})
    done: list = []
    drive(core, core.on_step(_body(3, last=True)), done.extend)
    drive(core, core.on_peer(1, "x", {}), done.extend)
    assert [e.what for e in done][-1] == "finished" and "act" not in [e.what for e in done]
    assert core.finished and learner.calls[-1] == "update"


def test_without_act_ahead_the_update_comes_before_the_act():
    core, learner = _core("off")
    core.on_step(_body(0))
    assert [e.what for e in core.on_step(_body(1))] == ["peer"] and not core.paused
    effects = core.on_peer(1, "x", {})
    assert [e.what for e in effects] == ["act"]
    assert learner.calls[-4:] == ["inbox", "outbox", "update", "act"]


def test_feeding_a_paused_core_is_refused():
    core, _ = _core("on")
    core.on_step(_body(0))
    core.on_step(_body(1))
    with pytest.raises(AssertionError):
        core.on_peer(1, "x", {})


@pytest.mark.parametrize(("algo", "params", "want"), [
    ("isac", {}, "on"), ("dac-deep", {}, "on"), ("iql-deep", {}, "on"), ("dac", {}, "off"),
    ("ma2ql-deep", {}, "on"), ("i2q-deep", {}, "on"), ("ma2ql", {}, "off"),
    ("ippo", {}, "off"), ("dac-deep", {"pr_weight": 0.5}, "off")])
def test_auto_resolves_by_the_learner(algo, params, want):
    env = "spread" if algo in ("isac", "dac-deep") else "random-mdp"
    c = resolve({}, {"algo": algo, "env": env, "params": params})
    assert c.act_ahead == want


@pytest.mark.parametrize(("algo", "params"), [("ippo", {}), ("dac", {}),
                                              ("dac-deep", {"pr_weight": 0.5})])
def test_on_for_a_learner_that_does_not_allow_it_is_a_config_error(algo, params):
    env = "spread" if algo == "dac-deep" else "random-mdp"
    with pytest.raises(ConfigError, match="act_ahead"):
        resolve({}, {"algo": algo, "env": env, "params": params, "act_ahead": "on"})
    with pytest.raises(ConfigError, match="act_ahead"):
        resolve({}, {"algo": "isac", "env": "spread", "act_ahead": "sometimes"})


def _early_in_log(path) -> int:
    """Step replies recorded before a consensus message of the previous step arrived: the env
    had stepped on this agent's act while its update of that step could not yet have run."""
    last_step, early = -1, 0
    for r in open_log(path):
        if r.header is None or r.direction != "in":
            continue
        if r.kind == "step":
            last_step = r.header["t"]
        elif r.kind == "consensus" and r.header["t"] < last_step:
            early += 1
    return early


def test_a_live_act_ahead_run_steps_the_env_during_updates_and_replays_exactly(runs, tmp_path):
    run_dir = tmp_path / "ahead"
    res = runs.launch(run_dir, "--algo", "dac-deep", "--env", "spread", "--n", "3",
                      "--steps", "150", "--seed", "2", "--param", "start=16",
                      "--param", "batch=16", "--param", "hidden=16", "--param", "rounds=2")
    assert res.returncode == 0, res.stdout
    assert 'act_ahead = "on"' in (run_dir / "config.toml").read_text()
    summary = read_json(run_dir / "summary.json")
    agents = summary["agents"]
    assert all(a["act_ahead"] for a in agents.values())
    # the env server answered before the agent's update had run, seen by the core and in the
    # logs' order (timing decides how often; with a 3 ms update, most steps)
    assert sum(a["early_replies"] for a in agents.values()) > 0
    assert sum(_early_in_log(run_dir / "logs" / f"agent-{i}.log") for i in range(3)) > 0
    for agent in range(3):
        rep = replay(run_dir, agent)
        assert rep.steps == 150 and rep.actions_compared == 150
        assert rep.first_divergence is None and rep.forced_steps == 0
        same = compare_state(rep.state, run_dir / "checkpoints" / f"agent-{agent}.npz")
        assert all(same.values())


def test_with_act_ahead_off_no_reply_comes_early(runs, tmp_path):
    run_dir = tmp_path / "off"
    res = runs.launch(run_dir, "--algo", "dac-deep", "--env", "spread", "--n", "3",
                      "--steps", "80", "--seed", "2", "--param", "start=16",
                      "--param", "batch=16", "--param", "hidden=16", "--param", "rounds=2",
                      "--act-ahead", "off")
    assert res.returncode == 0, res.stdout
    agents = read_json(run_dir / "summary.json")["agents"]
    assert not any(a["act_ahead"] for a in agents.values())
    assert sum(a["early_replies"] for a in agents.values()) == 0
    assert sum(_early_in_log(run_dir / "logs" / f"agent-{i}.log") for i in range(3)) == 0
    assert replay(run_dir, 0).first_divergence is None


@pytest.mark.parametrize("algo", ["dac-deep", "isac"])
def test_a_restored_act_ahead_snapshot_continues_exactly_like_the_original(algo):
    """Recovery snapshots of act-ahead cores (taken mid-run, as the live agent takes them)
    restore to the same actions and final state."""
    from test_recovery import _drive

    from agentd.agent import recovery
    from agentd.launch.inprocess import _body as step_body
    from agentd.launch.inprocess import build_env, make_learners

    env = build_env("spread", 2, episode_len=5, seed=1, obs_mode="state")
    params = {"batch": 8, "start": 8, "hidden": 8, "buffer": 64}

    def build():
        return [AgentCore({"config": {"episode_len": 5, "act_ahead": "on"}, "controls": [i]},
                          lr) for i, lr in enumerate(make_learners(algo, env, 2, seed=4,
                                                                   params=params))]

    cores = build()
    obs = env.reset(2)
    flags = np.zeros(1, dtype=bool)
    bodies = [step_body(0, obs, obs, np.zeros((2, 1)), flags, flags, False, [i])
              for i in range(2)]
    bodies = _drive(cores, env, bodies, 13)[1][-1]
    saved = [recovery.snapshot(c) for c in cores]
    first, fed = _drive(cores, env, bodies, 11)
    states = [c.learner.state_dict() for c in cores]
    again = [recovery.load(s, f) for s, f in zip(saved, build())]
    assert all(c.act_ahead for c in again)
    second, _ = _drive(again, None, bodies, 11, fed=fed)
    assert all(np.array_equal(a, b) for x, y in zip(first, second) for a, b in zip(x, y))
    for before, core in zip(states, again):
        after = core.learner.state_dict()
        assert all(np.array_equal(before[k], after[k]) for k in before)


def test_auto_is_off_with_a_peer_timeout_and_on_stays_allowed():
    c = resolve({}, {"algo": "dac-deep", "env": "spread", "peer_timeout": 0.5})
    assert c.act_ahead == "off"
    c = resolve({}, {"algo": "dac-deep", "env": "spread", "peer_timeout": 0.5,
                     "act_ahead": "on"})
    assert c.act_ahead == "on"
