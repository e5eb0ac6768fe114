"""The run directory: config, seeds, endpoints, metrics.jsonl, summary.json, the plot.

Layout::

    config.toml        the resolved config          seeds.json       every derived seed
    endpoints.json     who ran where                 metrics.jsonl    one record per episode (+ consensus points)
    summary.json       the outcome (written at the end, also on failure)
    learning_curve.png episode return against step   logs/            one message log per process
    checkpoints/       each agent's learned state (npz)
    tb/                TensorBoard event files (episode return, learner scalars, steps/s)
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np

from agentd.config import SEED_TAGS, derive_seed  # noqa: F401 - re-exported for the tools
from coordinator.tb import TensorBoardLog


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=_jsonable) + "\n")
    tmp.replace(path)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


class MetricsFile:
    """metrics.jsonl: one record per finished episode, flushed as they come."""

    def __init__(self, path: Path) -> None:
        self._file = open(path, "a", buffering=1)  # noqa: SIM115 - open for the whole run
        self.tb = TensorBoardLog(path.parent)
        self.tb.open()     # here, not in a thread: it hides torch from tensorboardX meanwhile
        self.returns: list[float] = []
        self.steps: list[int] = []
        self.truncated_episodes = 0
        # the plot at the end imports matplotlib (~0.5 s, the last thing before the launch
        # returns): imported in the background while the run starts
        threading.Thread(target=_import_pyplot, name="preload-matplotlib", daemon=True).start()

    def episode(self, step: int, ret: float, length: int, agents: dict[int, dict]) -> None:
        self.returns.append(ret)
        self.steps.append(step)
        record = {"episode": len(self.returns), "step": step, "return": round(ret, 6),
                  "length": length, "agents": {str(a): s for a, s in agents.items()}}
        self._file.write(json.dumps(record) + "\n")
        self.tb.scalars("episode", {"return": ret, "length": length}, step)

    def scalars(self, source: str, step: int, values: dict[str, Any]) -> None:
        """A process's latest scalars (an agent's learner, the env server's pace)."""
        self.tb.scalars(source, values, step)

    def truncated(self, step: int, env: int, why: str) -> None:
        """An episode in flight in env copy ``env`` was cut at ``step`` and its return lost
        (it died with the process that held it)."""
        self.truncated_episodes += 1
        self._file.write(json.dumps({"step": step, "env": env, "truncated": why}) + "\n")

    def consensus(self, point: dict[str, Any]) -> None:
        """A consensus diagnostic point (computed after the run from the checkpoints)."""
        self._file.write(json.dumps({"step": point["step"], "consensus": point}) + "\n")
        self.tb.scalars("consensus", {k: v for k, v in point.items() if k != "step"},
                        point["step"])

    def in_step_order(self) -> tuple[list[int], list[float]]:
        """Steps and returns sorted by step (reports sent again to a resumed coordinator may
        come after later ones; each line of metrics.jsonl carries its step)."""
        order = sorted(range(len(self.steps)), key=self.steps.__getitem__)
        return [self.steps[i] for i in order], [self.returns[i] for i in order]

    def offset(self) -> int:
        """Bytes written so far (the journal records it at each phase)."""
        return self._file.tell()

    def close(self) -> None:
        self._file.close()
        self.tb.close()


def consensus_after_run(run_dir: Path, metrics: MetricsFile) -> dict[str, Any] | None:
    """With periodic checkpoints: the consensus diagnostic of the run's learner (policy MSE for
    Q tables, the log-ratio error for dac-deep), offline from the agents' own checkpoints once
    they have all finished; appended to metrics.jsonl and written to consensus.jsonl and
    consensus.png. Returns the last point, or None when it does not apply."""
    from agentd.tools.diagnostics import consensus_curve, snapshot_steps, write_consensus

    if not snapshot_steps(run_dir):
        return None
    try:
        computed = consensus_curve(run_dir)
    except ValueError:          # a learner without Q tables or consensus estimates
        return None
    curve, key, _ = computed
    for point in curve:
        metrics.consensus(point)
    write_consensus(run_dir, computed=computed)
    return {"key": key, **curve[-1]} if curve else None


