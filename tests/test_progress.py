"""The progress bar: tqdm in place on a terminal, a line per 10% in a log."""

from __future__ import annotations

import io

from agentd.tools.progress import ProgressBar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_one_line_per_tenth():
    out = io.StringIO()
    bar = ProgressBar(200, stream=out)
    for step in range(0, 201, 5):
        bar.update(step, "return 1.50")
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 11 and "\r" not in out.getvalue()
    assert "200/200" in lines[-1] and "steps" in lines[-1] and "return 1.50" in lines[-1]


def test_a_terminal_gets_a_bar_redrawn_in_place():
    out = Terminal()
    bar = ProgressBar(50, stream=out)
    bar.update(50, "return 2.00")
    bar.close()
    text = out.getvalue()
    assert "\r" in text and "50/50" in text and "return 2.00" in text
