"""summary.json counts every message the logs hold, those exchanged after an agent's bye
included (deep-PR answers to neighbours still in their last step): each agent tallies its
counters again after the ack, and the audit, which counts the logs, agrees on every count.
The same deep-PR run shows what DP leaves exposed: the queried states (membership)."""

from __future__ import annotations

import os

import pytest
from conftest import Runs, read_json

from agentd.tools.audit import audit_run

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def deep_pr_dp_run(tmp_path_factory):
    """isac with deep PR and DP on 3 agents. The env server's replies reach the agents up to
    200 ms apart (test-only link delay), so an agent finishes its last step, says bye, and only
    then answers a neighbour whose last reply came late."""
    run_dir = tmp_path_factory.mktemp("tally") / "run"
    env = {**os.environ, "AGENTD_TEST_LINK_DELAY": "env=100:100"}
    runs = Runs()
    try:
        proc = runs.start(["launch", "--run-dir", str(run_dir), "--quiet", "--n", "3",
                           "--algo", "isac", "--env", "spread", "--steps", "50",
                           "--pr-weight", "0.3", "--param", "start=16", "--param", "batch=8",
                           "--dp-sigma", "1"], run_dir, env=env)
        out, _ = proc.communicate(timeout=240)
        assert proc.returncode == 0, out.decode()
    finally:
        runs.cleanup()
    return run_dir


def test_summary_and_audit_agree_on_every_message_count_post_bye_included(deep_pr_dp_run):
    run_dir = deep_pr_dp_run
    summary, audit = read_json(run_dir / "summary.json"), audit_run(run_dir)
    after = {i: a["after_bye"] for i, a in summary["agents"].items()}
    assert any(a["peer"]["msgs_sent"] > 0 for a in after.values()), after   # it happened
    for i, stats in summary["agents"].items():
        name = f"agent {i}"
        for plane in ("peer", "env", "control"):
            sent = sum(e["sent"] for e in audit["edges"]
                       if e["src"] == name and e["plane"] == plane)
            received = sum(e["received"] for e in audit["edges"]
                           if e["dst"] == name and e["plane"] == plane)
            counted = stats["planes"][plane]
            assert (counted["msgs_sent"], counted["msgs_recv"]) == (sent, received), \
                (name, plane)
        peer_bytes = sum(e["sent_bytes"] for e in audit["edges"]
                         if e["src"] == name and e["plane"] == "peer")
        assert stats["planes"]["peer"]["bytes_sent"] == peer_bytes
    # the DP account too: every release, post-bye answers included, in summary and audit
    assert audit["dp"]["matches_run"] is True
    assert audit["sent_not_received"] == []


def test_the_queries_give_buffer_membership_away_dp_or_not(deep_pr_dp_run):
    """DP noises the answers' values, never the queried states: a neighbour tells which
    transitions are in the sender's buffer (the attack suite finds it)."""
    pytest.importorskip("sklearn")
    from agentd.tools.attack import attack_run

    report = attack_run(deep_pr_dp_run)
    found = [r for r in report["results"] if r["attack"] == "membership"]
    assert len(found) == 6 and report["dp_sigma"] == [1.0]
    for r in found:
        assert r["score"] > 0.9 and r["ci"][0] > 0.3 and r["tpr_at_fpr_1pct"] > 0.5
