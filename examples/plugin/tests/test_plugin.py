"""The plug-in's own tests: agentd's conformance kit over its learner and its env, by the
names its entry points give them (the package must be installed: ``pip install .``)."""

from __future__ import annotations

from agentd.testing import check_env, check_learner


def test_gossip_q_conforms(tmp_path):
    """Live run on the beacon env: exact replay, checkpoint and recovery round trips, only
    gossip_q on the wire and only between neighbours, spaces, the in-process run equal to
    the live one, and a DP run (gossip_q declares its q rows released)."""
    report = check_learner("gossip-q", tmp_path, env="beacon", dp=True)
    assert report.ok and report.run_dir is not None


def test_beacon_conforms(tmp_path):
    """PettingZoo's parallel_api_test, agentd's env-server contract, and a live run of the
    random learner on it, replayed and equal in process."""
    assert check_env("beacon", tmp_path).ok