def return_figures(returns: list[float]) -> dict[str, Any]:
    """final_return: mean over the last 10% of episodes; initial_return: the first 10%."""
    if not returns:
        return {"episodes": 0, "final_return": None, "initial_return": None,
                "first_episode_return": None}
    tenth = max(1, len(returns) // 10)
    return {"episodes": len(returns), "final_return": float(np.mean(returns[-tenth:])),
            "initial_return": float(np.mean(returns[:tenth])),
            "first_episode_return": float(returns[0])}


def known_return_figures(config: Any, returns: list[float],
                         run_dir: Path | None = None) -> dict[str, Any]:
    """For an env that knows its optimum (the games of MA2QL, I2Q and DPO): ``optimal_return``,
    ``random_return`` and ``normalised_return`` = final_return / optimal_return (None when the
    optimum is not positive, where the ratio would mislead). The env is rebuilt here from the
    config's plan (its env model seed) — the same model the env server stepped.

    ``final_return`` scores the *behaviour* policy (exploration included). For tabular
    Q-learners (one env agent per process, a ``q`` table in each final checkpoint) the greedy
    joint policy is scored exactly too: ``greedy_return`` and ``greedy_normalised_return``."""
    from agentd.envs import ENVS, EnvError, make_env
    from agentd.plan import plan

    row = ENVS.get(config.env)
    if row is None or not row.knows_optimum:
        return {}
    try:
        env = make_env(config.env, n_agents=config.n, num_envs=1,
                       episode_len=config.episode_len,
                       seed=plan(config).env.model_seed, env_kwargs=config.env_args)
    except EnvError:
        return {}
    known = env.known_returns()
    final = return_figures(returns)["final_return"]
    optimum = known.get("optimal_return")
    ok = optimum is not None and optimum > 0
    out = {**known, "normalised_return": final / optimum if ok and final is not None else None}
    greedy = greedy_return_of_run(config, env, run_dir) \
        if run_dir is not None and row.scores_greedy else None
    if greedy is not None:
        out["greedy_return"] = greedy
        out["greedy_normalised_return"] = greedy / optimum if ok else None
    return out


def greedy_return_of_run(config: Any, env: Any, run_dir: Path) -> float | None:
    """The exact return of the agents' greedy policies, argmax of each final ``q`` table;
    None where the learner is no per-agent tabular Q-learner or a table is missing."""
    from agentd.algorithms import load_learner_class

    if not load_learner_class(config.algo).greedy_q:
        return None
    policies = []
    for i, space in enumerate(env.act_spaces):
        try:
            with np.load(run_dir / "checkpoints" / f"agent-{i}.npz") as saved:
                q = saved["q"]
        except (OSError, KeyError):
            return None
        if q.ndim != 2 or q.shape[1] != space["n"]:
            return None
        policies.append(q.argmax(axis=1))
    return env.greedy_return(policies)


def _import_pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_learning_curve(path: Path, steps: list[int], returns: list[float], title: str) -> None:
    """Episode returns against joint step, with a moving average."""
    plt = _import_pyplot()

    fig, ax = plt.subplots(figsize=(7, 4))
    if returns:
        ax.plot(steps, returns, ".", alpha=0.25, markersize=3, label="episode return")
        window = max(1, len(returns) // 20)
        if len(returns) >= window > 1:
            smooth = np.convolve(returns, np.ones(window) / window, mode="valid")
            ax.plot(steps[window - 1:], smooth, "-", linewidth=2,
                    label=f"moving average ({window} episodes)")
        ax.legend(loc="lower right")
    else:
        ax.text(0.5, 0.5, "no finished episodes", ha="center", transform=ax.transAxes)
    ax.set_xlabel("joint step (per env copy)")
    ax.set_ylabel("episode return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
