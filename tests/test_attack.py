"""``agentd attack``: on real runs (real processes, sockets, logs) the action attack finds the
leakage of policy reciprocity's Q rows without DP and loses it under strong DP; bad input gets
a clear error; learners without messages are listed as not applicable."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from conftest import AGENTD, Runs

from agentd.tools.attack import attack_run
from agentd.tools.attack_stats import accuracy_advantage, r2, roc, spearman

pytest.importorskip("sklearn")

# random-mdp: 3 actions per agent, shared reward; 2 agents, one edge (two directed edges)
PR_RUN = ["--algo", "pr", "--env", "random-mdp", "--n", "2", "--steps", "600", "--seed", "5"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same pr run without DP and with strong DP (sigma 20)."""
    r = Runs()
    base = tmp_path_factory.mktemp("attack")
    try:
        started = {name: r.start(["launch", "--run-dir", str(base / name), "--quiet",
                                  *PR_RUN, *extra], base / name)
                   for name, extra in (("plain", []), ("strong_dp", ["--dp-sigma", "20"]))}
        for proc in started.values():                 # the two runs side by side
            out, _ = proc.communicate(timeout=180)
            assert proc.returncode == 0, out.decode()
        yield {name: base / name for name in started}
    finally:
        r.cleanup()


def results(report: dict, attack: str) -> list[dict]:
    found = [x for x in report["results"] if x["attack"] == attack]
    assert len(found) == 2, report["not_applicable"]        # both directed edges
    return found


def test_without_dp_the_action_attacks_read_the_actions_from_the_q_rows(runs):
    report = attack_run(runs["plain"])
    for r in results(report, "action / structural"):
        assert r["score"] >= 0.8 and r["chance"] == pytest.approx(1 / 3, abs=1e-3)
        assert r["ci"][0] > 0.2 and r["verdict"] == "LEAKS"
    for r in results(report, "action / learned"):
        assert r["score"] >= 0.7 and r["ci"][0] > 0.1
    why = {n["attack"]: n["why"] for n in report["not_applicable"]}
    assert "rewards are shared" in why["reward / structural"]
    assert "no latent messages" in why["observation / decoder"]
    assert "no replay buffer" in why["membership"]


def test_with_strong_dp_the_action_attacks_are_near_chance(runs):
    report = attack_run(runs["strong_dp"])
    assert report["dp_sigma"] == [20.0]
    for name in ("action / structural", "action / learned"):
        for r in results(report, name):
            assert r["score"] < 0.6
            assert r["advantage"] < 0.1 or r["ci"][0] <= 0.0, r


def test_the_command_prints_the_table_and_writes_attack_json(runs):
    run_dir = runs["plain"]
    res = subprocess.run([*AGENTD, "attack", str(run_dir)], capture_output=True, text=True,
                         timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    assert "action / structural" in res.stdout and "LEAKS" in res.stdout
    assert "Not applicable:" in res.stdout and "Threat models:" in res.stdout
    saved = json.loads((run_dir / "attack.json").read_text())
    assert saved["algo"] == "pr" and saved["dp_sigma"] is None and saved["results"]


def test_a_directory_that_is_not_a_run_is_a_clear_error(tmp_path):
    res = subprocess.run([*AGENTD, "attack", str(tmp_path / "nope")], capture_output=True,
                         text=True, timeout=60, check=False)
    assert res.returncode == 2 and "not a run directory" in res.stderr
    (tmp_path / "config.toml").write_text('algo = "pr"\n')
    res = subprocess.run([*AGENTD, "attack", str(tmp_path)], capture_output=True, text=True,
                         timeout=60, check=False)
    assert res.returncode == 2 and "no agent logs" in res.stderr


def test_a_learner_without_messages_is_listed_as_not_applicable(tmp_path):
    r = Runs()
    try:
        res = r.launch(tmp_path / "iql", "--algo", "iql", "--env", "random-mdp", "--n", "2",
                       "--steps", "50", "--seed", "1")
        assert res.returncode == 0, res.stdout
    finally:
        r.cleanup()
    report = attack_run(tmp_path / "iql")
    assert report["results"] == []
    assert {n["target"] for n in report["not_applicable"]} == {"agent 0", "agent 1"}
    assert all("sent no peer messages" in n["why"] for n in report["not_applicable"])


# -- the scoring, by hand -------------------------------------------------------------------
def test_accuracy_advantage_and_its_interval():
    hit = np.array([1] * 90 + [0] * 10, bool)
    base = np.array([1] * 40 + [0] * 60, bool)
    out = accuracy_advantage(hit, base)
    assert out["score"] == 0.9 and out["baseline_score"] == 0.4 and out["advantage"] == 0.5
    assert out["ci"][0] < 0.5 < out["ci"][1] and out["ci"][0] > 0.3
    same = accuracy_advantage(base, base)
    assert same["advantage"] == 0.0 and same["ci"] == (0.0, 0.0)


def test_rank_correlation_r2_and_roc_on_hand_checkable_cases():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    assert spearman(x, x ** 3) == pytest.approx(1.0)
    assert spearman(x, -x) == pytest.approx(-1.0)
    assert r2(x, x) == 1.0 and r2(x, np.full(4, x.mean())) == 0.0
    auc, tpr = roc(np.array([0.9, 0.8, 0.1, 0.2]), np.array([True, True, False, False]))
    assert auc == 1.0 and tpr == 1.0
    auc, _ = roc(np.array([0.1, 0.2, 0.9, 0.8]), np.array([True, True, False, False]))
    assert auc == 0.0
