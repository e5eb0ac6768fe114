"""The in-process backend: a run's plan in one process, the same run as the live one.

``agentd launch --backend inprocess`` (``launch_in_process``) takes the run's plan
(``agentd.plan``), builds the env exactly as the env server does and every learner exactly as
the agent processes do (``build_learner`` from the plan's part of the welcome), and drives
their ``AgentCore``s as the live run does: each joint step every core gets the env server's
reply (the same body, ``coordinator.envserver.step_body``), their peer messages are handed
over in memory in the order they are produced, and every body is encoded and decoded by the
wire codec on the way, so learners see what they would see from a socket. No sockets, no
guard, no message logs; peer messages are not noised (DP is refused here, as are link
schedules and peer timeouts, which need a clock). For every registered learner the action
stream of each agent and its final checkpoint equal the live run's
(``tests/test_inprocess_equal.py``).

``make_learners``/``run_in_process`` keep the older call of the examples and tests (an env
built by the caller); the learners still come from a plan, of a config with those fields.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agentd.agent.core import AgentCore, build_learner, drive
from agentd.algorithms.base import Learner
from agentd.config import RunConfig
from agentd.configfile import to_toml
from agentd.envs import make_env
from agentd.envs.base import StepResult, VecEnv
from agentd.launch.precheck import precheck
from agentd.plan import RunPlan, plan
from coordinator.envserver import step_body
from protocols.codec import Codec


@dataclass
class InProcessRun:
    """What a run in process returns: episode returns, per-agent scalars, actions, the parts."""

    returns: list[tuple[int, float]] = field(default_factory=list)   # (step, episode return)
    scalars: list[tuple[int, int, dict[str, float]]] = field(default_factory=list)  # step, agent
    learners: list[Learner] = field(default_factory=list)
    actions: list[dict[int, np.ndarray]] = field(default_factory=list)   # per step: agent -> a
    peer_messages: int = 0
    peer_bytes: int = 0
    peer_bytes_by_step: dict[int, int] = field(default_factory=dict)   # body bytes per step


class InProcessError(ValueError):
    """A run the in-process backend cannot run as the live run would."""


# -- building the run from its plan ----------------------------------------------------------
def env_of(p: RunPlan) -> VecEnv:
    """The plan's env, built with the arguments the env server builds it with."""
    e = p.env
    return make_env(e.id, n_agents=e.n_agents, num_envs=e.num_envs, episode_len=e.episode_len,
                    seed=e.model_seed, env_kwargs=dict(e.args), obs_mode=e.obs)


def learners_of(p: RunPlan, config: dict[str, Any], env: VecEnv) -> list[Learner]:
    """Every agent's learner, built from its welcome as a live agent builds it (spaces and
    the turn schedule pass the wire codec, as they do live)."""
    codec = Codec()
    spaces = codec.unpack(codec.pack({"obs": env.obs_spaces, "act": env.act_spaces,
                                      "shared_reward": env.shared_reward}))
    config = codec.unpack(codec.pack(config))
    turn = {} if p.turns is None else {"turn": codec.unpack(codec.pack(p.turns))}
    return [build_learner({**p.agent_info(a.id), "config": config, "spaces": spaces,
                           "neighbours": list(a.neighbours), **turn}) for a in p.agents]


def make_learners(algo: str, env: VecEnv, n: int, topology: str = "ring", seed: int = 0,
                  params: dict[str, Any] | None = None, mixing: str = "kernel"
                  ) -> list[Learner]:
    """The learners of the plan of a run of these fields (graph, W, seeds: ``agentd.plan``)
    over an env the caller built."""
    config = RunConfig(algo=algo, n=n, topology=topology, seed=seed, params=dict(params or {}),
                       mixing=mixing, num_envs=env.num_envs)
    return learners_of(plan(config), config.to_dict(), env)


def build_env(env_id: str, n: int, num_envs: int = 1, episode_len: int = 25, seed: int = 0,
              env_args: dict[str, Any] | None = None, obs_mode: str = "local") -> VecEnv:
    kwargs = {"obs_mode": obs_mode} if obs_mode != "local" else {}
    return make_env(env_id, n_agents=n, num_envs=num_envs, episode_len=episode_len, seed=seed,
                    env_kwargs=dict(env_args or {}), **kwargs)


