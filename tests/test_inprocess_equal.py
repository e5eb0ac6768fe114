"""In-process equals live, bit for bit, for every registered learner.

Each learner runs once as a real multi-process ``agentd launch`` (coordinator, env server, one
process per agent, ZeroMQ and the local env plane, tiny budgets) and once through the
in-process backend with the config the live run wrote (``config.toml``): the conformance kit's
run and its ``check_in_process``. Compared byte for byte: every action every agent sent to the
env server (from the agents' message logs) and every array of every agent's final checkpoint.
The live run's ``plan.json`` must also be the plan the in-process runner ran (the consumers of
the plan agree). The env and the budgets come from the learner's declarations (the kit's
choice of env, ``TINY`` for the parameters it has): no table of learners to keep.

Act-ahead: with ``act_ahead = on`` a neighbour may answer the env's next step while this agent
still updates the last one, so its next-step peer messages can reach this agent's inbox
*before* this agent's update -- a different order of learner calls than the synchronous
schedule the in-process runner plays. So learners that talk to neighbours run with act-ahead
off here (``in_process_args``); the others keep the launch default (auto: on where the learner
allows it, e.g. isac and the deep Q family), where only when the update runs moves, not what
it sees.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from agentd.algorithms import ALGORITHMS
from agentd.testing import (
    Budget,
    RunError,
    check_in_process,
    conformance_run,
    in_process_args,
    small_params,
)

pytestmark = pytest.mark.timeout(1200)    # the first test waits for every live run
STEPS = 40
BUDGET = Budget(steps=STEPS, num_envs=1, episode_len=10, seed=3, topology="line")
# the tiniest budgets, by parameter name (each learner gets those its Params has)
TINY = {"batch": 8, "start": 8, "hidden": 8, "buffer": 64, "rollout": 10, "epochs": 2,
        "turn_len": 10, "model_steps": 2, "pred_steps": 2, "model_batch": 16,
        "model_hidden": 8}
VARIANTS = {"mdpo": {"share_latent": True}}      # its latent messages cross too


def _launch(algo: str, root: Path) -> tuple[Path | None, str]:
    params = small_params(algo, VARIANTS.get(algo), small=TINY)
    try:
        return conformance_run(algo, root / algo, n=2, params=params, budget=BUDGET,
                               args=in_process_args(algo, params), timeout=600), ""
    except RunError as exc:
        return None, str(exc)


@pytest.fixture(scope="module")
def live_runs(request, tmp_path_factory):
    """The live run of every learner this session tests, three at a time (each is 3-4
    processes; the 26 runs take about a minute on an idle 2-core machine)."""
    wanted = [item.callspec.params["algo"] for item in request.session.items
              if getattr(item, "originalname", "") == "test_in_process_run_equals_the_live_run"]
    root = tmp_path_factory.mktemp("live")
    with ThreadPoolExecutor(3) as pool:
        return dict(zip(wanted, pool.map(lambda a: _launch(a, root), wanted), strict=True))


@pytest.mark.parametrize("algo", sorted(ALGORITHMS))
def test_in_process_run_equals_the_live_run(algo, live_runs):
    run_dir, failed = live_runs[algo]
    assert not failed, f"live {algo} run failed:\n{failed[-3000:]}"
    assert check_in_process(run_dir) == []
    assert json.loads((run_dir / "summary.json").read_text())["steps_done"] == STEPS
    with np.load(run_dir / "checkpoints" / "agent-0.npz") as saved:
        assert saved.files or algo == "random", algo     # (the random policy learns nothing)
