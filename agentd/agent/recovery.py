"""Recovery checkpoints: an agent's complete state, written atomically, restored after a crash.

What is saved is the whole ``AgentCore`` -- the learner with its tables or networks, optimiser
moments, replay buffer or rollout, its RNGs and consensus bookkeeping, plus the core's own
counters -- and the process-wide RNG states (numpy, random, torch). Saving the object graph
whole, instead of a per-learner list of arrays, is what makes it *complete* for every learner,
including ones written later: nothing a learner keeps can be forgotten.

The file is a pickle, so it is trusted like the code that runs: it is written and read only by
the agent of the host that owns it (and by ``agentd replay`` on the coordinator's copy). It
never crosses a socket except in the end-of-run file transfer, which checksums it; a restart
record in the message log names it with its SHA-256, checked again when it is restored.

Writing: the snapshot (``pickle.dumps``) is taken in the agent loop between two steps -- that
is the stall, measured -- and a background thread writes it to ``recovery-T.pkl.part``, fsyncs
it and renames it over ``recovery-T.pkl`` (atomic on POSIX): a crash at any moment leaves the
previous complete file. Older recovery files are pruned (the two newest stay); a file a restart
restored is linked as ``restored-T.pkl`` first, so a replay finds it.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import logging
import os
import pickle
import random
import sys
import threading
import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agentd.agent.core import AgentCore, build_learner

FORMAT, VERSION = "agentd-recovery", 1
KEEP = 2
log = logging.getLogger("agentd.agent.recovery")


class RecoveryError(RuntimeError):
    """A recovery checkpoint that cannot be used (missing, corrupt, another format)."""


def _rng_states() -> dict[str, Any]:
    torch = sys.modules.get("torch")
    return {"numpy": np.random.get_state(), "python": random.getstate(),
            "torch": torch.get_rng_state() if torch is not None else None}


def _set_rng_states(states: dict[str, Any]) -> None:
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if states["torch"] is not None:
        import torch

        torch.set_rng_state(states["torch"])


class _Pickler(pickle.Pickler):
    """Pickles what learners hold besides data: module references (``self.torch = torch``)
    by name, and torch generators by their state (neither pickles by itself)."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, types.ModuleType):
            return importlib.import_module, (obj.__name__,)
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(obj, torch.Generator):
            return _generator, (obj.get_state(),)
        return NotImplemented


def _generator(state: Any) -> Any:
    import torch

    gen = torch.Generator()
    gen.set_state(state)
    return gen


def snapshot(core: AgentCore) -> bytes:
    """The complete state of an agent between two steps, as bytes."""
    buf = io.BytesIO()
    _Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(
        {"format": FORMAT, "version": VERSION, "step": core.steps_done, "core": core,
         "rng": _rng_states()})
    return buf.getvalue()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def restore(path: Path, sha256: str | None = None) -> AgentCore:
    """The core saved in ``path``, ready to rejoin: the env has moved on since it was saved,
    so the transition in flight is dropped (the next step reply is only acted upon)."""
    data = _read(path)
    if sha256 is not None and sha256_bytes(data) != sha256:
        raise RecoveryError(f"{path} is not the checkpoint the restart restored (SHA-256 "
                            "differs)")
    core = load(data, str(path))
    core.resume_after_gap()
    return core


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise RecoveryError(f"cannot read recovery checkpoint {path}: {exc}") from None


def load(data: bytes, what: str = "snapshot") -> AgentCore:
    """The core of a snapshot, exactly as it was (process RNG states restored too)."""
    try:
        saved = pickle.loads(data)   # this host's own file (see the module docstring)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        raise RecoveryError(f"{what} is not a readable recovery checkpoint: {exc}") from None
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        raise RecoveryError(f"{what} is not an agentd recovery checkpoint")
    _set_rng_states(saved["rng"])
    return saved["core"]


def latest(directory: Path) -> Path | None:
    """The newest complete recovery checkpoint in ``directory`` (None if there is none)."""
    found = newest_first(directory)
    return found[0] if found else None


def newest_first(directory: Path) -> list[Path]:
    """The recovery checkpoints in ``directory``, newest first."""
    found = [(int(p.stem.split("-")[1]), p) for p in directory.glob("recovery-*.pkl")]
    return [p for _, p in sorted(found, reverse=True)]


