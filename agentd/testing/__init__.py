"""The conformance kit: does a learner, or an env, get everything the runtime gives a built-in?

Modelled on PettingZoo's ``parallel_api_test``: call it from your own test suite::

    from agentd.testing import check_env, check_learner

    def test_my_learner(tmp_path):
        check_learner("my-learner", tmp_path)          # or "mypkg.learner:MyLearner"

    def test_my_env(tmp_path):
        check_env("my-env", tmp_path)                  # or "mypkg.env:parallel_env"

``check_learner`` checks the learner's declarations (``agentd.algorithms.conformance``), makes
one short live run (real processes, ZeroMQ, the env server; the env is the first built-in
the learner accepts unless one is given) and checks that run: exact replay of every agent from
its log, the final checkpoint and the complete (recovery) state round-trip, only the declared
peer kinds on the wire and only between neighbours, the declared spaces honoured, a DP release
declared for every kind that sends float arrays, and (``in_process=True``) the in-process
backend equal to the live run, action for action and byte for byte. ``dp=True`` adds a short
DP run whose accounting the audit recomputes from the logs. ``check_env`` runs env check's
API and env-server contract over a PettingZoo env and a short live run of the ``random``
learner on it (replay, wire, in process). Both raise ``ConformanceError`` naming every
problem, and return the ``Report`` otherwise; ``pythonpath`` puts a plug-in that is not
installed on the path of every process of the runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentd.testing.checks import (
    check_checkpoint,
    check_dp,
    check_in_process,
    check_replay,
    check_spaces,
    check_wire,
)
from agentd.testing.run import (
    Budget,
    RunError,
    choose_env,
    in_process_args,
    launch_argv,
    live_run,
    small_params,
)

__all__ = [
    "RUN_CHECKS",
    "SMALL_RUN",
    "Budget",
    "ConformanceError",
    "Report",
    "RunError",
    "check_checkpoint",
    "check_dp",
    "check_env",
    "check_in_process",
    "check_learner",
    "check_replay",
    "check_spaces",
    "check_wire",
    "conformance_run",
    "in_process_args",
    "small_params",
]

SMALL_RUN = Budget()        # 300 joint steps of 2 env copies, episodes of 20

# The checks of one run directory, by name (the project's suite parametrises over them).
RUN_CHECKS: dict[str, Callable[[Path], list[str]]] = {
    "replay": check_replay, "checkpoint": check_checkpoint,
    "wire": check_wire, "spaces": check_spaces, "dp": check_dp}


class ConformanceError(AssertionError):
    """A learner or env that does not conform; the message lists every problem."""


@dataclass
class Report:
    """What the kit checked: the runs it made and the problems per check (empty: passed)."""

    subject: str
    run_dir: Path | None = None
    problems: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(self.problems.values())

    def text(self) -> str:
        lines = [f"{self.subject}: " + ("conforms" if self.ok else "does not conform")
                 + (f" (run {self.run_dir})" if self.run_dir else "")]
        for check, found in self.problems.items():
            lines += [f"  {check}: ok"] if not found else [f"  {check}: {p}" for p in found]
        return "\n".join(lines)


def conformance_run(algo: str, root: Path, *, env: str | None = None, n: int | None = None,
                    params: Mapping[str, Any] | None = None, args: Sequence[str] = (),
                    budget: Budget = SMALL_RUN, pythonpath: Sequence[str | Path] = (),
                    timeout: float = 300) -> Path:
    """One short live run of ``algo`` under ``root`` (its run directory is returned)."""
    p = small_params(algo, params)
    env_id, agents = choose_env(algo, p, budget, env, n)
    run_dir = Path(root) / "run"
    return live_run(launch_argv(algo, run_dir, env_id, agents, p, budget, args), run_dir,
                    pythonpath, timeout)


def check_learner(algo: str, root: Path, *, env: str | None = None, n: int | None = None,
                  params: Mapping[str, Any] | None = None, args: Sequence[str] = (),
                  in_process: bool = True, dp: bool = False, budget: Budget = SMALL_RUN,
                  pythonpath: Sequence[str | Path] = (), raise_on_problem: bool = True
                  ) -> Report:
    """Check the learner ``algo`` (a registered name, a plug-in's entry-point name, or
    ``package.module:Class``) as the module docstring says; runs go under ``root``."""
    from agentd.algorithms import load_learner_class
    from agentd.algorithms.conformance import check_learner as check_declarations

    _on_path(pythonpath)
    cls = load_learner_class(algo)
    report = Report(f"learner {algo!r}")
    report.problems["declarations"] = check_declarations(cls)
    extra = [*args, *(in_process_args(algo, params or {}) if in_process else [])]
    report.run_dir = conformance_run(algo, Path(root), env=env, n=n, params=params, args=extra,
                                     budget=budget, pythonpath=pythonpath)
    for name, check in RUN_CHECKS.items():
        report.problems[name] = check(report.run_dir)
    if in_process:
        report.problems["in_process"] = check_in_process(report.run_dir)
    if dp:
        report.problems["dp_run"] = _dp_run(algo, Path(root) / "dp", env, n, params, args,
                                            budget, pythonpath)
    return _finish(report, raise_on_problem)


def check_env(env: str, root: Path, *, n: int | None = None,
              env_args: Mapping[str, Any] | None = None, budget: Budget = SMALL_RUN,
              pythonpath: Sequence[str | Path] = (), raise_on_problem: bool = True) -> Report:
    """Check the env ``env`` (a built-in id, a plug-in's entry-point name, or a PettingZoo
    factory ``module:callable``) as the module docstring says; runs go under ``root``."""
    from agentd.envs import ENVS, canonical_env

    _on_path(pythonpath)
    report = Report(f"env {env!r}")
    spec = canonical_env(env)
    agents = n
    if spec not in ENVS:
        from agentd.tools.env_check import check_env as contract

        findings, agents, _ = contract(spec, dict(env_args or {}))
        report.problems["contract"] = [f"{f.name}: {f.detail}" for f in findings if not f.ok]
        if report.problems["contract"]:
            return _finish(report, raise_on_problem)
    args = [a for k, v in (env_args or {}).items() for a in ("--env-arg", f"{k}={v!r}"
                                                             if isinstance(v, str)
                                                             else f"{k}={v}")]
    try:
        report.run_dir = conformance_run("random", Path(root), env=env, n=n or agents or None,
                                         args=args, budget=budget, pythonpath=pythonpath)
    except RunError as exc:
        report.problems["run"] = [str(exc)]
        return _finish(report, raise_on_problem)
    for name in ("replay", "wire", "spaces"):
        report.problems[name] = RUN_CHECKS[name](report.run_dir)
    report.problems["in_process"] = check_in_process(report.run_dir)
    return _finish(report, raise_on_problem)


def _dp_run(algo: str, root: Path, env: str | None, n: int | None,
            params: Mapping[str, Any] | None, args: Sequence[str], budget: Budget,
            pythonpath: Sequence[str | Path]) -> list[str]:
    """A short DP run: it starts, and the audit recomputes its accounting from the logs."""
    import json

    from agentd.tools.audit_dp import dp_audit

    run_dir = conformance_run(algo, root, env=env, n=n, params=params,
                              args=[*args, "--dp-sigma", "1.0"], budget=budget,
                              pythonpath=pythonpath)
    dp = json.loads((run_dir / "summary.json").read_text()).get("dp")
    audited = dp_audit(run_dir)
    if not dp or audited is None:
        return ["the DP run wrote no DP account"]
    return [] if audited.get("matches_run") else ["the audit's DP account differs from the run's"]


def _on_path(pythonpath: Sequence[str | Path]) -> None:
    import sys

    for p in reversed([str(p) for p in pythonpath]):
        if p not in sys.path:
            sys.path.insert(0, p)


def _finish(report: Report, raise_on_problem: bool) -> Report:
    if raise_on_problem and not report.ok:
        raise ConformanceError(report.text())
    return report
