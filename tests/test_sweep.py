"""``agentd sweep``: grid expansion, resume, a killed sweep resumed, the report's IQM and CI
against an independent numpy computation, and bad specs. Real runs of tiny budgets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import AGENTD, wait_for

from agentd.tools.sweep_report import curve_bands, iqm_ci
from agentd.tools.sweep_run import MARKER, default_jobs
from agentd.tools.sweep_spec import SpecError, load_spec

TINY = """
[sweep]
name = "tiny"
seeds = {seeds}
algos = ["dac", "iql"]
metric = "final_return"
[base]
n = 2
steps = {steps}
episode_len = 20
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def sweep(tmp: Path, spec: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*AGENTD, "sweep", str(spec), "--dir", str(tmp / "runs"),
                           "--report-dir", str(tmp / "report"), "--quiet", *args],
                          capture_output=True, text=True, timeout=timeout, cwd=tmp,
                          check=False)


def markers(tmp: Path) -> dict[str, dict]:
    return {str(p.parent.relative_to(tmp / "runs")): json.loads(p.read_text())
            for p in sorted((tmp / "runs").rglob(MARKER))}


def numpy_iqm(x: np.ndarray) -> float:
    """The 25% trimmed mean, by hand: drop floor(n/4) from each end of the sorted values."""
    x = np.sort(np.asarray(x, dtype=float))
    k = int(np.floor(0.25 * len(x)))
    return float(x[k:len(x) - k].mean())


# -- expansion and bad specs (no runs) -------------------------------------------------------
def test_grid_expansion(tmp_path):
    spec = load_spec(write(tmp_path / "g.toml", """
[sweep]
seeds = [3, 7]
algos = ["iql"]
[base]
n = 2
steps = 100
params = { gamma = 0.9 }
[configs.dac-fast]
algo = "dac"
params = { alpha = 0.2 }
[grid]
"params.gamma" = [0.8, 0.95]
n = [2, 3]
"""))
    cells = spec.cells(tmp_path / "runs")
    assert len(cells) == 2 * 2 * 2 * 2                 # configs x gamma x n x seeds
    assert {c.config_name for c in cells} == {"iql", "dac-fast"}
    assert sorted({c.seed for c in cells}) == [3, 7]
    dirs = {c.config.run_dir for c in cells}
    assert len(dirs) == len(cells)                     # every cell its own run directory
    one = next(c for c in cells if c.config_name == "dac-fast" and c.seed == 7
               and dict(c.grid) == {"params.gamma": 0.95, "n": 3})
    assert one.config.algo == "dac" and one.config.n == 3 and one.config.seed == 7
    assert one.config.params["gamma"] == 0.95 and one.config.params["alpha"] == 0.2
    assert one.config.steps == 100
    assert one.group == "dac-fast gamma=0.95,n=3"
    assert one.config.run_dir == str(tmp_path / "runs" / "dac-fast" / "gamma=0.95,n=3" /
                                     f"seed-7-{one.digest}")
    # the digest is the resolved config and backend: equal cells agree, others do not
    again = load_spec(tmp_path / "g.toml").cells(tmp_path / "runs")
    assert [c.digest for c in again] == [c.digest for c in cells]
    assert len({c.digest for c in cells}) == len(cells)
    spec = load_spec(tmp_path / "g.toml")
    spec.backend = "local"
    assert not {c.digest for c in spec.cells(tmp_path / "runs")} & {c.digest for c in cells}