def pin(path: Path) -> Path:
    """Keep the checkpoint a restart restored (pruning only removes recovery-*.pkl)."""
    kept = path.with_name(path.name.replace("recovery-", "restored-"))
    if not kept.exists():
        os.link(path, kept)
    return kept


@dataclass
class RecoveryWriter:
    """Writes an agent's recovery checkpoints every ``every`` steps, off the agent loop."""

    directory: Path
    every: int
    stalls: list[float] = field(default_factory=list)   # seconds the loop spent per save
    bytes_written: int = 0
    _thread: threading.Thread | None = None
    _error: BaseException | None = None

    def save(self, core: AgentCore) -> None:
        """Snapshot now, write in the background (waiting for the previous write first)."""
        started = time.perf_counter()
        self.wait()
        data = snapshot(core)
        self.stalls.append(time.perf_counter() - started)
        self._thread = threading.Thread(target=self._write, args=(core.steps_done, data),
                                        name="recovery-writer", daemon=True)
        self._thread.start()

    def _write(self, step: int, data: bytes) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            final = self.directory / f"recovery-{step}.pkl"
            part = final.with_name(final.name + ".part")
            with open(part, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(part, final)
            self.bytes_written += len(data)
            for old in sorted(self.directory.glob("recovery-*.pkl"),
                              key=lambda p: int(p.stem.split("-")[1]))[:-KEEP]:
                old.unlink(missing_ok=True)
        except BaseException as exc:  # noqa: BLE001 - reported by wait() in the agent loop
            self._error = exc

    def wait(self) -> None:
        """Let the write in progress finish; raise if a write failed."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise RecoveryError(f"writing a recovery checkpoint failed: {error}")

    def stats(self, step_s: float) -> dict[str, Any]:
        """Checkpoints written and the loop's stall, absolute and as a fraction of a step."""
        if not self.stalls:
            return {"checkpoints": 0}
        mean = float(np.mean(self.stalls))
        return {"checkpoints": len(self.stalls), "every": self.every,
                "bytes_mean": self.bytes_written // len(self.stalls),
                "stall_ms_mean": round(mean * 1e3, 3),
                "stall_ms_max": round(max(self.stalls) * 1e3, 3),
                "step_ms_mean": round(step_s * 1e3, 3),
                "stall_of_a_step": round(mean / step_s, 4) if step_s > 0 else None,
                "stall_per_step": round(mean / self.every / step_s, 5)
                if step_s > 0 and self.every else None}


def rejoin_core(root: Path, agent: int, info: dict[str, Any]) -> tuple[AgentCore, dict]:
    """A restarted agent's core: its newest usable recovery checkpoint under ``root``
    (pinned, so a replay restores the same file), or a fresh learner when none was written
    yet. A checkpoint that cannot be read or loaded (a disk error) is skipped with a warning
    for the next older one; the record counts them (``skipped``), and if none is usable the
    agent starts from its initial state, which the record says too. Returns the core and the
    body of the log's ``restart`` record."""
    skipped = 0
    for path in newest_first(root / "checkpoints" / f"agent-{agent}"):
        try:
            data = _read(path)
            core = load(data, str(path))
        except RecoveryError as exc:
            log.warning("agent %d: recovery checkpoint %s is unusable (%s); trying an older "
                        "one", agent, path.name, exc)
            skipped += 1
            continue
        core.resume_after_gap()
        kept = pin(path)
        record = {"checkpoint": kept.relative_to(root).as_posix(), "sha256": sha256_bytes(data),
                  "step": core.steps_done, "env_step": core.env_step}
        break
    else:
        if skipped:
            log.warning("agent %d: none of its %d recovery checkpoint(s) is usable: it starts "
                        "from its initial state", agent, skipped)
        core = AgentCore(info, build_learner(info))
        record = {"checkpoint": None, "sha256": None, "step": 0, "env_step": 0}
    return core, {**record, **({"skipped": skipped} if skipped else {})}


def core_for_replay(run_dir: Path, note: dict[str, Any], info: dict[str, Any]) -> AgentCore:
    """What the live agent continued with at a ``restart`` record (see ``rejoin_core``)."""
    if note.get("checkpoint") is None:
        return AgentCore(info, build_learner(info))
    return restore(run_dir / note["checkpoint"], note.get("sha256"))
