"""Packaging for small machines: without torch the tabular learners, coordinator and env server
run, and a deep learner fails at start-up with the install command."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

ROOT = Path(__file__).parent.parent
# Loaded by every Python process started with this directory on PYTHONPATH: torch cannot be
# imported (nor found), as on a machine where it was never installed.
NO_TORCH = '''
import sys

class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _NoTorch())
'''


def no_torch_env(tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "no_torch"
    site.mkdir()
    (site / "sitecustomize.py").write_text(NO_TORCH)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(site),
                                                         os.environ.get("PYTHONPATH", "")])}


def test_torch_is_an_extra_not_a_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not any(d.startswith("torch") for d in project["dependencies"])
    assert project["optional-dependencies"]["deep"] == ["torch==2.13.0"]
    assert any("gymnasium-robotics" in d for d in project["optional-dependencies"]["mamujoco"])


def test_a_tabular_run_needs_no_torch(runs, tmp_path):
    run_dir = tmp_path / "run"
    proc = runs.start(["launch", "--run-dir", str(run_dir), "--quiet", "--n", "3", "--algo",
                       "iql", "--steps", "40", "--episode-len", "20"], run_dir,
                      env=no_torch_env(tmp_path))
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out.decode()
    assert "episodes 2" in out.decode()


def test_a_deep_learner_without_torch_fails_at_start_up_with_the_install_command(runs,
                                                                               tmp_path):
    run_dir = tmp_path / "run"
    proc = runs.start(["launch", "--run-dir", str(run_dir), "--quiet", "--n", "2", "--algo",
                       "ippo", "--env", "spread", "--steps", "5"], run_dir,
                      env=no_torch_env(tmp_path))
    out, _ = proc.communicate(timeout=60)
    text = out.decode()
    assert proc.returncode == 2
    assert "'ippo' is a deep learner and needs PyTorch" in text
    assert "pip install -c constraints.txt 'agentd[deep]'" in text