# -- the loop --------------------------------------------------------------------------------
def run_planned(p: RunPlan, config: RunConfig, on_step: Callable[[int], None] | None = None,
                run_dir: Path | None = None) -> InProcessRun:
    """Run the plan: the live run's env, learners, seeds and message order, in one process.
    With ``run_dir``, periodic checkpoints go where a live agent writes them."""
    refuse_live_only(config)
    env = env_of(p)
    learners = learners_of(p, config.to_dict(), env)
    info = {"config": config.to_dict()}
    cores = [AgentCore({**info, "controls": list(a.controls), "view": list(a.view)}, lr)
             for a, lr in zip(p.agents, learners, strict=True)]
    return _run(env, cores, p.steps, p.env.reset_seed, on_step, run_dir)


def refuse_live_only(c: RunConfig) -> None:
    """What only a live run does: noise on the wire, links that fail, waits that time out."""
    for ok, what in ((c.dp_sigma == 0, "DP noise on peer messages (dp_sigma)"),
                     (not c.links_down, "scheduled link failures (link_schedule)"),
                     (c.peer_timeout == 0, "peer timeouts (peer_timeout)")):
        if not ok:
            raise InProcessError(f"the in-process backend does not run {what}; use "
                                 "--backend local")


def run_in_process(env: VecEnv, learners: list[Learner], steps: int, reset_seed: int = 0,
                   on_step: Callable[[int], None] | None = None, metrics_every: int = 500,
                   act_ahead: str = "auto") -> InProcessRun:
    """Step env and learners for ``steps`` joint steps through AgentCore (the live order).

    ``act_ahead`` as in a live run (auto: on where the learner allows it, as ``agentd launch``
    defaults to): each core then acts before its update, exactly as a live agent's does."""
    allowed = learners[0].act_ahead_allowed(learners[0].spec.params)[0] if learners else False
    if act_ahead == "on" and not allowed:
        raise ValueError(f"{type(learners[0]).__name__} does not allow act-ahead")
    mode = "on" if act_ahead == "on" or (act_ahead == "auto" and allowed) else "off"
    info = {"config": {"episode_len": metrics_every, "checkpoint_every": 0,
                       "act_ahead": mode}}
    cores = [AgentCore({**info, "controls": lr.spec.controls, "view": lr.spec.seen}, lr)
             for lr in learners]
    return _run(env, cores, steps, reset_seed, on_step, None)


def _run(env: VecEnv, cores: list[AgentCore], steps: int, reset_seed: int,
         on_step: Callable[[int], None] | None, run_dir: Path | None) -> InProcessRun:
    codec = Codec()
    wire = (lambda body: codec.unpack(codec.pack(body)))
    out = InProcessRun(learners=[core.learner for core in cores])
    ep_return = np.zeros(env.num_envs)
    obs = env.reset(reset_seed)
    flags = np.zeros(env.num_envs, dtype=bool)
    res = StepResult(obs, obs, np.zeros((env.n_agents, env.num_envs)), flags, flags)
    for t in range(steps + 1):
        bodies = [wire(step_body(res, core.controls, core.view, t, t >= steps))
                  for core in cores]
        actions = _exchange(cores, bodies, codec, out, run_dir)
        if t == steps:
            break
        out.actions.append(actions)
        joint: list = [None] * env.n_agents
        for i, core in enumerate(cores):
            for j, c in enumerate(core.controls):
                joint[c] = actions[i][:, j]
        res = env.step(joint)
        ep_return += res.reward.sum(axis=0) / len(res.reward)    # as the env server counts
        done = res.terminated | res.truncated
        out.returns += [(t + 1, float(v)) for v in ep_return[done]]
        ep_return[done] = 0.0
        if on_step is not None:
            on_step(t + 1)
    return out


def _body(t: int, obs: list, final: list, reward: np.ndarray, term: np.ndarray,
          trunc: np.ndarray, last: bool, ctrl: list[int]) -> dict[str, Any]:
    """The env server's ``step`` reply for one env agent's process (for tests that step
    cores by hand)."""
    return step_body(StepResult(obs, final, reward, term, trunc), ctrl, ctrl, t, last)


