"""Plug-ins: a learner and an env from a package outside agentd (``examples/plugin``), run live
by their entry-point names and by ``module:Class``, checked by the package's own tests (the
conformance kit); one that cannot be imported fails in the launcher, before any process, and a
host that cannot import it fails at join, naming the module and the host."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from conftest import AGENTD, read_json, wait_for

from agentd.tools.audit import audit_run
from agentd.tools.replay import compare_state, replay

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "plugin"
SPEC = "agentd_plugin_example.learner:GossipQ"
ENV_SPEC = "agentd_plugin_example.env:parallel_env"


def install(site: Path) -> Path:
    """The example installed into ``site`` as pip lays out a package: its modules and a
    dist-info whose entry_points.txt is its pyproject.toml's (what ``importlib.metadata``
    reads), without building a wheel."""
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    shutil.copytree(EXAMPLE / "agentd_plugin_example", site / "agentd_plugin_example",
                    ignore=shutil.ignore_patterns("__pycache__"))
    info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\n"
                                   f"Version: {project['version']}\n")
    (info / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in points.items()) + "\n"
        for group, points in project["entry-points"].items()))
    return site


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    return install(tmp_path_factory.mktemp("site"))


def env_with(*paths: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        [*map(str, paths), *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                             if p]])}


@pytest.mark.slow
def test_the_example_packages_own_tests_pass_installed(site, tmp_path):
    """Its tests (the conformance kit, by entry-point name, DP run included) in a process
    that has it installed."""
    tests = shutil.copytree(EXAMPLE / "tests", tmp_path / "tests")
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          str(tests)], cwd=tmp_path, env=env_with(site), capture_output=True,
                         text=True, timeout=600, check=False)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert "2 passed" in res.stdout


def test_listed_by_algos_and_envs_when_installed(site):
    out = subprocess.run([*AGENTD, "algos"], env=env_with(site), capture_output=True,
                         text=True, timeout=60, check=True).stdout
    line = next(t for t in out.splitlines() if t.startswith("gossip-q "))
    assert "plug-in" in line and "sends: gossip_q" in line and "private" in line
    out = subprocess.run([*AGENTD, "envs"], env=env_with(site), capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert f"beacon           plug-in: {ENV_SPEC}" in out
    out = subprocess.run([*AGENTD, "algos", "gossip-q"], env=env_with(site),
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert "every            int    default 10 >= 1" in out
    out = subprocess.run([*AGENTD, "launch", "--help"], env=env_with(site),
                         capture_output=True, text=True, timeout=60, check=True).stdout
    flat = " ".join(out.split())
    assert "gossip-q" in flat and "beacon" in flat   # the help lists installed plug-ins too


def test_runs_by_module_and_class_from_a_path_and_replays(runs, tmp_path, monkeypatch):
    """Not installed, only on the path: --algo module:Class, --env module:callable; the run
    records them, every process loaded them, the replay is exact."""
    run_dir = tmp_path / "run"
    proc = runs.start(["launch", "--quiet", "--run-dir", str(run_dir), "--algo", SPEC,
                       "--env", ENV_SPEC, "--n", "3", "--steps", "60", "--episode-len", "20",
                       "--param", "every=5"], run_dir, env=env_with(EXAMPLE))
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, out.decode()
    config = tomllib.loads((run_dir / "config.toml").read_text())
    assert config["algo"] == SPEC and config["env"] == ENV_SPEC
    assert config["params"] == {"gamma": 0.9, "alpha": 0.3, "epsilon": 0.1, "every": 5}
    assert read_json(run_dir / "plan.json")["algo"] == SPEC
    monkeypatch.syspath_prepend(str(EXAMPLE))
    for agent in range(3):
        res = replay(run_dir, agent)
        assert res.first_divergence is None and res.actions_compared == 60
        assert res.peer_delivered == 2 * 12            # 2 neighbours, every 5th of 60 steps
        assert all(compare_state(res.state, run_dir / "checkpoints" / f"agent-{agent}.npz")
                   .values())


def _children_seen(proc: subprocess.Popen, token: str) -> list[str]:
    """Until ``proc`` ends: the command lines of other processes that name ``token``."""
    seen = []
    while proc.poll() is None:
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or int(pid) == proc.pid:
                continue
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if token in cmd:
                seen.append(cmd)
        time.sleep(0.02)
    return seen


@pytest.mark.parametrize(("algo", "named"), [
    ("no_such_package.learner:Mine", "module 'no_such_package.learner' not found"),
    ("agentd_plugin_example.learner:NoSuchClass",
     "module 'agentd_plugin_example.learner' has no Learner subclass 'NoSuchClass'"),
    ("broken_plugin:Learner", "importing module 'broken_plugin' failed: RuntimeError: boom"),
    ("no-such-plugin", "unknown algo 'no-such-plugin'")])
def test_a_plugin_that_cannot_be_loaded_fails_before_any_process_starts(tmp_path, algo, named):
    (tmp_path / "broken_plugin.py").write_text("raise RuntimeError('boom')\n")
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([*AGENTD, "launch", "--quiet", "--run-dir", str(run_dir),
                             "--algo", algo, "--steps", "10"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=env_with(EXAMPLE, tmp_path))
    try:
        children = _children_seen(proc, str(run_dir))
        out = proc.communicate(timeout=60)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 2, out
    assert named in out and "'algo'" in out
    assert children == [] and not run_dir.exists()
    assert "WARNING" not in out and "listening" not in out


def test_a_host_without_the_plugin_fails_at_join_naming_module_and_host(runs, site, tmp_path):
    """Coordinator, env server and one agent have the plug-in; the other agent's host has
    not: that agent fails as soon as it is admitted, and the run says which module on which
    host."""
    run_dir = tmp_path / "run"
    coord = runs.start(["coordinator", "--bind", "tcp://127.0.0.1:*", "--run-dir", str(run_dir),
                        "--algo", "gossip-q", "--env", "beacon", "--env-arg", "n_agents=2",
                        "--n", "2", "--steps", "50", "--episode-len", "10", "--quiet"],
                       run_dir, env=env_with(site))
    wait_for(lambda: (run_dir / "coordinator.json").exists(), 60, "the coordinator")
    endpoint = read_json(run_dir / "coordinator.json")["endpoint"]
    agent = ["agent", "--connect", endpoint, "--bind", "tcp://127.0.0.1:*", "--advertise",
             "localhost"]
    runs.start(["envserver", "--join", endpoint], cwd=tmp_path, env=env_with(site))
    runs.start(agent, cwd=tmp_path, env=env_with(site))
    without = runs.start(agent, cwd=tmp_path)
    out = without.communicate(timeout=120)[0].decode()
    assert without.returncode == 1
    host = socket.gethostname()
    assert f"host {host!r} cannot load the run's learner" in out, out
    assert "module 'agentd_plugin_example.learner' not found" in out, out
    assert coord.wait(timeout=120) != 0
    error = read_json(run_dir / "summary.json")["error"]
    assert "agentd_plugin_example.learner" in error and repr(host) in error, error


@pytest.mark.slow
def test_a_plugin_agent_killed_mid_run_is_restored_and_replays_exactly(runs, site, tmp_path):
    """Recovery works for a plug-in as for a built-in: agent 1 killed after some episodes,
    restarted from its recovery checkpoint (its gossip clock skips the lost steps: on_gap),
    the run ends, and the replay with the restore in it is exact."""
    run_dir = tmp_path / "killed"
    proc = runs.start(["launch", "--run-dir", str(run_dir), "--quiet", "--algo", "gossip-q",
                       "--env", "beacon", "--n", "3", "--steps", "1200", "--episode-len", "20",
                       "--recovery-every", "20", "--max-restarts", "1"], run_dir,
                      env=env_with(site))
    wait_for(lambda: _episodes(run_dir) >= 12 or proc.poll() is not None, 120, "12 episodes")
    pid = _agent_pid(run_dir, 1)
    assert proc.poll() is None and pid is not None
    os.kill(pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, out.decode()
    s = read_json(run_dir / "summary.json")
    assert s["status"] == "done" and s["restart_counts"] == {"agent-1": 1}
    sys.path.insert(0, str(site))
    try:
        res = replay(run_dir, 1)
    finally:
        sys.path.remove(str(site))
    assert res.restarts == 1 and res.first_divergence is None
    assert all(compare_state(res.state, run_dir / "checkpoints" / "agent-1.npz").values())


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs ray (agentd[ray])")
def test_a_plugin_runs_on_the_ray_backend_and_replays_exactly(runs, site, tmp_path,
                                                             monkeypatch):
    """On a local Ray instance, whose workers have the plug-in on their path as the driver
    does: the run ends, every agent replays exactly, only gossip_q crossed."""
    run_dir = tmp_path / "ray"
    proc = runs.start(["launch", "--backend", "ray", "--ray-cpus", "0.25", "--ray-strategy",
                       "PACK", "--quiet", "--algo", "gossip-q", "--env", "beacon", "--n", "3",
                       "--steps", "100", "--episode-len", "20", "--run-dir", str(run_dir)],
                      run_dir, env=env_with(site))
    out, _ = proc.communicate(timeout=400)
    assert proc.returncode == 0, out.decode()[-3000:]
    monkeypatch.syspath_prepend(str(site))
    for agent in range(3):
        res = replay(run_dir, agent)
        assert res.first_divergence is None and res.actions_compared == 100
    assert audit_run(run_dir)["peer"]["kinds_seen"] == ["gossip_q"]


def _agent_pid(run_dir: Path, i: int) -> int | None:
    try:
        return read_json(run_dir / "endpoints.json")["agents"][str(i)]["pid"]
    except (OSError, ValueError, KeyError):
        return None


def _episodes(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_peer_kind_registers_once_and_refuses_a_taken_name():
    from agentd.algorithms.base import FLOATS, Arr, Int, peer_kind
    from protocols.errors import DuplicateKind
    from protocols.kinds import REGISTRY

    fields = {"t": Int(0), "x": Arr(FLOATS, (1,))}
    try:
        kind = peer_kind("test_plugins_kind", fields, doc="a test kind", released={"x": "row"})
        assert REGISTRY["test_plugins_kind"] is kind and kind.plane == "peer"
        assert peer_kind("test_plugins_kind", dict(fields), doc="a test kind",
                         released={"x": "row"}) is kind          # the module imported again
        with pytest.raises(DuplicateKind, match="'test_plugins_kind' is already registered"):
            peer_kind("test_plugins_kind", fields, doc="another meaning")
        with pytest.raises(DuplicateKind, match="'consensus' is already registered"):
            peer_kind("consensus", fields, doc="a plug-in's clash with a built-in")
        with pytest.raises(ValueError, match="released field 'y'"):
            peer_kind("test_plugins_bad", fields, doc="no such field", released={"y": "row"})
    finally:
        REGISTRY.pop("test_plugins_kind", None)


def test_names_resolve_to_what_a_run_records(site, monkeypatch):
    from agentd.algorithms import canonical_algo, load_learner_class
    from agentd.config import ConfigError, resolve

    monkeypatch.syspath_prepend(str(site))
    assert canonical_algo("dac") == "dac" and canonical_algo(SPEC) == SPEC
    assert canonical_algo("gossip-q") == SPEC
    assert load_learner_class("gossip-q") is load_learner_class(SPEC)
    c = resolve({}, {"algo": "gossip-q", "env": "beacon", "n": 3})
    assert (c.algo, c.env) == (SPEC, ENV_SPEC)
    with pytest.raises(ConfigError, match=r"installed plug-ins: gossip-q; or a plug-in "
                                          r"learner as package.module:Class"):
        resolve({}, {"algo": "gossip"})
    with pytest.raises(ConfigError, match=r"the class follows a ':'"):
        resolve({}, {"algo": "agentd_plugin_example.learner.GossipQ"})
