"""Replay: every learner is reproduced bit for bit from its log (the learner conformance test);
perturbations change exactly what they say; damaged logs and tampered state are reported."""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess

import numpy as np
import pytest
from conftest import AGENTD, read_json
from rawlog import raw_log, write_v1

from agentd.algorithms import ALGORITHMS
from agentd.testing import (
    check_checkpoint,
    check_dp,
    check_replay,
    check_spaces,
    check_wire,
    conformance_run,
)
from agentd.tools.audit import audit_run
from agentd.tools.replay import Item, Perturbation, compare_state, replay
from protocols import Codec, encode
from protocols.envelope import decode_body, decode_header, split

# Runs that exercise a feature beyond a learner's default run (the kit needs none: it picks the
# env and small budgets from the learner's own declarations, so a new learner is tested as is)
VARIANTS: dict[str, dict] = {
    "mdpo": {"share_latent": True},                  # its latent messages
    "naive-pg": {"estimator": "dice"},               # the sampled estimator
    "lola": {"opponent": "shared"},                  # opponent shaping with a shared policy
    "meta-mapg": {"opponent": "shared"}}


class LazyRuns(dict):
    """algo -> run directory: the conformance kit's short live run of it (n = 3, or 2 on
    ipd and lstage; K = 2; 300 steps), launched on first use, so a test's setup pays (and its timeout
    covers) only the runs it reads, not one per registered learner."""

    def __init__(self, tmp_path_factory) -> None:
        super().__init__()
        self.tmp = tmp_path_factory

    def __missing__(self, algo: str):
        self[algo] = conformance_run(algo, self.tmp.mktemp(algo), params=VARIANTS.get(algo),
                                     timeout=120)
        return self[algo]


@pytest.fixture(scope="module")
def runs_by_algo(tmp_path_factory):
    """One short live run per registered learner, made by the conformance kit."""
    return LazyRuns(tmp_path_factory)


@pytest.mark.parametrize("algo", sorted(ALGORITHMS))
def test_conformance_replay_reproduces_every_agent_exactly_and_its_state_round_trips(
        runs_by_algo, algo):
    assert check_replay(runs_by_algo[algo]) == []


@pytest.mark.parametrize("algo", sorted(ALGORITHMS))
def test_conformance_checkpoint_restores(runs_by_algo, algo):
    assert check_checkpoint(runs_by_algo[algo]) == []


@pytest.mark.parametrize("algo", sorted(ALGORITHMS))
def test_conformance_privacy_label_agrees_everywhere_and_only_permitted_kinds_cross(
        runs_by_algo, algo):
    assert check_wire(runs_by_algo[algo]) == []


@pytest.mark.parametrize("algo", sorted(ALGORITHMS))
def test_conformance_spaces_honoured_and_dp_releases_declared(runs_by_algo, algo):
    assert check_spaces(runs_by_algo[algo]) + check_dp(runs_by_algo[algo]) == []


def _as_if_run_by(src, dst, algo: str):
    """A copy of a run directory whose config.toml names another learner."""
    shutil.copytree(src, dst)
    config = dst / "config.toml"
    config.write_text(re.sub(r'(?m)^algo = ".*"$', f'algo = "{algo}"', config.read_text()))
    return dst


def test_the_kit_names_what_a_nonconforming_run_breaks(runs_by_algo, tmp_path):
    """The checks can fail: a checkpoint altered, peer kinds the learner does not permit on
    the wire, spaces other than the declared ones -- each named by the check that reads it."""
    run_dir = tmp_path / "altered"
    shutil.copytree(runs_by_algo["iql"], run_dir)
    path = run_dir / "checkpoints" / "agent-1.npz"
    with np.load(path) as saved:
        q = saved["q"].copy()
    q[0, 0] += 1.0
    np.savez(path, q=q)
    assert check_replay(run_dir) == [
        "agent 1: the replayed state differs from the checkpoint in ['q']"]
    wire = check_wire(_as_if_run_by(runs_by_algo["pr"], tmp_path / "pr-as-iql", "iql"))
    assert wire == ["peer kinds not permitted crossed: ['pr_values']"]
    spaces = check_spaces(_as_if_run_by(runs_by_algo["iql"], tmp_path / "iql-as-isac", "isac"))
    assert spaces[0] == "agent 0: declares actions 'box', ran on ['discrete']"


@pytest.mark.parametrize("algo", ["naive-pg", "lola", "meta-pg", "meta-mapg"])
def test_shaping_agents_exchange_nothing_but_env_traffic_unless_shared(runs_by_algo, algo):
    run_dir = runs_by_algo[algo]
    shared = VARIANTS.get(algo, {}).get("opponent") == "shared"
    report = audit_run(run_dir)
    peer = {(e["src"], e["dst"]): e["kinds"] for e in report["peer"]["edges"]}
    sent = {(e["src"], e["dst"]): e["sent"] for e in report["edges"] if e["plane"] == "peer"}
    pair = [("agent 0", "agent 1"), ("agent 1", "agent 0")]
    if shared:      # one policy_params per episode each way (300 steps / 20), and no other
        assert peer == {p: ["policy_params"] for p in pair} and report["private"] is False
        assert sent == {p: 15 for p in pair}
    else:
        assert peer == {p: [] for p in pair} and sent == {} and report["private"] is True
        assert report["peer"]["permitted"] == []


