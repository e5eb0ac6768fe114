"""The environment server: a synchronous joint step over all agent processes.

For step t it waits until every agent process has sent ``act`` for t, steps the K env copies
at once, and replies ``step`` to each process with the observations, rewards and flags of the
env agents it controls. It reports finished episodes and its pace to the coordinator.

Agents on its machine send their actions and get their replies over the local env plane (a
Unix socket each, ``agentd.runtime.localplane``) once their ``join`` has claimed the connection; the
others, and everything else, over ZeroMQ.

It stays whole past ~300 lines: the step barrier, the replies and the restarts of env copies
share the round's state and are read together.
"""

from __future__ import annotations

import logging
import time
from contextlib import AbstractContextManager
from typing import Any

import numpy as np

from agentd.envs.base import EnvError, StepResult, VecEnv
from agentd.runtime.control import ControlPlane, RunFailed, process_facts
from agentd.runtime.localplane import LocalConn, LocalListener
from agentd.runtime.transport import Link, Transport
from protocols import Message, peer_identity
from protocols.spaces import action_problem

log = logging.getLogger("agentd.envserver")


class EnvServer:
    """Steps one VecEnv for the admitted agent processes."""

    def __init__(self, transport: Transport, control: ControlPlane, link: Link,
                 info: dict[str, Any], env: VecEnv,
                 listener: LocalListener | None = None) -> None:
        self.t, self.control, self.link, self.env = transport, control, link, env
        self.listener = None if listener is None else transport.add_local(
            listener, "env", router=False, server=None)
        self.local_of: dict[int, Link] = {}       # agent -> its local env plane connection
        self.tokens: dict[str, int] = {}          # token of a join -> the agent it names
        self.unclaimed: dict[str, LocalConn] = {}   # connections no join has claimed yet
        self.config = info["config"]
        self.reset_seed = info["seeds"]["env_reset"]
        self.controls = {int(a): c for a, c in info["controllers"].items()}
        # what each process is sent: its controlled agents, or all in the centralised mode
        self.views = {int(a): v for a, v in info.get("views", info["controllers"]).items()}
        self.ids = {peer_identity(a): a for a in self.controls}
        self.route: dict[int, bytes | None] = {}   # agent -> routing id of its connection
        self.rejected: dict[str, int] = {}
        self.steps_total = self.config["steps"]
        self.t_step = 0
        self.acts: dict[int, np.ndarray] = {}
        self.last: dict[int, dict[str, Any]] = {}   # agent -> the last step reply it was sent
        self.ep_return = np.zeros(env.num_envs)
        self.ep_len = np.zeros(env.num_envs, dtype=np.int64)
        self.started = self.ended = 0.0
        self._last_report = 0.0
        self.rejoin = int(info.get("rejoin", 0))   # restarts of the env server before this one
        self.resume_at = 0                        # rejoining: the step the agents were at

    def run(self) -> str:
        while len(self.route) < len(self.controls):
            for msg, ident, link in self._serve():
                with self._boundary(link, msg):
                    self._on_join(msg, ident, link)
        self.started = time.monotonic()
        self._first_reply()
        while self.t_step < self.steps_total:
            for msg, ident, link in self._serve():
                with self._boundary(link, msg):
                    if msg.kind == "act":
                        self._on_act(msg, ident, link)
                    elif msg.kind == "join" and link is self.link:
                        self._on_rejoin(msg, ident)
                    else:
                        self._drop("wrong_plane", ident)
            if len(self.acts) == len(self.controls):
                self._step()
        self.ended = time.monotonic()
        self._report_pace(final=True)     # a short run may end before its first report
        return "done"

    def _boundary(self, link: Link, msg: Message) -> AbstractContextManager[None]:
        """The last line of defence around handling one message: what a handler raises (other
        than the run's own end) is a counted rejection, not the end of the env server."""
        return self.t.handling(link.plane, msg, passing=(RunFailed, StopRequested))

    def _on_join(self, msg: Message, ident: bytes | None, link: Link) -> None:
        agent = self._agent_of(msg, ident)
        if msg.kind == "join" and agent is not None and link is self.link:
            self.route[agent] = ident
            self.resume_at = max(self.resume_at, int(msg.body.get("t", 0)))
            self._claim(msg.body.get("token"), agent)
        else:
            self._drop("unknown_sender", ident)

    def _first_reply(self) -> None:
        """Reset the env copies and send the first observations. A restarted env server
        resumes at the agents' step (the old env state died with its process): every episode
        in flight is truncated there, said in the reply (``restart``) and to the coordinator;
        the reset seed moves on so the new episodes are not replays of the first ones."""
        seed = self.reset_seed + 7919 * self.rejoin
        obs = self.env.reset(seed)
        flags = np.zeros(self.env.num_envs, dtype=bool)
        zero = np.zeros((self.env.n_agents, self.env.num_envs))
        if not self.rejoin:
            self._reply(StepResult(obs, obs, zero, flags, flags))
            return
        self.t_step = self.resume_at
        log.warning("env server restart %d: resuming at step %d with %d episodes truncated",
                    self.rejoin, self.t_step, self.env.num_envs)
        self.control.send("env_restarted", {"step": self.t_step, "truncated": self.env.num_envs,
                                            "reset_seed": seed}, self.t_step)
        self._reply(StepResult(obs, obs, zero, flags, ~flags), restart=True)

    def _serve(self) -> list:
        """One poll round: env traffic is returned, control traffic handled here."""
        out = []
        for link in self.t.poll(int(self.control.interval * 1000)):
            if link is self.listener:
                self._accept_local()
                continue
            for msg, ident in self.t.recv_all(link):
                if link is self.control.link:
                    self.control.heard(msg)
                    if msg.kind == "stop":
                        raise StopRequested(msg.body["reason"])
                else:
                    out.append((msg, ident, link))
        self.control.tick()
        self._report_pace()
        return out

    # -- the local env plane ----------------------------------------------------------------
    def _accept_local(self) -> None:
        """A connection to the local env plane: bound to the agent whose join names its token
        (now, or when that join arrives); refused ones are closed and counted."""
        assert self.listener is not None
        got = self.listener.sock.accept(self.t.guard.max_bytes)
        if isinstance(got, str):
            if got != "no_connection":
                self._drop(f"local_{got}", None)
            return
        conn, token = got
        agent = self.tokens.pop(token.hex(), None)
        if agent is not None:
            self._bind_local(agent, conn)
        elif len(self.unclaimed) >= 2 * len(self.controls):   # nobody floods us
            conn.close()
            self._drop("local_unclaimed", None)
        else:
            self.unclaimed[token.hex()] = conn

    def _claim(self, token: Any, agent: int) -> None:
        """A join's token: the agent's connection is (or will be) the one that sent it."""
        old = self.local_of.pop(agent, None)    # a rejoin: its old connection is done
        if old is not None and old.sock in self.t.links:
            self.t.close_link(old)
        if not isinstance(token, str) or self.listener is None:
            self._set_hot()
            return
        conn = self.unclaimed.pop(token, None)
        if conn is not None:
            self._bind_local(agent, conn)
        else:
            self.tokens[token] = agent

    def _bind_local(self, agent: int, conn: LocalConn) -> None:
        self.local_of[agent] = self.t.add_local(conn, "env", router=True, server=agent)
        self._set_hot()

    def _set_hot(self) -> None:
        """Wait on the local connections alone once every agent has one (ZeroMQ's env socket
        is still polled every 10 ms: joins of restarted agents come there)."""
        local = [link for link in self.local_of.values() if link.sock in self.t.links]
        everyone = len(local) == len(self.controls)
        self.t.set_hot(local if everyone else [self.link, *local] if local else [])

    def _local_link(self, agent: int) -> Link | None:
        link = self.local_of.get(agent)
        if link is not None and link.sock not in self.t.links:   # closed under us
            del self.local_of[agent]
            self._set_hot()
            return None
        return link

    def _agent_of(self, msg: Message, ident: bytes | None) -> int | None:
        """Which agent process sent this: in secure mode the key's owner (the guard has
        checked src against it), in plaintext the routing identity it declared."""
        if self.t.secure:
            return msg.src if msg.src in self.controls else None
        return self.ids.get(ident) if ident is not None else None

    def _on_act(self, msg: Message, ident: bytes | None, link: Link) -> None:
        body = msg.body
        agent = self._agent_of(msg, ident)
        if link.local and agent != link.server:
            agent = None
        if agent is None or body["t"] != self.t_step or agent in self.acts:
            self._drop("unknown_sender" if agent is None else "wrong_step", ident)
            return
        if not link.local:
            self.route[agent] = ident   # a reconnected agent is answered on its new connection
        a = body["a"]
        problem = action_problem(a, [self.env.act_spaces[c] for c in self.controls[agent]],
                                  self.env.num_envs)
        if problem:       # an admitted agent's bad action is its problem, not the run's
            self._drop(problem, ident)
            return
        self.acts[agent] = a

    def _on_rejoin(self, msg: Message, ident: bytes | None) -> None:
        """A restarted agent: the step waited for it. It gets the current step's reply on its
        new connection, and acts for itself (an action its dead process sent is dropped)."""
        agent = self._agent_of(msg, ident)
        if agent is None or agent not in self.last:
            self._drop("unknown_sender" if agent is None else "wrong_step", ident)
            return
        self.route[agent] = ident
        self._claim(msg.body.get("token"), agent)
        self.acts.pop(agent, None)
        log.warning("agent %d rejoined at step %d", agent, self.t_step)
        self.t.send(self.link, "step", agent, self.last[agent], self.t_step, to=ident)
        self.t.flush()

    def _drop(self, reason: str, ident: bytes | None) -> None:
        """A well-formed env message that does not fit the run: counted, and logged (the
        first 5 of each reason, then every 1000th: a flood does not flood stderr)."""
        count = self.rejected[reason] = self.rejected.get(reason, 0) + 1
        if count <= 5 or count % 1000 == 0:
            log.warning("envserver dropped a message (%s) from %r (%d so far)", reason, ident,
                        count)

    def _step(self) -> None:
        actions: list[Any] = [None] * self.env.n_agents
        for agent, a in self.acts.items():
            for j, c in enumerate(self.controls[agent]):
                actions[c] = a[:, j]
        self.acts.clear()
        try:
            res = self.env.step(actions)
        except EnvError as exc:
            raise RunFailed(f"env step failed: {exc}") from None
        self.t_step += 1
        self._reply(res)         # first: the agents work on it while we do the accounts
        self._account(res.reward, res.terminated | res.truncated)

    def _reply(self, res: StepResult, restart: bool = False) -> None:
        """Each agent process gets its env agents' slice; where an agent finished before its
        copy, its own done flags (see ``StepResult.agent_flags``). The replies are kept, to
        send again to an agent that rejoins."""
        last = self.t_step >= self.steps_total
        extra = {"restart": True} if restart else {}
        replies = [(agent, {**step_body(res, ctrl, self.views[agent], self.t_step, last),
                            **extra}, self.route[agent])
                   for agent, ctrl in self.controls.items()]
        self.last = {agent: body for agent, body, _ in replies}
        remote = []
        for reply in replies:
            local = self._local_link(reply[0])
            if local is None:
                remote.append(reply)
            elif not self.t.send_burst(local, "step", [reply], self.t_step):
                remote.append(reply)       # the local connection failed: ZeroMQ instead
                self._local_link(reply[0])
        if remote:
            self.t.send_burst(self.link, "step", remote, self.t_step)
        self.t.flush()

    def _account(self, reward: np.ndarray, done: np.ndarray) -> None:
        """Episode return = sum over steps of the mean reward over env agents."""
        self.ep_return += reward.sum(axis=0) / len(reward)
        self.ep_len += 1
        if done.any():
            self.control.send("episodes", {"step": self.t_step,
                                           "returns": self.ep_return[done].copy(),
                                           "lengths": self.ep_len[done].copy()}, self.t_step)
            self.ep_return[done] = 0.0
            self.ep_len[done] = 0

    def _report_pace(self, final: bool = False) -> None:
        now = time.monotonic()
        if self.started and (final or now - self._last_report >= 0.5):
            self._last_report = now
            rate = self.t_step / max(now - self.started, 1e-9)
            self.control.send("metrics", {"step": self.t_step,
                                          "scalars": {"steps_per_s": rate}}, self.t_step)

    def stats(self) -> dict[str, Any]:
        wall = (self.ended or time.monotonic()) - (self.started or time.monotonic())
        summary = self.t.summary()
        for reason, count in self.rejected.items():
            summary["rejected"][reason] = summary["rejected"].get(reason, 0) + count
        local = sum(1 for a in self.controls if self._local_link(a) is not None)
        summary["env_plane"] = {"local": local, "zmq": len(self.controls) - local}
        return {**summary, **process_facts(), "steps": self.t_step,
                "transitions": self.t_step * self.env.num_envs, "wall_s": round(wall, 3),
                "steps_per_s": round(self.t_step / wall, 1) if wall > 0 else 0.0}


class StopRequested(Exception):
    """The coordinator ended the run."""


def step_body(res: StepResult, ctrl: list[int], view: list[int], t: int,
              last: bool) -> dict[str, Any]:
    """The ``step`` reply to the process acting for env agents ``ctrl``: observations and
    rewards of its view (all, when centralised), its own done flags (the in-process backend
    sends the very same body)."""
    term, trunc = res.agent_flags(ctrl)
    return {"t": t, "obs": _gather(res.obs, view), "final_obs": _gather(res.final_obs, view),
            "reward": np.ascontiguousarray(res.reward[view].T), "terminated": term,
            "truncated": trunc, "last": last}


def _gather(per_agent: list[np.ndarray], ctrl: list[int]) -> np.ndarray:
    if len(ctrl) == 1:
        return per_agent[ctrl[0]][:, None]
    return np.stack([per_agent[c] for c in ctrl], axis=1)
