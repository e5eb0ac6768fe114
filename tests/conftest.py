"""Shared fixtures: run ``agentd`` in subprocesses and always clean up what was started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zmq

# The slow tier: files whose live multi-process runs take a minute or more each. The README's
# test command runs everything; `python -m pytest -q -m "not slow"` is the quick tier.
SLOW_FILES = frozenset({
    "test_inprocess_equal.py", "test_attacks_live.py", "test_replay.py", "test_recovery.py",
    "test_multihost.py", "test_ray.py", "test_transfer_live.py", "test_onpolicy_live.py",
    "test_deep_run.py", "test_dp_restart.py", "test_links.py", "test_launch.py",
    "test_quickstart.py", "test_coordinator_outage.py",
})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.name in SLOW_FILES:
            item.add_marker(pytest.mark.slow)

AGENTD = [sys.executable, "-m", "agentd"]


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def is_agentd_process(pid: int) -> bool:
    """True if pid is alive and is an agentd process (guards against PID reuse)."""
    try:
        return b"agentd" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def run_pids(run_dir: Path) -> list[int]:
    """PIDs of the coordinator, env server and agents a run recorded."""
    path = run_dir / "endpoints.json"
    if not path.exists():
        return []
    ep = read_json(path)
    return [ep["coordinator"]["pid"], ep["envserver"]["pid"],
            *(a["pid"] for a in ep["agents"].values())]


def stop_pids(pids: list[int]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = [p for p in pids if is_agentd_process(p)]
        for pid in alive:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(is_agentd_process(p) for p in alive):
            time.sleep(0.05)


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Runs:
    """Starts agentd commands; on teardown ends each still alive, by PID, then its run's PIDs."""

    def __init__(self) -> None:
        self.started: list[tuple[subprocess.Popen, Path | None]] = []

    def start(self, args: list[str], run_dir: Path | None = None, **kwargs) -> subprocess.Popen:
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.STDOUT)
        proc = subprocess.Popen([*AGENTD, *args], **kwargs)
        self.started.append((proc, run_dir))
        return proc

    def launch(self, run_dir: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        proc = self.start(["launch", "--run-dir", str(run_dir), "--quiet", *args], run_dir)
        out, _ = proc.communicate(timeout=timeout)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out.decode(), "")

    def cleanup(self) -> None:
        for proc, run_dir in self.started:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
            if proc.stdout is not None:
                proc.stdout.close()
            if run_dir is not None:
                stop_pids(run_pids(run_dir))


def send_raw(endpoint: str, identity: bytes, messages: list[list[bytes]]) -> None:
    """Send raw multipart messages over ONE connection (a ROUTER ignores a second connection
    that claims an identity still in use, so one socket per message would be flaky)."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
    try:
        sock.setsockopt(zmq.IDENTITY, identity)
        sock.setsockopt(zmq.LINGER, 30_000)   # a loaded machine may be slow to flush
        sock.connect(endpoint)
        # wait until the connection is up, so nothing sits in a queue that close could drop
        assert monitor.poll(30_000), "the intruder could not connect to the agent"
        for frames in messages:
            sock.send_multipart(frames)
    finally:
        sock.disable_monitor()
        monitor.close()
        sock.close()
        ctx.term()


@pytest.fixture
def runs():
    r = Runs()
    try:
        yield r
    finally:
        r.cleanup()


@pytest.fixture
def one_torch_thread():
    """Small autograd graphs run far faster on one thread than on contended cores (the
    LOLA / DiCE tests); torch is imported only by the tests that ask for this."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
