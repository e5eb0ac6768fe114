"""The run survives its coordinator: the data plane steps through its outage, a coordinator
resumed from its journal takes the run back and counts it once, and a coordinator that never
comes back ends every process after --coordinator-timeout with a named error. Real
processes, real sockets, tiny budgets."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from conftest import is_agentd_process, read_json, wait_for

from agentd.runtime.msglog import open_log
from agentd.tools.audit import audit_run
from agentd.tools.replay import compare_state, replay

N, STEPS, EP = 3, 6000, 50
RUN = ["--n", str(N), "--steps", str(STEPS), "--episode-len", str(EP), "--seed", "5",
       "--heartbeat-timeout", "2"]


def _start_by_hand(runs, run_dir, *extra):
    """A coordinator, an env server and N agents, each started on its own (as on a LAN)."""
    coord = runs.start(["coordinator", "--run-dir", str(run_dir), "--quiet", "--bind",
                        "tcp://127.0.0.1:*", *RUN, *extra], run_dir)
    join = ["--join", f"@{run_dir}/coordinator.json", "--bind", "tcp://127.0.0.1:*"]
    others = [runs.start(["envserver", *join], run_dir)]
    others += [runs.start(["agent", *join, "--id", str(i)], run_dir) for i in range(N)]
    return coord, others


def _episodes(run_dir):
    path = run_dir / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def _env_steps(run_dir, since=0.0, until=float("inf")):
    """Step replies the env server sent in a window of wall-clock time (its log)."""
    try:
        return sum(1 for r in open_log(run_dir / "logs" / "envserver.log")
                   if r.direction == "out" and r.kind == "step" and since <= r.time < until)
    except (OSError, ValueError):
        return 0


def _peer_msgs(run_dir, agent, since, until):
    return sum(1 for r in open_log(run_dir / "logs" / f"agent-{agent}.log")
               if r.direction == "out" and r.plane == "peer" and since <= r.time < until)


def _kill_coordinator(run_dir):
    pid = read_json(run_dir / "endpoints.json")["coordinator"]["pid"]
    assert is_agentd_process(pid)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not is_agentd_process(pid), 10, "the coordinator to die")
    return time.time()


@pytest.mark.parametrize("algo", ["dac", "pr"])     # pr: its agents message neighbours
def test_the_run_steps_through_an_outage_and_the_resumed_coordinator_counts_it_once(
        runs, tmp_path, algo):
    run_dir = tmp_path / "outage"
    coord, others = _start_by_hand(runs, run_dir, "--algo", algo)
    wait_for(lambda: _episodes(run_dir) >= 10 or coord.poll() is not None, 90, "10 episodes")
    killed = _kill_coordinator(run_dir)
    # a record half-written when it died: ignored, counted, said
    with open(run_dir / "journal.jsonl", "ab") as f:
        f.write(b'0badc0de {"r":"bye","id":0,"st')
    coord.communicate()
    time.sleep(5.0)            # past the heartbeat timeout (2 s): the processes see the outage
    resumed = time.time()
    again = runs.start(["coordinator", "--resume", str(run_dir), "--quiet"], run_dir)
    out, _ = again.communicate(timeout=240)
    text = out.decode()
    assert again.returncode == 0, text
    assert "1 torn journal record ignored" in text
    for p in others:
        assert p.wait(30) == 0, p.stdout.read().decode()
    # the data plane went on without the coordinator
    during = _env_steps(run_dir, killed, resumed)
    assert during >= 100, during
    if algo == "pr":
        assert all(_peer_msgs(run_dir, i, killed, resumed) > 0 for i in range(N))
    s = read_json(run_dir / "summary.json")
    assert s["status"] == "done" and s["steps_done"] == STEPS
    # every episode counted once: the ones reported during the outage (queued) included
    assert s["episodes"] == STEPS // EP, s["episodes"]
    steps = [json.loads(line)["step"] for line in
             (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert sorted(steps) == [EP * (k + 1) for k in range(STEPS // EP)]
    (restart,) = s["coordinator_restarts"]
    assert restart["epoch"] == 1 and restart["journal_torn"] == 1
    assert restart["down_s"] >= 4.0 and s["coordinator_down_s"] == restart["down_s"]
    outages = [a["coordinator_outage"] for a in (*s["agents"].values(), s["envserver"])]
    assert all(o["outages"] == 1 and o["outage_s"] > 1.0 and o["dropped"] == 0
               for o in outages), outages
    assert s["envserver"]["coordinator_outage"]["queued"] > 0
    # peer and env edges balance exactly; replay is exact for every agent across the outage
    edges = audit_run(run_dir)["edges"]
    assert [e for e in edges if e["plane"] != "control" and e["sent"] != e["received"]] == []
    for i in range(N):
        res = replay(run_dir, i)
        assert res.first_divergence is None and res.actions_compared >= STEPS
        same = compare_state(res.state, run_dir / "checkpoints" / f"agent-{i}.npz")
        assert same and all(same.values())


def test_a_coordinator_that_never_comes_back_ends_every_process_after_the_timeout(
        runs, tmp_path):
    run_dir = tmp_path / "gone"
    coord, others = _start_by_hand(runs, run_dir, "--steps", "200000",
                                   "--coordinator-timeout", "6")
    wait_for(lambda: _episodes(run_dir) >= 3 or coord.poll() is not None, 90, "3 episodes")
    killed = _kill_coordinator(run_dir)
    coord.communicate()
    for p in others:
        out, _ = p.communicate(timeout=60)
        text = out.decode()
        assert p.returncode == 1, text
        assert "lost the coordinator: unreachable for" in text and \
            "coordinator_timeout 6 s" in text, text
    took = time.time() - killed
    # each process counts the outage from the last message it heard, which may be up to a
    # heartbeat interval (0.5 s) before the kill
    assert 6.0 - 0.5 <= took < 6.0 + 20.0, took
    # still stepping until the timeout (not a stop at the heartbeat timeout)
    assert _env_steps(run_dir, killed + 3.0) > 0
    assert not [p for p in others if p.poll() is None]


def _coordinator_pid(run_dir):
    try:
        return read_json(run_dir / "endpoints.json")["coordinator"]["pid"]
    except (OSError, ValueError, KeyError):
        return None


def _in_process_returns(algo, steps, seed=5):
    """The returns of the same run in one process (no sockets, no coordinator): for dac a
    live run's returns are these exactly (tests/test_recovery.py says how it was checked)."""
    from agentd.algorithms import load_learner_class
    from agentd.algorithms.base import LearnerSpec
    from agentd.launch.inprocess import build_env, make_learners, run_in_process
    from coordinator.rundir import derive_seed

    env = build_env("random-mdp", N, episode_len=EP, seed=derive_seed(seed, "env_model"))
    learners = [load_learner_class(algo)(LearnerSpec(
        **{**lr.spec.__dict__, "seed": derive_seed(seed, "agent", i)}))
        for i, lr in enumerate(make_learners(algo, env, N))]
    out = run_in_process(env, learners, steps, reset_seed=derive_seed(seed, "env_reset"))
    return [r for _, r in out.returns]


