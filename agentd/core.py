"""The agent loop's logic without sockets: what an agent does with each message it receives.

``AgentCore`` turns received env replies and peer messages into *effects* (an ``act`` for the
env server, peer messages, metrics) by calling the learner's hooks in the one fixed order. The
live agent process (``agentd.agent``) performs the effects on its sockets; ``agentd replay``
feeds the same core from a message log, which is why a replay reproduces the live agent.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from agentd.algorithms import load_learner_class
from agentd.algorithms.base import Learner, LearnerSpec
from agentd.links import LiveGraph


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


class AgentCore:
    """Per joint step: observe -> outbox -> (await neighbours) -> update -> act."""

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

    def on_step(self, body: dict[str, Any]) -> list[Effect]:
        effects: list[Effect] = []
        if body.get("restart"):     # a restarted env server: its episodes begin afresh
            self.resume_after_gap()
        if getattr(self, "gap_from", None) is not None:
            self.learner.on_gap(max(0, int(body["t"]) - self.gap_from))
            self.gap_from = None
        if self.obs is not None:
            self.learner.observe(self.obs, self.action, self._squeeze(body["reward"]),
                                 self._squeeze(body["final_obs"]), body["terminated"],
                                 body["truncated"])
            effects += [Effect("peer", body["t"], out.body, out.kind, out.dst)
                        for out in self.learner.outbox()]
        self.pending = body
        return effects + self.advance()

    def on_peer(self, src: int, kind: str, body: dict[str, Any]) -> list[Effect]:
        self.learner.inbox(src, kind, body)
        step = self.pending["t"] if self.pending is not None else -1
        # a message may make the learner answer (a reply, the next gossip round)
        effects = [Effect("peer", step, out.body, out.kind, out.dst)
                   for out in self.learner.outbox()]
        return effects + self.advance()

    def on_silent(self, silent: frozenset[int]) -> list[Effect] | None:
        """Awaited neighbours stayed silent past peer_timeout: go ahead without them if the
        learner can (None: it cannot, keep waiting)."""
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
        self.env_step = int(body["t"])
        self.obs = self._squeeze(body["obs"])
        self.action = np.asarray(self.learner.act(self.obs))
        wire = self.action if len(self.controls) > 1 else self.action[:, None]
        return [*effects, Effect("act", body["t"], {"t": body["t"], "a": wire})]

    def resume_after_gap(self) -> None:
        """Rejoin a run that went on without this agent (a restart from a recovery
        checkpoint, a restarted env server): the transition in flight belongs to a step the
        env has left, so the next step reply is only acted upon, not learned from."""
        self.obs = self.action = None
        self.pending = None
        self.scalars.clear()
        self.gap_from = self.env_step     # the learner hears how long at the next reply

    def _squeeze(self, arr: np.ndarray) -> np.ndarray:
        """Drop the seen-agents axis for a learner that sees one env agent."""
        return arr[:, 0] if len(self.view) == 1 else arr

    def _metrics(self, step: int) -> dict[str, Any]:
        means = {k: float(np.mean(v)) for k, v in self.scalars.items() if v}
        self.scalars.clear()
        return {"step": step, "scalars": means}
