"""``agentd evaluate``: a finished run's saved policies, played greedily, report returns."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import AGENTD, read_json


def evaluate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*AGENTD, "evaluate", *args], capture_output=True, text=True,
                          timeout=300, check=False)


def test_greedy_returns_equal_the_exact_greedy_return(runs, tmp_path):
    """On a deterministic game the greedy joint policy of the final Q tables earns one exact
    return, which the run's summary computes from the game's tree; every evaluated episode
    must earn exactly that."""
    run_dir = tmp_path / "ls"
    done = runs.launch(run_dir, "--n", "2", "--topology", "line", "--algo", "iql", "--env",
                       "lstage", "--env-arg", "L=2", "--param", "gamma=1", "--steps", "1000")
    assert done.returncode == 0, done.stdout[-2000:]
    exact = read_json(run_dir / "summary.json")["greedy_return"]
    res = evaluate(str(run_dir), "--all", "--episodes", "3")
    assert res.returncode == 0, res.stderr
    assert "team" in res.stdout and "agent 1" in res.stdout
    saved = json.loads((run_dir / "evaluation.json").read_text())
    assert saved["episodes"] == 3
    assert saved["returns"]["team"] == pytest.approx([exact] * 3, abs=1e-9)
    again = evaluate(str(run_dir), "--all", "--episodes", "3")
    assert again.stdout == res.stdout        # greedy and seeded: the same report


def test_agent_report_and_bad_input(runs, tmp_path):
    run_dir = tmp_path / "dac"
    done = runs.launch(run_dir, "--n", "3", "--steps", "200", "--episode-len", "20")
    assert done.returncode == 0, done.stdout[-2000:]
    res = evaluate(str(run_dir), "--agent", "1", "--episodes", "4", "--num-envs", "2")
    assert res.returncode == 0, res.stderr
    assert "agent 1" in res.stdout and "team" not in res.stdout
    saved = json.loads((run_dir / "evaluation.json").read_text())
    assert saved["episodes"] == 4 and saved["mean_length"] == 20
    assert len(saved["returns"]["1"]) == 4

    bad = evaluate(str(run_dir), "--agent", "7")
    assert bad.returncode == 2 and "no env agent 7" in bad.stderr
    bad = evaluate(str(tmp_path), "--all")
    assert bad.returncode == 2 and "not a run directory" in bad.stderr
    (run_dir / "checkpoints" / "agent-2.npz").unlink()
    bad = evaluate(str(run_dir), "--all")
    assert bad.returncode == 2 and "agent-2.npz is missing" in bad.stderr
    bad = evaluate(str(run_dir))
    assert bad.returncode == 2 and "--agent" in bad.stderr      # one of --agent / --all


def test_a_deep_learner_plays_its_mode(runs, tmp_path):
    pytest.importorskip("torch")
    run_dir = tmp_path / "ippo"
    done = runs.launch(run_dir, "--n", "3", "--algo", "ippo", "--env",
                       "mpe2.simple_spread_v3:parallel_env", "--num-envs", "2", "--steps",
                       "60", "--episode-len", "10", "--param", "rollout=30")
    assert done.returncode == 0, done.stdout[-2000:]
    first = evaluate(str(run_dir), "--all", "--episodes", "2")
    assert first.returncode == 0, first.stderr
    assert evaluate(str(run_dir), "--all", "--episodes", "2").stdout == first.stdout
