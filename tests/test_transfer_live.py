"""A live run with a hostile enrolled process: it joins as agent 1, acts at every step like an
honest agent, tries the file transfer during the run, plants links in the shared run
directory, and at the end announces hostile files and serves almost nothing while it keeps
heartbeating. The run completes, summary.json counts and lists every refusal, and nothing is
written outside the run directory."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import zmq
from conftest import read_json, wait_for

from protocols import COORDINATOR, ENVSERVER, Codec, encode, peer_identity
from protocols.envelope import decode_body, decode_header, split

STEPS = 40


class Hostile:
    """Agent 1 of the run, played by hand over raw sockets."""

    def __init__(self, ctx: zmq.Context, coordinator: str) -> None:
        self.codec = Codec()
        self.ctx = ctx
        self.control = self._socket(zmq.DEALER, b"hostile")
        self.control.connect(coordinator)
        self.peer = self._socket(zmq.ROUTER)
        self.peer.bind("tcp://127.0.0.1:*")
        self.env: zmq.Socket | None = None
        self.me = -3
        self.seq = 0
        self.heartbeat_at = 0.0

    def _socket(self, kind: int, identity: bytes | None = None) -> zmq.Socket:
        sock = self.ctx.socket(kind)
        sock.linger = 0
        if identity:
            sock.routing_id = identity
        return sock

    def say(self, kind: str, body: dict, sock: zmq.Socket | None = None,
            dst: int = COORDINATOR) -> None:
        self.seq += 1
        (sock or self.control).send(encode(self.codec, kind, self.me, dst, 0, self.seq, body))

    def receive(self, sock: zmq.Socket) -> tuple[str, dict]:
        head, body = split(sock.recv())
        return decode_header(self.codec, head)["k"], decode_body(self.codec, head, body)

    def tick(self) -> None:
        if time.monotonic() >= self.heartbeat_at:
            self.heartbeat_at = time.monotonic() + 0.3
            self.say("heartbeat", {})

    def join(self) -> None:
        endpoint = self.peer.getsockopt_string(zmq.LAST_ENDPOINT)
        self.say("hello", {"role": "agent", "pid": 1, "host": "h", "endpoint": endpoint,
                           "want_id": 1, "caps": {}})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.control.poll(100):
                kind, body = self.receive(self.control)
                if kind == "welcome":
                    break
        else:
            raise AssertionError("no welcome for the hostile agent")
        self.me = body["id"]
        self.env = self._socket(zmq.DEALER, peer_identity(self.me))
        self.env.connect(body["info"]["env_endpoint"])
        self.say("join", {}, self.env, ENVSERVER)

    def wait_for(self, kind: str) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            self.tick()
            if self.control.poll(100) and self.receive(self.control)[0] == kind:
                return
        raise AssertionError(f"no {kind} for the hostile agent")

    def play(self, run_dir: Path, outside: Path) -> None:
        """Act at every step; in the middle, try the transfer and plant the links."""
        poller = zmq.Poller()
        poller.register(self.control, zmq.POLLIN)
        poller.register(self.env, zmq.POLLIN)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            self.tick()
            ready = dict(poller.poll(100))
            if self.control in ready:
                self.receive(self.control)
            if self.env not in ready:
                continue
            _, step = self.receive(self.env)
            if step["t"] == 10:
                self.say("files", {"files": [[f"logs/agent-{self.me}.log", 3, "0" * 64]]})
                self.say("file_chunk", {"path": f"logs/agent-{self.me}.log", "offset": 0,
                                        "data": b"abc", "crc32": 0})
                plant(run_dir, outside, self.me)
            if step["last"]:
                self.say("bye", {"stats": {"files": "ship", "steps": STEPS}})
                self.wait_for("ack")      # as an honest shipper does: then the end has come
                return
            self.say("act", {"t": step["t"], "a": np.zeros((1, 1), dtype=np.int64)}, self.env,
                     ENVSERVER)
        raise AssertionError("the run did not reach its last step")

    def ship(self, coordinator_alive) -> list[str]:
        """Announce hostile files, serve only the one whose name is a directory there, keep
        heartbeating until the coordinator is gone; returns the paths it was asked for."""
        me = f"agent-{self.me}"
        ten = b"0123456789"
        digest = hashlib.sha256(ten).hexdigest()
        # a name too long for the schema: the guard refuses the whole listing
        self.say("files", {"files": [["logs/" + "a" * 300 + ".log", 5, digest]]})
        self.say("files", {"files": [
            [f"logs/{me}.log\x00x", 5, digest], [f"logs/{me}.npz", 5, digest],
            [f"checkpoints/{me}/step-1.npz", 1 << 62, digest],
            [f"checkpoints/{me}/step-2.npz", 1 << 40, digest],      # 1 TiB
            [f"logs/{me}.out", 10, digest],                         # its .part is a link
            [f"logs/{me}.log", 10, digest],                         # a directory there
            [f"checkpoints/{me}/step-3.npz", 10, digest],           # a linked directory
            [f"checkpoints/{me}.npz", 1 << 20, digest]]})           # never served
        asked = []
        deadline = time.monotonic() + 60
        while coordinator_alive() and time.monotonic() < deadline:
            self.tick()
            if self.control.poll(100):
                kind, body = self.receive(self.control)
                if kind == "file_get":
                    asked.append(body["path"])
                    if body["path"] == f"logs/{me}.log":
                        self.say("file_chunk", {"path": body["path"], "offset": 0,
                                                "data": ten, "crc32": _crc(ten)})
        return asked


def _crc(data: bytes) -> int:
    import zlib
    return zlib.crc32(data)


def plant(run_dir: Path, outside: Path, me: int) -> None:
    """What a process sharing the coordinator's disk could leave in the run directory."""
    (run_dir / "logs" / f"agent-{me}.out.part").symlink_to(outside / "target")
    (run_dir / "logs" / f"agent-{me}.log").mkdir()
    (run_dir / "checkpoints").mkdir(exist_ok=True)
    (run_dir / "checkpoints" / f"agent-{me}").symlink_to(outside, target_is_directory=True)


