"""Policy reciprocity (seed 000): the update by hand, its reductions (beta = 0 is IQL, lam = 0
the exact state), adjacency spaces, and the pr_values messages through the guard."""

from __future__ import annotations

import json

import numpy as np
import pytest

from agentd.algorithms.base import LearnerConfigError, LearnerSpec
from agentd.algorithms.tabular.iql import IQL
from agentd.algorithms.tabular.pr import PR, adjacency
from protocols import Codec, Guard, SchemaMismatch, encode, peer_identity


def spec(agent=0, neighbours=(1,), n_states=3, params=None, seed=0):
    d = {"type": "discrete", "n": n_states}
    return LearnerSpec(agent_id=agent, n_agents=2, neighbours=list(neighbours),
                       weights={}, obs_spaces=[d], act_spaces=[{"type": "discrete", "n": 2}],
                       controls=[agent], num_envs=1, seed=seed, params=params or {})


def step(learner, s, a, r, s_next):
    learner.observe(np.array([s]), np.array([a]), np.array([r]), np.array([s_next]),
                    np.array([False]), np.array([False]))


def push(learner, src, qid, q_rows: dict[int, list[float]]):
    states = np.array(sorted(q_rows), dtype=np.int64)
    learner.inbox(src, "pr_values", {"qid": qid, "states": states,
                                     "values": np.array([q_rows[s] for s in states])})


def test_adjacency_space():
    assert adjacency(0, 20, 1) == [1]
    assert adjacency(19, 20, 1) == [18]
    assert adjacency(5, 20, 2) == [3, 4, 6, 7]
    assert adjacency(5, 20, 0) == []


def test_pr_update_by_hand_two_agents_three_states():
    p = {"gamma": 0.5, "alpha": 0.5, "beta": 0.25, "lam": 0.5, "eps": 1}
    me = PR(spec(params=p))
    me.q[...] = [[0.0, 1.0], [2.0, 4.0], [1.0, 0.0]]
    step(me, s=1, a=1, r=1.0, s_next=2)
    out = me.outbox()                      # my rows of s=1 and its adjacency {0, 2}
    assert [o.dst for o in out] == [1]
    np.testing.assert_array_equal(out[0].body["states"], [0, 1, 2])
    np.testing.assert_array_equal(out[0].body["values"], me.q[[0, 1, 2]])
    assert me.awaiting() == {1}
    push(me, 1, qid=1, q_rows={0: [0.0, 3.0], 1: [0.0, 6.0], 2: [0.0, 1.0]})
    assert me.awaiting() == frozenset()
    me.update()
    # TD: 1 + 0.5 * max(1, 0) - 4 = -2.5                    -> alpha * td = -1.25
    # Q~1(1,1) = 0.5 * 6 + 0.5 * mean(3, 1) = 3 + 1 = 4
    # pull = Q(1,1) - Q~ = 4 - 4 = 0                         -> 4 - 1.25 - 0 = 2.75
    assert me.q[1, 1] == pytest.approx(2.75)
    step(me, s=1, a=1, r=1.0, s_next=2)
    push(me, 1, qid=2, q_rows={0: [0.0, 3.0], 1: [0.0, 6.0], 2: [0.0, 1.0]})
    me.update()
    # TD: 1 + 0.5 * 1 - 2.75 = -1.25 -> -0.625;  pull = 2.75 - 4 = -1.25 -> -0.25 * -1.25
    assert me.q[1, 1] == pytest.approx(2.75 - 0.625 + 0.3125)


def test_lam_zero_uses_the_exact_state_only():
    me = PR(spec(params={"lam": 0.0, "beta": 0.5, "alpha": 0.5, "gamma": 0.0}))
    step(me, s=1, a=0, r=0.0, s_next=1)
    # it releases only what its neighbours' update reads: the visited state's row
    np.testing.assert_array_equal(me.outbox()[0].body["states"], [1])
    push(me, 1, qid=1, q_rows={0: [100.0, 0.0], 1: [2.0, 0.0], 2: [-100.0, 0.0]})
    me.update()
    # td = 0, pull = 0 - 2 -> Q = 0 + 0.5 * 2 = 1, whatever the adjacent rows say
    assert me.q[1, 0] == pytest.approx(1.0)


def test_beta_zero_is_iql_exactly():
    rng = np.random.default_rng(3)
    pr = PR(spec(n_states=10, params={"beta": 0.0, "alpha": 0.3, "gamma": 0.8,
                                      "epsilon": 0.2}, seed=11))
    iql = IQL(spec(n_states=10, params={"alpha": 0.3, "gamma": 0.8, "epsilon": 0.2},
                   seed=11))
    other = np.random.default_rng(5).random((10, 2)) * 5
    s = 0
    for _ in range(500):
        a_pr, a_iql = pr.act(np.array([s])), iql.act(np.array([s]))
        np.testing.assert_array_equal(a_pr, a_iql)
        s_next, r = int(rng.integers(10)), float(rng.normal())
        for learner in (pr, iql):
            step(learner, s, int(a_pr[0]), r, s_next)
        states = pr.outbox()[0].body["states"]
        push(pr, 1, qid=pr.t, q_rows={int(x): list(other[x]) for x in states})
        pr.update()
        iql.update()
        s = s_next
    np.testing.assert_array_equal(pr.q, iql.q)


