"""The one process lifecycle (join -> serve -> bye -> ship) with a role of the test's own,
against a coordinator's end played here over a real ROUTER on loopback."""

from __future__ import annotations

import threading
import time

from agentd.runtime.control import JoinOptions
from agentd.runtime.lifecycle import Joined, Role, Served, run_process
from agentd.runtime.runfiles import RunFiles, write_marker
from agentd.runtime.transport import Transport
from protocols import COORDINATOR, ENVSERVER, Guard


def play_coordinator(t: Transport, link, run_dir, until: str, timeout: float = 30.0) -> dict:
    """Welcome the one process that says hello, ack its bye; returns what it sent, by kind."""
    seen: dict = {}
    deadline = time.monotonic() + timeout
    while until not in seen and time.monotonic() < deadline:
        for msg, ident in t.recv_all(link) if link in t.poll(50) else []:
            seen[msg.kind] = msg.body
            if msg.kind == "hello":
                info = {"run_dir": str(run_dir), "run_id": "r1", "n_procs": 1,
                        "config": {"heartbeat_interval": 0.2, "heartbeat_timeout": 5.0}}
                t.send(link, "welcome", msg.src, {"id": ENVSERVER, "info": info}, to=ident)
            elif msg.kind == "bye":
                t.send(link, "ack", ENVSERVER, {}, to=ident)
    return seen


def run_role(tmp_path, serve) -> tuple[int, dict, list]:
    write_marker(tmp_path, "r1")            # the run directory is this process's disk too
    coord = Transport(COORDINATOR, Guard(COORDINATOR), None)
    steps: list = []

    def admitted(joined: Joined) -> str:
        steps.append(("admitted", joined.info["id"], joined.router.plane))
        return "envserver"

    def serving(joined: Joined, files: RunFiles) -> Served:
        steps.append(("serve", files.shared))
        return serve()

    role = Role("envserver", "env", admitted, serving, lambda: steps.append(("close",)))
    try:
        link = coord.bind_router("tcp://127.0.0.1:*", "control")
        opts = JoinOptions(link.endpoint, bind="tcp://127.0.0.1:*", join_timeout=20.0)
        code: list[int] = []
        worker = threading.Thread(target=lambda: code.append(run_process(role, opts)))
        worker.start()
        seen = play_coordinator(coord, link, tmp_path, until="bye" if serve is ok else "error")
        worker.join(30)
    finally:
        coord.close()
    return code[0], seen, steps


def ok() -> Served:
    return Served({"steps": 3})


def broken() -> Served:
    raise KeyError("a role's own bug")


def test_a_role_joins_serves_says_bye_and_leaves(tmp_path):
    code, seen, steps = run_role(tmp_path, ok)
    assert code == 0
    no_outage = {"outages": 0, "outage_s": 0.0, "queued": 0, "dropped": 0, "resent": 0}
    assert seen["hello"]["role"] == "envserver" and \
        seen["bye"]["stats"] == {"steps": 3, "coordinator_outage": no_outage}
    assert steps == [("admitted", ENVSERVER, "env"), ("serve", True), ("close",)]


def test_a_role_that_fails_tells_the_coordinator_why_and_exits_non_zero(tmp_path):
    code, seen, steps = run_role(tmp_path, broken)
    assert code == 1
    assert "KeyError" in seen["error"]["message"] and "bye" not in seen
    assert steps[-1] == ("close",)
