"""Meta-PG (Al-Shedivat et al. 2018) and Meta-MAPG (Kim et al. 2021) on ipd tasks.

A meta-agent keeps *initial* logits theta. On each task (``chain + 1`` episodes, the env's
``episodes_per_task``) it plays a chain of policies phi_0 = theta, phi_1, ..., phi_L, taking
after each episode the inner-loop step of seed eq. 3, a naive exact gradient step against its
opponent's (modelled or shared) policy:

    phi_{j+1} = phi_j + inner_lr * grad V_self(phi_j, theta_other_j)

After the chain's last episode it updates theta by the meta-gradient (``lr``; 0 freezes theta,
which is how meta-test runs adapt without meta-learning):

    theta <- theta + lr * grad_theta (1/L) sum_{j=1..L} V_self(phi_j(theta), phi_j^other(theta))

with the chain recomputed from theta and the opponent's initial logits (model fitted to its
first episode of the task, or shared) on the fitted payoffs of the task, both agents taking
inner steps. Meta-PG differentiates only through its own adapted policies (self-shaping, seed
eq. 4); Meta-MAPG also through the opponent's (opponent-shaping, seed eq. 7). In this exact
version the expectation over the first trajectory is taken in closed form, so eq. 7's first
term is part of the derivative through phi_j(theta).

``init = RUN`` starts from theta of RUN/checkpoints/agent-<id>.npz (a meta-training run); it
must not have meta-trained on the tasks this run plays.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agentd.algorithms.base import LearnerConfigError, LearnerSpec, param
from agentd.algorithms.shaping.core import ShapingLearner, ShapingParams
from agentd.algorithms.shaping.observed import Episode, OpponentModel


@dataclass
class MetaParams(ShapingParams):
    """Meta-learning settings; ``lr`` is the outer step on theta (0: no meta-learning)."""

    inner_lr: float = param(0.5, ge=0.0)
    """inner-loop step size on the logits (the naive learner's lr)"""
    estimator: str = param("exact", choices=("exact",))
    """exact only: the meta-gradient is taken through the closed-form values"""
    chain: int = param(2, ge=1)
    """L: inner-loop steps per task (the task lasts L + 1 episodes)"""
    init: str = ""
    """run directory whose checkpoints give the initial theta (empty: random)"""


class MetaPG(ShapingLearner):
    """Meta-PG: the meta-gradient with the self-shaping term only."""

    name = "meta-pg"
    Params = MetaParams
    shape_opponent = False

    @classmethod
    def check_run(cls, run: dict[str, Any]) -> dict[str, Any]:
        super().check_run(run)
        from agentd.algorithms.base import parse_params

        p = parse_params(MetaParams, run["params"], cls.name)
        per_task = run["env_args"].get("episodes_per_task", p.chain + 1)
        if per_task != p.chain + 1:
            raise LearnerConfigError(
                f"'env_args': episodes_per_task = {per_task!r}, but {cls.name} plays "
                f"chain + 1 = {p.chain + 1} episodes per task (leave it out, or set "
                f"--env-arg episodes_per_task={p.chain + 1})")
        if p.init:
            check_init_run(Path(p.init), run["env_args"])
        return {"episodes_per_task": p.chain + 1}

    def __init__(self, spec: LearnerSpec) -> None:
        super().__init__(spec)
        if self.params.init:
            self.theta[...] = load_theta(Path(self.params.init), spec.agent_id)
        self.phi = self.theta.copy()
        self.chain_pos = np.zeros(1, dtype=np.int64)
        self.init_model = OpponentModel(self.params.model_decay)
        self.theta_other0 = np.zeros_like(self.theta)   # opponent's logits at the chain start

    def policy(self) -> np.ndarray:
        return self.phi

    def fit_opponent(self, ep: Episode) -> np.ndarray:
        # The opponent plays its initial logits in a task's first episode and adapted ones
        # after: the first episodes feed a model of its initial policy, which also starts the
        # model that follows it along the chain.
        if self.chain_pos[0] == 0:
            self.init_model.fit(ep)
            self.model.counts[...] = self.init_model.counts
            return self.init_model.logits()
        return super().fit_opponent(ep)

    def learn(self, ep: Episode, theta_other: np.ndarray) -> dict[str, float]:
        j, p, g = int(self.chain_pos[0]), self.params, self.game
        stats = {f"reward_chain{j}": float(ep.reward.mean())}
        if j == 0:
            self.theta_other0[...] = theta_other
        if j < p.chain:      # inner loop (eq. 3)
            values = g.exact_values(self.payoff.table, self.payoff.opponent_table(), p.gamma)
            step = g.naive_step(values, g.tensor(self.phi, grad=True),
                                g.tensor(theta_other)).numpy()
            self.phi += p.inner_lr * step
            self.chain_pos += 1
            return stats
        if p.lr > 0:         # outer loop (eq. 4 / 7)
            stats["meta_value"], step = self.meta_gradient()
            self.theta += p.lr * step
        self.phi[...] = self.theta
        self.chain_pos[0] = 0
        return stats

    def meta_gradient(self) -> tuple[float, np.ndarray]:
        """The meta-value per step and its gradient in theta, on this task's fitted payoffs."""
        g, p = self.game, self.params
        values = g.exact_values(self.payoff.table, self.payoff.opponent_table(), p.gamma)
        theta = g.tensor(self.theta, grad=True)
        meta = g.meta_value(values, theta, g.tensor(self.theta_other0, grad=True), p.inner_lr,
                            p.chain, self.shape_opponent)
        step = g.gradient(meta, theta)
        return float(meta.detach()) * (1.0 - p.gamma), step

    def state_dict(self) -> dict[str, np.ndarray]:
        return {**super().state_dict(), "phi": self.phi, "chain_pos": self.chain_pos,
                "init_model_counts": self.init_model.counts, "theta_other0": self.theta_other0}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        state = dict(state)
        self.init_model.counts[...] = state.pop("init_model_counts", self.init_model.counts)
        super().load_state_dict(state)


class MetaMAPG(MetaPG):
    """Meta-MAPG: the meta-gradient with the self- and the opponent-shaping terms."""

    name = "meta-mapg"
    shape_opponent = True


def load_theta(run_dir: Path, agent_id: int) -> np.ndarray:
    """The initial logits theta agent ``agent_id`` learned in a meta-training run."""
    path = run_dir / "checkpoints" / f"agent-{agent_id}.npz"
    try:
        with np.load(path) as saved:
            return np.asarray(saved["theta"], dtype=np.float64)
    except (OSError, KeyError, ValueError) as exc:
        raise LearnerConfigError(f"parameter 'init': cannot read theta from {path} "
                                 f"({exc})") from None


def check_init_run(run_dir: Path, env_args: dict[str, Any]) -> None:
    """Refuse to meta-test on tasks the init run meta-trained on (same task_seed)."""
    from agentd.envs.base import EnvError
    from agentd.envs.ipd import drawn_tasks

    for agent in (0, 1):
        load_theta(run_dir, agent)
    try:
        config = tomllib.loads((run_dir / "config.toml").read_text())
        seed, trained = drawn_tasks(config.get("env_args", {}))
        this_seed, tasks = drawn_tasks(env_args)
    except (OSError, tomllib.TOMLDecodeError, EnvError) as exc:
        raise LearnerConfigError(f"parameter 'init': {run_dir} is not a usable ipd run "
                                 f"({exc})") from None
    meta_trained = config.get("params", {}).get("lr", MetaParams.lr) != 0
    common = range(max(trained.start, tasks.start), min(trained.stop, tasks.stop))
    if meta_trained and seed == this_seed and len(common):
        raise LearnerConfigError(
            f"'env_args': this run's tasks (ids {tasks.start}..{tasks.stop - 1}) overlap the "
            f"tasks {run_dir} meta-trained on (ids {trained.start}..{trained.stop - 1}, "
            f"task_seed {seed}); evaluate on disjoint tasks, e.g. --env-arg tasks=meta-test")