def test_stale_or_misshapen_values_are_ignored_and_missing_neighbours_skipped():
    me = PR(spec(neighbours=(1, 2), params={"beta": 0.2}))
    step(me, s=0, a=0, r=1.0, s_next=1)
    me.inbox(1, "pr_values", {"qid": 1, "states": np.array([0, 1]),
                              "values": np.zeros((2, 5))})          # 5 actions: not mine
    me.inbox(2, "pr_values", {"qid": 0, "states": np.array([0, 1]),
                              "values": np.zeros((2, 2))})          # stale step
    assert me.awaiting() == {1, 2}
    push(me, 1, qid=1, q_rows={0: [1.0, 1.0], 1: [1.0, 1.0]})
    assert me.awaiting() == {2}
    scalars = me.update()                   # forced: neighbour 2 never answered
    assert scalars["neighbours_missing"] == 1.0


def test_beta_times_degree_must_stay_below_one():
    with pytest.raises(LearnerConfigError, match="beta"):
        PR(spec(neighbours=(1, 2, 3, 4), params={"beta": 0.3}))


def test_pr_values_schema_in_the_guard():
    guard = Guard(0, neighbours=[1], permitted_peer_kinds=["pr_values"])
    codec = Codec()
    good = {"qid": 3, "states": np.array([1, 2]), "values": np.zeros((2, 2))}
    msg = guard.incoming([encode(codec, "pr_values", 1, 0, 3, 1, good)], "peer",
                         peer_identity(1))
    assert msg.kind == "pr_values"
    for bad in ({**good, "states": np.array([1.5, 2.0])},            # float states
                {**good, "values": np.zeros((2, 2, 2))},             # rank 3
                {"qid": 3, "values": np.zeros((2, 2))}):             # no states
        with pytest.raises(SchemaMismatch):
            guard.incoming([encode(codec, "pr_values", 1, 0, 3, 1, bad)], "peer",
                           peer_identity(1))


# -- the offline consensus diagnostic and a live run ------------------------------------------
def test_policy_consensus_by_hand(tmp_path):
    from agentd.tools.diagnostics import policy_consensus

    for agent, q in ((0, [[0.0, 0.0]]), (1, [[np.log(3.0), 0.0]])):
        (tmp_path / "checkpoints" / f"agent-{agent}").mkdir(parents=True)
        np.savez(tmp_path / "checkpoints" / f"agent-{agent}" / "step-10.npz", q=np.array(q))
    # policies [1/2, 1/2] and [3/4, 1/4]; average [5/8, 3/8]; squared errors 1/64 each
    assert policy_consensus(tmp_path) == [{"step": 10, "mse": pytest.approx(1 / 64)}]


def test_pr_on_digital_live(runs, tmp_path):
    from conftest import read_json

    from agentd.runtime.msglog import open_log
    from agentd.tools.diagnostics import write_consensus

    cfg = tmp_path / "c.toml"
    cfg.write_text("checkpoint_every = 100\n")
    run_dir = tmp_path / "run"
    res = runs.launch(run_dir, "--config", str(cfg), "--n", "4", "--algo", "pr", "--env",
                      "digital", "--steps", "400", "--episode-len", "20")
    assert res.returncode == 0, res.stdout
    s = read_json(run_dir / "summary.json")
    assert s["status"] == "done" and s["episodes"] == 20
    peer_bytes = 0
    for i in range(4):
        assert s["agents"][str(i)]["planes"]["peer"]["rejected"] == {}
        for r in open_log(run_dir / "logs" / f"agent-{i}.log"):
            if r.direction == "out" and r.plane == "peer":
                assert r.kind == "pr_values"
                peer_bytes += r.nbytes
    assert s["peer_bytes_per_edge_per_step"] == pytest.approx(peer_bytes / (8 * 400), abs=0.1)
    # the coordinator wrote the diagnostic after the run: into metrics.jsonl, the summary,
    # consensus.jsonl and consensus.png; it equals a fresh offline computation
    assert (run_dir / "consensus.png").exists()
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    in_metrics = [r["consensus"] for r in records if "consensus" in r]
    curve = write_consensus(run_dir)
    assert in_metrics == curve and [p["step"] for p in curve] == [100, 200, 300, 400]
    assert all(0 <= p["mse"] < 0.25 for p in curve)
    assert s["consensus"] == {"key": "mse", **curve[-1]}
    from agentd.tools.plotting import load_series

    assert load_series(run_dir)["consensus_mse"] == ([100, 200, 300, 400],
                                                     [p["mse"] for p in curve])


def test_plot_keeps_one_colour_per_run_and_one_point_per_step(tmp_path):
    """With K env copies several episodes end at one step: one (mean) point per step; a run
    keeps its colour in every panel even where an earlier run lacks the series."""
    import json

    from agentd.tools.plotting import load_series, plot_runs

    runs = []
    for name, with_scalar in (("a", False), ("b", True)):
        run = tmp_path / name
        run.mkdir()
        recs = [{"step": s, "return": r, "agents": {"0": {"loss": r}} if with_scalar else {}}
                for s, r in ((10, 1.0), (10, 3.0), (20, 5.0), (20, 7.0))]
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
        runs.append(run)
    assert load_series(runs[1])["return"] == ([10, 20], [2.0, 6.0])
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seen = {}
    real_savefig = plt.Figure.savefig

    def grab(fig, *args, **kwargs):
        for ax in fig.axes:
            for line in ax.get_lines():
                seen.setdefault(line.get_label(), set()).add(line.get_color())
        return real_savefig(fig, *args, **kwargs)

    plt.Figure.savefig = grab
    try:
        assert plot_runs(runs, tmp_path / "out.png") == ["return", "loss"]
    finally:
        plt.Figure.savefig = real_savefig
    assert len(seen["b"]) == 1 and seen["a"] != seen["b"]
