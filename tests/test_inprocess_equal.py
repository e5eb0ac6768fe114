"""In-process equals live, bit for bit, for every registered learner.

Each learner runs once as a real multi-process ``agentd launch`` (coordinator, env server, one
process per agent, ZeroMQ and the local env plane, tiny budgets) and once through the
in-process backend with the config the live run wrote (``config.toml``). Compared byte for
byte: every action every agent sent to the env server (from the agents' message logs) and
every array of every agent's final checkpoint. The live run's ``plan.json`` must also be the
plan the in-process runner ran (the consumers of the plan agree).

Act-ahead: with ``act_ahead = on`` a neighbour may answer the env's next step while this agent
still updates the last one, so its next-step peer messages can reach this agent's inbox
*before* this agent's update -- a different order of learner calls than the synchronous
schedule the in-process runner plays. So learners that talk to neighbours run with act-ahead
off here (``ACT_AHEAD_OFF``); the others keep the launch default (auto: on where the learner
allows it, e.g. isac and the deep Q family), where only when the update runs moves, not what
it sees.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from agentd.algorithms import ALGORITHMS
from agentd.config import resolve
from agentd.configfile import load_toml
from agentd.launch.inprocess import run_planned
from agentd.plan import plan
from agentd.runtime.msglog import open_log

pytestmark = pytest.mark.timeout(1200)    # the first test waits for every live run
STEPS = 40
DEEP = {"batch": 8, "start": 8, "hidden": 8, "buffer": 64}
ONPOLICY = {"rollout": 10, "epochs": 2, "hidden": 8}
# algo -> (env, n, extra flags, params); n = 2 agents on a line unless the learner needs more
RUNS: dict[str, tuple[str, list[str], dict]] = {
    "dac": ("random-mdp", [], {}),
    "iql": ("random-mdp", [], {}),
    "central-q": ("random-mdp", [], {}),
    "random": ("random-mdp", [], {}),
    "pr": ("random-mdp", [], {}),
    "ma2ql": ("random-mdp", [], {"turn_len": 10}),
    "i2q": ("lstage", ["--env-arg", "L=3"], {}),     # it needs a deterministic env
    "iql-deep": ("random-mdp", [], DEEP),
    "i2q-deep": ("random-mdp", [], DEEP),
    "ma2ql-deep": ("random-mdp", [], {**DEEP, "turn_len": 10}),
    "dac-deep": ("spread", [], DEEP),
    "isac": ("spread", [], DEEP),
    "maddpg": ("spread", [], DEEP),
    "ippo": ("random-mdp", [], ONPOLICY),
    "dpo": ("random-mdp", [], ONPOLICY),
    "mdpo": ("random-mdp", [], {**ONPOLICY, "model_steps": 2, "pred_steps": 2,
                                "model_batch": 16, "model_hidden": 8, "share_latent": True}),
    "ia2c": ("random-mdp", [], ONPOLICY),
    "maa2c": ("random-mdp", [], ONPOLICY),
    "mappo": ("random-mdp", [], ONPOLICY),
    "coma": ("random-mdp", [], ONPOLICY),
    "happo": ("random-mdp", [], ONPOLICY),
    "mat": ("random-mdp", [], ONPOLICY),
    "naive-pg": ("ipd", ["--episode-len", "10"], {}),
    "lola": ("ipd", ["--episode-len", "10"], {}),
    "meta-pg": ("ipd", ["--episode-len", "10"], {}),
    "meta-mapg": ("ipd", ["--episode-len", "10"], {}),
}
ACT_AHEAD_OFF = {"dac-deep", "pr", "mdpo", "happo"}     # they talk to neighbours (see above)


def _argv(algo: str, run_dir: Path) -> list[str]:
    env, flags, params = RUNS[algo]
    argv = ["launch", "--quiet", "--run-dir", str(run_dir), "--algo", algo, "--env", env,
            "--n", "2", "--topology", "line", "--steps", str(STEPS), "--seed", "3", *flags]
    argv += [f"--param={k}={json.dumps(v)}" for k, v in params.items()]
    if algo in ACT_AHEAD_OFF:
        argv += ["--act-ahead", "off"]
    return argv


def _launch(algo: str, root: Path) -> tuple[Path, str]:
    run_dir = root / algo
    proc = subprocess.run([sys.executable, "-m", "agentd", *_argv(algo, run_dir)],
                          capture_output=True, text=True, timeout=600, check=False)
    return run_dir, "" if proc.returncode == 0 else proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def live_runs(request, tmp_path_factory):
    """The live run of every learner this session tests, three at a time (each is 3-4
    processes; the 26 runs take about a minute on an idle 2-core machine)."""
    wanted = [item.callspec.params["algo"] for item in request.session.items
              if getattr(item, "originalname", "") == "test_in_process_run_equals_the_live_run"]
    root = tmp_path_factory.mktemp("live")
    with ThreadPoolExecutor(3) as pool:
        return dict(zip(wanted, pool.map(lambda a: _launch(a, root), wanted), strict=True))


def test_every_registered_learner_is_in_the_table():
    assert set(RUNS) == set(ALGORITHMS)


def _live_actions(run_dir: Path, n_procs: int) -> list[dict[int, np.ndarray]]:
    """Per step, each agent's ``act`` as it went out (its own message log)."""
    steps: dict[int, dict[int, np.ndarray]] = {}
    for i in range(n_procs):
        for rec in open_log(run_dir / "logs" / f"agent-{i}.log"):
            if rec.direction == "out" and rec.kind == "act":
                steps.setdefault(int(rec.body["t"]), {})[i] = rec.body["a"]
    return [steps[t] for t in sorted(steps)]


