"""Recovery checkpoints: an agent's complete state, written atomically, restored after a crash.

What is saved is the whole ``AgentCore`` -- the learner with its tables or networks, optimiser
moments, replay buffer or rollout, its RNGs and consensus bookkeeping, plus the core's own
counters -- and the process-wide RNG states (numpy, random, torch). Walking the object graph
whole (``agentd.agent.statetree``), instead of a per-learner list of arrays, is what makes it
*complete* for every learner, including ones written later: nothing a learner keeps can be
forgotten.

The file is data, never code: an ``.npz`` (uncompressed, read with ``allow_pickle=False``)
holding the arrays and one JSON skeleton (format, version, learner, and every node's kind,
class, dtype and shape; torch RNG states as uint8 tensors, numpy's and Python's as ints). It
is loaded *into* a learner built afresh from the agent's welcome, and refused when it does not
fit it (``RecoveryError`` names the first path that differs), so a file shipped by another host
-- a replay on the coordinator's host reads the agents' files -- can at worst hold wrong
numbers. A pickle (``*.pkl``, the format before version 2) is never loaded.

Writing: the state is captured in the agent loop between two steps (the walk and a copy of
its arrays) -- that is the stall, measured -- and a background thread encodes it, writes it to
``recovery-T.npz.part``, fsyncs it and renames it over ``recovery-T.npz`` (atomic on POSIX): a
crash at any moment leaves the previous complete file. Older recovery files are pruned (the two
newest stay); a file a restart restored is linked as ``restored-T.npz`` first, so a replay
finds it. (It stays whole past ~300 lines: writing, finding and restoring a checkpoint are
one file format's two ends.)
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import random
import re
import sys
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agentd.agent.core import AgentCore, build_learner
from agentd.agent.stateload import load_into
from agentd.agent.statetree import Mismatch, class_name, flatten

FORMAT, VERSION = "agentd-recovery", 2
SUFFIX = ".npz"
KEEP = 2
SKELETON = "skeleton"
log = logging.getLogger("agentd.agent.recovery")


class RecoveryError(RuntimeError):
    """A recovery checkpoint that cannot be used (missing, corrupt, another format, or not
    this learner's)."""


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


def capture(core: AgentCore) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The complete state of an agent between two steps: the header (skeleton) and copies of
    its arrays, so the agent may go on while they are encoded and written."""
    roots, arrays = flatten({"core": core, "rng": _rng_states()})
    header = {"format": FORMAT, "version": VERSION, "step": core.steps_done,
              "learner": class_name(core.learner), **roots}
    return header, {name: np.array(a, copy=True) for name, a in arrays.items()}


def encode(header: dict[str, Any], arrays: dict[str, np.ndarray]) -> bytes:
    """A captured state as the bytes of an ``.npz``: its arrays and the skeleton as JSON."""
    buf = io.BytesIO()
    np.savez(buf, **arrays, **{SKELETON: np.frombuffer(json.dumps(header).encode(), np.uint8)})
    return buf.getvalue()


def snapshot(core: AgentCore) -> bytes:
    """The complete state of an agent between two steps, as the bytes of an ``.npz``."""
    return encode(*capture(core))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def restore(path: Path, fresh: AgentCore, sha256: str | None = None) -> AgentCore:
    """The core saved in ``path`` loaded into ``fresh`` (built from the agent's welcome), ready
    to rejoin: the env has moved on since it was saved, so the transition in flight is dropped
    (the next step reply is only acted upon)."""
    data = _read(path)
    if sha256 is not None and sha256_bytes(data) != sha256:
        raise RecoveryError(f"{path} is not the checkpoint the restart restored (SHA-256 "
                            "differs)")
    core = load(data, fresh, str(path))
    core.resume_after_gap()
    return core


def _read(path: Path) -> bytes:
    if path.suffix == ".pkl":
        raise RecoveryError(f"{path} is a pickle (the recovery format before version 2, or "
                            "a planted file): pickles are never loaded")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise RecoveryError(f"cannot read recovery checkpoint {path}: {exc}") from None


def _open(data: bytes, what: str) -> tuple[dict[str, Any], Any]:
    """The header and the arrays of a checkpoint's bytes (data only: no pickle, no
    compression that could expand beyond the file)."""
    if data[:1] == b"\x80":
        raise RecoveryError(f"{what} is a pickle: pickles are never loaded")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            packed = [i.filename for i in zf.infolist() if i.compress_type != zipfile.ZIP_STORED]
        if packed:
            raise RecoveryError(f"{what} holds compressed members ({packed[0]})")
        arrays = np.load(io.BytesIO(data), allow_pickle=False)
        header = json.loads(bytes(arrays[SKELETON]))
    except RecoveryError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever a malformed file raises is a bad file
        raise RecoveryError(f"{what} is not a readable recovery checkpoint: {exc}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise RecoveryError(f"{what} is not an agentd recovery checkpoint")
    if header.get("version") != VERSION:
        raise RecoveryError(f"{what} is a recovery checkpoint of version "
                            f"{header.get('version')!r}; this agentd reads version {VERSION}")
    return header, arrays


def load(data: bytes, fresh: AgentCore, what: str = "snapshot") -> AgentCore:
    """``fresh`` (an agent's core as its welcome builds it) with the state of a snapshot,
    exactly as it was; the process RNG states are restored too."""
    header, arrays = _open(data, what)
    if header.get("learner") != class_name(fresh.learner):
        raise RecoveryError(f"{what} holds a {header.get('learner')!r} learner, this agent "
                            f"runs {class_name(fresh.learner)!r}")
    try:
        core = load_into(fresh, header.get("core"), arrays, "core")
        rng = load_into(_rng_states(), header.get("rng"), arrays, "rng")
        _set_rng_states(rng)
    except Mismatch as exc:
        raise RecoveryError(f"{what} does not fit this agent's learner: {exc}") from None
    except (RecursionError, KeyError, ValueError, TypeError, RuntimeError, AttributeError,
            IndexError, OverflowError) as exc:
        raise RecoveryError(f"{what} is not a usable recovery checkpoint: "
                            f"{type(exc).__name__}: {exc}") from None
    finally:
        arrays.close()
    return core


def fresh_core(info: dict[str, Any]) -> AgentCore:
    """An agent's core as its welcome builds it (what a checkpoint is loaded into)."""
    return AgentCore(info, build_learner(info))


_NAME = re.compile(r"recovery-(\d{1,18})\.npz")
_PINNED = re.compile(r"checkpoints/agent-\d{1,9}/restored-\d{1,18}\.npz")


def latest(directory: Path) -> Path | None:
    """The newest complete recovery checkpoint in ``directory`` (None if there is none)."""
    found = newest_first(directory)
    return found[0] if found else None


def newest_first(directory: Path) -> list[Path]:
    """The recovery checkpoints in ``directory``, newest first."""
    found = [(int(m.group(1)), p) for p in directory.glob("recovery-*.npz")
             if (m := _NAME.fullmatch(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def pin(path: Path) -> Path:
    """Keep the checkpoint a restart restored (pruning only removes recovery-*.npz)."""
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
        state = capture(core)
        self.stalls.append(time.perf_counter() - started)
        self._thread = threading.Thread(target=self._write, args=(core.steps_done, state),
                                        name="recovery-writer", daemon=True)
        self._thread.start()

    def _write(self, step: int, state: tuple[dict[str, Any], dict[str, np.ndarray]]) -> None:
        try:
            data = encode(*state)
            self.directory.mkdir(parents=True, exist_ok=True)
            final = self.directory / f"recovery-{step}{SUFFIX}"
            part = final.with_name(final.name + ".part")
            with open(part, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(part, final)
            self.bytes_written += len(data)
            for old in newest_first(self.directory)[KEEP:]:
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
    directory = root / "checkpoints" / f"agent-{agent}"
    for path in sorted(directory.glob("*.pkl")) if directory.is_dir() else []:
        log.warning("agent %d: %s is a pickle, never loaded (recovery checkpoints are .npz "
                    "since version 2)", agent, path.name)
    for path in newest_first(directory):
        try:
            data = _read(path)
            core = load(data, fresh_core(info), str(path))
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
        core = fresh_core(info)
        record = {"checkpoint": None, "sha256": None, "step": 0, "env_step": 0}
    return core, {**record, **({"skipped": skipped} if skipped else {})}


def core_for_replay(run_dir: Path, note: dict[str, Any], info: dict[str, Any]) -> AgentCore:
    """What the live agent continued with at a ``restart`` record (see ``rejoin_core``)."""
    name = note.get("checkpoint")
    if name is None:
        return fresh_core(info)
    if not isinstance(name, str) or not _PINNED.fullmatch(name):
        raise RecoveryError(f"the restart record names {name!r}, not a restored recovery "
                            "checkpoint (checkpoints/agent-I/restored-T.npz)")
    return restore(run_dir / name, fresh_core(info), note.get("sha256"))
