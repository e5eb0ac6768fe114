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
from pathlib import Path
from typing import Any

log = logging.getLogger("agentd.tb")


class TensorBoardLog:
    """One event file writer for the whole run; every value is a scalar at a joint step.
    The writer is made at the first scalar (or at close), not while the run starts."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir / "tb"
        self._writer: Any = None
        self._opened = False

    def _open(self) -> Any:
        self._opened = True
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
        self._writer = SummaryWriter(logdir=str(self.dir), flush_secs=5)
        return self._writer

    def scalars(self, prefix: str, values: dict[str, Any], step: int) -> None:
        """Every finite number in values as ``prefix/name`` (others are not scalars)."""
        writer = self._writer if self._opened else self._open()
        if writer is None:
            return
        for name, value in values.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if math.isfinite(value):
                writer.add_scalar(f"{prefix}/{name}", float(value), int(step))

    def close(self) -> None:
        writer = self._writer if self._opened else self._open()
        if writer is not None:
            writer.close()
