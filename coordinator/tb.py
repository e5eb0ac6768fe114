"""TensorBoard event files of a run, under ``RUN/tb/`` (view with ``tensorboard --logdir runs``).

Tags: ``episode/return`` and ``episode/length`` per finished episode, ``env/steps_per_s``,
``agent_<i>/<scalar>`` for every scalar a learner reports (epsilon, losses, consensus
estimates...), and ``consensus/<field>`` for the consensus diagnostic computed after the run.
Written by tensorboardX (no TensorFlow, no torch).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

log = logging.getLogger("agentd.tb")


class TensorBoardLog:
    """One event file writer for the whole run; every value is a scalar at a joint step."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir / "tb"
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            log.warning("tensorboardX is not installed: no TensorBoard files for this run "
                        "(pip install tensorboardX)")
            self._writer = None
            return
        self._writer = SummaryWriter(logdir=str(self.dir), flush_secs=5)

    def scalars(self, prefix: str, values: dict[str, Any], step: int) -> None:
        """Every finite number in values as ``prefix/name`` (others are not scalars)."""
        if self._writer is None:
            return
        for name, value in values.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if math.isfinite(value):
                self._writer.add_scalar(f"{prefix}/{name}", float(value), int(step))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
