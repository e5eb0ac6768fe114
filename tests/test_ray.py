"""``agentd launch --backend ray`` on a real three-node Ray cluster on loopback (127.0.0.1/.2/.3).

Ray's ``cluster_utils.Cluster`` starts a head and two worker nodes on this machine, each with its
own raylet and its own node IP; agentd's processes are placed on them by a placement group and
bind their ZeroMQ sockets on their node's IP. Skipped, with the reason, where Ray is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import wait_for

try:
    import importlib.util

    HAVE_RAY = importlib.util.find_spec("ray") is not None
except ValueError:
    HAVE_RAY = False
needs_ray = pytest.mark.skipif(not HAVE_RAY, reason="Ray is not installed "
                               "(pip install 'agentd[ray]'): the Ray backend cannot be tested")
LOOPBACK_CLUSTER = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}   # node IPs stay on 127.0.0.x


@pytest.fixture(scope="module")
def cluster():
    """Head on 127.0.0.1 (where the coordinator goes), workers on 127.0.0.2 and 127.0.0.3."""
    temp = tempfile.mkdtemp(prefix="rt", dir="/tmp")   # short: Ray's socket paths must fit
    # Ray writes the cluster's address to <RAY_TMPDIR>/ray/ray_current_cluster and fails when
    # that directory is missing (as on a fresh machine, where /tmp/ray does not exist yet):
    # point it into our own directory, removed with it.
    os.makedirs(os.path.join(temp, "ray"))
    env = {**LOOPBACK_CLUSTER, "RAY_TMPDIR": temp}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    from ray.cluster_utils import Cluster

    made = None
    try:
        made = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 1, "node_ip_address": "127.0.0.1", "include_dashboard": False,
            "temp_dir": temp})
        for ip in ("127.0.0.2", "127.0.0.3"):
            made.add_node(num_cpus=2, node_ip_address=ip)
        made.wait_for_nodes()
        yield made
    finally:
        if made is not None:
            made.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def agentd(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agentd", *args], check=False,
                          capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **LOOPBACK_CLUSTER})


def stepping(run: Path) -> bool:
    """An episode is done: every process joined and the heartbeat timeout of the run applies."""
    try:
        return (run / "metrics.jsonl").stat().st_size > 0
    except OSError:
        return False


def ray_launch(cluster, run_dir: Path, *args: str) -> list[str]:
    # The actors' private directories go under the test's own tmp directory (removed with it).
    return ["launch", "--backend", "ray", "--ray-address", cluster.address, "--quiet",
            "--run-dir", str(run_dir), "--ray-cpus", "0.5",
            "--ray-workdir", str(run_dir.parent / "nodes"), *args]


@needs_ray
def test_a_run_spreads_over_the_nodes_and_is_whole_on_the_coordinators_host(cluster, tmp_path):
    run = tmp_path / "run"
    n = 12
    result = agentd(*ray_launch(cluster, run, "--n", str(n), "--steps", "200",
                                "--ray-cpus", "0.25"))
    assert result.returncode == 0, result.stdout + result.stderr
    placement = json.loads((run / "placement.json").read_text())
    assert placement["processes"]["coordinator"]["ip"] == "127.0.0.1"
    endpoints = json.loads((run / "endpoints.json").read_text())
    hosting = set()
    for i in range(n):                          # each agent bound on its own node's IP
        where = placement["processes"][f"agent-{i}"]["ip"]
        assert endpoints["agents"][str(i)]["endpoint"].startswith(f"tcp://{where}:")
        hosting.add(where)
    assert hosting == {"127.0.0.1", "127.0.0.2", "127.0.0.3"}, placement   # every node
    # every node on loopback: the key files never left this machine, and nothing warns
    assert placement["key_delivery"] == "this-machine"
    assert "not encrypted" not in result.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "done" and summary["secure"] is True
    assert summary["steps_done"] == 200
    # one plan: the coordinator's plan.json is the Ray launcher's, the local launcher's and
    # the in-process runner's plan of the same config
    from agentd.config import resolve
    from agentd.configfile import load_toml
    from agentd.launch.local import Launcher
    from agentd.launch.ray_backend import RayLauncher, RayOptions
    from agentd.plan import plan

    config = resolve(load_toml(run / "config.toml"), {})
    written = json.loads((run / "plan.json").read_text())
    assert RayLauncher(config, RayOptions(address=cluster.address)).plan.to_dict() == written
    assert Launcher(config).plan.to_dict() == written == plan(config).to_dict()
    for name in ["coordinator", "envserver", *(f"agent-{i}" for i in range(n))]:
        assert (run / "logs" / f"{name}.log").stat().st_size > 0, name
    audit = agentd("audit", str(run))
    assert audit.returncode == 0, audit.stdout + audit.stderr
    replay = agentd("replay", str(run), "--agent", "1")
    assert replay.returncode == 0, replay.stdout + replay.stderr


@needs_ray
def test_an_infeasible_placement_is_a_clear_error(cluster, tmp_path):
    # STRICT_SPREAD needs one node per process: 4 processes (env server + 3 agents), 3 nodes.
    result = agentd(*ray_launch(cluster, tmp_path / "run", "--n", "3", "--steps", "50",
                                "--ray-strategy", "STRICT_SPREAD", "--ray-timeout", "8"))
    assert result.returncode == 1
    assert "could not place 4 processes" in result.stderr
    assert "STRICT_SPREAD" in result.stderr


def agent_pid(run: Path, i: int) -> int | None:
    try:
        return json.loads((run / "endpoints.json").read_text())["agents"][str(i)]["pid"]
    except (OSError, ValueError, KeyError):
        return None


@needs_ray
def test_a_dead_process_and_a_lost_actor_come_back_and_the_run_completes(cluster, tmp_path):
    """Agent 1's process is killed under its live actor (the launcher restarts it there);
    agent 2's actor is killed (Ray restarts the actor, and the process with it). Both rejoin
    under their ids with their keys, restore their recovery checkpoints, and replay exactly."""
    run = tmp_path / "run"
    args = [sys.executable, "-m", "agentd", *ray_launch(
        cluster, run, "--n", "3", "--steps", "3000", "--episode-len", "20",
        "--recovery-every", "50", "--max-restarts", "1")]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **LOOPBACK_CLUSTER}, start_new_session=True)
    try:
        wait_for(lambda: (run / "placement.json").exists() and stepping(run), 120,
                 "the run to step on the cluster")
        placement = json.loads((run / "placement.json").read_text())["processes"]
        first = agent_pid(run, 1)
        os.kill(placement["agent-1"]["pid"], signal.SIGKILL)
        wait_for(lambda: agent_pid(run, 1) not in (None, first), 90, "agent 1 to rejoin")
        os.kill(placement["agent-2"]["actor_pid"], signal.SIGKILL)
        out, _ = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout=30)
    assert proc.returncode == 0, out
    assert "agent-1" in out and "restart 1 of 1" in out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "done"
    assert summary["restart_counts"] == {"agent-1": 1, "agent-2": 1}
    for i in (1, 2):
        replay = agentd("replay", str(run), "--agent", str(i))
        assert replay.returncode == 0, replay.stdout + replay.stderr
        assert "restored" in replay.stdout


@needs_ray
def test_a_node_lost_for_good_fails_the_run_naming_the_agent(cluster, tmp_path):
    """Runs last in this module: it takes a node away from the shared cluster."""
    run = tmp_path / "run"
    args = [sys.executable, "-m", "agentd", *ray_launch(cluster, run, "--n", "3", "--steps",
                                                          "1000000", "--heartbeat-timeout", "3")]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **LOOPBACK_CLUSTER}, start_new_session=True)
    try:
        wait_for(lambda: (run / "placement.json").exists() and stepping(run), 120,
                 "the run to step on the cluster")
        placement = json.loads((run / "placement.json").read_text())
        lost_ip = next(p["ip"] for name, p in placement["processes"].items()
                       if name.startswith("agent-") and p["ip"] != "127.0.0.1")
        lost = [name for name, p in placement["processes"].items() if p["ip"] == lost_ip]
        node = next(n for n in cluster.worker_nodes if n.node_ip_address == lost_ip)
        cluster.remove_node(node)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout=30)
    assert proc.returncode != 0, out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] != "done"
    assert any(name in summary["error"] or name.replace("-", " ") in summary["error"]
               for name in lost), (lost, summary["error"])


def test_ray_flags_need_the_ray_backend():
    result = agentd("launch", "--ray-cpus", "1", "--steps", "10", timeout=60)
    assert result.returncode == 2 and "--backend ray" in result.stderr


def test_how_the_key_files_travel_is_named_and_plaintext_over_a_network_warns():
    from agentd.launch.ray_backend import KEY_WARNING, key_delivery

    lan = ["127.0.0.1", "192.0.2.7"]             # a documentation address: never contacted
    assert key_delivery(False, lan, {}) == "none"
    assert key_delivery(True, ["127.0.0.1", "127.0.0.2", "::1"], {}) == "this-machine"
    assert key_delivery(True, lan, {"RAY_USE_TLS": "1"}) == "ray-tls"
    assert key_delivery(True, lan, {"RAY_USE_TLS": "0"}) == "ray-plaintext"
    assert key_delivery(True, lan, {}) == "ray-plaintext"
    text = KEY_WARNING.format(nodes=", ".join(lan))
    assert "192.0.2.7" in text and "plaintext" in text and "TLS" in text


def test_a_bad_strategy_is_named():
    result = agentd("launch", "--backend", "ray", "--ray-strategy", "EVERYWHERE", "--steps",
                    "10", timeout=60)
    assert result.returncode == 1
    assert "EVERYWHERE" in result.stderr and "STRICT_SPREAD" in result.stderr


def test_without_ray_the_error_says_how_to_install(tmp_path):
    code = ("import sys; sys.modules['ray'] = None; from agentd.cli import main; "
            "sys.exit(main(['launch', '--backend', 'ray', '--steps', '10', '--run-dir', "
            f"{str(tmp_path / 'run')!r}]))")
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True,
                            text=True,
                            timeout=60)
    assert result.returncode == 1, result.stderr
    assert "pip install 'agentd[ray]'" in result.stderr


@needs_ray
def test_a_killed_coordinator_is_resumed_under_its_actor_and_after_its_actor_is_lost(
        cluster, tmp_path):
    """The coordinator's process is killed under its live actor (the launcher has the actor
    start it again with --resume), then its actor is killed (Ray restarts the actor, whose
    constructor resumes it): the run completes, every episode counted once."""
    run = tmp_path / "run"
    args = [sys.executable, "-m", "agentd", *ray_launch(
        cluster, run, "--n", "3", "--steps", "4000", "--episode-len", "20")]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **LOOPBACK_CLUSTER}, start_new_session=True)

    def resumes():
        try:
            return (run / "journal.jsonl").read_text().count('"r":"resume"')
        except OSError:
            return 0

    try:
        wait_for(lambda: (run / "placement.json").exists() and stepping(run), 120,
                 "the run to step on the cluster")
        placement = json.loads((run / "placement.json").read_text())["processes"]
        os.kill(placement["coordinator"]["pid"], signal.SIGKILL)
        wait_for(lambda: resumes() == 1 or proc.poll() is not None, 90, "a resume")
        os.kill(placement["coordinator"]["actor_pid"], signal.SIGKILL)
        wait_for(lambda: resumes() == 2 or proc.poll() is not None, 120, "a second resume")
        out, _ = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout=30)
    assert proc.returncode == 0, out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "done" and summary["episodes"] == 4000 // 20
    assert [r["epoch"] for r in summary["coordinator_restarts"]] == [1, 2]
