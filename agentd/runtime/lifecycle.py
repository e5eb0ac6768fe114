"""The one lifecycle of a joining process (an agent, the env server): join -> serve -> bye ->
ship, written once.

A role says only what is its own: what it does once admitted (checks, waits, the name its
files go under) and how it serves the run (returning its stats for the bye). The lifecycle
does the rest the same way for every role: open the sockets, say hello, wait for the welcome,
take the heartbeat settings, keep the process's files, say bye with the stats, wait for the
coordinator's ack, ship the files if they are on another disk -- and, however the process
fails, tell the coordinator why and ship what there is, then close.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agentd.runtime.control import ControlPlane, JoinOptions, RunFailed, open_transport
from agentd.runtime.runfiles import RunFiles, fail_and_ship, ship
from agentd.runtime.transport import Link, Transport
from protocols import process_name

log = logging.getLogger("agentd.runtime.lifecycle")


@dataclass
class Joined:
    """A process admitted to a run: its transport, control link, welcome and bound ROUTER."""

    transport: Transport
    control: ControlPlane
    info: dict[str, Any]           # the welcome: id, config, seeds, endpoints, ...
    router: Link                   # the ROUTER it bound (peer plane, env plane)
    join_timeout: float            # how long it waits for what comes before the run

    @property
    def config(self) -> dict[str, Any]:
        return self.info["config"]


@dataclass
class Served:
    """How the run went for a role: the stats for its bye, and what it still answers while
    it waits for the coordinator's ack (an agent answers neighbours still finishing)."""

    stats: dict[str, Any]
    serve_finished: Callable[[Link], None] | None = None
    # after the ack: the counters again, with what was exchanged after the bye (sent as a
    # 'tally' message so the summary counts it as the audit counts the logs)
    tally: Callable[[], dict[str, Any]] | None = None


@dataclass
class Role:
    """What one kind of joining process does: its name in the hello, the plane of its
    ROUTER, and its own steps (see the module's docstring)."""

    name: str                                        # "agent" or "envserver"
    plane: str                                       # the plane its ROUTER carries
    admitted: Callable[[Joined], str]                # checks and waits; returns its file name
    serve: Callable[[Joined, RunFiles], Served]      # the run itself
    close: Callable[[], None] = field(default=lambda: None)   # after the sockets close


def run_process(role: Role, opts: JoinOptions, want_id: int | None = None) -> int:
    """Join a run as ``role``, serve it, report, ship the files, leave; returns the exit
    code. (Bad keys or an insecure bind raise before anything joins.)"""
    transport, router, endpoint, want_id = open_transport(role.name, opts, want_id, role.plane)
    control: ControlPlane | None = None
    files: RunFiles | None = None
    try:
        control = ControlPlane(transport, opts.connect)
        control.hello(role.name, endpoint, want_id)
        joined = Joined(transport, control, control.wait_welcome(opts.join_timeout), router,
                        opts.join_timeout)
        cfg = joined.config
        control.configure(cfg)
        if transport.secure and want_id is not None and joined.info["id"] != want_id:
            raise RunFailed(f"admitted as {process_name(joined.info['id'])}, but this process "
                            f"holds the key of {process_name(want_id)}")
        files = RunFiles.choose(joined.info, role.admitted(joined), opts.run_dir)
        files.capture_output()
        served = role.serve(joined, files)
        transport.set_hot([])          # the run loop is over: bye, ack and files are control
        transport.finished = True
        control.send("bye", {"stats": {**served.stats,
                                       "coordinator_outage": control.outbox.counts}})
        transport.flush()
        acked = control.wait_ack(2 * cfg["heartbeat_timeout"], served.serve_finished)
        if acked and served.tally is not None:
            control.send("tally", {"stats": served.tally()})
        if not files.shared:
            ship(files, control, 2 * cfg["heartbeat_timeout"] + 10.0)
        return 0
    except RunFailed as exc:
        log.error("%s: %s", process_name(transport.me), exc)
        fail_and_ship(transport, control, files, str(exc))
        return 1
    except Exception as exc:
        log.exception("%s crashed", process_name(transport.me))
        fail_and_ship(transport, control, files, f"{type(exc).__name__}: {exc}")
        return 1
    finally:
        transport.close()
        role.close()
