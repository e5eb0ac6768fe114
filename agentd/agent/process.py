"""The agent process: one private learner, its sockets, its message log, the one agent loop.

The loop is written once; algorithms plug in through the Learner hooks. Per joint step:
the env server's ``step`` reply arrives -> ``observe`` -> ``outbox`` messages go to neighbours
-> wait while ``awaiting()`` names neighbours (their messages go to ``inbox``) -> ``update``
-> ``act`` -> ``act`` message to the env server. With act-ahead the ``act`` message goes out
right after ``observe`` (the core pauses until it is sent) and the update runs while the env
server steps (see ``agentd.agent.core``). Heartbeats and the coordinator's ``stop`` are
served by the same poll loop, so a silent neighbour or a dead run never hangs the agent.
It stays whole past ~300 lines: the agent's loop, its message handlers and its end are one
state machine over one transport, read top to bottom.
"""

from __future__ import annotations

import logging
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from agentd.agent.core import AgentCore, Effect, build_learner, drive
from agentd.agent.pipeline import agent_pipeline
from agentd.agent.recovery import RecoveryWriter, rejoin_core
from agentd.algorithms import learner_on_this_host, load_learner_class
from agentd.algorithms.base import LearnerConfigError, Outgoing, set_keepalive
from agentd.runtime.control import ControlPlane, JoinOptions, RunFailed, process_facts
from agentd.runtime.faults import CrashAt
from agentd.runtime.lifecycle import Joined, Role, Served, run_process
from agentd.runtime.localplane import connect as connect_local
from agentd.runtime.localplane import same_machine
from agentd.runtime.runfiles import RunFiles
from agentd.runtime.transport import Link, Transport
from protocols import ENVSERVER, peer_identity
from protocols.spaces import action_problem

log = logging.getLogger("agentd.agent.process")