def test_a_hostile_enrolled_process_cannot_break_or_escape_the_transfer(runs, tmp_path):
    run_dir, outside = tmp_path / "run", tmp_path / "outside"
    outside.mkdir()
    (outside / "target").write_bytes(b"keep me")
    coord = runs.start(["coordinator", "--bind", "tcp://127.0.0.1:*", "--run-dir", str(run_dir),
                        "--n", "2", "--steps", str(STEPS), "--episode-len", "10",
                        "--heartbeat-timeout", "2", "--quiet"], run_dir)
    wait_for(lambda: (run_dir / "coordinator.json").exists(), 30, "the coordinator")
    endpoint = read_json(run_dir / "coordinator.json")["endpoint"]
    ctx = zmq.Context()
    try:
        others = [runs.start(["envserver", "--join", endpoint], cwd=tmp_path),
                  runs.start(["agent", "--connect", endpoint, "--bind", "tcp://127.0.0.1:*"],
                             cwd=tmp_path)]
        hostile = Hostile(ctx, endpoint)
        hostile.join()          # it asks for id 1, the honest agent gets 0
        hostile.play(run_dir, outside)
        asked = hostile.ship(lambda: coord.poll() is None)
    finally:
        ctx.destroy(linger=0)
    out, _ = coord.communicate(timeout=60)
    assert coord.returncode == 0, out.decode()[-3000:]
    for proc in others:
        assert proc.wait(timeout=30) == 0

    s = read_json(run_dir / "summary.json")
    assert s["status"] == "done" and s["steps_done"] == STEPS
    files = s["files"]
    assert files["refusals"] == {"out_of_phase": 2, "not_its_file": 2, "too_large": 2,
                                 "disk_refused": 3, "abandoned": 1}
    assert len(files["refused"]) == 10
    assert s["coordinator"]["rejected"] == {"out_of_phase": 2, "schema_mismatch": 1}
    assert files["shipped"]["agent-1"] == {"files": 0, "bytes": 10}
    assert "logs/agent-1.log" in files["missing"]["agent 1 (pid 1 on h)"]
    assert sorted(set(asked)) == ["checkpoints/agent-1.npz", "logs/agent-1.log"]
    # nothing written outside the run directory, nothing half-written left inside
    assert sorted(p.name for p in outside.iterdir()) == ["target"]
    assert (outside / "target").read_bytes() == b"keep me"
    assert list(run_dir.glob("logs/*.part")) == []     # the planted link too: unlinked
    assert sorted(p.name for p in (run_dir / "logs").glob("agent-0.*")) == ["agent-0.log"]
