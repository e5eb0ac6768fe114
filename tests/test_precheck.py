"""Fail fast: a config mistake that only the env, the learner or the graph reveals is refused by
the launcher (``agentd.launch.precheck``) within 3 s, before any child process, run directory or
warning -- for the local launcher, the in-process backend and the Ray launcher."""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from agentd.config import ConfigError, resolve

MPE = "mpe2.simple_spread_v3:parallel_env"

LATE_FAILURES = [   # (flags, what the one error line says)
    (["--n", "5", "--env", MPE], "has 3 agents but n=5"),
    (["--n", "3", "--algo", "iql", "--env", MPE, "--env-arg", "continuous_actions=true"],
     "'iql' needs discrete actions"),
    (["--n", "3", "--algo", "random", "--env", "mpe2.simple_sprad_v3:parallel_env"],
     "module 'mpe2.simple_sprad_v3' not found"),
    (["--n", "3", "--env", MPE], "'dac' needs discrete observations"),
    (["--n", "3", "--algo", "random", "--env", MPE, "--env-arg", "bogus=1"],
     "unexpected keyword argument 'bogus'"),
    (["--n", "3", "--algo", "random", "--env", MPE, "--max-msg-bytes", "1024"],
     "over the message size cap of 1,024 bytes"),
    (["--algo", "pr", "--env", "digital", "--topology", "star", "--n", "5",
      "--param", "beta=0.3"], "beta * degree = 0.3 * 4 must be < 1"),
]


def children_of(pid: int) -> set[int]:
    """PIDs whose parent is ``pid`` (from /proc)."""
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.add(int(entry))
    return out


def mentioning(text: str) -> set[int]:
    """PIDs whose command line mentions ``text`` (every child names the run directory)."""
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if text.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    out.add(int(entry))
            except OSError:
                continue
    return out


def launch_watched(args: list[str], run_dir: Path
                   ) -> tuple[subprocess.CompletedProcess, set, float, float]:
    """``agentd launch ARGS``, watching the process table while it runs: (result, every
    process it started or that names its run directory, seconds from start to exit, CPU
    seconds it used)."""
    cmd = [sys.executable, "-m", "agentd", "launch", *args, "--steps", "50", "--quiet",
           "--run-dir", str(run_dir)]
    seen: set[int] = set()
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.update(children_of(proc.pid), mentioning(str(run_dir)) - {proc.pid})
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        elapsed = time.monotonic() - started
        done.set()
        watcher.join()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err), seen, elapsed, cpu


@pytest.mark.parametrize(("flags", "says"), LATE_FAILURES,
                         ids=[" ".join(f[:6]) for f, _ in LATE_FAILURES])
@pytest.mark.parametrize("backend", ["local", "inprocess"])
def test_a_late_failure_is_refused_in_the_launcher_before_anything_starts(
        flags, says, backend, tmp_path):
    run_dir = tmp_path / "run"
    res, seen, elapsed, cpu = launch_watched([*flags, "--backend", backend], run_dir)
    assert res.returncode == 2, res.stdout + res.stderr
    assert res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("agentd: config error: "), res.stderr
    assert says in lines[0]
    assert "WARNING" not in res.stderr and "peer gone" not in res.stderr
    assert seen == set(), f"child processes started: {seen}"
    assert not run_dir.exists()
    # within 3 s: the launcher's own work (its CPU time; the wall clock of a shared 2-core
    # machine is mostly load), and nowhere near the 18-30 s of a run that fails in its processes
    assert cpu < 3.0, f"{cpu:.2f} CPU s"
    assert elapsed < 10.0, f"{elapsed:.2f} s"


def test_a_good_run_still_starts_and_shows_the_envs_warnings_only_then(tmp_path):
    """The check builds the env once and holds its warnings back; a run that passes goes on
    (children start, a run directory is made)."""
    run_dir = tmp_path / "run"
    res, seen, _, _ = launch_watched(["--n", "3", "--algo", "random", "--env", MPE], run_dir)
    assert res.returncode == 0, res.stdout + res.stderr
    assert len(seen) >= 5          # coordinator, env server, three agents
    assert (run_dir / "summary.json").exists()


def test_the_launchers_raise_config_error_from_python_before_any_directory(tmp_path):
    """The Python entry points: Launcher.run and launch_in_process raise ConfigError; the Ray
    launcher raises it in its constructor, before Ray is imported (in a fresh interpreter)."""
    from agentd.launch.inprocess import launch_in_process
    from agentd.launch.local import Launcher

    config = resolve({}, {"n": 5, "env": MPE, "run_dir": str(tmp_path / "run")})
    with pytest.raises(ConfigError, match="has 3 agents but n=5"):
        Launcher(config, quiet=True).run()
    with pytest.raises(ConfigError, match="has 3 agents but n=5"):
        launch_in_process(config)
    assert not (tmp_path / "run").exists()
    code = ("import sys\nfrom agentd.config import resolve, ConfigError\n"
            "from agentd.launch.ray_backend import RayLauncher, RayOptions\n"
            f"c = resolve({{}}, {{'n': 5, 'env': {MPE!r}, 'run_dir': {str(tmp_path / 'r')!r}}})\n"
            "try:\n    RayLauncher(c, RayOptions())\nexcept ConfigError as e:\n"
            "    print('refused:', e, 'ray imported:', 'ray' in sys.modules)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=False)
    assert "refused: 'env'" in res.stdout and "ray imported: False" in res.stdout, \
        res.stdout + res.stderr
    assert not (tmp_path / "r").exists()


def test_the_troubleshooting_page_shows_each_error_as_it_is(tmp_path):
    """Every `$ agentd launch ...` of docs/troubleshooting.md's errors section prints the
    line the page shows under it, and starts nothing."""
    import shlex

    page = (Path(__file__).resolve().parent.parent / "docs" / "troubleshooting.md").read_text()
    section = page.split("## Errors before a run starts", 1)[1].split("\n## ", 1)[0]
    lines = section.splitlines()
    shown = [(line[2:], lines[k + 1]) for k, line in enumerate(lines)
             if line.startswith("$ agentd launch ")]
    assert len(shown) >= 10
    for k, (command, expected) in enumerate(shown):
        run_dir = tmp_path / f"run{k}"
        args = shlex.split(command)[2:]
        res = subprocess.run([sys.executable, "-m", "agentd", "launch", *args, "--run-dir",
                              str(run_dir)], capture_output=True, text=True, timeout=120,
                             check=False)
        def size_free(text: str) -> str:     # a welcome's size depends on the run dir's path
            return re.sub(r"message is [\d,]+ bytes", "message is N bytes", text)

        assert res.returncode == 2, (command, res.stderr)
        assert size_free(res.stderr.strip()) == size_free(expected), (command, res.stderr)
        assert not run_dir.exists()