def _checkpoint(path: Path) -> dict[str, tuple]:
    """Each array of a checkpoint: (dtype, shape, bytes). (The npz's zip entries carry their
    write time, so the files themselves are compared by content.)"""
    with np.load(path, allow_pickle=False) as saved:
        return {k: (saved[k].dtype.str, saved[k].shape, saved[k].tobytes())
                for k in saved.files}


def _state(learner) -> dict[str, tuple]:
    """A learner's final state as the checkpoint a live agent writes (``np.savez``)."""
    import io

    buf = io.BytesIO()
    np.savez(buf, **learner.state_dict())
    buf.seek(0)
    assert zipfile.is_zipfile(buf)
    buf.seek(0)
    return _checkpoint(buf)


@pytest.mark.parametrize("algo", sorted(RUNS))
def test_in_process_run_equals_the_live_run(algo, live_runs):
    run_dir, failed = live_runs[algo]
    assert not failed, f"live {algo} run failed:\n{failed[-3000:]}"
    config = resolve(load_toml(run_dir / "config.toml"), {})
    p = plan(config)
    assert json.loads((run_dir / "plan.json").read_text()) == p.to_dict()
    res = run_planned(p, config)
    live = _live_actions(run_dir, p.n_procs)
    assert len(live) == len(res.actions) == STEPS
    for t, (a, b) in enumerate(zip(live, res.actions, strict=True)):
        assert sorted(a) == sorted(b) == list(range(p.n_procs)), t
        for i in a:
            assert a[i].dtype == b[i].dtype and a[i].shape == b[i].shape, (t, i)
            assert a[i].tobytes() == b[i].tobytes(), f"{algo}: agent {i} acted differently " \
                                                     f"at step {t}"
    for i, learner in enumerate(res.learners):
        mine = _state(learner)
        theirs = _checkpoint(run_dir / "checkpoints" / f"agent-{i}.npz")
        assert mine.keys() == theirs.keys(), algo
        assert mine or algo == "random", algo      # (the random policy learns nothing)
        differ = [k for k in mine if mine[k] != theirs[k]]
        assert not differ, f"{algo}: agent {i}'s final state differs in {differ[:6]}"
    summary = json.loads((run_dir / "summary.json").read_text())
    returns = [r for _, r in res.returns]
    assert summary["episodes"] == len(returns)
