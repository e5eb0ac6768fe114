"""On-policy learners as live runs (real processes, real ZeroMQ, real envs): finite losses,
MDPO's latent traffic in the audit, and the guard on latent messages over real sockets."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
import zmq
from conftest import read_json

from agentd.algorithms.base import LearnerSpec
from agentd.algorithms.onpolicy.mdpo import MDPO
from agentd.runtime.msglog import MessageLog, open_log
from agentd.runtime.transport import Transport
from agentd.tools.audit import audit_run
from protocols import Codec, Guard, encode, peer_identity

STEPS = 120


def losses(run_dir):
    """agent -> the learner scalars reported in metrics.jsonl (records with an update)."""
    out: dict[int, list[dict]] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        for agent, scalars in json.loads(line).get("agents", {}).items():
            if scalars and "policy_loss" in scalars:
                out.setdefault(int(agent), []).append(scalars)
    return out


def assert_finite_losses(run_dir, n, keys=("policy_loss", "value_loss")):
    summary = read_json(run_dir / "summary.json")
    assert summary["status"] == "done" and summary["private"] is True
    scalars = losses(run_dir)
    assert sorted(scalars) == list(range(n))
    for agent, records in scalars.items():
        for key in keys:
            assert all(math.isfinite(r[key]) for r in records), (agent, key)
    return summary, scalars


@pytest.fixture(scope="module")
def mdpo_run(tmp_path_factory):
    import subprocess

    from conftest import AGENTD
    run_dir = tmp_path_factory.mktemp("mdpo") / "run"
    res = subprocess.run([*AGENTD, "launch", "--quiet", "--run-dir", str(run_dir), "--n", "3",
                          "--algo", "mdpo", "--env", "random-mdp", "--steps", str(STEPS),
                          "--num-envs", "2", "--episode-len", "20", "--param", "rollout=30",
                          "--param", "share_latent=true", "--param", "model_steps=10",
                          "--param", "pred_steps=10", "--heartbeat-timeout", "20"],
                         capture_output=True, text=True, timeout=180, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    return run_dir


def test_mdpo_shares_latents_every_step_and_learns_with_finite_losses(mdpo_run):
    _, scalars = assert_finite_losses(mdpo_run, 3, ("policy_loss", "value_loss", "model_nll",
                                                    "model_reward_mse"))
    # history l = 3: the predictor is trained from the third rollout on (4 rollouts here)
    assert all(any("predictor_nll" in r for r in records) for records in scalars.values())
    report = audit_run(mdpo_run)
    assert report["peer"]["kinds_seen"] == ["latent"] and report["peer"]["only_permitted"]
    assert report["sent_not_received"] == [] and report["rejections"] == []
    latent_edges = [e for e in report["edges"] if e["kind"] == "latent"]
    assert len(latent_edges) == 6                                # 3-ring: both directions
    assert all(e["sent"] == e["received"] == STEPS for e in latent_edges)   # once per step
    probe = {row["agent"]: row for row in report["probe"]["agents"]}
    assert all(probe[f"agent {i}"]["peer_messages"] == 2 * STEPS for i in range(3))
    assert all(probe[f"agent {i}"]["accuracy"] is not None for i in range(3))


def test_latent_bodies_are_the_declared_shape(mdpo_run):
    log = open_log(mdpo_run / "logs" / "agent-1.log")
    sent = [r for r in log if r.direction == "out" and r.kind == "latent"]
    assert len(sent) == 2 * STEPS
    for rec in sent:
        z = rec.body["z"]
        assert z.shape == (2, 8) and z.dtype == np.float32 and np.isfinite(z).all()
    assert sorted({r.body["t"] for r in sent}) == list(range(1, STEPS + 1))


def test_dpo_on_multiagent_mujoco_as_documented(runs, tmp_path):
    """The env spec as users type it; Box actions (Gaussian head, sampled KL)."""
    run_dir = tmp_path / "run"
    res = runs.launch(run_dir, "--n", "2", "--algo", "dpo", "--env",
                      "gymnasium_robotics.mamujoco_v1:parallel_env", "--env-arg",
                      "scenario=HalfCheetah", "--env-arg", "agent_conf=2x3", "--steps", "60",
                      "--episode-len", "30", "--param", "rollout=30", timeout=180)
    assert res.returncode == 0, res.stdout
    summary, scalars = assert_finite_losses(run_dir, 2, ("policy_loss", "value_loss", "kl"))
    assert summary["episodes"] == 2 and summary["peer_bytes_per_edge_per_step"] == 0
    assert all(r["beta_kl"] > 0 for records in scalars.values() for r in records)


def test_guard_rejects_bad_latents_over_real_sockets_and_the_agent_carries_on(tmp_path):
    """Agent 0 (a real MDPO learner behind a real transport and guard, K = 2, latent_dim = 4)
    receives, from its neighbour 1 over tcp: a latent of the wrong shape, one of the wrong
    dtype, one with a NaN, one of a wrong rank — each rejected, counted and logged — then the
    right one, which its learner takes to finish the step."""
    learner = MDPO(LearnerSpec(agent_id=0, n_agents=2, neighbours=[1], weights={0: 0.5, 1: 0.5},
                               obs_spaces=[{"type": "discrete", "n": 3}],
                               act_spaces=[{"type": "discrete", "n": 2}], controls=[0],
                               num_envs=2, seed=0,
                               params={"share_latent": True, "latent_dim": 4, "rollout": 1,
                                       "epochs": 1, "model_steps": 1, "pred_steps": 1}))
    log = MessageLog("agent 0", tmp_path / "agent-0.log")
    guard = Guard(0, [1], learner.peer_kinds, 1 << 20, learner.peer_shapes())
    receiver = Transport(0, guard, log)
    sender = zmq.Context()
    try:
        link = receiver.bind_router("tcp://127.0.0.1:*", "peer")
        sock = sender.socket(zmq.DEALER)
        sock.setsockopt(zmq.IDENTITY, peer_identity(1))
        sock.setsockopt(zmq.LINGER, 1000)
        sock.connect(link.endpoint)
        codec, good = Codec(), np.ones((2, 4), np.float32)
        nan = good.copy()
        nan[1, 2] = np.nan
        bodies = [np.ones((2, 5), np.float32), np.ones((2, 4), np.float64), nan,
                  np.ones((8,), np.float32), good]
        for q, z in enumerate(bodies):
            sock.send(encode(codec, "latent", 1, 0, 1, q, {"t": 1, "z": z}))
        learner.act(np.array([0, 1]))
        learner.observe(np.array([0, 1]), None, np.zeros(2), np.array([1, 2]),
                        np.zeros(2, bool), np.zeros(2, bool))
        assert learner.awaiting() == {1}
        got, deadline = [], time.monotonic() + 20
        while len(got) < 1 and time.monotonic() < deadline:
            if receiver.poll(200):
                got += receiver.recv_all(link)
        assert [m.kind for m, _ in got] == ["latent"]
        learner.inbox(1, "latent", got[0][0].body)
        assert learner.awaiting() == frozenset()
        np.testing.assert_array_equal(learner.store.data["z_nb"][0], good)
        assert "iteration" in learner.update()                     # the agent carries on
        assert dict(receiver.stats["peer"].rejected) == {"schema_mismatch": 4}
        receiver.flush()
        rejected = [r for r in open_log(tmp_path / "agent-0.log") if r.direction == "rej"]
        assert [r.reason for r in rejected] == ["schema_mismatch"] * 4
    finally:
        sock.close()
        sender.term()
        receiver.close()
