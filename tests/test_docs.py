"""The documentation cannot rot: the site builds with ``mkdocs build --strict`` (a broken link,
a missing page or a failing docstring reference fails it), the generated pages cover every
learner, command and config field, and the README stays short and speaks for itself. The
Quickstart's commands run in tests/test_quickstart.py.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None,
                    reason="mkdocs is not installed (pip install -e '.[docs]', part of [dev])")
def test_site_builds_strict(tmp_path):
    site = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                           str(site)], check=False, cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, proc.stderr[-5000:]
    from agentd.algorithms import ALGORITHMS
    from agentd.cli import COMMANDS
    from agentd.config import FIELDS
    for name in ALGORITHMS:     # one generated page per learner, with its parameters
        page = (site / "algorithms" / name / "index.html").read_text()
        assert "Parameters" in page and "Paper" in page, name
    cli = (site / "reference" / "cli" / "index.html").read_text()
    for command in COMMANDS:
        assert f"agentd {command} --help" in cli, command
    for field in FIELDS:
        assert f"<code>{field}</code>" in cli, field
    api = (site / "reference" / "api" / "index.html").read_text()
    assert "LearnerSpec" in api and "RunPlan" in api


def test_readme_stays_short_and_speaks_for_itself():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    for marker in ("<!-- setup-command -->", "<!-- test-command -->"):
        assert marker in readme
    for internal in ("seed 00", "DESIGN", "research notes", "the issue"):
        assert internal not in readme, internal
    pages = [*ROOT.glob("docs/*.md"), *ROOT.glob("docs/*/*.md"), ROOT / "README.md"]
    found = [f"{p.relative_to(ROOT)}: {m.group(0)}" for p in pages
             for m in re.finditer(r"seed 00\d|DESIGN §|research notes", p.read_text())]
    assert not found, found


def test_each_learner_page_shows_a_command_the_config_accepts():
    """The first command on every learner's page resolves to a valid run config (the checks
    ``agentd launch`` makes before starting anything)."""
    import argparse
    import tomllib

    from agentd.algorithms import ALGORITHMS
    from agentd.cli.common import add_run_flags, config_from_args
    papers = tomllib.loads((ROOT / "docs" / "algorithms" / "papers.toml").read_text())
    assert set(papers) <= set(ALGORITHMS)
    for name in ALGORITHMS:
        parser = argparse.ArgumentParser()
        add_run_flags(parser)
        flags = ["--algo", name, *papers.get(name, {}).get("example", "").split()]
        config = config_from_args(parser.parse_args(flags))     # exits 2 on a config error
        assert config.algo == name
