"""Receivers under attack, in one process: a real ``Coordinator`` bound on loopback, admitted
with a full run (env server and agents said hello), fed frames through its guard and handlers
exactly as its loop would; and the guards every other receiver runs. Used by the regression
and property tests and by fuzz/run.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from agentd.config import resolve
from coordinator.coordinator import Coordinator, RunEnded
from coordinator.summary import write_summary
from protocols import COORDINATOR, ENVSERVER, Codec, Guard, ProtocolError, encode
from protocols.kinds import REGISTRY

N_AGENTS = 3
ENV_ID, AGENT_IDS = b"\x00env", [b"\x00ag%d" % i for i in range(N_AGENTS)]
SPACES = {"obs": [{"type": "discrete", "n": 4}] * N_AGENTS,
          "act": [{"type": "discrete", "n": 2}] * N_AGENTS, "shared_reward": True,
          "agents": [f"agent_{i}" for i in range(N_AGENTS)]}


class CoordinatorUnderAttack:
    """A coordinator of an admitted 3-agent run; ``feed`` gives it one frame from one of
    its processes (or a stranger) and says what became of it."""

    def __init__(self, run_dir: Path, **config: Any) -> None:
        cfg = resolve({}, {"run_dir": str(run_dir), "n": N_AGENTS, "steps": 1000,
                           "heartbeat_timeout": 2.0, **config})
        self.coord = Coordinator(cfg, "tcp://127.0.0.1:*", quiet=True)
        self.codec = Codec()
        self.outcomes: dict[str, int] = {}
        self.last_reason = ""
        self.coord.write_start_files()
        hello = {"pid": 1, "host": "h", "want_id": None, "caps": {}}
        self.admit(ENV_ID, "hello", {**hello, "role": "envserver", "endpoint": "tcp://h:1"})
        self.admit(ENV_ID, "env_ready", {"spaces": SPACES}, src=ENVSERVER)
        for i, ident in enumerate(AGENT_IDS):
            self.admit(ident, "hello", {**hello, "role": "agent", "endpoint": f"tcp://h:{i}",
                                        "want_id": i})
        assert self.coord.admitted

    def admit(self, ident: bytes, kind: str, body: dict, src: int = -3) -> None:
        assert self.feed(encode(self.codec, kind, src, COORDINATOR, 0, 1, body), ident) == \
            "accepted"

    def feed(self, frame: bytes, ident: bytes) -> str:
        """'rejected' (by the guard), 'ended' (the handler ended the run, as an error report
        or the last bye does) or 'accepted'; anything else propagates: a crash."""
        try:
            msg = self.coord.transport.guard.incoming([frame], "control", ident)
        except ProtocolError as exc:
            self.coord.transport.stats["control"].rejected[exc.reason] += 1
            self.last_reason = exc.reason
            return self._count("rejected")
        self.coord.transport.stats["control"].msgs_recv += 1
        try:
            self.coord.on_message(msg, ident)
        except RunEnded:
            return self._count("ended")
        return self._count("accepted")

    def _count(self, outcome: str) -> str:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        return outcome

    def end_of_run(self, accepting: bool = True) -> None:
        """Enter (or leave) the end-of-run phase, where the file transfer is accepted."""
        self.coord.collector.accepting = accepting

    def summary(self) -> dict[str, Any]:
        """summary.json as the end of the run writes it (the files block included), read
        back: whatever the handlers kept must still make a valid JSON file."""
        files = {"shipped": {}, "missing": {}, **self.coord.collector.report()}
        write_summary(self.coord, "done", "", None, files)
        return json.loads((self.coord.run_dir / "summary.json").read_text())

    def close(self) -> None:
        self.coord.metrics.close()
        self.coord.transport.close()


def receiver_guards() -> dict[str, tuple[Guard, str]]:
    """Every other receiver's guard, by name: the env server's env plane, an agent's env,
    control and peer planes (every peer kind permitted, MDPO's latent shape declared)."""
    peer_kinds = [k for k, v in REGISTRY.items() if v.plane == "peer"]
    agent = Guard(0, {1, 2}, peer_kinds,
                  declared={"latent": {"z": ((1, 4), "float32")}})
    return {"envserver env": (Guard(ENVSERVER), "env"), "agent env": (agent, "env"),
            "agent control": (agent, "control"), "agent peer": (agent, "peer")}


def frame_for(kind: str, body: Any, src: int = 1, dst: int = COORDINATOR,
              codec: Codec | None = None) -> bytes:
    """A frame carrying any body at all (no outgoing guard: this is the hostile side)."""
    return encode(codec or Codec(), kind, src, dst, 1, 1, body)


def zeros(*shape: int, dtype: Any = np.float64) -> np.ndarray:
    return np.zeros(shape, dtype=dtype)
