"""Every registered learner's saved policy can be evaluated: a tiny in-process run of the
first command on its page, then ``agentd.tools.evaluate`` plays its checkpoints."""

from __future__ import annotations

import argparse
import math
import tomllib
from pathlib import Path

import pytest

from agentd.algorithms import ALGORITHMS, load_learner_class
from agentd.algorithms.base import LearnerConfigError
from agentd.cli.common import add_run_flags, config_from_args

PAPERS = tomllib.loads((Path(__file__).resolve().parent.parent / "docs" / "algorithms"
                        / "papers.toml").read_text())


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_every_learner_evaluates(name, tmp_path):
    from agentd.launch.inprocess import launch_in_process
    from agentd.tools.evaluate import evaluate

    try:
        load_learner_class(name)
    except LearnerConfigError as exc:      # a deep learner where torch is not installed
        pytest.skip(str(exc))
    parser = argparse.ArgumentParser()
    add_run_flags(parser)
    flags = ["--algo", name, *PAPERS.get(name, {}).get("example", "").split(),
             "--steps", "40", "--episode-len", "10", "--run-dir", str(tmp_path / "run")]
    config = config_from_args(parser.parse_args(flags))
    assert launch_in_process(config) == 0
    res = evaluate(tmp_path / "run", episodes=2)
    assert len(res.team) == 2 and all(math.isfinite(r) for r in res.team)
    assert set(res.agents) == set(range(len(res.agents))) and len(res.agents) >= 2
