"""A small progress bar on stderr: redrawn in place on a terminal, a line per 10% otherwise."""

from __future__ import annotations

import math
import sys
import time
from typing import TextIO


class ProgressBar:
    """Shows steps done of a total, the pace and the latest episode return."""

    def __init__(self, total: int, label: str = "steps", stream: TextIO | None = None,
                 width: int = 30) -> None:
        self.total, self.label, self.width = max(total, 1), label, width
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.start = time.monotonic()
        self._last_draw = 0.0
        self._last_decile = -1

    def update(self, done: int, note: str = "") -> None:
        now = time.monotonic()
        frac = min(done / self.total, 1.0)
        if self.tty:
            if now - self._last_draw < 0.1 and done < self.total:
                return
            self._last_draw = now
            self.stream.write("\r" + self._line(done, frac, now, note) + "\033[K")
        else:
            decile = int(frac * 10)
            if decile == self._last_decile:
                return
            self._last_decile = decile
            self.stream.write(self._line(done, frac, now, note) + "\n")
        self.stream.flush()

    def _line(self, done: int, frac: float, now: float, note: str) -> str:
        filled = int(frac * self.width)
        elapsed = now - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - done) / rate if rate > 0 else float("nan")
        bar = "#" * filled + "." * (self.width - filled)
        text = f"[{bar}] {done}/{self.total} {self.label}"
        if not math.isnan(eta):
            text += f" {rate:,.0f}/s eta {eta:4.0f}s"
        return f"{text}  {note}" if note else text

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
