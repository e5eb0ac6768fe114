"""DP across restarts: a restarted agent's account goes on from every release its log holds
(its epsilon continues, it does not start over) and it draws noise from a stream of its own,
so no noise its first process sent is sent again."""

from __future__ import annotations

import os
import signal
from collections import Counter

import numpy as np
from conftest import Runs, is_agentd_process, read_json, wait_for

from agentd.privacy.dp import DpLayer, DpSettings, KindNoise
from agentd.runtime.msglog import open_log
from agentd.tools.audit import audit_run

STEPS = 400


def test_each_incarnation_draws_its_own_noise_and_the_first_is_unchanged():
    settings = DpSettings({"pr_values": KindNoise(1.0, 1.0)}, 1e-5)
    body = {"qid": 1, "states": np.arange(3), "values": np.zeros((3, 2))}
    draws = [DpLayer.for_agent(settings, 7, 1, k).privatise("pr_values", body)["values"]
             for k in (0, 1, 2)]
    first = DpLayer(settings, np.random.default_rng([7, 1, 0xD1FF]))   # the stream as it was
    assert np.array_equal(draws[0], first.privatise("pr_values", body)["values"])
    assert not np.isin(draws[1], draws[0]).any() and not np.isin(draws[2], draws[1]).any()


def test_the_account_state_round_trips():
    settings = DpSettings({"pr_values": KindNoise(2.0, 1.0)}, 1e-5)
    a = DpLayer.for_agent(settings, 0, 0)
    a.releases.update({(1, 2.0, 1.0): 5, (2, 2.0, 0.5): 3})
    a.distinct.update({(2.0, 1.0): 5, (2.0, 0.5): 3})
    a.exact.update({"pr_values": 8})
    b = DpLayer.for_agent(settings, 0, 0, 1)
    b.load_state(a.state_dict())
    assert b.releases == a.releases and b.distinct == a.distinct and b.exact == a.exact


def _pid(run_dir, i):
    try:
        return read_json(run_dir / "endpoints.json")["agents"][str(i)]["pid"]
    except (OSError, ValueError, KeyError):
        return None


def test_a_restarted_dp_agent_continues_its_epsilon_and_never_repeats_its_noise(tmp_path):
    run_dir = tmp_path / "run"
    runs = Runs()
    try:
        # sigma 1e6 on rows clipped to norm 1: what goes on the wire is the noise itself
        proc = runs.start(["launch", "--run-dir", str(run_dir), "--quiet", "--algo", "pr",
                           "--env", "digital", "--n", "3", "--steps", str(STEPS),
                           "--episode-len", "20", "--seed", "4", "--dp-sigma", "1e6",
                           "--recovery-every", "40", "--max-restarts", "1",
                           "--heartbeat-timeout", "20", "--peer-timeout", "2"], run_dir)
        wait_for(lambda: (run_dir / "metrics.jsonl").exists() and len(
            (run_dir / "metrics.jsonl").read_text().splitlines()) >= 6
            or proc.poll() is not None, 120, "6 episodes")
        pid = _pid(run_dir, 1)
        assert proc.poll() is None and pid is not None and is_agentd_process(pid)
        os.kill(pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=180)
        assert proc.returncode == 0, out.decode()
    finally:
        runs.cleanup()
    s = read_json(run_dir / "summary.json")
    assert s["restart_counts"] == {"agent-1": 1}
    # every release agent 1 logged, across both processes, is in its account
    sent: Counter = Counter()
    before, after, restarted = [], [], False
    for rec in open_log(run_dir / "logs" / "agent-1.log"):
        restarted |= rec.direction == "restart"
        if rec.direction == "out" and rec.kind == "pr_values":
            sent[rec.header["d"]] += 1
            (after if restarted else before).append(rec.body["values"].ravel())
    edges = {e["dst"]: e["releases"] for e in s["dp"]["edges"] if e["src"] == 1}
    assert edges == dict(sent) and sum(edges.values()) > 2 * STEPS - 2 * 80
    assert audit_run(run_dir)["dp"]["matches_run"] is True
    # no noise the first process sent comes again from the second: a message noised like an
    # earlier one would be within 2 of it in every element (the rows are clipped to norm 1)
    assert before and after
    assert not any(_reused(a, before) for a in after)


def _reused(message: np.ndarray, earlier: list[np.ndarray]) -> bool:
    same = [b for b in earlier if b.shape == message.shape]
    return bool(same) and bool((np.abs(np.stack(same) - message) <= 2.0).all(axis=1).any())


def test_the_reuse_check_sees_reused_noise():
    """The live test's check, on the stream a restart used to restart: it finds the reuse."""
    settings = DpSettings({"pr_values": KindNoise(1e6, 1.0)}, 1e-5)

    def sent(layer, values):
        return [layer.privatise("pr_values", {"qid": 1, "states": np.arange(3),
                                              "values": v})["values"].ravel() for v in values]
    rng = np.random.default_rng(0)
    first = sent(DpLayer.for_agent(settings, 4, 1), rng.normal(0, 1, (20, 3, 2)))
    again = sent(DpLayer.for_agent(settings, 4, 1), rng.normal(0, 1, (5, 3, 2)))
    fresh = sent(DpLayer.for_agent(settings, 4, 1, 1), rng.normal(0, 1, (5, 3, 2)))
    assert all(_reused(a, first) for a in again) and not any(_reused(a, first) for a in fresh)
