"""A normal run says nothing alarming: no WARNING on the launcher's terminal nor in any of its
processes' output. The local env connection closing at the end of a run is the end of the
run, not a failure."""

from __future__ import annotations


def test_a_normal_run_has_no_warning(runs, tmp_path):
    run_dir = tmp_path / "run"
    done = runs.launch(run_dir, "--n", "3", "--steps", "200", "--episode-len", "20")
    assert done.returncode == 0, done.stdout[-2000:]
    assert "WARNING" not in done.stdout, done.stdout
    outs = sorted((run_dir / "logs").glob("*.out"))
    assert len(outs) == 4          # the env server and three agents
    for out in outs:
        assert "WARNING" not in out.read_text(), f"{out.name}:\n{out.read_text()[-2000:]}"
