"""Fixed-seed learning check (seed 002, Fig. 1): tabular dac with n = 4 on random-mdp rises far
above its own first, uniform-policy episodes. Real processes; ~15 s."""

from __future__ import annotations

import json

import numpy as np
from conftest import read_json


def test_dac_n4_learns_well_above_its_uniform_start(runs, tmp_path):
    run_dir = tmp_path / "run"
    res = runs.launch(run_dir, "--n", "4", "--num-envs", "4", "--steps", "5000",
                      "--seed", "1", timeout=240)
    assert res.returncode == 0, res.stdout
    s = read_json(run_dir / "summary.json")
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    returns = [r["return"] for r in records if "return" in r]
    assert len(returns) == s["episodes"] == 400
    first_round = np.mean(returns[:4])          # the K = 4 first episodes: uniform policies
    # A uniform policy on random-mdp earns ~0 per step: 50-step returns of sd ~7.
    assert abs(s["initial_return"]) < 10
    assert s["final_return"] > first_round + 30
    assert s["final_return"] > s["initial_return"] + 30
    # and the curve rises: the last quarter beats the second quarter
    q = len(returns) // 4
    assert np.mean(returns[-q:]) > np.mean(returns[q:2 * q])