def test_replay_cli_says_bit_for_bit(runs_by_algo):
    res = subprocess.run(check=False, args=[*AGENTD, "replay", str(runs_by_algo["dac"]), "--agent", "1"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "identical to the log at all 300 steps" in res.stdout
    assert "bit-for-bit identical to the checkpoint (q, zeta)" in res.stdout


def test_replay_cli_names_a_deep_learners_arrays_briefly(runs_by_algo):
    res = subprocess.run(check=False, args=[*AGENTD, "replay", str(runs_by_algo["isac"]),
                                            "--agent", "0"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    line = next(t for t in res.stdout.splitlines() if "final state" in t)
    assert "bit-for-bit identical" in line and "more)" in line and len(line) < 200, line


def test_tampered_checkpoint_is_reported(runs_by_algo, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(runs_by_algo["iql"], run_dir)
    path = run_dir / "checkpoints" / "agent-0.npz"
    with np.load(path) as saved:
        q = saved["q"].copy()
    q[0, 0] += 1e-12
    np.savez(path, q=q)
    res = subprocess.run(check=False, args=[*AGENTD, "replay", str(run_dir), "--agent", "0"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "differs from the checkpoint in q" in res.stdout


def rewrite_reward(log_path, step: int, delta: float) -> None:
    """Change the reward of one logged env reply (as if the agent had been told otherwise);
    the log is written back uncompressed (version 1), which the reader takes as well."""
    meta, records = raw_log(log_path)
    codec = Codec()
    for rec in records:
        if rec[0] == "in" and rec[2] == "env":
            head, body = split(rec[4][0])
            h, b = decode_header(codec, head), decode_body(codec, head, body)
            if h["k"] == "step" and b["t"] == step:
                b["reward"] = b["reward"] + delta
                rec[4] = [encode(codec, "step", h["s"], h["d"], h["t"], h["q"], b)]
    meta = {k: v for k, v in meta.items() if k != "compression"}
    write_v1(log_path, [["meta", 0.0, {**meta, "version": 1}], *records])


def test_a_changed_env_reply_shows_as_the_first_divergence(runs_by_algo, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(runs_by_algo["dac"], run_dir)
    rewrite_reward(run_dir / "logs" / "agent-0.log", step=50, delta=100.0)
    res = replay(run_dir, 0)
    assert res.first_divergence is not None and res.first_divergence >= 50
    same = compare_state(res.state, run_dir / "checkpoints" / "agent-0.npz")
    assert not same["q"]


def test_truncated_log_is_reported_and_skipped(runs_by_algo, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(runs_by_algo["dac"], run_dir)
    path = run_dir / "logs" / "agent-2.log"
    path.write_bytes(path.read_bytes()[:-5])   # the crash hit the last record (after the bye)
    res = replay(run_dir, 2)
    assert res.truncated_tail and res.first_divergence is None and res.steps == 300


# -- perturbations change exactly what they say -------------------------------------------------
def stream() -> list[Item]:
    items = []
    for t in range(6):
        items.append(Item("env", -2, t, "step", {"t": t}))
        for j in (1, 3):
            items.append(Item("peer", j, t, "consensus",
                              {"idx": np.arange(3), "x": np.full(3, 10.0 * j + t)}))
    return items


def test_drop_from_removes_exactly_that_neighbour():
    out = list(Perturbation(drop_from=frozenset({1})).apply(stream()))
    assert _same(out, [i for i in stream() if not (i.plane == "peer" and i.src == 1)])


def _same(a: list[Item], b: list[Item]) -> bool:
    return len(a) == len(b) and all(
        (x.plane, x.src, x.step, x.kind) == (y.plane, y.src, y.step, y.kind) and
        all(np.array_equal(x.body[k], y.body[k]) for k in x.body) for x, y in zip(a, b))


def test_only_env_removes_every_peer_message():
    out = list(Perturbation(only_env=True).apply(stream()))
    assert _same(out, [i for i in stream() if i.plane == "env"])


def test_delay_from_delivers_k_steps_late_and_nothing_else_moves():
    out = list(Perturbation(delay_from={3: 2}).apply(stream()))
    assert _same([i for i in out if not (i.plane == "peer" and i.src == 3)],
                 [i for i in stream() if not (i.plane == "peer" and i.src == 3)])
    env_seen = -1
    for item in out:
        if item.plane == "env":
            env_seen = item.step
        elif item.src == 3:
            assert env_seen == item.step + 2     # right after the env reply of step t + 2
    delivered = [i.step for i in out if i.plane == "peer" and i.src == 3]
    assert delivered == [0, 1, 2, 3]             # steps 4 and 5 would arrive after the run


def test_noise_from_changes_only_that_neighbours_floats():
    sigma = 0.5
    items = stream() * 50
    out = list(Perturbation(noise_from={1: sigma}, seed=7).apply(items))
    assert len(out) == len(items)
    diffs = []
    for before, after in zip(items, out):
        assert (before.plane, before.src, before.step) == (after.plane, after.src, after.step)
        if before.plane == "peer":
            np.testing.assert_array_equal(before.body["idx"], after.body["idx"])
            d = after.body["x"] - before.body["x"]
            if before.src == 1:
                diffs.append(d)
            else:
                assert not d.any()
    assert abs(np.std(np.concatenate(diffs)) - sigma) < 0.05


def test_perturbed_replay_writes_a_run_like_directory_and_plots(runs_by_algo, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(runs_by_algo["dac"], run_dir)
    res = subprocess.run(check=False, args=[*AGENTD, "replay", str(run_dir), "--agent", "0", "--drop-from", "1",
                          "--delay-from", "2:3", "--noise-from", "2:0.1"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    out = run_dir / "replays" / "agent-0-drop-from1_delay-from2-3_noise-from2-0.1"
    s = read_json(out / "summary.json")
    assert s["kind"] == "replay" and s["perturbation"] == \
        "drop-from 1, delay-from 2:3, noise-from 2:0.1"
    assert (out / "metrics.jsonl").read_text() and (out / "learning_curve.png").exists()
    res = subprocess.run(check=False, args=[*AGENTD, "plot", str(run_dir), str(out), "--out",
                          str(tmp_path / "cmp.png")], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and (tmp_path / "cmp.png").stat().st_size > 0


def test_replay_of_a_missing_agent_is_a_clear_error(runs_by_algo):
    res = subprocess.run(check=False, args=[*AGENTD, "replay", str(runs_by_algo["dac"]), "--agent", "9"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "agent-9.log does not exist" in res.stderr


def test_perturbations_change_a_communicating_learner(runs_by_algo, tmp_path):
    """pr exchanges pr_values every step: exact without perturbation, changed by each one."""
    run_dir = runs_by_algo["pr"]
    exact = replay(run_dir, 1)
    assert exact.peer_items == exact.peer_delivered == 2 * 300      # ring of 3: 2 neighbours
    assert exact.first_divergence is None and exact.forced_steps == 0
    for pert in (Perturbation(drop_from=frozenset({0})), Perturbation(only_env=True),
                 Perturbation(noise_from={2: 1.0}), Perturbation(delay_from={0: 1})):
        res = replay(run_dir, 1, pert)
        same = compare_state(res.state, run_dir / "checkpoints" / "agent-1.npz")
        assert not all(same.values()), pert.describe()
        expected_forced = 0 if pert.noise_from else 300
        assert res.forced_steps == expected_forced, pert.describe()
    dropped = replay(run_dir, 1, Perturbation(drop_from=frozenset({0})))
    assert dropped.peer_delivered == 300                               # only agent 2's


@pytest.mark.parametrize("algo", ["ippo", "dpo", "mdpo", "ia2c", "maa2c", "mappo", "coma",
                                  "happo", "mat"])
def test_onpolicy_conformance_runs_end_with_finite_losses(runs_by_algo, algo):
    """300 steps, rollout 50: six updates per agent, every reported loss finite."""
    import json
    import math

    records = [scalars for line in (runs_by_algo[algo] / "metrics.jsonl").read_text().splitlines()
               for scalars in json.loads(line).get("agents", {}).values()
               if scalars and "policy_loss" in scalars]
    assert len(records) >= 3
    assert all(math.isfinite(r["policy_loss"]) and math.isfinite(r["value_loss"])
               for r in records)


def test_happo_factors_cross_exactly_the_edges_of_each_iterations_order(runs_by_algo):
    """300 steps, rollout 50: six iterations, two happo_factor messages each, each from an
    agent to the next of that iteration's order (drawn from the run seed, 4) — as the audit
    lists them; the run is labelled non-private everywhere."""
    from agentd.algorithms.onpolicy.happo import happo_order

    report = audit_run(runs_by_algo["happo"])
    want: dict[tuple[str, str], int] = {}
    for it in range(6):
        order = happo_order(4, it, 3)
        for a, b in itertools.pairwise(order):
            want[(f"agent {a}", f"agent {b}")] = want.get((f"agent {a}", f"agent {b}"), 0) + 1
    sent = {(e["src"], e["dst"]): e["sent"] for e in report["edges"]
            if e["kind"] == "happo_factor"}
    assert sent == want and report["private"] is False
    assert all(e["sent"] == e["received"] for e in report["edges"] if e["plane"] == "peer")
    assert report["peer"]["kinds_seen"] == ["happo_factor"] and report["rejections"] == []
