"""The Python API: start a run from a script or a notebook, follow it, read what it wrote.

A run started here is the run ``agentd launch`` makes (the same config resolution, the same
precheck, the same processes and run directory); only the way in differs::

    from agentd import api

    run = api.start(algo="dac", env="random-mdp", n=3, steps=2000)   # returns at once
    run.wait()                                    # "done", "failed" or "interrupted"
    run.summary()["final_return"]                 # summary.json, as a dict
    run.metrics()[-1]                             # metrics.jsonl: one dict per episode
    api.open(run.run_dir).status()                # any run directory, later

``start`` takes a config (a ``RunConfig``, a dict of config-file values or the path of a TOML
file, as ``--config``) and keyword overrides (RunConfig's field names, as the flags; they win).
A mistake in them is a ``agentd.config.ConfigError`` raised by ``start`` itself, before any
process or run directory. The run then goes on in a thread of this process (the local and
in-process backends; the Ray backend's launcher the same way), so ``start`` returns at once;
``stop`` ends it in order, as Ctrl-C ends ``agentd launch``. No signal handler is installed
unless ``handle_signals=True`` (which the command line's behaviour is): a notebook's Ctrl-C
stays the notebook's.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentd.config import ConfigError, RunConfig, resolve
from agentd.configfile import load_toml

__all__ = ["BACKENDS", "ConfigError", "Run", "open", "run", "start"]

BACKENDS = ("local", "inprocess", "ray")
ENDED = ("done", "failed", "interrupted")
_open = open        # the builtin, before ``open`` below names a run's


class Run:
    """A run directory and, for a run this process started, the run itself.

    ``run_dir`` is where everything is written; ``config`` the resolved config (read back
    from config.toml for an opened run); ``exit_code`` the launcher's (None while it runs;
    0 done, 130 interrupted, else failed); ``error`` why it could not run, if it could not.
    """

    def __init__(self, run_dir: str | Path, config: RunConfig | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.config = config
        self.exit_code: int | None = None
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._stop: Callable[[], None] | None = None
        self._restore: dict[int, Any] = {}

    def __repr__(self) -> str:
        return f"Run({str(self.run_dir)!r}, status={self.status()!r})"

    # -- state ---------------------------------------------------------------------------------
    def status(self) -> str:
        """"running" while this process runs it; afterwards (and for an opened run) the
        status summary.json records: "done", "failed" or "interrupted". An opened run without
        a summary is "incomplete" (still running elsewhere, or it never finished)."""
        if self._thread is not None and self._thread.is_alive():
            return "running"
        summary = self.summary()
        if summary is not None and summary.get("status") in ENDED:
            return summary["status"]
        if self._thread is not None:       # ended without a summary: it could not start
            return "failed"
        return "incomplete"

    def summary(self) -> dict[str, Any] | None:
        """summary.json as a dict (None until the run has written it)."""
        path = self.run_dir / "summary.json"
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def metrics(self, frame: bool = False) -> Any:
        """metrics.jsonl: one dict per finished episode (``episode``, ``step``, ``return``
        and, in a live run, ``length`` and each agent's scalars under ``agents``), as far as
        it is written. ``frame=True``: a pandas DataFrame of them, nested keys flattened
        (``agents.0.td_abs``); it needs pandas, which agentd does not install."""
        records = []
        try:
            with _open(self.run_dir / "metrics.jsonl") as f:
                for line in f:
                    try:
                        records.append(json.loads(line))
                    except ValueError:     # a line still being written
                        break
        except FileNotFoundError:
            pass
        if not frame:
            return records
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("Run.metrics(frame=True) needs pandas (pip install pandas); "
                              "Run.metrics() gives the same records as a list of dicts") \
                from None
        return pd.json_normalize(records)

    # -- control -------------------------------------------------------------------------------
    def wait(self, timeout: float | None = None) -> str:
        """Wait until the run ends (or ``timeout`` seconds); its status. Re-raises nothing:
        a run that could not start is "failed", with ``error`` saying why."""
        if self._thread is not None:
            self._thread.join(timeout)
            if not self._thread.is_alive():
                self._restore_signals()
        return self.status()

    def stop(self, timeout: float | None = 60.0) -> str:
        """Ask the run to stop in order (its processes save what they have and leave, as
        on Ctrl-C) and wait up to ``timeout`` seconds; its status ("interrupted" if it was
        still running). Only a run this process started can be stopped from here."""
        if self._thread is None or self._stop is None:
            raise RuntimeError(f"{self.run_dir} was opened, not started here: stop it where "
                               "it runs (Ctrl-C, or SIGINT to its launcher)")
        if self._thread.is_alive():
            self._stop()
        return self.wait(timeout)

    # -- started here --------------------------------------------------------------------------
    def _go(self, main: Callable[[], int], stop: Callable[[], None],
            handle_signals: bool) -> None:
        self._stop = stop
        if handle_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._restore[sig] = signal.signal(sig, lambda *_: stop())

        def body() -> None:
            try:
                self.exit_code = main()
            except BaseException as exc:  # noqa: BLE001 - kept for the caller: Run.error
                self.error, self.exit_code = exc, 1

        self._thread = threading.Thread(target=body, name=f"agentd-run {self.run_dir.name}",
                                        daemon=True)
        self._thread.start()

    def _restore_signals(self) -> None:
        if self._restore and threading.current_thread() is threading.main_thread():
            for sig, handler in self._restore.items():
                signal.signal(sig, handler)
            self._restore.clear()


def start(config: RunConfig | dict[str, Any] | str | Path | None = None, *,
          backend: str = "local", quiet: bool = True, handle_signals: bool = False,
          **overrides: Any) -> Run:
    """Start a run and return its handle at once (see the module's docstring).

    ``config``: a ``RunConfig``, a dict of config-file values, or a TOML file's path;
    ``overrides``: RunConfig fields by name (``params`` and ``env_args`` as dicts, merged key
    by key into the config's). ``backend``: "local" (processes on this machine), "inprocess"
    (the same run in this process, no sockets) or "ray" (``agentd[ray]``; a local one-node
    cluster unless RAY_ADDRESS says which). ``quiet``: no progress bar. ``handle_signals``:
    Ctrl-C and SIGTERM stop the run in order until it ends (call from the main thread).
    Raises ``ConfigError`` (before anything starts) for a config that cannot run."""
    if backend not in BACKENDS:
        raise ConfigError(f"backend {backend!r} is not one of {', '.join(BACKENDS)}")
    resolved = resolve(_file_values(config), overrides)
    handle = Run(resolved.run_dir, resolved)
    if backend == "inprocess":
        from agentd.launch.inprocess import launch_in_process, refuse_live_only
        from agentd.launch.precheck import precheck

        refuse_live_only(resolved)
        checked = precheck(resolved)
        stopped = threading.Event()
        handle._go(lambda: launch_in_process(resolved, stopped.is_set, checked), stopped.set,
                   handle_signals)
    elif backend == "ray":
        from agentd.launch.ray_backend import RayLauncher, RayOptions

        ray = RayLauncher(resolved, RayOptions(), quiet=quiet)      # prechecks
        handle._go(ray.run, lambda: setattr(ray.supervisor, "stop_signal", signal.SIGINT),
                   handle_signals)
    else:
        from agentd.launch.local import Launcher

        local = Launcher(resolved, quiet=quiet)
        local.check()
        handle._go(local.run, local.stop, handle_signals)
    return handle


def run(config: RunConfig | dict[str, Any] | str | Path | None = None, **kwargs: Any) -> Run:
    """``start`` and ``wait``: the finished run's handle."""
    handle = start(config, **kwargs)
    handle.wait()
    return handle


def open(run_dir: str | Path) -> Run:
    """The handle of an existing run directory (finished, or still running elsewhere), with
    its config read back from config.toml: status, summary and metrics, read-only."""
    path = Path(run_dir)
    if not (path / "config.toml").is_file():
        raise FileNotFoundError(f"{path} is not a run directory (no config.toml)")
    values = load_toml(path / "config.toml")
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    # as written (not resolved again: no learner is loaded, and a file that names something
    # this version lacks still opens)
    return Run(path, RunConfig(**{k: v for k, v in values.items() if k in fields}))


def _file_values(config: RunConfig | dict[str, Any] | str | Path | None) -> dict[str, Any]:
    if config is None:
        return {}
    if isinstance(config, RunConfig):
        return dataclasses.asdict(config)
    if isinstance(config, dict):
        return dict(config)
    return load_toml(config)