def test_default_jobs_fit_the_machine(tmp_path):
    cells = load_spec(write(tmp_path / "j.toml", TINY.format(seeds=5, steps=10))).cells(
        tmp_path / "runs")
    cpus = len(os.sched_getaffinity(0))
    assert default_jobs(cells, "inprocess") == min(cpus, len(cells))
    assert default_jobs(cells, "local") == max(1, cpus // 4)      # n = 2: 2 agents + 2


@pytest.mark.parametrize("text, words", [
    ("[sweep]\nalgos = ['dac']\n[base]\nstepz = 5\n", ["[base]", "stepz", "no run config"]),
    ("[sweep]\nalgos = ['nope']\n", ["cell nope", "'algo'", "nope"]),
    ("[sweep]\nalgos = ['dac']\n[base]\nseed = 3\n", ["'seed'", "per cell"]),
    ("[sweep]\nalgos = ['dac']\nseeds = -2\n", ["seeds", "at least 1"]),
    ("[sweep]\nalgos = ['dac']\nseeds = [1, 1]\n", ["distinct"]),
    ("[sweep]\nseeds = 2\n", ["no configuration"]),
    ("[sweep]\nalgos = ['dac']\n[grid]\nn = 3\n", ["[grid] 'n'", "non-empty list"]),
    ("[sweep]\nalgos = ['dac']\n[grid]\n'foo.x' = [1]\n", ["dotted key"]),
    ("[sweep]\nalgos = ['dac']\nbackend = 'ray'\n", ["backend", "inprocess, local"]),
    ("[sweep]\nalgos = ['dac']\njobz = 2\n", ["unknown [sweep] key", "jobz"]),
    ("[sweeps]\nalgos = ['dac']\n", ["unknown table", "sweeps"]),
    ("[sweep\nalgos = ", ["not valid TOML"]),
    ("[sweep]\nalgos = ['dac']\n[grid]\n'params.alpha' = [0.1, 'x']\n",
     ["alpha=x", "'params'"]),
])
def test_bad_spec_is_a_clear_error(tmp_path, text, words):
    path = write(tmp_path / "bad.toml", text)
    with pytest.raises(SpecError) as err:
        load_spec(path).cells(tmp_path / "runs")
    for word in words:
        assert word in str(err.value), (word, str(err.value))


def test_bad_spec_on_the_command_line(tmp_path):
    path = write(tmp_path / "bad.toml", "[sweep]\nalgos = ['dac']\n[base]\nn = 0\n")
    res = sweep(tmp_path, path)
    assert res.returncode == 2
    assert "agentd sweep:" in res.stderr and "'n' = 0" in res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "runs").exists()
    missing = sweep(tmp_path, tmp_path / "none.toml")
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_grid_override_on_the_command_line(tmp_path):
    spec = write(tmp_path / "g.toml", "[sweep]\nseeds = 2\nalgos = ['iql']\n[base]\nn = 2\n"
                                      "[grid]\n'params.gamma' = [0.8, 0.9]\n")
    res = sweep(tmp_path, spec, "--grid", "params.gamma=[0.5]", "--dry-run")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == 2
    for seed, line in zip((0, 1), lines, strict=True):
        assert line.startswith(f"iql/gamma=0.5/seed-{seed}-") and line.endswith("to run"), line
    for bad, words in (("gamma=[0.5]", "grid has ['params.gamma']"),
                       ("params.gamma=0.5", "non-empty TOML list"),
                       ("params.gamma=[2.0]", "must be in")):
        res = sweep(tmp_path, spec, "--grid", bad, "--dry-run")
        assert res.returncode == 2 and words in res.stderr, (bad, res.stderr)


# -- statistics ------------------------------------------------------------------------------
def test_iqm_and_ci_against_numpy():
    values = np.array([3.0, -1.0, 7.5, 2.0, 2.5, 10.0, 0.5, 4.0])
    iqm, lo, hi = iqm_ci(values)
    assert iqm == pytest.approx(numpy_iqm(values), abs=1e-12)
    assert numpy_iqm(values) == pytest.approx(np.mean([2.0, 2.5, 3.0, 4.0]))
    # an independent percentile bootstrap over the seeds (one task: stratified = plain)
    rng = np.random.default_rng(123)
    boot = [numpy_iqm(values[rng.integers(0, len(values), len(values))])
            for _ in range(20_000)]
    ref_lo, ref_hi = np.percentile(boot, [2.5, 97.5])
    spread = values.max() - values.min()
    assert lo == pytest.approx(ref_lo, abs=0.03 * spread)
    assert hi == pytest.approx(ref_hi, abs=0.03 * spread)
    assert lo <= iqm <= hi
    # five seeds: floor(5/4) = 1 value trimmed from each end
    assert iqm_ci([1.0, 2.0, 3.0, 4.0, 100.0])[0] == pytest.approx(3.0)
    # identical seeds: the interval collapses to the value
    assert iqm_ci([2.0] * 5) == pytest.approx((2.0, 2.0, 2.0))


def test_curve_bands_bin_the_returns():
    steps = np.arange(10, 101, 10, dtype=float)            # one episode every 10 steps
    curves = [(steps, np.full(10, float(v))) for v in (1, 2, 3, 4, 5)]
    x, mid, lo, hi = curve_bands(curves, 100, bins=5)
    assert np.allclose(x, [10, 30, 50, 70, 90])
    assert np.allclose(mid, 3.0)                           # IQM of 1..5 (trim one each end)
    assert (lo <= mid).all() and (mid <= hi).all() and (hi > lo).all()
    ramp = [(steps, steps / 100.0 + k) for k in (0.0, 0.0, 0.0)]
    _, mid, lo, hi = curve_bands(ramp, 100, bins=5)
    assert np.allclose(mid, [0.15, 0.35, 0.55, 0.75, 0.95]) and np.allclose(lo, hi)


