"""Smoke tests of the CLI in subprocesses: real processes, real sockets, tiny budgets."""

from __future__ import annotations

import math
import os
import signal
import time

import pytest
from conftest import is_agentd_process, read_json, run_pids, wait_for

from agentd.runtime.msglog import open_log


def test_launch_n3_writes_a_complete_run_directory(runs, tmp_path):
    run_dir = tmp_path / "run"
    res = runs.launch(run_dir, "--n", "3", "--steps", "300", "--episode-len", "20",
                      "--seed", "3")
    assert res.returncode == 0, res.stdout
    for name in ("config.toml", "seeds.json", "endpoints.json", "metrics.jsonl",
                 "summary.json", "learning_curve.png", "logs/coordinator.log",
                 "logs/envserver.log", "checkpoints/agent-0.npz"):
        assert (run_dir / name).stat().st_size > 0, name
    s = read_json(run_dir / "summary.json")
    assert s["status"] == "done" and s["error"] is None
    assert (s["algo"], s["env"], s["n"], s["topology"], s["steps"]) == \
        ("dac", "random-mdp", 3, "ring", 300)
    assert s["episodes"] == 15 and s["steps_done"] == 300
    assert math.isfinite(s["final_return"])
    records = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(records) == 15
    for i in range(3):
        a = s["agents"][str(i)]
        for key in ("msgs_sent", "msgs_recv", "bytes_sent", "bytes_recv", "rejected"):
            assert key in a
        assert a["rejected"] == {} and a["steps"] == 300
        assert a["torch_loaded"] is False    # a tabular agent never imports torch
        log = list(open_log(run_dir / "logs" / f"agent-{i}.log"))
        acts = [r for r in log if r.direction == "out" and r.kind == "act"]
        steps = [r for r in log if r.direction == "in" and r.kind == "step"]
        assert len(acts) == 300 and len(steps) == 301
        assert steps[-1].body["last"] is True   # the tail of the run reached the log
        # the counts of the agent's tally after the ack: its whole log, bye and tally included
        assert [r.kind for r in log if r.direction == "out"][-1] == "tally"
        assert a["msgs_sent"] == sum(1 for r in log if r.direction == "out")
        assert a["msgs_recv"] == sum(1 for r in log if r.direction == "in")
        after = a["after_bye"]["control"]              # bye and tally (and heartbeats), ack
        assert after["msgs_sent"] >= 2 and after["msgs_recv"] >= 1
    assert "steps/s" in res.stdout


