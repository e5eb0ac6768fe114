"""The architecture holds: every import arrow between sub-packages points down the layers
declared in pyproject.toml, and only the runtime imports zmq (import-linter, lazy imports
inside functions included)."""

from __future__ import annotations

import logging
from pathlib import Path

from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]


def test_import_arrows_point_down_and_only_the_runtime_imports_zmq(monkeypatch):
    monkeypatch.chdir(ROOT)
    # import-linter configures logging with dictConfig, which disables every logger that
    # exists: later tests that read agentd's warnings (caplog) would see nothing
    enabled = [lg for lg in logging.Logger.manager.loggerDict.values()
               if isinstance(lg, logging.Logger) and not lg.disabled]
    try:
        assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True,
                            no_logo=True) == 0
    finally:
        for lg in enabled:
            lg.disabled = False
