"""The run plan: derived once (``agentd.plan``), and every consumer runs the same one.

The coordinator writes it to ``plan.json``; the local launcher starts its processes; the
in-process backend runs it (``tests/test_ray.py`` checks the Ray launcher's too). A test here
fails if two of them disagree.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from agentd.config import derive_seed, resolve
from agentd.configfile import load_toml
from agentd.launch.inprocess import env_of, learners_of
from agentd.launch.local import Launcher
from agentd.plan import plan
from coordinator.coordinator import Coordinator

CONFIGS = [
    {"n": 5},
    {"n": 6, "topology": "random", "p": 0.5, "seed": 7},
    {"n": 6, "topology": "small-world", "k": 2, "rewire": 0.5, "seed": 11, "mixing": "metropolis"},
    {"n": 3, "algo": "ma2ql", "params": {"turn_len": 10, "turn_order": "random"}, "seed": 2},
    {"n": 3, "algo": "maddpg", "env": "spread"},
    {"n": 3, "algo": "mappo", "env": "spread", "env_args": {"continuous_actions": False}},
]


@pytest.mark.parametrize("values", CONFIGS)
def test_the_plan_is_a_pure_function_of_the_config(values, tmp_path):
    config = resolve({}, {**values, "run_dir": str(tmp_path)})
    p = plan(config)
    assert p == plan(config) and p.to_dict() == plan(config).to_dict()
    assert json.loads(p.to_json()) == p.to_dict()
    # the seeds are the run's (those live runs always used), the graph is its own draw
    assert p.graph_seed == derive_seed(config.seed, "graph")
    assert [a.seed for a in p.agents] == [derive_seed(config.seed, "agent", i)
                                         for i in range(p.n_procs)]
    assert (p.env.model_seed, p.env.reset_seed) == (derive_seed(config.seed, "env_model"),
                                                   derive_seed(config.seed, "env_reset"))
    w = np.array(p.W)
    assert np.allclose(w.sum(axis=1), 1.0) and np.allclose(w, w.T)
    for a in p.agents:     # each row of W is the agent's weights, over itself and neighbours
        assert dict(a.weights) == {j: p.W[a.id][j] for j in [a.id, *a.neighbours]}
    seated = sorted(c for a in p.agents for c in a.controls)
    assert seated == list(range(config.n))


def test_the_graph_of_a_random_topology_follows_the_run_seed(tmp_path):
    plans = [plan(resolve({}, {"n": 8, "topology": "random", "p": 0.4, "seed": s,
                               "run_dir": str(tmp_path)})) for s in range(4)]
    assert len({p.edges for p in plans}) > 1      # not one fixed draw for every seed


def test_learners_are_built_from_the_plan(tmp_path):
    """The in-process learners have exactly the plan's ids, seeds, neighbours, weights and
    seating (the same ``build_learner`` a live agent runs on its welcome)."""
    config = resolve({}, {"n": 4, "topology": "star", "algo": "ma2ql", "seed": 5,
                          "run_dir": str(tmp_path)})
    p = plan(config)
    env = env_of(p)
    for a, learner in zip(p.agents, learners_of(p, config.to_dict(), env), strict=True):
        s = learner.spec
        assert (s.agent_id, s.seed, s.n_agents) == (a.id, a.seed, p.n_procs)
        assert s.neighbours == list(a.neighbours) and s.weights == dict(a.weights)
        assert s.controls == list(a.controls) and s.seen == list(a.view)
        assert s.shared_seed == config.seed and learner.schedule is not None


def test_coordinator_local_launcher_and_in_process_runner_agree(tmp_path):
    """plan.json of the coordinator (made by a live run's coordinator, and by one built
    here), of the in-process backend, and the local launcher's plan: one plan."""
    base = ["--n", "5", "--topology", "random", "--p", "0.6", "--seed", "9", "--steps", "20",
            "--quiet"]
    written = {}
    for backend in ("local", "inprocess"):
        run_dir = tmp_path / backend
        out = subprocess.run([sys.executable, "-m", "agentd", "launch", *base, "--backend",
                              backend, "--run-dir", str(run_dir)], capture_output=True,
                             text=True, timeout=240, check=False)
        assert out.returncode == 0, out.stdout + out.stderr
        written[backend] = json.loads((run_dir / "plan.json").read_text())
        assert json.loads((run_dir / "seeds.json").read_text()) == \
            plan(resolve(load_toml(run_dir / "config.toml"), {})).seeds()
    assert written["local"] == written["inprocess"]
    config = resolve(load_toml(tmp_path / "local" / "config.toml"), {})
    assert Launcher(config).plan.to_dict() == written["local"]
    config.run_dir = str(tmp_path / "coordinator")
    coord = Coordinator(config, "tcp://127.0.0.1:*", quiet=True)
    try:
        coord.write_start_files()
    finally:
        coord.transport.close()
        coord.metrics.close()
    assert json.loads((tmp_path / "coordinator" / "plan.json").read_text()) == written["local"]


def test_the_in_process_backend_refuses_what_only_a_live_run_does(tmp_path):
    out = subprocess.run([sys.executable, "-m", "agentd", "launch", "--backend", "inprocess",
                          "--algo", "dac-deep", "--env", "spread", "--n", "3", "--steps", "5",
                          "--dp-sigma", "1.0", "--run-dir", str(tmp_path / "r")],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 2 and "does not run DP noise" in out.stderr, out.stderr