def _exchange(cores: list[AgentCore], bodies: list[dict], codec: Codec, out: InProcessRun,
              run_dir: Path | None = None) -> dict[int, np.ndarray]:
    """Deliver the step to every core and their peer messages to each other until all act."""
    actions: dict[int, np.ndarray] = {}
    queue: deque = deque()
    for i, core in enumerate(cores):
        drive(core, core.on_step(bodies[i]), lambda es, i=i: queue.extend((i, e) for e in es))
    while queue:
        src, effect = queue.popleft()
        if effect.what == "act":
            actions[src] = codec.unpack(codec.pack(effect.body))["a"]
        elif effect.what == "metrics":
            out.scalars.append((effect.step, src, effect.body["scalars"]))
        elif effect.what == "checkpoint" and run_dir is not None:
            save_checkpoint(run_dir, src, cores[src].learner, effect.step)
        elif effect.what == "peer":
            packed = codec.pack(effect.body)
            out.peer_messages += 1
            out.peer_bytes += len(packed)
            out.peer_bytes_by_step[effect.step] = \
                out.peer_bytes_by_step.get(effect.step, 0) + len(packed)
            dst = effect.dst
            drive(cores[dst], cores[dst].on_peer(src, effect.kind, codec.unpack(packed)),
                  lambda es, dst=dst: queue.extend((dst, e) for e in es))
    if len(actions) < len(cores) and not all(c.finished for c in cores):
        stuck = [i for i, c in enumerate(cores) if i not in actions and not c.finished]
        waits = [sorted(cores[i].waiting()) for i in stuck]
        raise RuntimeError(f"agents {stuck} still wait for neighbours {waits}")
    return actions


def save_checkpoint(run_dir: Path, i: int, learner: Learner, step: int | None = None) -> Path:
    """Where and how a live agent saves: agent-i.npz at the end, agent-i/step-T.npz."""
    name = f"agent-{i}.npz" if step is None else f"agent-{i}/step-{step}.npz"
    path = run_dir / "checkpoints" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **learner.state_dict())
    return path


# -- agentd launch --backend inprocess -------------------------------------------------------
class _Stopped(Exception):
    """``stop()`` said so at this joint step."""


def launch_in_process(config: RunConfig, stop: Callable[[], bool] | None = None,
                      checked: RunPlan | None = None) -> int:
    """Run the config's plan in this process; the run directory gets config.toml, plan.json,
    seeds.json, metrics.jsonl (one record per episode), summary.json and the checkpoints.
    ``stop`` is asked after every joint step: True ends the run as interrupted (exit code
    130, a summary saying so and no checkpoints), as Ctrl-C ends a live one. ``checked``:
    the plan ``precheck`` already returned for this config (it is not checked again)."""
    from coordinator.rundir import known_return_figures, return_figures, write_json

    refuse_live_only(config)
    p = checked or precheck(config)
    run_dir = Path(config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.toml").write_text(to_toml(config))
    (run_dir / "plan.json").write_text(p.to_json())
    write_json(run_dir / "seeds.json", p.seeds())
    started = time.monotonic()

    def on_step(t: int) -> None:
        if stop is not None and stop():
            raise _Stopped(t)

    try:
        res = run_planned(p, config, on_step=on_step, run_dir=run_dir)
    except _Stopped as exc:
        write_json(run_dir / "summary.json", {
            "status": "interrupted", "error": "stopped", "backend": "inprocess",
            "algo": config.algo, "env": config.env, "n": config.n, "steps": config.steps,
            "steps_done": exc.args[0], "seed": config.seed, "private": p.private,
            "wall_s": round(time.monotonic() - started, 3)})
        print(f"run interrupted: {run_dir}  after {exc.args[0]} steps  (in-process)", flush=True)
        return 130
    wall = time.monotonic() - started
    for i, learner in enumerate(res.learners):
        save_checkpoint(run_dir, i, learner)
    with open(run_dir / "metrics.jsonl", "w") as f:
        f.writelines(json.dumps({"episode": k + 1, "step": step, "return": round(ret, 6)}) + "\n" for k, (step, ret) in enumerate(res.returns))
    figures = return_figures([r for _, r in res.returns])
    # the seed-003 games know their optimum: normalised and greedy returns, as a live run's
    figures.update(known_return_figures(config, [r for _, r in res.returns], run_dir))
    write_json(run_dir / "summary.json", {
        "status": "done", "backend": "inprocess", "algo": config.algo, "env": config.env,
        "n": config.n, "steps": config.steps, "steps_done": config.steps, "seed": config.seed,
        "private": p.private, "wall_s": round(wall, 3), **figures})
    fmt = (lambda v: "n/a" if v is None else f"{v:.3f}")
    print(f"run done: {run_dir}  episodes {figures['episodes']}  final_return "
          f"{fmt(figures['final_return'])} (initial {fmt(figures['initial_return'])})  "
          f"{config.steps / max(wall, 1e-9):.0f} steps/s  (in-process)", flush=True)
    return 0