@pytest.mark.parametrize("secure", [False, True])
def test_a_launched_run_whose_coordinator_is_killed_twice_finishes_learns_and_replays(
        runs, tmp_path, secure):
    run_dir = tmp_path / "twice"
    steps = 8000
    proc = runs.start(["launch", "--run-dir", str(run_dir), "--quiet", *RUN, "--steps",
                       str(steps), *(["--secure"] if secure else [])], run_dir)
    for at in (10, 70):
        wait_for(lambda at=at: _episodes(run_dir) >= at or proc.poll() is not None, 120,
                 f"{at} episodes")
        assert proc.poll() is None
        pid = _coordinator_pid(run_dir)
        _kill_coordinator(run_dir)
        wait_for(lambda pid=pid: _coordinator_pid(run_dir) not in (None, pid), 60,
                 "the coordinator to be resumed")
    out, _ = proc.communicate(timeout=300)
    text = out.decode()
    assert proc.returncode == 0, text
    assert text.count("resuming it from its journal") == 2, text
    s = read_json(run_dir / "summary.json")
    assert s["status"] == "done" and s["steps_done"] == steps and s["secure"] is secure
    assert [r["epoch"] for r in s["coordinator_restarts"]] == [1, 2]
    assert all(r["down_s"] > 0 for r in s["coordinator_restarts"])
    # the same run as one without a coordinator at all: every episode, once, the same returns
    # (in step order: a report sent again to a resumed coordinator may come after later ones)
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    returns = [r["return"] for r in sorted(lines, key=lambda r: r["step"])]
    assert returns == pytest.approx(_in_process_returns("dac", steps), abs=1e-6)
    assert all(a["steps"] == steps for a in s["agents"].values())
    edges = audit_run(run_dir)["edges"]
    assert [e for e in edges if e["plane"] != "control" and e["sent"] != e["received"]] == []
    for i in range(N):
        res = replay(run_dir, i)
        assert res.first_divergence is None and res.actions_compared >= steps


def test_an_agent_that_dies_while_the_coordinator_is_down_rejoins_the_resumed_one(
        runs, tmp_path):
    """A restart needs the coordinator: the restarted agent's hello waits for the resumed
    coordinator, which lets it in under its id; the run finishes and replays exactly."""
    run_dir = tmp_path / "both"
    proc = runs.start(["launch", "--run-dir", str(run_dir), "--quiet", *RUN, "--steps", "4000",
                       "--recovery-every", "40", "--max-restarts", "1"], run_dir)
    wait_for(lambda: _episodes(run_dir) >= 10 or proc.poll() is not None, 120, "10 episodes")
    agent = read_json(run_dir / "endpoints.json")["agents"]["1"]["pid"]
    _kill_coordinator(run_dir)
    os.kill(agent, signal.SIGKILL)
    out, _ = proc.communicate(timeout=300)
    text = out.decode()
    assert proc.returncode == 0, text
    s = read_json(run_dir / "summary.json")
    assert s["status"] == "done" and s["restart_counts"] == {"agent-1": 1}
    assert len(s["coordinator_restarts"]) == 1
    (record,) = s["restarts"]
    assert s["agents"]["1"]["steps"] == 4000 - record["lost"]
    res = replay(run_dir, 1)
    assert res.restarts == 1 and res.first_divergence is None