class Agent:
    """One admitted agent: the socket-free core plus its env and peer links, driven by ``run``."""

    def __init__(self, transport: Transport, control: ControlPlane, info: dict[str, Any],
                 files: RunFiles) -> None:
        self.t = transport
        self.control = control
        self.id: int = info["id"]
        config = info["config"]
        self.neighbours = {int(j): ep for j, ep in info["neighbours"].items()}
        core, restart = self._core(info, files)
        learner = core.learner
        self.pipeline = pipeline = agent_pipeline(config, self.id, list(self.neighbours), learner,
                                                  int(info.get("rejoin") or 0), files.log_path)
        transport.enter_run(pipeline.guard, pipeline.policy)
        settings = pipeline.dp_settings
        assert transport.msglog is not None
        transport.msglog.attach(files.log_path, f"agent {self.id}",
                                private=not learner.non_private_reason(config["params"]),
                                meta={**transport.security_meta(),
                                      "insecure": transport.insecure or config["insecure"],
                                      **({"dp": settings.to_meta()} if settings else {})})
        if restart is not None:
            transport.msglog.note("restart", restart)
        self.restart = restart
        self.core = core
        # what the env server accepts (protocols.spaces.action_problem): our own learner's
        # mistake fails here, named, instead of a step the env server waits on forever
        self.act_spaces = [info["spaces"]["act"][c] for c in info["controls"]]
        self.num_envs: int = config["num_envs"]
        self.learner = learner
        self.controls: list[int] = info["controls"]
        self.algo: str = config["algo"]
        self.peers: dict[int, Link] = {
            j: transport.connect_dealer(ep, "peer", j, peer_identity(self.id))
            for j, ep in self.neighbours.items()}
        self.env: Link = transport.connect_dealer(info["env_endpoint"], "env", ENVSERVER,
                                                  peer_identity(self.id))
        self.env_local: Link | None = None     # the local env plane, if we are on its machine
        self.env_token: str | None = None
        if config.get("env_plane", "auto") != "zmq" and same_machine(info.get("env_local")):
            self._open_local(info["env_local"], config["max_msg_bytes"])
        # the step replies and, if the learner talks at all, its neighbours' messages
        self.inbound = [link for link in transport.links.values()
                        if link.router and link.plane == "peer" and learner.peer_kinds]
        self._set_hot()
        self.files = files
        self.run_dir = files.root
        self.wait_since = 0.0
        self.peer_wait_limit = float(config.get("join_timeout", 60.0))
        self.peer_bytes_mark = 0          # peer bytes sent up to the last step reply
        self.last_step_peer_bytes = 0     # peer bytes sent during the last full step
        self._survival(config, files)
        set_keepalive(control.keepalive)

    def _open_local(self, offer: dict[str, Any], max_bytes: int) -> None:
        """Dial the env server's Unix socket; the token goes in our join (agentd.runtime.localplane)."""
        try:
            conn, self.env_token = connect_local(offer, max_bytes)
        except OSError as exc:
            log.warning("agent %d: local env plane at %s refused (%s); staying on ZeroMQ",
                        self.id, offer.get("path"), exc)
            return
        self.env_local = self.t.add_local(conn, "env", router=False, server=ENVSERVER)

    def _env_out(self) -> Link:
        """Where actions go: the local connection while it lives, else ZeroMQ."""
        if self.env_local is not None and self.env_local.sock not in self.t.links:
            self.env_local = None          # closed: the env server answers on ZeroMQ too
            self._set_hot()
        return self.env_local or self.env

    def _set_hot(self) -> None:
        env = [self.env_local] if self.env_local is not None else [self.env]
        self.t.set_hot([*env, *self.inbound])

    def _core(self, info: dict[str, Any], files: RunFiles) -> tuple[AgentCore, dict | None]:
        """A new core, or -- for a restarted agent (the coordinator knew its id) -- the one of
        its newest recovery checkpoint, with the restart record that names it (the log keeps
        it, so a replay restores the same file)."""
        if not info.get("rejoin"):
            return AgentCore(info, build_learner(info)), None
        core, restart = rejoin_core(files.root, self.id, info)
        log.warning("agent %d restarted (restart %d) from %s", self.id, info["rejoin"],
                    restart["checkpoint"] or "its initial state (no recovery checkpoint)")
        return core, restart

    def _survival(self, config: dict[str, Any], files: RunFiles) -> None:
        """Recovery checkpoints, peer timeouts, step timing (and test-only fault injection)."""
        self.recovery = RecoveryWriter(files.root / "checkpoints" / f"agent-{self.id}",
                                       config.get("recovery_every", 0))
        self.save_requested = False       # SIGUSR1: a recovery checkpoint at the next step
        self.crash = CrashAt.from_env(self.id)
        self.first_step_at = self.last_step_at = 0.0
        self.last_t = 0                   # the last step reply's t
        self.peer_timeout = float(config.get("peer_timeout", 0.0))
        self.silent_edges = 0             # (step, neighbour) waits given up on
        self.bye_releases: Counter | None = None   # the DP releases its bye reported

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> str:
        """Serve sockets until the run ends; returns how it ended ('done' or the stop reason)."""
        signal.signal(signal.SIGUSR1, self._on_save_request)
        self.t.send(self.env, "join", ENVSERVER,
                    {"token": self.env_token} if self.env_token else {})
        while not self.core.finished:
            for link in self.t.poll(int(self.control.interval * 1000)):
                for msg, _ in self.t.recv_all(link):
                    if link is self.control.link:
                        self.control.heard(msg)
                        if msg.kind == "stop":
                            return msg.body["reason"]
                        if msg.kind == "peer_moved":
                            self.reconnect(int(msg.body["id"]), msg.body["endpoint"])
                        elif msg.kind == "env_moved":
                            self.reconnect_env(msg.body["endpoint"])
                    elif link is self.env or link is self.env_local:
                        if msg.kind == "step":
                            self.on_step(msg.body)
                    else:
                        self.on_peer(msg.src, msg.kind, msg.body)
            if self.save_requested and self.core.pending is None:
                self.save_requested = False
                self.recovery.save(self.core)
            self.control.tick()
            self.check_peer_wait()
            self.t.flush()
        return "done"

    def on_step(self, body: dict[str, Any]) -> None:
        now = self.wait_since = time.monotonic()
        self.last_t = int(body["t"])
        self.first_step_at = self.first_step_at or now
        self.last_step_at = now
        sent = self.t.stats["peer"].bytes_sent
        self.last_step_peer_bytes = sent - self.peer_bytes_mark
        self.peer_bytes_mark = sent
        if self.restart is not None and "resumed_step" not in self.restart:
            # The env holds the step while an agent is down: this is where it resumes.
            self.restart["resumed_step"] = int(body["t"])
            self.restart["lost"] = int(body["t"]) - self.restart["env_step"]
            self.control.send("restarted", {**self.restart, "agent": self.id}, body["t"])
        drive(self.core, self.core.on_step(body), self.perform)
        if self.crash is not None:
            self.crash.check(self.core.steps_done)

    def on_peer(self, src: int, kind: str, body: dict[str, Any]) -> None:
        before = self.core.pending_step()
        drive(self.core, self.core.on_peer(src, kind, body), self.perform)
        if self.core.pending_step() not in (-1, before):   # a held step reply taken up
            self.wait_since = time.monotonic()

    def reconnect_env(self, endpoint: str) -> None:
        """The env server was restarted: join it at its new endpoint, saying where we were."""
        self.t.close_link(self.env)
        if self.env_local is not None:     # the new env server's local plane is not offered
            if self.env_local.sock in self.t.links:
                self.t.close_link(self.env_local)
            self.env_local = None
        self.env = self.t.connect_dealer(endpoint, "env", ENVSERVER, peer_identity(self.id))
        self._set_hot()
        self.t.send(self.env, "join", ENVSERVER, {"t": self.last_t})
        log.warning("agent %d rejoined the restarted env server at %s (step %d)", self.id,
                    endpoint, self.last_t)

    def _on_save_request(self, _signum: int, _frame: object) -> None:
        self.save_requested = True

    def reconnect(self, j: int, endpoint: str) -> None:
        """Neighbour j was restarted and listens on a new endpoint: dial it there."""
        old = self.peers.get(j)
        if old is None:
            return
        self.t.close_link(old)
        self.neighbours[j] = endpoint
        self.peers[j] = self.t.connect_dealer(endpoint, "peer", j, peer_identity(self.id))
        log.info("agent %d reconnected to restarted neighbour %d at %s", self.id, j, endpoint)

    def serve_finished(self, link: Link) -> None:
        """After the last step: answer neighbours still finishing theirs (e.g. a PR query)."""
        for msg, _ in self.t.recv_all(link):
            if link is not self.env and link is not self.env_local:
                drive(self.core, self.core.on_peer(msg.src, msg.kind, msg.body),
                      lambda effects: self.perform([e for e in effects if e.what == "peer"]))
        self.t.flush()

    def _check_action(self, a: Any) -> None:
        problem = action_problem(a, self.act_spaces, self.num_envs)
        if problem:
            raise RunFailed(f"agent {self.id}'s learner chose actions the env server would "
                               f"refuse ({problem}): {a.dtype} {list(a.shape)}, expected "
                               f"({self.num_envs}, {len(self.act_spaces)}) + the action shape "
                               f"of {self.act_spaces[0]}")

    def perform(self, effects: list[Effect]) -> None:
        for e in effects:
            if e.what == "act":
                self._check_action(e.body["a"])
                self.t.send_logged_first(self._env_out, "act", ENVSERVER, e.body, e.step)
            elif e.what == "peer":
                self.send_peer(Outgoing(e.kind, e.dst, e.body), e.step)
            elif e.what == "metrics":
                self.control.send("metrics", self.pipeline.with_epsilon(e.body), e.step)
            elif e.what == "checkpoint":
                self.checkpoint(e.step)
            elif e.what == "recovery":
                self.recovery.save(self.core)

    def send_peer(self, out: Outgoing, step: int) -> None:
        link = self.peers.get(out.dst)
        if link is None:   # the guard's verdict, without a socket to send on
            self.t.stats["peer"].refused_out["not_a_neighbour"] += 1
            log.warning("agent %d refused to send '%s' to non-neighbour %d", self.id, out.kind,
                        out.dst)
            return
        self.t.send(link, out.kind, out.dst, out.body, step)

    def check_peer_wait(self) -> None:
        waiting = self.core.waiting()
        if waiting:
            waited = time.monotonic() - self.wait_since
            if self.peer_timeout and waited > self.peer_timeout:
                step = self.core.pending_step()
                effects = self.core.on_silent(waiting)
                if effects is not None:    # the edges are down for this step: go ahead
                    assert self.t.msglog is not None
                    self.t.msglog.note("peer_timeout", {"t": step, "silent": sorted(waiting)})
                    self.silent_edges += len(waiting)
                    self.wait_since = time.monotonic()
                    drive(self.core, effects, self.perform)
                    return
            # A live neighbour may be slow (a loaded machine, a deep update); a dead one is
            # caught by the heartbeats. So this only ends a step that cannot complete.
            if waited > max(self.control.timeout, self.peer_wait_limit):
                raise RunFailed(f"waited {waited:.1f} s for neighbours {sorted(waiting)}")

    # -- the end ----------------------------------------------------------------------------
    def checkpoint(self, step: int | None = None) -> Path:
        """The learned state, at the end (agent-i.npz) or at a step (agent-i/step-T.npz)."""
        name = f"agent-{self.id}.npz" if step is None else f"agent-{self.id}/step-{step}.npz"
        path = self.run_dir / "checkpoints" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **self.learner.state_dict())
        return path

    def tally(self) -> dict[str, Any]:
        """After the ack: the counters again, with what went out and came in after the bye
        (the summary counts it, as the audit counts the logs); the DP account too if that
        traffic released anything."""
        dp = self.pipeline.dp
        # first: the accountant sends heartbeats between its runs, and they count
        report = self.pipeline.dp_report(tick=lambda: self.control.send("heartbeat", {})) \
            if dp is not None and dp.releases != self.bye_releases else None
        stats = self.t.summary()
        stats["planes"]["control"]["msgs_sent"] += 1       # the tally itself, about to leave
        stats["msgs_sent"] += 1
        return stats if report is None else {**stats, "dp": report}

    def final_stats(self) -> dict[str, Any]:
        self.recovery.wait()
        dp = self.pipeline.dp
        self.bye_releases = Counter(dp.releases) if dp is not None else None
        steps = max(self.core.steps_done, 1)
        step_s = (self.last_step_at - self.first_step_at) / steps
        return {**self.t.summary(), **process_facts(), "steps": self.core.steps_done,
                "algo": self.algo, "controls": self.controls,
                "peer_bytes_last_step": self.last_step_peer_bytes, "files": self.files.mode,
                "recovery": self.recovery.stats(step_s), "restart": self.restart,
                "peer_timeouts": self.silent_edges,
                "dp": self.pipeline.dp_report(tick=lambda: self.control.send("heartbeat", {})),
                "act_ahead": self.core.act_ahead,
                "env_plane": "local" if self.env_local is not None else "zmq",
                "early_replies": self.core.early_replies}


