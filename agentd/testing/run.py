"""The kit's live run: a short ``agentd launch`` of one learner, with an env it can run on.

The env, when not given, is the first of ``CANDIDATES`` whose config the launcher accepts for
the learner (its declared spaces and its ``check_run``), so a learner needs no entry in a list
to be tested; its small budgets are the ``SMALL`` values of the parameters its Params has.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agentd.algorithms import load_learner_class
from agentd.config import ConfigError, resolve

# (env, n): the envs tried in turn, each with the agent count it is run with
CANDIDATES: tuple[tuple[str, int], ...] = (("random-mdp", 3), ("lstage", 2), ("ipd", 2),
                                           ("spread", 3))
# budgets small enough for seconds per learner, for the params a learner's Params has
SMALL: dict[str, Any] = {"start": 64, "batch": 32, "rollout": 50, "turn_len": 40,
                         "model_steps": 5, "pred_steps": 5}


class RunError(RuntimeError):
    """The kit's live run could not be made (no env fits, or the launch failed)."""


@dataclasses.dataclass(frozen=True)
class Budget:
    """The size of the kit's run (the defaults take seconds for most learners)."""

    steps: int = 300
    num_envs: int = 2
    episode_len: int = 20
    seed: int = 4
    topology: str = "complete"      # on 2 or 3 agents the ring and the line are this graph


def small_params(algo: str, given: Mapping[str, Any] | None = None,
                 small: Mapping[str, Any] = SMALL) -> dict[str, Any]:
    """``small`` (budget values by parameter name) for the fields of the learner's Params,
    then ``given`` over them."""
    cls = load_learner_class(algo)
    fields = {f.name for f in dataclasses.fields(cls.Params)} \
        if cls.Params is not None and dataclasses.is_dataclass(cls.Params) else set()
    return {**{k: v for k, v in small.items() if k in fields}, **(given or {})}


def in_process_args(algo: str, params: Mapping[str, Any]) -> list[str]:
    """Launch flags for a live run the in-process backend can equal: act-ahead off for a
    learner that talks to neighbours (with act-ahead a neighbour's next-step message may
    reach its inbox before its own update, an order of learner calls the in-process runner,
    synchronous, does not play)."""
    return ["--act-ahead", "off"] if load_learner_class(algo).permitted_kinds(
        dict(params)) else []


def choose_env(algo: str, params: Mapping[str, Any], budget: Budget,
               env: str | None = None, n: int | None = None) -> tuple[str, int]:
    """(env, n): the one given, else the first candidate the launcher accepts."""
    tried = [(env, n or 3)] if env else [(e, n or k) for e, k in CANDIDATES]
    why = []
    for env_id, agents in tried:
        try:
            resolve({}, {"algo": algo, "env": env_id, "n": agents, "params": dict(params),
                         "topology": budget.topology, "run_dir": "unused"})
            return env_id, agents
        except ConfigError as exc:
            why.append(f"{env_id}: {exc}")
    raise RunError(f"no env to run {algo!r} on: " + "; ".join(why))


def launch_argv(algo: str, run_dir: Path, env: str, n: int, params: Mapping[str, Any],
                budget: Budget, args: Sequence[str] = ()) -> list[str]:
    """The ``agentd launch`` command line of the kit's run."""
    argv = [sys.executable, "-m", "agentd", "launch", "--quiet", "--run-dir", str(run_dir),
            "--algo", algo, "--env", env, "--n", str(n), "--topology", budget.topology,
            "--num-envs", str(budget.num_envs), "--steps", str(budget.steps),
            "--episode-len", str(budget.episode_len), "--seed", str(budget.seed)]
    argv += [f"--param={k}={json.dumps(v)}" for k, v in params.items()]
    return argv + list(args)


def child_env(pythonpath: Sequence[str | Path] = ()) -> dict[str, str]:
    """This process's environment with ``pythonpath`` put first on PYTHONPATH (where a
    plug-in that is not installed lives), for every process of the run."""
    parts = [str(p) for p in pythonpath] + [p for p in os.environ.get("PYTHONPATH", "")
                                            .split(os.pathsep) if p]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(parts)}


def live_run(argv: list[str], run_dir: Path, pythonpath: Sequence[str | Path] = (),
             timeout: float = 300) -> Path:
    """Run the launch to its end; RunError with its output if it failed."""
    res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False,
                         env=child_env(pythonpath))
    if res.returncode != 0:
        raise RunError(f"the run of {' '.join(argv[3:])} failed (exit {res.returncode}):\n"
                       f"{(res.stdout + res.stderr)[-3000:]}")
    return run_dir
