"""Deep learners as live runs: dac-deep, isac and maddpg on MPE simple_spread (n = 3)."""

from __future__ import annotations

import json
import math
import subprocess
import tomllib

import numpy as np
import pytest
from conftest import AGENTD, read_json

from agentd.runtime.msglog import open_log
from agentd.tools.audit import audit_run

SPREAD = "mpe2.simple_spread_v3:parallel_env"
SMALL = ["--param", "start=64", "--param", "batch=32"]


def metrics_scalars(run_dir):
    """agent id -> list of scalar dicts from metrics.jsonl."""
    out: dict[int, list[dict]] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        for agent, scalars in json.loads(line).get("agents", {}).items():
            if scalars:
                out.setdefault(int(agent), []).append(scalars)
    return out


@pytest.fixture(scope="module")
def dac_deep_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("dacdeep") / "run"
    res = subprocess.run([*AGENTD, "launch", "--quiet", "--run-dir", str(run_dir), "--topology",
                          "ring", "--n", "3", "--algo", "dac-deep", "--env", SPREAD, "--steps",
                          "300", "--checkpoint-every", "150", *SMALL],
                         capture_output=True, text=True, timeout=180, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    return run_dir


def test_dac_deep_runs_with_finite_losses_and_the_global_state(dac_deep_run):
    config = tomllib.loads((dac_deep_run / "config.toml").read_text())
    assert config["obs"] == "state" and config["env_args"] == {"continuous_actions": True}
    summary = read_json(dac_deep_run / "summary.json")
    assert summary["status"] == "done" and summary["private"] is True
    assert all(a["torch_loaded"] and a["torch_threads"] == 1 for a in summary["agents"].values())
    assert summary["envserver"]["torch_loaded"] is False      # only learners load torch
    scalars = metrics_scalars(dac_deep_run)
    assert sorted(scalars) == [0, 1, 2]
    for agent, records in scalars.items():
        losses = [r["critic_loss"] for r in records if "critic_loss" in r]
        assert losses and all(math.isfinite(v) for v in losses), agent
        assert all(math.isfinite(r["actor_loss"]) for r in records if "actor_loss" in r)
    # batch mode: one consensus message per neighbour per step once updates start
    assert summary["peer_bytes_per_edge_last_step"] > 32 * 8


def test_only_consensus_messages_crossed_peer_edges(dac_deep_run):
    report = audit_run(dac_deep_run)
    assert report["peer"]["kinds_seen"] == ["consensus"] and report["peer"]["only_permitted"]
    assert report["sent_not_received"] == [] and report["rejections"] == []
    # the same from the raw logs: every peer record of every agent is a consensus message
    for i in range(3):
        log = open_log(dac_deep_run / "logs" / f"agent-{i}.log")
        assert log.meta["private"] is True
        kinds = {rec.kind for rec in log if rec.plane == "peer"}
        assert kinds == {"consensus"}, (i, kinds)


def test_offline_consensus_error_is_tiny_on_a_3_ring(dac_deep_run):
    # n = 3 on a ring is the complete graph: one round of W averages exactly
    res = subprocess.run([*AGENTD, "consensus", str(dac_deep_run)], capture_output=True,
                         text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    curve = [json.loads(x) for x in (dac_deep_run / "consensus.jsonl").read_text().splitlines()]
    assert [p["step"] for p in curve] == [150, 300]
    assert all(p["entries"] == 32 and p["max_err"] < 1e-9 for p in curve)
    assert curve[-1]["mean_abs_sum_beta"] > 1e-6      # something was estimated
    assert (dac_deep_run / "consensus.png").exists()
    summary = read_json(dac_deep_run / "summary.json")       # written by the coordinator too
    assert summary["consensus"]["key"] == "max_err" and summary["consensus"]["step"] == 300


def test_isac_sends_nothing_to_peers(tmp_path):
    run_dir = tmp_path / "run"
    res = subprocess.run([*AGENTD, "launch", "--quiet", "--run-dir", str(run_dir), "--n", "3",
                          "--algo", "isac", "--env", "spread", "--steps", "150", *SMALL],
                         capture_output=True, text=True, timeout=180, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    summary = read_json(run_dir / "summary.json")
    assert summary["peer_bytes_per_edge_per_step"] == 0
    assert all(a["planes"]["peer"]["msgs_sent"] == 0 for a in summary["agents"].values())


def test_maddpg_is_one_process_and_labelled_non_private(tmp_path):
    run_dir = tmp_path / "run"
    res = subprocess.run([*AGENTD, "launch", "--quiet", "--run-dir", str(run_dir), "--n", "3",
                          "--algo", "maddpg", "--env", SPREAD, "--steps", "150", *SMALL],
                         capture_output=True, text=True, timeout=180, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    text = (run_dir / "config.toml").read_text()
    assert text.startswith("# NON-PRIVATE RUN") and tomllib.loads(text)["private"] is False
    summary = read_json(run_dir / "summary.json")
    assert summary["private"] is False and summary["processes"] == 1
    for path in sorted((run_dir / "logs").glob("*.log")):
        assert open_log(path).meta["private"] is False, path
    scalars = metrics_scalars(run_dir)
    assert any(math.isfinite(r.get("critic_loss", math.nan)) for r in scalars[0])


def test_a_private_label_that_contradicts_the_algo_is_refused(tmp_path):
    from agentd.config import ConfigError, resolve

    with pytest.raises(ConfigError, match="private"):
        resolve({"algo": "dac", "private": False}, {})
    assert resolve({"algo": "maddpg", "env": SPREAD, "private": False}, {}).algo == "maddpg"


@pytest.mark.parametrize("algo, env, words", [
    ("dac-deep", "random-mdp", ["Box", "random-mdp"]),
    ("dac", "spread", ["discrete", "continuous_actions=false"]),
])
def test_action_space_mismatch_is_a_config_error(algo, env, words, tmp_path):
    res = subprocess.run([*AGENTD, "launch", "--quiet", "--run-dir", str(tmp_path / "r"),
                          "--algo", algo, "--env", env, "--n", "3"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 2
    assert all(w in res.stderr for w in words), res.stderr


# -- consensus traffic per step: O(batch) in the default mode, O(buffer) in full mode --------
def test_batch_mode_traffic_does_not_grow_with_the_buffer():
    from agentd.launch.inprocess import build_env, make_learners, run_in_process

    per_step = {}
    for mode in ("batch", "full"):
        env = build_env("spread", 3, obs_mode="state")
        learners = make_learners("dac-deep", env, 3, params={
            "start": 40, "batch": 16, "mode": mode, "hidden": 16})
        res = run_in_process(env, learners, 120)
        per_step[mode] = res.peer_bytes_by_step
        env.close()
    batch, full = per_step["batch"], per_step["full"]
    assert 39 not in batch and 40 in batch                       # gossip starts with updates
    assert batch[60] == batch[119]                               # constant: O(batch)
    assert full[119] > full[60] * 1.5                            # grows with the buffer
    # every edge carried idx (int32) and x (float64) for the 16 batch entries
    assert batch[119] / 6 >= 16 * (4 + 8)
    assert np.isclose(full[119] / 6, 119 * 8 + 60, atol=60)     # x of every entry + header


def test_the_same_seed_gives_the_same_networks_and_another_seed_does_not():
    from agentd.launch.inprocess import build_env, make_learners, run_in_process

    def final_state(seed):
        env = build_env("spread", 3, obs_mode="state")
        learners = make_learners("dac-deep", env, 3, seed=seed,
                                 params={"start": 32, "batch": 16, "hidden": 16})
        run_in_process(env, learners, 60, reset_seed=seed)
        env.close()
        return learners[1].state_dict()

    a, b, c = final_state(0), final_state(0), final_state(1)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["actor.body.0.weight"], c["actor.body.0.weight"])


def test_consensus_error_from_the_logs_equals_the_one_from_checkpoints(tmp_path):
    """On a 4-ring one round does not average exactly: a real error, computed two ways."""
    from agentd.tools.diagnostics import logratio_consensus, logratio_consensus_from_logs

    run_dir = tmp_path / "run"
    res = subprocess.run([*AGENTD, "launch", "--quiet", "--run-dir", str(run_dir), "--n", "4",
                          "--algo", "dac-deep", "--env", "spread", "--steps", "160",
                          "--checkpoint-every", "80", *SMALL, "--param", "hidden=16"],
                         capture_output=True, text=True, timeout=180, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    from_ckpt = logratio_consensus(run_dir)
    from_logs = {p["step"]: p for p in logratio_consensus_from_logs(run_dir, every=80)}
    assert [p["step"] for p in from_ckpt] == [80, 160]
    for point in from_ckpt:
        other = from_logs[point["step"]]
        assert point["max_err"] == pytest.approx(other["max_err"], rel=1e-6, abs=1e-12)
        assert point["mean_abs_sum_beta"] == pytest.approx(other["mean_abs_sum_beta"], rel=1e-9)
    assert from_ckpt[-1]["max_err"] > 1e-6          # a 4-ring after one round: not exact
    res = subprocess.run([*AGENTD, "consensus", str(run_dir), "--from-logs", "--every", "40"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0 and "step      160" in res.stdout, res.stdout + res.stderr
