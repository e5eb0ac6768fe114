"""Start-up: what each process imports stays lean (the coordinator never loads torch, an agent
never loads networkx, matplotlib or tensorboardX), and a local launch starts every process at
once, which then reads the coordinator's endpoint from coordinator.json (``--join @FILE``)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest
from conftest import read_json

from agentd.cli.join import endpoint_of


def imported_after(code: str) -> set[str]:
    """Top-level modules a fresh interpreter holds after running code."""
    done = subprocess.run([sys.executable, "-c", code + "\nimport sys\n"
                           "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"],
                          capture_output=True, text=True, check=True, timeout=120)
    return set(done.stdout.split())


def test_the_coordinator_writes_tensorboard_scalars_without_torch(tmp_path):
    mods = imported_after(
        "import coordinator.coordinator, coordinator.envserver\n"
        "from pathlib import Path\n"
        "from coordinator.tb import TensorBoardLog\n"
        f"tb = TensorBoardLog(Path({str(tmp_path)!r}))\n"
        "tb.scalars('episode', {'return': 1.5}, 3)\n"
        "tb.close()\n"
        "from topologies import build\n"
        "build('ring', 5)\n")
    assert "tensorboardX" in mods
    assert not mods & {"torch", "networkx", "matplotlib", "tqdm"}, mods
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


def test_torch_still_imports_after_tensorboardx_was_hidden_from_it(tmp_path):
    mods = imported_after(
        "from pathlib import Path\n"
        "from coordinator.tb import TensorBoardLog\n"
        f"TensorBoardLog(Path({str(tmp_path)!r})).close()\n"
        "import torch\n"
        "assert torch.zeros(2).sum().item() == 0.0\n")
    assert "torch" in mods


def test_a_tabular_agent_imports_no_graph_plot_or_torch_library():
    mods = imported_after("import agentd.cli.agent_cmd, agentd.agent.process\n"
                          "from agentd.algorithms import load_learner_class\n"
                          "load_learner_class('dac')\n")
    assert "zmq" in mods and "numpy" in mods
    assert not mods & {"torch", "networkx", "matplotlib", "tensorboardX", "tqdm"}, mods


def test_join_at_file_waits_for_the_endpoint_and_gives_up_after_the_timeout(tmp_path):
    path = tmp_path / "coordinator.json"
    assert endpoint_of("tcp://127.0.0.1:5555", 0.1) == "tcp://127.0.0.1:5555"

    def write_later() -> None:
        time.sleep(0.3)
        path.write_text("{\"endp")                  # half-written: read again
        time.sleep(0.1)
        path.write_text(json.dumps({"endpoint": "tcp://127.0.0.1:4242"}))

    writer = threading.Thread(target=write_later)
    writer.start()
    start = time.monotonic()
    assert endpoint_of(f"@{path}", 10.0) == "tcp://127.0.0.1:4242"
    assert time.monotonic() - start >= 0.3
    writer.join()
    with pytest.raises(SystemExit, match="no coordinator endpoint in .*missing.json after"):
        endpoint_of(f"@{tmp_path / 'missing.json'}", 0.2)


def test_a_launch_into_a_directory_with_a_stale_endpoint_runs(runs, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "coordinator.json").write_text(json.dumps({"endpoint": "tcp://127.0.0.1:9"}))
    done = runs.launch(run_dir, "--n", "3", "--steps", "20", "--episode-len", "10")
    assert done.returncode == 0, done.stdout
    assert read_json(run_dir / "summary.json")["steps_done"] == 20
    assert read_json(run_dir / "coordinator.json")["endpoint"] != "tcp://127.0.0.1:9"
