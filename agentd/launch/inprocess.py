"""The same agents in one process: AgentCores wired to each other and to a VecEnv directly.

No sockets, no guard, no logs: peer messages are handed from one core to the other in the
order they are produced. Used as the single-process baseline of the benchmarks, by tests that
check algorithm bookkeeping across agents, and for quick sweeps. A live run is the product;
this is its yardstick.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agentd.agent.core import AgentCore, drive
from agentd.algorithms import load_learner_class
from agentd.algorithms.base import Learner, LearnerSpec
from agentd.envs import make_env
from agentd.envs.base import VecEnv
from topologies import build, mixing_matrix


@dataclass
class InProcessRun:
    """What ``run_in_process`` returns: episode returns, per-agent scalars and the parts."""

    returns: list[tuple[int, float]] = field(default_factory=list)   # (step, episode return)
    scalars: list[tuple[int, int, dict[str, float]]] = field(default_factory=list)  # step, agent
    learners: list[Learner] = field(default_factory=list)
    peer_messages: int = 0
    peer_bytes: int = 0
    peer_bytes_by_step: dict[int, int] = field(default_factory=dict)   # body bytes per step


def make_learners(algo: str, env: VecEnv, n: int, topology: str = "ring", seed: int = 0,
                  params: dict[str, Any] | None = None, mixing: str = "kernel"
                  ) -> list[Learner]:
    """One learner per env agent, with the graph's neighbours and W rows, as in a live run."""
    cls = load_learner_class(algo)
    if cls.centralised:
        return [cls(LearnerSpec(
            agent_id=0, n_agents=1, neighbours=[], weights={0: 1.0},
            obs_spaces=list(env.obs_spaces), act_spaces=list(env.act_spaces),
            controls=list(range(n)), num_envs=env.num_envs, seed=seed * 1000,
            params=dict(params or {}), shared_reward=env.shared_reward, shared_seed=seed))]
    graph = build(topology if n > 1 else "complete", n, seed=0)
    w = mixing_matrix(graph, mixing)
    views = [list(range(n)) if cls.joint_view else [i] for i in range(n)]
    learners = [cls(LearnerSpec(
        agent_id=i, n_agents=n, neighbours=graph.neighbours(i),
        weights={j: float(w[i, j]) for j in [i, *graph.neighbours(i)]},
        obs_spaces=[env.obs_spaces[j] for j in views[i]], act_spaces=[env.act_spaces[i]],
        controls=[i], num_envs=env.num_envs, seed=seed * 1000 + i, params=dict(params or {}),
        shared_reward=env.shared_reward, shared_seed=seed, view=views[i] if cls.joint_view
        else None)) for i in range(n)]
    schedule = cls.turn_schedule(dict(params or {}), n, seed)
    for learner in learners:    # as the coordinator would broadcast it
        if schedule is not None:
            learner.set_turns(schedule)
    return learners


def run_in_process(env: VecEnv, learners: list[Learner], steps: int, reset_seed: int = 0,
                   on_step: Callable[[int], None] | None = None, metrics_every: int = 500,
                   act_ahead: str = "auto") -> InProcessRun:
    """Step env and learners for ``steps`` joint steps through AgentCore (the live order).

    ``act_ahead`` as in a live run (auto: on where the learner allows it, as ``agentd launch``
    defaults to): each core then acts before its update, exactly as a live agent's does."""
    from protocols.codec import Codec

    codec = Codec()
    allowed = learners[0].act_ahead_allowed(learners[0].spec.params)[0] if learners else False
    if act_ahead == "on" and not allowed:
        raise ValueError(f"{type(learners[0]).__name__} does not allow act-ahead")
    mode = "on" if act_ahead == "on" or (act_ahead == "auto" and allowed) else "off"
    info = {"config": {"episode_len": metrics_every, "checkpoint_every": 0,
                       "act_ahead": mode}}
    controls = [lr.spec.controls for lr in learners]
    seen = [lr.spec.seen for lr in learners]
    cores = [AgentCore({**info, "controls": c, "view": v}, lr)
             for c, v, lr in zip(controls, seen, learners)]
    out = InProcessRun(learners=list(learners))
    ep_return = np.zeros(env.num_envs)
    obs = env.reset(reset_seed)
    flags = np.zeros(env.num_envs, dtype=bool)
    zero = np.zeros((env.n_agents, env.num_envs))
    bodies = [_body(0, obs, obs, zero, flags, flags, steps == 0, v) for v in seen]
    for t in range(steps + 1):
        actions = _exchange(cores, bodies, codec, out)
        if t == steps:
            break
        joint: list = [None] * env.n_agents
        for i, ctrl in enumerate(controls):
            for j, c in enumerate(ctrl):
                joint[c] = actions[i][:, j]
        res = env.step(joint)
        ep_return += res.reward.mean(axis=0)
        done = res.terminated | res.truncated
        out.returns += [(t + 1, float(v)) for v in ep_return[done]]
        ep_return[done] = 0.0
        bodies = [_body(t + 1, res.obs, res.final_obs, res.reward, *res.agent_flags(c),
                        t + 1 == steps, v) for c, v in zip(controls, seen)]
        if on_step is not None:
            on_step(t + 1)
    return out


def _body(t: int, obs: list, final: list, reward: np.ndarray, term: np.ndarray,
          trunc: np.ndarray, last: bool, ctrl: list[int]) -> dict[str, Any]:
    """The env server's ``step`` reply for the agent process seeing env agents ctrl."""
    return {"t": t, "obs": np.stack([obs[c] for c in ctrl], 1),
            "final_obs": np.stack([final[c] for c in ctrl], 1),
            "reward": np.ascontiguousarray(reward[ctrl].T), "terminated": term,
            "truncated": trunc, "last": last}


def _exchange(cores: list[AgentCore], bodies: list[dict], codec: Any,
              out: InProcessRun) -> dict[int, np.ndarray]:
    """Deliver the step to every core and their peer messages to each other until all act."""
    actions: dict[int, np.ndarray] = {}
    queue: deque = deque()
    for i, core in enumerate(cores):
        drive(core, core.on_step(bodies[i]), lambda es, i=i: queue.extend((i, e) for e in es))
    while queue:
        src, effect = queue.popleft()
        if effect.what == "act":
            actions[src] = effect.body["a"]
        elif effect.what == "metrics":
            out.scalars.append((effect.step, src, effect.body["scalars"]))
        elif effect.what == "peer":
            size = len(codec.pack(effect.body))
            out.peer_messages += 1
            out.peer_bytes += size
            out.peer_bytes_by_step[effect.step] = out.peer_bytes_by_step.get(effect.step, 0) + size
            dst = effect.dst
            drive(cores[dst], cores[dst].on_peer(src, effect.kind, effect.body),
                  lambda es, dst=dst: queue.extend((dst, e) for e in es))
    if len(actions) < len(cores) and not all(c.finished for c in cores):
        stuck = [i for i, c in enumerate(cores) if i not in actions and not c.finished]
        raise RuntimeError(f"agents {stuck} still wait for neighbours {[sorted(cores[i].waiting()) for i in stuck]}")
    return actions


def build_env(env_id: str, n: int, num_envs: int = 1, episode_len: int = 25, seed: int = 0,
              env_args: dict[str, Any] | None = None, obs_mode: str = "local") -> VecEnv:
    kwargs = {"obs_mode": obs_mode} if obs_mode != "local" else {}
    return make_env(env_id, n_agents=n, num_envs=num_envs, episode_len=episode_len, seed=seed,
                    env_kwargs=dict(env_args or {}), **kwargs)
