"""TensorBoard event files of a run, under ``RUN/tb/`` (view with ``tensorboard --logdir runs``).

Tags: ``episode/return`` and ``episode/length`` per finished episode, ``env/steps_per_s``,
``agent_<i>/<scalar>`` for every scalar a learner reports (epsilon, losses, consensus
estimates...), and ``consensus/<field>`` for the consensus diagnostic computed after the run.
Written by tensorboardX (no TensorFlow, no torch).
"""

from __future__ import annotations

import logging
import math
import sys
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger("agentd.tb")


class TensorBoardLog:
    """One event file writer for the whole run; every value is a scalar at a joint step.
    The writer is made by ``open``, at the latest at the first scalar. ``open`` hides torch
    from the whole process for a moment: call it where no other thread imports."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir / "tb"
        self._writer: Any = None
        self._opened = False
        self._lock = threading.Lock()

    def open(self) -> Any:
        with self._lock:
            if not self._opened:
                self._writer = self._open()
                self._opened = True
        return self._writer

    def _open(self) -> Any:
        # tensorboardX imports torch whenever it is installed (1-2 s and ~200 MB, for tensor
        # arguments the coordinator never passes): hidden from it during the import
        hide = "torch" not in sys.modules
        if hide:
            sys.modules["torch"] = None  # type: ignore[assignment]
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            log.warning("tensorboardX is not installed: no TensorBoard files for this run "
                        "(pip install tensorboardX)")
            return None
        finally:
            if hide:
                del sys.modules["torch"]
        return SummaryWriter(logdir=str(self.dir), flush_secs=5)

    def scalars(self, prefix: str, values: dict[str, Any], step: int) -> None:
        """Every finite number in values as ``prefix/name`` (others are not scalars)."""
        writer = self.open()
        if writer is None:
            return
        for name, value in values.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if math.isfinite(value):
                writer.add_scalar(f"{prefix}/{name}", float(value), int(step))

    def close(self) -> None:
        writer = self.open()
        if writer is not None:
            writer.close()
