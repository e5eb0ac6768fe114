"""Running a sweep's cells: a bounded number of ``agentd launch`` children at a time,
resumable, with a progress bar over runs.

Each cell is one ``agentd launch --config CELL/sweep-config.toml --backend B --quiet`` child
(its output in ``CELL/sweep.log``), so a run of the sweep is exactly a run a user would launch.
A cell is finished when its run wrote ``summary.json`` with status ``done`` and the sweep then
wrote ``CELL/sweep-cell.json`` (the cell's digest, exit code, wall time); a finished cell is
never run again. A cell's directory ends in the digest of its config and backend, so a
changed spec runs new cells beside the old. A cell without the marker (never run, failed, or
cut off by a killed sweep) is run again from an empty directory.

How many at a time (``default_jobs``): the in-process backend is one process per run, so as
many runs as this process may use CPUs; a live run is ``n_procs + 2`` processes (agents,
coordinator, env server), so CPUs // that, at least 1. Children get one BLAS/OpenMP/torch
thread each when more than one runs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from agentd.config import process_count
from agentd.configfile import to_toml
from agentd.tools.sweep_spec import Cell

MARKER = "sweep-cell.json"
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:            # not Linux
        return os.cpu_count() or 1


def default_jobs(cells: list[Cell], backend: str) -> int:
    if not cells:
        return 1
    if backend == "inprocess":
        return max(1, min(cpus(), len(cells)))
    per_run = max(process_count(c.config) for c in cells) + 2
    return max(1, cpus() // per_run)


def finished(cell: Cell, runs_dir: Path) -> bool:
    """The cell's run finished and its config is the one the spec now asks for."""
    try:
        marker = json.loads((runs_dir / cell.rel_dir / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("digest") == cell.digest and marker.get("status") == "done"


@dataclass
class Outcome:
    skipped: int = 0
    done: int = 0
    failed: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    cpu_s: float = 0.0          # user + system CPU of the runs this sweep ran (and reaped)


@dataclass
class _Child:
    cell: Cell
    proc: subprocess.Popen
    started: float


def _die_with_parent() -> None:
    """A child ends (SIGTERM) when the sweep does, even by SIGKILL (Linux)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class SweepRunner:
    """Owns the children of one sweep; ends every one it started (by PID) however it ends."""

    def __init__(self, runs_dir: Path, backend: str, jobs: int, quiet: bool = False) -> None:
        self.runs_dir, self.backend, self.jobs, self.quiet = runs_dir, backend, jobs, quiet
        self.running: list[_Child] = []

    def run(self, cells: list[Cell]) -> Outcome:
        started, cpu0 = time.monotonic(), _children_cpu()
        # seed-major: every row gets its first seed before any gets its second, so a sweep
        # cut short still has comparable rows
        order = {seed: i for i, seed in enumerate(dict.fromkeys(c.seed for c in cells))}
        todo = sorted((c for c in cells if not finished(c, self.runs_dir)),
                      key=lambda c: order[c.seed])
        out = Outcome(skipped=len(cells) - len(todo))
        bar = None if self.quiet else _bar(len(cells), out.skipped)
        old = signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            queue = list(todo)
            while queue or self.running:
                while queue and len(self.running) < self.jobs:
                    self.running.append(self._start(queue.pop(0)))
                time.sleep(0.05)
                for child in [c for c in self.running if c.proc.poll() is not None]:
                    self.running.remove(child)
                    ok = self._finish(child)
                    if ok:
                        out.done += 1
                    else:
                        out.failed.append(str(child.cell.rel_dir))
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix_str(f"failed {len(out.failed)}", refresh=False)
        finally:
            self._stop_all()
            signal.signal(signal.SIGTERM, old)
            if bar is not None:
                bar.close()
        out.wall_s = time.monotonic() - started
        out.cpu_s = _children_cpu() - cpu0
        return out

    def _start(self, cell: Cell) -> _Child:
        cell_dir = self.runs_dir / cell.rel_dir
        if cell_dir.exists():          # a failed or interrupted attempt: start clean
            shutil.rmtree(cell_dir)
        cell_dir.mkdir(parents=True)
        config_path = cell_dir / "sweep-config.toml"
        config_path.write_text(to_toml(cell.config))
        env = dict(os.environ)
        if self.jobs > 1:
            for var in THREAD_VARS:
                env.setdefault(var, "1")
        cmd = [sys.executable, "-m", "agentd", "launch", "--config", str(config_path),
               "--backend", self.backend, "--quiet"]
        with open(cell_dir / "sweep.log", "wb") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                    stdin=subprocess.DEVNULL,
                                    preexec_fn=_die_with_parent)  # noqa: PLW1509 - no threads
        return _Child(cell, proc, time.monotonic())

    def _finish(self, child: _Child) -> bool:
        cell_dir = self.runs_dir / child.cell.rel_dir
        rc = child.proc.returncode
        try:
            status = json.loads((cell_dir / "summary.json").read_text()).get("status")
        except (OSError, ValueError):
            status = None
        ok = rc == 0 and status == "done"
        if ok:
            marker = {"status": "done", "digest": child.cell.digest, "returncode": rc,
                      "wall_s": round(time.monotonic() - child.started, 3),
                      "config": child.cell.config_name, "grid": dict(child.cell.grid),
                      "seed": child.cell.seed}
            (cell_dir / MARKER).write_text(json.dumps(marker) + "\n")
        else:
            tail = (cell_dir / "sweep.log").read_text(errors="replace").strip().splitlines()
            print(f"agentd sweep: cell {child.cell.rel_dir} failed (exit {rc}, status "
                  f"{status}); last lines of {cell_dir / 'sweep.log'}:\n  "
                  + "\n  ".join(tail[-5:]), file=sys.stderr, flush=True)
        return ok

    def _stop_all(self) -> None:
        """SIGTERM every running child by PID (a live launch then stops its run in order),
        SIGKILL what is left after 10 s."""
        for child in self.running:
            if child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10.0
        for child in self.running:
            try:
                child.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()
        self.running.clear()


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _bar(total: int, initial: int):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="run", file=sys.stderr, mininterval=0.2,
                dynamic_ncols=True, desc="sweep")
