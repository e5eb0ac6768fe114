"""Every run writes TensorBoard event files under RUN/tb/ with the run's scalars."""

from __future__ import annotations

import struct
from pathlib import Path

from tensorboardX.proto import event_pb2


def read_scalars(tb_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] from the TFRecord event files (u64 length, u32 crc, event, u32
    crc per record)."""
    tags: dict[str, list[tuple[int, float]]] = {}
    files = sorted(tb_dir.glob("events.out.tfevents.*"))
    assert files, f"no event files in {tb_dir}"
    for path in files:
        data, pos = path.read_bytes(), 0
        while pos < len(data):
            (length,) = struct.unpack_from("<Q", data, pos)
            event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
            pos += 12 + length + 4
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append((event.step, value.simple_value))
    return tags


def test_a_run_writes_episode_learner_pace_and_consensus_scalars(runs, tmp_path):
    run_dir = tmp_path / "run"
    done = runs.launch(run_dir, "--n", "3", "--algo", "iql", "--steps", "200",
                       "--episode-len", "20", "--checkpoint-every", "100")
    assert done.returncode == 0, done.stdout
    tags = read_scalars(run_dir / "tb")
    assert len(tags["episode/return"]) == 10                    # 200 steps / 20
    assert [s for s, _ in tags["episode/length"]][-1] == 200
    for i in range(3):
        assert {f"agent_{i}/epsilon", f"agent_{i}/td_abs"} <= set(tags)
        assert abs(tags[f"agent_{i}/epsilon"][-1][1] - 0.05) < 1e-6     # stored as float32
    assert "env/steps_per_s" in tags and tags["env/steps_per_s"][-1][1] > 0
    assert any(t.startswith("consensus/") for t in tags)
