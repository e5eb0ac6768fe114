"""The architecture holds: every import arrow between sub-packages points down the layers
declared in pyproject.toml, and only the runtime imports zmq (import-linter, lazy imports
inside functions included)."""

from __future__ import annotations

from pathlib import Path

from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]


def test_import_arrows_point_down_and_only_the_runtime_imports_zmq(monkeypatch):
    monkeypatch.chdir(ROOT)
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True,
                        no_logo=True) == 0