def test_config_file_with_cli_override_is_resolved_and_written(runs, tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text('n = 4\nsteps = 99\nepisode_len = 10\ntopology = "line"\n'
                   '[params]\nalpha = 0.2\n')
    run_dir = tmp_path / "run"
    res = runs.launch(run_dir, "--config", str(cfg), "--steps", "40")
    assert res.returncode == 0, res.stdout
    written = (run_dir / "config.toml").read_text()
    assert "steps = 40" in written and "n = 4" in written and 'topology = "line"' in written
    assert "alpha = 0.2" in written
    assert read_json(run_dir / "summary.json")["steps_done"] == 40


@pytest.mark.parametrize("args, words", [
    (["--n", "0"], ["'n'", "1..1024"]),
    (["--topology", "hexagon"], ["'topology'", "ring"]),
    (["--algo", "magic"], ["'algo'", "dac"]),
    (["--env", "no such env"], ["'env'", "random-mdp"]),
    (["--param", "gamma=2.0"], ["gamma"]),
    (["--param", "colour=3"], ["colour", "allowed"]),
    (["--num-envs", "0"], ["'num_envs'"]),
    (["--mixing", "average"], ["'mixing'", "metropolis"]),
    (["--topology", "grid", "--n", "6", "--rows", "4"], ["'topology'", "rows must divide"]),
    (["--topology", "edgelist", "--edges", "/no/such/file"], ["'topology'", "/no/such/file"]),
], ids=lambda v: " ".join(v) if isinstance(v, list) and v and v[0].startswith("-") else None)
def test_bad_flags_fail_at_start_naming_the_field(runs, tmp_path, args, words):
    res = runs.launch(tmp_path / "run", *args, timeout=60)
    assert res.returncode == 2
    for word in words:
        assert word in res.stdout, res.stdout
    assert not (tmp_path / "run").exists()


def test_unknown_config_field_and_bad_toml(runs, tmp_path):
    (tmp_path / "a.toml").write_text("colour = 3\n")
    (tmp_path / "b.toml").write_text("n = = 3\n")
    res = runs.launch(tmp_path / "run", "--config", str(tmp_path / "a.toml"), timeout=60)
    assert res.returncode == 2 and "unknown config field 'colour'" in res.stdout
    res = runs.launch(tmp_path / "run", "--config", str(tmp_path / "b.toml"), timeout=60)
    assert res.returncode == 2 and "not valid TOML" in res.stdout


def test_unknown_env_module_is_refused_with_a_clear_error_before_the_run(runs, tmp_path):
    """The launcher's precheck builds the env first (tests/test_precheck.py): no process,
    no run directory."""
    res = runs.launch(tmp_path / "run", "--n", "2", "--env", "no_such_module:make", timeout=60)
    assert res.returncode == 2
    assert res.stdout.startswith("agentd: config error: 'env'")
    assert "module 'no_such_module' not found" in res.stdout
    assert not (tmp_path / "run").exists()


def test_killed_agent_ends_the_run_with_an_error_naming_it(runs, tmp_path):
    run_dir = tmp_path / "run"
    proc = runs.start(["launch", "--run-dir", str(run_dir), "--quiet", "--n", "3",
                       "--steps", "1000000", "--heartbeat-timeout", "2"], run_dir)
    wait_for(lambda: (run_dir / "metrics.jsonl").exists() and
             (run_dir / "metrics.jsonl").stat().st_size > 0, 60, "the first episodes")
    victim = read_json(run_dir / "endpoints.json")["agents"]["1"]["pid"]
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    proc.wait(timeout=30)
    assert time.monotonic() - killed_at < 15
    assert proc.returncode == 1
    s = read_json(run_dir / "summary.json")
    assert s["status"] == "failed" and "agent 1" in s["error"] and str(victim) in s["error"]
    wait_for(lambda: not any(is_agentd_process(p) for p in run_pids(run_dir)), 15,
             "every process of the run to exit")


def test_sigterm_on_launch_stops_every_child_and_leaves_a_readable_run_dir(runs, tmp_path):
    run_dir = tmp_path / "run"
    proc = runs.start(["launch", "--run-dir", str(run_dir), "--quiet", "--n", "3",
                       "--steps", "1000000"], run_dir)
    wait_for(lambda: (run_dir / "metrics.jsonl").exists() and
             (run_dir / "metrics.jsonl").stat().st_size > 0, 60, "the first episodes")
    pids = run_pids(run_dir)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    assert proc.returncode == 130
    s = read_json(run_dir / "summary.json")
    assert s["status"] == "interrupted" and s["episodes"] > 0
    assert all(a.get("steps", 0) > 0 for a in s["agents"].values())
    wait_for(lambda: not any(is_agentd_process(p) for p in pids), 15, "children to exit")
    for i in range(3):   # message logs are readable to their end
        assert list(open_log(run_dir / "logs" / f"agent-{i}.log"))


def test_pettingzoo_env_through_the_env_server(runs, tmp_path):
    run_dir = tmp_path / "run"
    res = runs.launch(run_dir, "--n", "3", "--algo", "random", "--env",
                      "mpe2.simple_spread_v3:parallel_env", "--env-arg",
                      "continuous_actions=true", "--steps", "60", "--episode-len", "25",
                      "--num-envs", "2")
    assert res.returncode == 0, res.stdout
    s = read_json(run_dir / "summary.json")
    assert s["episodes"] == 4 and s["steps_done"] == 60 and s["final_return"] < 0
    welcome = next(r for r in open_log(run_dir / "logs" / "agent-0.log") if r.kind == "welcome")
    spaces = welcome.body["info"]["spaces"]
    assert spaces["act"][0]["type"] == "box" and spaces["act"][0]["shape"] == [5]
    assert spaces["obs"][0]["type"] == "box"


def test_central_q_runs_as_one_process_over_the_joint_action(runs, tmp_path):
    run_dir = tmp_path / "run"
    res = runs.launch(run_dir, "--n", "3", "--algo", "central-q", "--steps", "200",
                      "--episode-len", "20")
    assert res.returncode == 0, res.stdout
    s = read_json(run_dir / "summary.json")
    assert s["processes"] == 1 and list(s["agents"]) == ["0"] and s["episodes"] == 10
    assert s["agents"]["0"]["controls"] == [0, 1, 2]


def test_processes_started_on_their_own_form_a_run(runs, tmp_path):
    """coordinator, envserver and agents as separate commands: what a LAN run does."""
    run_dir = tmp_path / "run"
    coord = runs.start(["coordinator", "--bind", "tcp://127.0.0.1:*", "--run-dir", str(run_dir),
                        "--n", "2", "--steps", "100", "--episode-len", "10", "--quiet"], run_dir)
    wait_for(lambda: (run_dir / "coordinator.json").exists(), 30, "the coordinator")
    endpoint = read_json(run_dir / "coordinator.json")["endpoint"]
    # --join alone binds on the address that routes to the coordinator (here loopback)
    others = [runs.start(["envserver", "--join", endpoint], cwd=tmp_path)] + \
        [runs.start(["agent", "--connect", endpoint, "--bind", "tcp://127.0.0.1:*",
                     "--advertise", "localhost"], cwd=tmp_path) for i in range(2)]
    assert coord.wait(timeout=60) == 0
    for proc in others:
        assert proc.wait(timeout=30) == 0
    s = read_json(run_dir / "summary.json")
    assert s["status"] == "done" and s["episodes"] == 10 and s["secure"] is False
    # same disk as the coordinator: every file written straight into the run directory, once
    assert s["files"] == {"shipped": {}, "missing": {}, "refused": [], "refusals": {}}
    assert sorted(p.name for p in (run_dir / "logs").glob("*.log")) == \
        ["agent-0.log", "agent-1.log", "coordinator.log", "envserver.log"]
    assert not (tmp_path / "runs").exists()
    ep = read_json(run_dir / "endpoints.json")
    assert ep["envserver"]["endpoint"].startswith("tcp://127.0.0.1:")
    for agent in ep["agents"].values():
        assert agent["endpoint"].startswith("tcp://localhost:")   # what neighbours dialled


def test_topology_show_cli(runs):
    proc = runs.start(["topology", "show", "ring", "--n", "5"])
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    text = out.decode()
    assert "spectral gap" in text and "(0,1)" in text


def test_pin_cpus_gives_each_process_one_cpu(runs, tmp_path):
    import os

    run_dir = tmp_path / "run"
    res = runs.launch(run_dir, "--n", "3", "--steps", "50", "--pin-cpus")
    assert res.returncode == 0, res.stdout
    s = read_json(run_dir / "summary.json")
    allowed = sorted(os.sched_getaffinity(0))
    used = [a["cpus"] for a in s["agents"].values()] + [s["envserver"]["cpus"]]
    assert all(len(c) == 1 and c[0] in allowed for c in used)
    if len(allowed) > 1:
        assert len({c[0] for c in used}) > 1            # spread round-robin, not piled up
