"""The Python API (``agentd.api``): start a run, read its summary and metrics, open an old run,
stop a running one -- from this test process, with its signal handlers left as they were --
and the runnable example that shows it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agentd import api
from agentd.config import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def handlers() -> tuple:
    return signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)


def wait_for_episodes(run: api.Run, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not run.metrics():
        assert run.status() == "running", (run.status(), run.error)
        assert time.monotonic() < deadline, "no episode finished"
        time.sleep(0.1)


def test_start_read_open_and_stop_live_runs_without_touching_signal_handlers(tmp_path):
    before = handlers()
    run = api.start(algo="dac", env="random-mdp", n=3, steps=300, run_dir=str(tmp_path / "a"))
    long = None
    try:
        assert handlers() == before
        assert run.wait(timeout=300) == "done" and run.exit_code == 0, run.error
        summary = run.summary()
        assert summary["status"] == "done" and summary["steps_done"] == 300
        metrics = run.metrics()
        assert [m["episode"] for m in metrics] == list(range(1, summary["episodes"] + 1))
        assert metrics[-1]["step"] == 300 and "agents" in metrics[-1]

        old = api.open(tmp_path / "a")
        assert old.status() == "done" and old.summary() == summary
        assert old.metrics() == metrics
        assert old.config.algo == "dac" and old.config.n == 3
        with pytest.raises(RuntimeError, match="opened, not started here"):
            old.stop()

        long = api.start(algo="iql", env="random-mdp", n=3, steps=10**6,
                         run_dir=str(tmp_path / "b"))
        wait_for_episodes(long)
        assert long.stop(timeout=120) == "interrupted" and long.exit_code == 130
        assert long.summary()["status"] == "interrupted"
        assert handlers() == before
    finally:
        for r in (run, long):
            if r is not None and r.status() == "running":
                r.stop(timeout=60)


def test_a_config_mistake_is_raised_by_start_before_any_directory(tmp_path):
    with pytest.raises(ConfigError, match="has 3 agents but n=5"):
        api.start(n=5, env="mpe2.simple_spread_v3:parallel_env", run_dir=str(tmp_path / "x"))
    with pytest.raises(ConfigError, match="unknown config field 'stpes'"):
        api.start(stpes=10, run_dir=str(tmp_path / "x"))
    with pytest.raises(ConfigError, match="backend 'cloud'"):
        api.start(backend="cloud", run_dir=str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()


def test_in_process_runs_from_a_config_file_and_a_dict(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('algo = "iql"\nn = 2\nsteps = 200\n[params]\nalpha = 0.3\n')
    a = api.run(toml, backend="inprocess", run_dir=str(tmp_path / "a"))
    assert a.status() == "done" and a.config.params["alpha"] == 0.3
    b = api.run({"algo": "iql", "n": 2, "steps": 200, "params": {"alpha": 0.3}},
                backend="inprocess", run_dir=str(tmp_path / "b"))
    assert b.metrics() == a.metrics() and len(a.metrics()) == 4    # same run, same episodes
    again = api.run(a.config, backend="inprocess", run_dir=str(tmp_path / "c"))
    assert again.metrics() == a.metrics()


def test_handle_signals_forwards_ctrl_c_to_the_run_and_restores_the_handlers(tmp_path):
    before = handlers()
    run = api.start(algo="iql", env="random-mdp", n=2, steps=10**7, backend="inprocess",
                    handle_signals=True, run_dir=str(tmp_path / "r"))
    try:
        assert handlers() != before
        time.sleep(1.0)       # (an in-process run writes its metrics at the end)
        assert run.status() == "running", run.error
        os.kill(os.getpid(), signal.SIGINT)          # as Ctrl-C in a terminal
        assert run.wait(timeout=60) == "interrupted" and run.exit_code == 130
        assert 0 < run.summary()["steps_done"] < 10**7
    finally:
        if run.status() == "running":
            run.stop(timeout=60)
    assert handlers() == before


def test_metrics_as_a_frame_needs_pandas(tmp_path):
    run = api.run(algo="iql", n=2, steps=100, backend="inprocess", run_dir=str(tmp_path / "r"))
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="needs pandas"):
            run.metrics(frame=True)
    else:
        frame = run.metrics(frame=True)
        assert list(frame["episode"]) == [m["episode"] for m in run.metrics()]


def test_the_quickstart_example_runs(tmp_path):
    res = subprocess.run([sys.executable, str(ROOT / "examples" / "api_quickstart.py"),
                          "--runs", str(tmp_path)], capture_output=True, text=True,
                         timeout=600, check=False, cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    assert "ended: done" in out and "summary: 20 episodes" in out
    assert "opened: Run(" in out and "status='done'" in out
    assert "refused: 'algo' 'dac' needs discrete observations | run dir made: False" in out
    assert "stopped: interrupted exit code 130" in out
    assert "signal handlers unchanged: True" in out
