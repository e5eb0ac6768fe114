"""Lost links and time-varying graphs: peer_timeout, Metropolis-Hastings weights on the live
graph, running-sum consensus for dac-deep, --link-schedule. Checked from the logs."""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest
from conftest import AGENTD, read_json

from agentd.algorithms.plugins.consensus_sums import RunningSumConsensus
from agentd.runtime.msglog import open_log
from agentd.tools.replay import compare_state, replay
from topologies.live import LiveGraph, ScheduleError, parse_schedule


def test_live_graph_weights_are_doubly_stochastic_at_every_step():
    ring = [(0, 1), (1, 2), (2, 3), (0, 3)]
    live = LiveGraph.of(ring, [[5, 9, 0, 1], [7, 12, 2, 3]])
    for t in range(15):
        w = np.zeros((4, 4))
        for i in range(4):
            for j, v in live.weights(i, t).items():
                w[i, j] = v
        assert np.allclose(w, w.T) and np.allclose(w.sum(1), 1) and (w >= 0).all(), t
        assert (w[0, 1] == 0) == (5 <= t < 9) and (w[2, 3] == 0) == (7 <= t < 12)


def test_a_schedule_file_is_checked_line_by_line(tmp_path):
    path = tmp_path / "links.txt"
    path.write_text("# comment\n10 20 2 0\n\n")
    assert parse_schedule(path, 3) == [[10, 20, 0, 2]]
    path.write_text("10 20 0 5\n")
    with pytest.raises(ScheduleError, match=r"links.txt:1: .*0\.\.2"):
        parse_schedule(path, 3)
    path.write_text("10 x 0 1\n")
    with pytest.raises(ScheduleError, match="four integers"):
        parse_schedule(path, 3)
    from agentd.config import ConfigError, resolve

    path.write_text("10 20 0 1\n")
    with pytest.raises(ConfigError, match="does not follow a link schedule"):
        resolve({}, {"algo": "dac", "link_schedule": str(path)})
    with pytest.raises(ConfigError, match="only with running_sums"):
        resolve({}, {"algo": "dac-deep", "env": "spread", "link_schedule": str(path),
                      "params": {"running_sums": False}})


def test_running_sums_recover_the_mass_of_lost_messages():
    """Three agents on a triangle gossip for 30 steps; every message 0 -> 1 of steps 5..14
    is lost. Mass is never lost for good: once the link is back, sum x = sum beta."""
    rng = np.random.default_rng(1)
    edges = [(0, 1), (1, 2), (0, 2)]
    live = LiveGraph.of(edges, [])
    agents = [RunningSumConsensus(4, 3, {j: 1 / 3 for j in range(3)}, i, live)
              for i in range(3)]
    idx = np.arange(4)
    for t in range(1, 31):
        for a in agents:
            a.t_now = t
            a.local_update(idx, rng.normal(size=4))
            a.start(t, idx, 1)
        msgs = [(a.me, m) for a in agents for m in a.pending_messages()]
        for src, (dst, mt, r, widx, s, _) in msgs:
            if not (src == 0 and dst == 1 and 5 <= t < 15):
                agents[dst].receive(src, mt, r, widx, s)
        for a in agents:
            a.give_up(a.waiting_for())
            a.pending_messages()
            a.finish()
        total_x = sum(a.x for a in agents)
        total_beta = sum(a.beta for a in agents)
        lost = not (t < 5 or t >= 15)
        assert np.allclose(total_x, total_beta) != lost, t   # in flight, then delivered


def test_a_link_down_for_a_stretch_keeps_mass_and_w_doubly_stochastic(tmp_path):
    """dac-deep on a 3-ring: edge 0-1 is scheduled down for steps 20..39 (both ends know),
    and the transport's test shim loses every message between 1 and 2 of steps 50..59 (nobody
    knows; peer_timeout ends each wait). The run completes; from the logs and checkpoints:
    W(t) was symmetric with rows summing to at most 1 at every step and round, no message
    crossed the scheduled-down edge, and sum_i x^i = sum_i beta^i after the link is back."""
    schedule = tmp_path / "links.txt"
    schedule.write_text("20 40 0 1\n")
    run_dir = tmp_path / "run"
    res = subprocess.run(
        [*AGENTD, "launch", "--quiet", "--run-dir", str(run_dir), "--n", "3", "--algo",
         "dac-deep", "--env", "spread", "--steps", "80", "--param", "start=16", "--param",
         "batch=8", "--param", "buffer=48", "--param", "hidden=8", "--param", "mode=full",
         "--peer-timeout", "0.05", "--link-schedule", str(schedule)],
        capture_output=True, text=True, timeout=240, check=False,
        env={**os.environ, "AGENTD_TEST_LINK_DROP": "1-2@50-60"})
    assert res.returncode == 0, res.stdout + res.stderr
    s = read_json(run_dir / "summary.json")
    assert "running_sums = true" in (run_dir / "config.toml").read_text()
    assert s["agents"]["1"]["planes"]["peer"]["refused_out"] == {"test_link_drop": 10}
    assert s["agents"]["1"]["peer_timeouts"] >= 1 and s["agents"]["0"]["peer_timeouts"] == 0
    weights: dict[tuple[int, int], dict[tuple[int, int], float]] = {}
    for i in range(3):
        for r in open_log(run_dir / "logs" / f"agent-{i}.log"):
            if r.direction == "out" and r.kind == "consensus_sum":
                weights.setdefault((r.body["t"], r.body["r"]), {})[(i, r.header["d"])] = \
                    r.body["w"]
    assert len(weights) > 40
    for (t, _), w in weights.items():
        down = 20 <= t < 40
        assert ((0, 1) in w or (1, 0) in w) is not down, t
        for (i, j), v in w.items():
            assert w[(j, i)] == v, (t, i, j)           # both ends use the same W_ij(t)
        for i in range(3):
            assert sum(v for (a, _), v in w.items() if a == i) <= 1.0 + 1e-12
    x = sum(np.load(run_dir / "checkpoints" / f"agent-{i}.npz")["x"] for i in range(3))
    beta = sum(np.load(run_dir / "checkpoints" / f"agent-{i}.npz")["beta"] for i in range(3))
    assert np.abs(beta).max() > 1e-3 and np.allclose(x, beta, atol=1e-9)
    # the agent that gave up on a neighbour replays exactly, timeouts included
    out = replay(run_dir, 1)
    assert out.silent == s["agents"]["1"]["peer_timeouts"] and out.first_divergence is None
    same = compare_state(out.state, run_dir / "checkpoints" / "agent-1.npz")
    assert same and all(same.values())


def test_plain_gossip_loses_the_mass_of_lost_messages_for_good():
    """The same loss with plain gossip: the missing weight stays home and sum x drifts from
    sum beta, and stays off after the link is back (why dac-deep switches to running sums)."""
    from agentd.algorithms.plugins.consensus import LogRatioConsensus

    rng = np.random.default_rng(1)
    agents = [LogRatioConsensus(4, 3, {j: 1 / 3 for j in range(3)}, i) for i in range(3)]
    idx = np.arange(4)
    for t in range(1, 31):
        for a in agents:
            a.local_update(idx, rng.normal(size=4))
            a.start(t, idx, 1)
        msgs = [(a.me, m) for a in agents for m in a.pending_messages()]
        for src, (mt, r, widx, x) in msgs:
            for dst in range(3):
                if dst != src and not (src == 0 and dst == 1 and 5 <= t < 15):
                    agents[dst].receive(src, mt, r, widx, x)
        for a in agents:
            a.finish()
    assert not np.allclose(sum(a.x for a in agents), sum(a.beta for a in agents))