# -- real sweeps -----------------------------------------------------------------------------
@pytest.mark.timeout(900)       # five sweeps of real runs and their reports
def test_sweep_runs_resumes_and_reports(tmp_path):
    spec = write(tmp_path / "tiny.toml", TINY.format(seeds=5, steps=200))
    first = sweep(tmp_path, spec, "--jobs", "2")
    assert first.returncode == 0, first.stderr
    assert "sweep done: 10 run, 0 already finished, 0 failed" in first.stdout
    done = markers(tmp_path)
    assert len(done) == 10 and all(m["status"] == "done" for m in done.values())
    # the report against each run's own summary.json, recomputed here with numpy
    report = json.loads((tmp_path / "report" / "results.json").read_text())
    assert [r["group"] for r in report["rows"]] == ["dac", "iql"]
    for row in report["rows"]:
        finals = [json.loads((next((tmp_path / "runs" / row["config"]).glob(f"seed-{s}-*")) /
                              "summary.json").read_text())["final_return"] for s in range(5)]
        assert row["seeds"] == [0, 1, 2, 3, 4]
        assert row["values"] == pytest.approx(finals)
        assert row["iqm"] == pytest.approx(numpy_iqm(finals), abs=1e-9)
        assert row["ci95"][0] <= row["iqm"] <= row["ci95"][1]
    assert (tmp_path / "report" / "curves.png").stat().st_size > 10_000
    table = (tmp_path / "report" / "results.md").read_text()
    assert "| dac | 5 |" in table and "final_return IQM" in table

    # the same command again: nothing runs, the finished runs are untouched
    second = sweep(tmp_path, spec)
    assert second.returncode == 0, second.stderr
    assert "sweep done: 0 run, 10 already finished, 0 failed" in second.stdout
    assert markers(tmp_path) == done
    # more seeds: only the new ones run; a changed budget runs again, beside the old runs
    third = sweep(tmp_path, write(spec, TINY.format(seeds=6, steps=200)))
    assert "sweep done: 2 run, 10 already finished" in third.stdout, third.stdout
    fourth = sweep(tmp_path, spec, "--steps", "150", "--seeds", "1")
    assert "sweep done: 2 run, 0 already finished" in fourth.stdout, fourth.stdout
    # --report runs nothing and writes the same table from the runs on disk
    (tmp_path / "report" / "results.json").unlink()
    again = sweep(tmp_path, write(spec, TINY.format(seeds=5, steps=200)), "--report")
    assert again.returncode == 0 and "sweep done" not in again.stdout
    rows = json.loads((tmp_path / "report" / "results.json").read_text())["rows"]
    assert [r["values"] for r in rows] == [r["values"] for r in report["rows"]]
    assert rows[0]["iqm"] == report["rows"][0]["iqm"]


def _children_of_sweep(tmp: Path) -> list[int]:
    """PIDs of the sweep's agentd launch children (their command line names the sweep dir)."""
    out = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if b"launch" in cmd and str(tmp / "runs").encode() in cmd:
                out.append(int(proc.name))
    return out


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_killed_sweep_resumes(tmp_path):
    spec = write(tmp_path / "tiny.toml", TINY.format(seeds=3, steps=3000))
    proc = subprocess.Popen([*AGENTD, "sweep", str(spec), "--dir", str(tmp_path / "runs"),
                             "--report-dir", str(tmp_path / "report"), "--quiet", "--jobs",
                             "1"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: len(markers(tmp_path)) >= 1 if (tmp_path / "runs").exists() else False,
                 120, "the first finished run")
        wait_for(lambda: bool(_children_of_sweep(tmp_path)), 60, "the next run to start")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        # its running child dies with it (PR_SET_PDEATHSIG)
        wait_for(lambda: not _children_of_sweep(tmp_path), 30, "the orphaned run to end")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for pid in _children_of_sweep(tmp_path):
            os.kill(pid, signal.SIGKILL)
    before = markers(tmp_path)
    assert 1 <= len(before) < 6
    # seed-major order: both configurations get seed 0 before either gets seed 1
    assert [m["seed"] for m in before.values()].count(0) == min(2, len(before))
    started = time.monotonic()
    res = sweep(tmp_path, spec)
    assert res.returncode == 0, res.stderr
    assert f"sweep done: {6 - len(before)} run, {len(before)} already finished, 0 failed" \
        in res.stdout, res.stdout
    after = markers(tmp_path)
    assert len(after) == 6
    assert all(after[k] == v for k, v in before.items())       # finished runs kept as they were
    assert time.monotonic() - started < 240
    report = json.loads((tmp_path / "report" / "results.json").read_text())
    assert all(len(r["values"]) == 3 for r in report["rows"])


@pytest.mark.slow
def test_a_live_sweep(tmp_path):
    spec = write(tmp_path / "live.toml", """
[sweep]
seeds = 2
backend = "local"
algos = ["dac"]
[base]
n = 2
steps = 200
episode_len = 20
""")
    res = sweep(tmp_path, spec)
    assert res.returncode == 0, res.stderr
    assert f"{max(1, len(os.sched_getaffinity(0)) // 4)} at a time, backend local" in res.stdout
    for seed in (0, 1):
        run, = (tmp_path / "runs" / "dac").glob(f"seed-{seed}-*")
        assert (run / "endpoints.json").exists()           # coordinator, env server, agents
        assert json.loads((run / "summary.json").read_text())["status"] == "done"
