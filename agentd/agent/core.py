"""The agent loop's logic without sockets: what an agent does with each message it receives.

``AgentCore`` turns received env replies and peer messages into *effects* (an ``act`` for the
env server, peer messages, metrics) by calling the learner's hooks in the one fixed order. The
live agent process (``agentd.agent.process``) performs the effects on its sockets; ``agentd replay``
feeds the same core from a message log, which is why a replay reproduces the live agent.

Act-ahead (``act_ahead = "on"`` in the run config, for learners that declare they allow it):
the step reply is observed, the next action is chosen at once with the policy of the previous
update and the core *pauses*: the caller performs the effects so far (the ``act`` goes to the
env server) and then calls ``resume()``, which goes on with the neighbour exchange and the
update -- so the env server steps while the agent updates. The env server may then answer
before this agent's step has ended; the core holds that reply and takes it up after the
update. Every caller drives the core the same way (``drive``), so the learner sees the same
calls in the same order live, in-process and in a replay.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from agentd.algorithms import load_learner_class
from agentd.algorithms.base import Learner, LearnerSpec
from topologies.live import LiveGraph


@dataclass(frozen=True)
class Effect:
    """Something the core wants done: send ``act``/a peer message/``metrics``, or finish."""

    what: str                 # "act" | "peer" | "metrics" | "checkpoint" | "recovery" | "finished"
    step: int
    body: dict[str, Any]
    kind: str = ""            # peer message kind
    dst: int = -1             # peer destination


def build_learner(info: dict[str, Any]) -> Learner:
    """The learner an admitted agent runs, built from its welcome (id, config, spaces, seed)."""
    config, spaces, controls = info["config"], info["spaces"], info["controls"]
    learner_cls = load_learner_class(config["algo"])
    learner = learner_cls(LearnerSpec(
        agent_id=info["id"], n_agents=info["n_procs"],
        neighbours=sorted(int(j) for j in info["neighbours"]),
        weights={int(j): w for j, w in info["weights"].items()},
        obs_spaces=[spaces["obs"][c] for c in info.get("view", controls)],
        act_spaces=[spaces["act"][c] for c in controls], controls=list(controls),
        num_envs=config["num_envs"], seed=info["seed"], params=config["params"],
        shared_reward=spaces["shared_reward"], shared_seed=int(config["seed"]),
        view=list(info["view"]) if "view" in info else None,
        live=LiveGraph.of(info["graph_edges"], config["links_down"])
        if config.get("links_down") and "graph_edges" in info else None))
    if "turn" in info:        # the coordinator's turn schedule (MA2QL), received after welcome
        learner.set_turns(info["turn"])
    return learner


def drive(core: AgentCore, effects: list[Effect], perform: Any) -> None:
    """Perform ``effects`` and, while the core is paused after an act, resume it and perform
    what follows: the one way every caller (live agent, replay, in-process) drives a core."""
    perform(effects)
    while core.paused:
        perform(core.resume())


class AgentCore:
    """Per joint step: observe -> outbox -> (await neighbours) -> update -> act; with
    act-ahead: observe -> act -> [pause] -> outbox -> (await neighbours) -> update."""

    def __init__(self, info: dict[str, Any], learner: Learner) -> None:
        self.learner = learner
        self.controls: list[int] = list(info["controls"])
        self.view: list[int] = list(info.get("view", self.controls))
        self.episode_len: int = info["config"]["episode_len"]
        self.checkpoint_every: int = info["config"].get("checkpoint_every", 0)
        self.recovery_every: int = info["config"].get("recovery_every", 0)
        self.obs: np.ndarray | None = None
        self.action: np.ndarray | None = None
        self.pending: dict[str, Any] | None = None   # a step reply waiting for neighbours
        self.scalars: dict[str, list[float]] = defaultdict(list)
        self.steps_done = 0
        self.env_step = 0      # t of the last step reply acted upon
        self.gap_from: int | None = None   # resumed after a gap that began at this step
        self.finished = False
        self.act_ahead: bool = info["config"].get("act_ahead", "off") == "on"
        self.acted = False     # the pending step's action was sent ahead of its update
        self.held: dict[str, Any] | None = None   # act-ahead: the next reply, early
        self.next: str | None = None   # what resume() does: "advance" | "held" | None
        self.early_replies = 0  # step replies that came before this agent's update had run

    # Fields younger than the recovery format, with their values in a core that predates
    # them: a snapshot (the core walked whole into arrays and a skeleton, ``agentd.agent.recovery``) written before
    # they existed still restores and replays.
    LATER_FIELDS: ClassVar[dict[str, Any]] = {
        "gap_from": None, "act_ahead": False, "acted": False, "held": None, "next": None,
        "early_replies": 0}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({**self.LATER_FIELDS, **state})

    @property
    def paused(self) -> bool:
        """The caller must perform the effects returned so far, then call ``resume()``."""
        return self.next is not None

    def resume(self) -> list[Effect]:
        nxt, self.next = self.next, None
        if nxt == "advance":       # the act is out: exchange with neighbours and update
            return self.advance()
        if nxt == "held":          # the step is done: take up the reply that came early
            body, self.held = self.held, None
            assert body is not None
            return self._take_step(body)
        return []

    def blocks_step(self) -> bool:
        """Would a step reply arriving now find a step still pending that it cannot wait
        behind? (Without act-ahead any pending step; with it, one is already held.)"""
        return self.pending is not None and (not self.act_ahead or self.held is not None)

    def on_step(self, body: dict[str, Any]) -> list[Effect]:
        assert not self.paused, "resume() the core before feeding it more"
        if body.get("restart"):     # a restarted env server: its episodes begin afresh
            self.resume_after_gap()
        if self.act_ahead and self.pending is not None and self.held is None:
            self.held = body        # our act went ahead of our update: the env answered
            self.early_replies += 1
            return []
        return self._take_step(body)

    def _take_step(self, body: dict[str, Any]) -> list[Effect]:
        effects: list[Effect] = []
        if self.gap_from is not None:
            self.learner.on_gap(max(0, int(body["t"]) - self.gap_from))
            self.gap_from = None
        if self.obs is not None:
            self.learner.observe(self.obs, self.action, self._squeeze(body["reward"]),
                                 self._squeeze(body["final_obs"]), body["terminated"],
                                 body["truncated"])
            if self.act_ahead and not body["last"]:
                effects.append(self._act(body))    # with the policy of the last update
                self.acted = True
            effects += [Effect("peer", body["t"], out.body, out.kind, out.dst)
                        for out in self.learner.outbox()]
        self.pending = body
        if self.acted:
            self.next = "advance"   # the caller sends the act, then resumes
            return effects
        return effects + self.advance()

    def on_peer(self, src: int, kind: str, body: dict[str, Any]) -> list[Effect]:
        assert not self.paused, "resume() the core before feeding it more"
        self.learner.inbox(src, kind, body)
        step = self.pending["t"] if self.pending is not None else -1
        # a message may make the learner answer (a reply, the next gossip round)
        effects = [Effect("peer", step, out.body, out.kind, out.dst)
                   for out in self.learner.outbox()]
        return effects + self.advance()

    def on_silent(self, silent: frozenset[int]) -> list[Effect] | None:
        """Awaited neighbours stayed silent past peer_timeout: go ahead without them if the
        learner can (None: it cannot, keep waiting)."""
        assert not self.paused, "resume() the core before feeding it more"
        if self.pending is None or not self.learner.peers_silent(silent):
            return None
        step = self.pending["t"]
        effects = [Effect("peer", step, out.body, out.kind, out.dst)
                   for out in self.learner.outbox()]
        return effects + self.advance()

    def pending_step(self) -> int:
        return int(self.pending["t"]) if self.pending is not None else -1

    def waiting(self) -> frozenset[int]:
        """Neighbours the pending step still waits for (empty when nothing is pending)."""
        return self.learner.awaiting() if self.pending is not None else frozenset()

    def advance(self, force: bool = False) -> list[Effect]:
        """Finish the pending step once the learner no longer awaits neighbours (or, with
        ``force``, without the messages still missing: a replay whose peer stream was cut)."""
        body = self.pending
        if body is None or (self.learner.awaiting() and not force):
            return []
        self.pending = None
        effects = []
        if self.obs is not None:
            for key, value in self.learner.update().items():
                self.scalars[key].append(float(value))
            self.steps_done += 1
            if self.steps_done % self.episode_len == 0 or body["last"]:
                effects.append(Effect("metrics", body["t"], self._metrics(body["t"])))
            if self.checkpoint_every and self.steps_done % self.checkpoint_every == 0:
                effects.append(Effect("checkpoint", self.steps_done, {}))
            if self.recovery_every and self.steps_done % self.recovery_every == 0 \
                    and not body["last"]:
                effects.append(Effect("recovery", self.steps_done, {}))
        if body["last"]:
            self.finished = True
            return [*effects, Effect("finished", body["t"], {})]
        if not self.acted:
            effects.append(self._act(body))
        self.acted = False
        if self.held is not None:
            self.next = "held"      # after these effects (a checkpoint sees this state)
        return effects

    def _act(self, body: dict[str, Any]) -> Effect:
        self.env_step = int(body["t"])
        self.obs = self._squeeze(body["obs"])
        self.action = np.asarray(self.learner.act(self.obs))
        wire = self.action if len(self.controls) > 1 else self.action[:, None]
        return Effect("act", body["t"], {"t": body["t"], "a": wire})

    def resume_after_gap(self) -> None:
        """Rejoin a run that went on without this agent (a restart from a recovery
        checkpoint, a restarted env server): the transition in flight belongs to a step the
        env has left, so the next step reply is only acted upon, not learned from."""
        self.obs = self.action = None
        self.pending = self.held = self.next = None
        self.acted = False
        self.scalars.clear()
        self.gap_from = self.env_step     # the learner hears how long at the next reply

    def _squeeze(self, arr: np.ndarray) -> np.ndarray:
        """Drop the seen-agents axis for a learner that sees one env agent."""
        return arr[:, 0] if len(self.view) == 1 else arr

    def _metrics(self, step: int) -> dict[str, Any]:
        means = {k: float(np.mean(v)) for k, v in self.scalars.items() if v}
        self.scalars.clear()
        return {"step": step, "scalars": means}
