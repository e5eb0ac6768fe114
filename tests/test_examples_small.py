"""The examples take a small budget for a first look: no traceback, and where a measure needs
more episodes than the run has, the report says so."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def example(tmp_path: Path, name: str, *args: str) -> str:
    res = subprocess.run([sys.executable, str(EXAMPLES / name), *args], cwd=tmp_path,
                         capture_output=True, text=True, timeout=600, check=False)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr[-3000:]
    return res.stdout


def test_pr_digital_with_fewer_episodes_than_its_measure_needs(tmp_path):
    out = example(tmp_path, "pr_digital.py", "--n", "3", "--seeds", "0", "--steps", "200",
                  "--betas", "0.05", "--out", str(tmp_path / "pr.png"))
    assert "episodes-to-95% n/a (a run of 4 episodes; needs 20)" in out, out
    assert (tmp_path / "pr.png").stat().st_size > 0


def test_dqn_spread_with_a_few_episodes(tmp_path):
    pytest.importorskip("torch")
    out = example(tmp_path, "dqn_spread.py", "--seeds", "0", "--steps", "100", "--algos",
                  "iql-deep", "--out", str(tmp_path / "dqn"))
    assert "iql-deep   last-20% return over 1 seeds" in out, out
    assert (tmp_path / "dqn.png").stat().st_size > 0
