"""What one process may ship into the run directory (``limits``), each limit derived from
what the run can have produced:
* files per process: its log and output, its final checkpoint, one checkpoint per
  ``checkpoint_every`` steps, and ``RECOVERY_FILES`` recovery checkpoints (kept, restored);
* a message log: it holds the frames its process sent and received, which its bye stats count
  (bytes, messages), plus a record header per message, refused frames up to 4 KiB each and
  failed handshakes: that sum plus 1 MiB. A process that failed before its bye has no such
  count: then the process cap bounds it;
* its output (``.out``): rate-limited log lines, ``OUT_BYTES``;
* everything one process ships: the free space of the run directory's disk less a reserve
  (``DISK_RESERVE``, or an eighth of a smaller disk), shared evenly among the shipping
  processes, and never more than ``PROCESS_BYTES``;
* time: a shipment must be complete ``2 x heartbeat_timeout`` plus its size at
  ``FLOOR_BYTES_PER_S`` after it was announced, and is abandoned when no chunk has come for
  ``2 x heartbeat_timeout``; heartbeats reset neither.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RECOVERY_FILES = 16
OUT_BYTES = 64 << 20
PROCESS_BYTES = 64 << 30
DISK_RESERVE = 1 << 30
RECORD_BYTES = 64             # a log record's length prefix and msgpack framing, generously
REFUSED_FRAME_BYTES = 4096 + RECORD_BYTES
FLOOR_BYTES_PER_S = 1 << 20


@dataclass(frozen=True)
class Limits:
    """What one process may ship (see the module docstring for where each comes from)."""

    max_files: int
    process_bytes: int
    log_bytes: int
    out_bytes: int = OUT_BYTES

    def file_cap(self, path: str) -> int:
        if path.endswith(".log") and path.startswith("logs/"):
            return min(self.log_bytes, self.process_bytes)
        if path.endswith(".out") and path.startswith("logs/"):
            return min(self.out_bytes, self.process_bytes)
        return self.process_bytes


def limits(steps: int, checkpoint_every: int, stats: dict[str, Any] | None, free_bytes: int,
           shippers: int) -> Limits:
    """The limits for one process of a run of ``steps`` steps, from its bye ``stats`` (None
    if it failed before its bye) and the free space on the run directory's disk."""
    files = 3 + (steps // checkpoint_every if checkpoint_every > 0 else 0) + RECOVERY_FILES
    reserve = min(DISK_RESERVE, free_bytes // 8)       # a small disk keeps an eighth free
    process = max(0, min(PROCESS_BYTES, (free_bytes - reserve) // max(1, shippers)))
    log_bytes = process
    if stats and "bytes_sent" in stats and "bytes_recv" in stats:
        msgs = stats.get("msgs_sent", 0) + stats.get("msgs_recv", 0)
        refused = sum(stats.get("rejected", {}).values())
        handshakes = sum(stats.get("handshakes_failed", {}).values())
        log_bytes = (stats["bytes_sent"] + stats["bytes_recv"] + RECORD_BYTES * msgs
                     + REFUSED_FRAME_BYTES * refused + 512 * handshakes + (1 << 20))
    return Limits(files, process, log_bytes)


def free_space(path: Path) -> int:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return 0