def run_agent(opts: JoinOptions, want_id: int | None) -> int:
    """Entry point of ``agentd agent``: join a run, learn, report, ship its files, leave.
    Returns the exit code. (Bad keys or an insecure bind raise before anything joins.)"""
    return run_process(Role("agent", "peer", _admitted, _serve), opts, want_id)


def _admitted(joined: Joined) -> str:
    """Once admitted: the turn schedule, if the learner takes turns (sent right behind the
    welcome); the files go under agent-<id>."""
    info, cfg = joined.info, joined.config
    try:                  # a plug-in this host cannot import fails here, at join
        learner_on_this_host(cfg["algo"])
    except LearnerConfigError as exc:
        raise RunFailed(str(exc)) from None
    if info["takes_turns"]:     # the plan says so (agents' welcomes always carry it)
        info["turn"] = joined.control.wait_turn(joined.join_timeout)
    return f"agent-{info['id']}"


def _serve(joined: Joined, files: RunFiles) -> Served:
    """Build the learner (the slow imports between heartbeats), run, checkpoint at the end."""
    control, cfg = joined.control, joined.config
    if load_learner_class(cfg["algo"]).needs_torch:   # ~1 s or more on a busy machine
        control.send("heartbeat", {})
        import torch  # noqa: F401 - loaded here, between two heartbeats
        control.send("heartbeat", {})
    if float(cfg.get("dp_sigma", 0.0)) > 0:   # ~1.5-3 s: between two heartbeats too
        control.send("heartbeat", {})
        import dp_accounting  # noqa: F401
        control.send("heartbeat", {})
    agent = Agent(joined.transport, control, joined.info, files)
    if agent.run() == "done":
        agent.checkpoint()
    return Served(agent.final_stats(), agent.serve_finished, agent.tally)
