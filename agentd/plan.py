"""The run plan: everything that makes a run *this* run, decided once from its config.

``plan(config) -> RunPlan`` is a pure function (no I/O, no sockets): which env agents each
agent process acts for and sees (seating), the communication graph and its seed, the mixing
matrix W, every seed (env model, env reset, each agent), the turn schedule, each agent's part
of its learner spec, the privacy label and the env spec. Every backend takes it and none
works any of it out again: the coordinator hands it out in the welcomes (and writes it to the
run directory as ``plan.json``; ``seeds.json`` is its seeds), the local and the Ray launchers
start its processes, and the in-process runner (``agentd.launch.inprocess``) runs the very same
experiment in one process. What only the built env knows (its spaces) joins the plan in the
learner's spec (``agentd.agent.core.build_learner``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from agentd.algorithms import load_learner_class
from agentd.config import (
    RunConfig,
    derive_seed,
    is_private,
    non_private_reason,
    process_count,
    run_graph,
)
from agentd.configfile import resolved_params


@dataclass(frozen=True)
class AgentPlan:
    """One agent process: its id, seed, seating and its place in the graph."""

    id: int
    seed: int
    controls: tuple[int, ...]          # env agents it acts for
    view: tuple[int, ...]              # env agents whose observations and rewards it is sent
    neighbours: tuple[int, ...]
    weights: tuple[tuple[int, float], ...]   # its row of W: (j, W_ij), itself first


@dataclass(frozen=True)
class EnvPlan:
    """The env the env server builds and steps (and the in-process runner, identically)."""

    id: str
    n_agents: int
    num_envs: int
    episode_len: int
    model_seed: int                    # the env model (random transitions, payoff noise, ...)
    reset_seed: int                    # the first reset of the K copies
    args: dict[str, Any]               # keyword args of the env factory
    obs: str                           # observation mode: local | state


@dataclass(frozen=True)
class RunPlan:
    """The resolved run: see the module docstring. ``to_dict`` is what ``plan.json`` holds."""

    seed: int                          # the run seed (the learners' shared seed)
    algo: str
    params: dict[str, Any]             # every learner parameter, defaults included
    steps: int
    act_ahead: str                     # on | off (auto, resolved, becomes one of them)
    n_procs: int
    topology: str                      # the graph's name
    graph_seed: int
    edges: tuple[tuple[int, int], ...]
    mixing: str
    W: tuple[tuple[float, ...], ...]
    links_down: tuple[tuple[int, ...], ...]   # scheduled link failures (FROM, TO, I, J)
    agents: tuple[AgentPlan, ...]
    turns: dict[str, Any] | None       # the turn schedule broadcast after the welcome, or None
    private: bool
    non_private_reason: str
    env: EnvPlan

    def to_dict(self) -> dict[str, Any]:
        """JSON-native (lists, string keys): equal to ``json.loads`` of ``plan.json``."""
        return json.loads(self.to_json())

    def to_json(self) -> str:
        """One line per field (and per agent, per row of W)."""
        def dump(v: Any) -> str:
            return json.dumps(v, default=_jsonable)

        lines = []
        for key, value in asdict(self).items():
            if key in ("agents", "W") and value:
                inner = ",\n".join(f"  {dump(v)}" for v in value)
                lines.append(f" {dump(key)}: [\n{inner}\n ]")
            else:
                lines.append(f" {dump(key)}: {dump(value)}")
        return "{\n" + ",\n".join(lines) + "\n}\n"

    def seeds(self) -> dict[str, Any]:
        """What ``seeds.json`` holds: every seed of the run."""
        return {"seed": self.seed, "graph": self.graph_seed, "env_model": self.env.model_seed,
                "env_reset": self.env.reset_seed,
                "agents": {str(a.id): a.seed for a in self.agents}}

    def seating(self) -> tuple[dict[int, list[int]], dict[int, list[int]]]:
        """(controls, views) per agent process, as the env server is told them."""
        return ({a.id: list(a.controls) for a in self.agents},
                {a.id: list(a.view) for a in self.agents})

    def graph(self) -> Any:
        """The communication graph (a ``topologies.Graph``) of the plan's edges."""
        from topologies import Graph

        return Graph(self.n_procs, tuple(self.edges), self.topology)

    def agent_info(self, i: int) -> dict[str, Any]:
        """Agent i's part of its welcome (the coordinator adds endpoints, config and spaces):
        what ``build_learner`` makes its learner from."""
        a = self.agents[i]
        return {"id": a.id, "n_procs": self.n_procs, "seed": a.seed,
                "weights": dict(a.weights), "controls": list(a.controls), "view": list(a.view),
                "graph_edges": [list(e) for e in self.edges],
                "takes_turns": self.turns is not None}


def plan(config: RunConfig) -> RunPlan:
    """The plan of a resolved config (``agentd.config.resolve``); pure and deterministic."""
    c = config
    n_procs = process_count(c)
    graph = run_graph(c)
    from topologies import mixing_matrix

    w = mixing_matrix(graph, c.mixing)
    controls, views = seating(c)
    agents = tuple(AgentPlan(
        id=i, seed=derive_seed(c.seed, "agent", i), controls=tuple(controls[i]),
        view=tuple(views[i]), neighbours=tuple(graph.neighbours(i)),
        weights=tuple((j, float(w[i, j])) for j in [i, *graph.neighbours(i)]))
        for i in range(n_procs))
    env = EnvPlan(id=c.env, n_agents=c.n, num_envs=c.num_envs, episode_len=c.episode_len,
                  model_seed=derive_seed(c.seed, "env_model"),
                  reset_seed=derive_seed(c.seed, "env_reset"), args=dict(c.env_args),
                  obs=c.obs)
    return RunPlan(
        seed=c.seed, algo=c.algo, params=resolved_params(c), steps=c.steps,
        act_ahead=c.act_ahead, n_procs=n_procs,
        topology=graph.name,
        graph_seed=derive_seed(c.seed, "graph"),
        edges=tuple(tuple(e) for e in graph.edges), mixing=c.mixing,
        W=tuple(tuple(float(v) for v in row) for row in w),
        links_down=tuple(tuple(x) for x in c.links_down), agents=agents,
        turns=turn_schedule(c), private=is_private(c), non_private_reason=non_private_reason(c),
        env=env)


def seating(c: RunConfig) -> tuple[dict[int, list[int]], dict[int, list[int]]]:
    """(controls, views): per agent process, the env agents it acts for and those whose
    observations and rewards the env server sends it. This is the one centralised mode
    (docs/architecture.md): a learner that is ``centralised`` (one process acts for all) or has a
    ``joint_view`` (one process per agent, each seeing all) is sent every env agent's
    observation and reward; every other process sees exactly the agents it controls."""
    learner = load_learner_class(c.algo)
    everyone = list(range(c.n))
    if learner.centralised:
        return {0: everyone}, {0: everyone}
    controls = {i: [i] for i in range(c.n)}
    views = {i: everyone for i in range(c.n)} if learner.joint_view else controls
    return controls, views


def turn_schedule(c: RunConfig) -> dict | None:
    """The turn schedule the coordinator broadcasts to an alternating learner's agents (MA2QL),
    or None: the learner's parameters fix it, from the run seed."""
    return load_learner_class(c.algo).turn_schedule(c.params, process_count(c), c.seed)


def _jsonable(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable in a run plan: {type(obj).__name__}")
