"""`agentd env check`, factory spellings, and errors that say what happened."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agentd.envs import check_env_id
from agentd.envs.base import EnvError
from agentd.envs.pettingzoo_env import load_factory

TESTS = Path(__file__).parent
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}


def env_check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agentd", "env", "check", *args], env=ENV,
                          check=False, capture_output=True, text=True, timeout=120)


def test_env_check_passes_a_good_env():
    out = env_check("pz_toy:parallel_env", "--env-arg", 'obs="dict"')
    assert out.returncode == 0, out.stdout + out.stderr
    assert "[ok] pettingzoo parallel_api_test" in out.stdout
    assert "obs Box(5,) float64, act Discrete(3)" in out.stdout   # one-hot id(3) + pos(2)
    assert "verdict: ready: agentd launch --n 3 --env pz_toy:parallel_env --env-arg " \
        'obs="dict"' in out.stdout


@pytest.mark.parametrize(("broken", "names"), [
    ("obs_outside", ["[FAIL] observations inside their spaces", "99.0 not in [0.0, 10.0]"]),
    ("unseeded", ["[FAIL] reproducible seeds", "seed every random generator"]),
])
def test_env_check_names_the_problem_of_a_broken_env(broken, names):
    out = env_check("pz_toy:parallel_env", "--env-arg", f'broken="{broken}"')
    assert out.returncode == 1
    for words in names:
        assert words in out.stdout
    assert "verdict: NOT ready" in out.stdout


def test_env_check_refuses_a_space_and_an_oversize_hello():
    out = env_check("pz_toy:parallel_env", "--env-arg", 'obs="wide"', "--max-msg-bytes", "9000")
    assert out.returncode == 1
    assert "[FAIL] message size" in out.stdout and "--max-msg-bytes" in out.stdout
    out = env_check("no_such_pkg_xyz:env")
    assert out.returncode == 1 and "module 'no_such_pkg_xyz' not found" in out.stdout


def test_both_spellings_of_a_package_attribute_load():
    a = load_factory("gymnasium_robotics:mamujoco_v1.parallel_env")
    b = load_factory("gymnasium_robotics.mamujoco_v1:parallel_env")
    assert a is b


def test_a_dotted_spec_without_colon_shows_the_spelling_that_works():
    with pytest.raises(EnvError, match="did you mean 'pettingzoo.butterfly.pistonball_v6:"
                                       "parallel_env'"):
        check_env_id("pettingzoo.butterfly.pistonball_v6.parallel_env")


@pytest.mark.parametrize("cap", [
    4096,        # the env server's env_ready (14,748 bytes) does not fit
    15000,       # env_ready fits; the coordinator's welcome does not
])
def test_an_oversize_env_ready_or_welcome_names_the_message_and_the_fix(runs, tmp_path, cap):
    """Refused by the launcher's precheck (both messages encoded as they will be sent),
    before any process or run directory."""
    run_dir = tmp_path / "run"
    proc = runs.start(["launch", "--run-dir", str(run_dir), "--quiet", "--n", "3",
                       "--algo", "random", "--env", "pz_toy:parallel_env", "--env-arg",
                       'obs="wide"', "--steps", "3", "--max-msg-bytes", str(cap)], run_dir,
                      env=ENV)
    out, _ = proc.communicate(timeout=120)
    text = out.decode()
    assert proc.returncode == 2
    kind = "env_ready" if cap == 4096 else "welcome"
    assert f"the '{kind}' message is 1" in text and f"cap of {cap:,} bytes" in text
    assert text.startswith("agentd: config error: 'max_msg_bytes'")
    assert "--max-msg-bytes 1048576" in text and not run_dir.exists()


def test_the_command_env_check_recommends_runs(tmp_path):
    """A ready env's verdict names a learner whose declared spaces fit the env (the toy has
    Box observations: the default dac would be refused), and that command runs."""
    import json
    import shlex

    out = env_check("pz_toy:parallel_env")
    assert out.returncode == 0, out.stdout + out.stderr
    line = next(line for line in out.stdout.splitlines() if line.startswith("verdict: ready:"))
    command = shlex.split(line.removeprefix("verdict: ready: "))
    assert command[:2] == ["agentd", "launch"] and "--algo" in command
    assert command[command.index("--algo") + 1] != "dac"
    run_dir = tmp_path / "run"
    res = subprocess.run([sys.executable, "-m", "agentd", *command[1:], "--steps", "20",
                          "--quiet", "--run-dir", str(run_dir)], env=ENV, check=False,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "done"
