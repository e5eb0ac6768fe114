"""The run's progress bar on stderr, drawn by tqdm: redrawn in place on a terminal, a line per
10% otherwise (a log file gets ten lines, not thousands of carriage returns)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """Shows steps done of a total, the pace, the time left and the latest episode return."""

    def __init__(self, total: int, label: str = "steps", stream: TextIO | None = None) -> None:
        self.total, self.label = max(total, 1), label
        self.stream = stream or sys.stderr
        self.start = time.monotonic()
        self._last_decile = -1
        from tqdm import tqdm  # only a run that shows a bar pays for the import

        self._tqdm = tqdm
        self.bar = tqdm(total=self.total, unit=label, file=self.stream, mininterval=0.1,
                        dynamic_ncols=True) if self.stream.isatty() else None

    def update(self, done: int, note: str = "") -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(note, refresh=False)
            self.bar.update(min(done, self.total) - self.bar.n)
            return
        decile = int(min(done / self.total, 1.0) * 10)
        if decile != self._last_decile:
            self._last_decile = decile
            line = self._tqdm.format_meter(done, self.total, time.monotonic() - self.start,
                                     ncols=100, unit=self.label, postfix=note or None,
                                     ascii=True)
            self.stream.write(line + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
