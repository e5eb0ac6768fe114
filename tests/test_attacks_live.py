"""The attacks of issue 30, live: one real run on loopback (coordinator, env server and an
honest agent as processes) with agent 1 played by hand by an attacker holding its place, and a
stranger who only knows the endpoints. The stranger sends the frames that once killed the
coordinator and the env server; agent 1 sends nested fields of the wrong type, actions of the
wrong shape, dtype and range, a file listing during the run, and pokes the env server's local
socket; at the end it ships an oversize file, a file whose partial name is a planted link, and
a pickle with a ``__reduce__`` payload as its recovery checkpoint, with a log whose restart
record names it. The run completes, summary.json is written and counts every rejection,
nothing is written outside the run directory, and neither the run nor a replay on the
coordinator's host runs the payload."""

from __future__ import annotations

import hashlib
import os
import pickle
import socket
import stat
import struct
import subprocess
import time
import zlib
from pathlib import Path
from types import SimpleNamespace

import msgpack
import numpy as np
import pytest
import zmq
from conftest import AGENTD, Runs, read_json, send_raw, wait_for
from test_transfer_live import Hostile

from agentd.runtime.msglog import MessageLog
from protocols import COORDINATOR, ENVSERVER, Codec, peer_identity
from protocols.envelope import VERSION, decode_body, decode_header, split
from protocols.fixed import HEAD

STEPS = 40


class _Payload:
    """Unpickling it creates ``marker``: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def _raw(header: dict, body: object) -> bytes:
    head = Codec().pack(header)
    return struct.pack("<H", len(head)) + head + msgpack.packb(body)


def _stranger_frames() -> tuple[list[list[bytes]], list[list[bytes]]]:
    """The three reproducers that ended a process (to the coordinator; to the env server)."""
    head = {"v": VERSION, "k": "heartbeat", "s": 0, "d": COORDINATOR, "t": 0, "q": 1}
    to_coordinator = [
        [_raw({**head, "v": np.array([1, 1])}, {})],           # 'truth value ambiguous'
        [_raw({**head, "v": 1.0}, {})],                         # 1.0 passed as version 1
        [_raw({**head, "k": "metrics"}, {"step": 1, "scalars": {}, 0: 1, "x": 1})],
    ]
    dims = struct.pack("<BB2Q", 7, 2, 0, 1 << 63)               # 0 x 2**63 elements
    fixed_act = HEAD.pack(0xFFFF, 1, 1, 0, ENVSERVER, 0, 0) + struct.pack("<q", 0) + dims
    to_env = [[fixed_act], [_raw({**head, "d": ENVSERVER, "k": "act"},
                                 {"t": 0, "a": msgpack.ExtType(1, dims)})]]
    return to_coordinator, to_env


class Attacker(Hostile):
    """Agent 1, played by hand: honest enough to keep the run going, hostile otherwise."""

    def join(self) -> None:
        endpoint = self.peer.getsockopt_string(zmq.LAST_ENDPOINT)
        self.say("hello", {"role": "agent", "pid": 1, "host": "h", "endpoint": endpoint,
                           "want_id": 1, "caps": {}})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.control.poll(100):
                frame = self.control.recv()
                head, body = split(frame)
                if decode_header(self.codec, head)["k"] == "welcome":
                    self.welcome_frame = frame
                    self.info = decode_body(self.codec, head, body)["info"]
                    self.me = decode_body(self.codec, head, body)["id"]
                    break
        else:
            raise AssertionError("no welcome for the attacker")
        self.env = self._socket(zmq.DEALER, peer_identity(self.me))
        self.env.connect(self.info["env_endpoint"])
        self.say("join", {}, self.env, ENVSERVER)

    def act(self, t: int, a: np.ndarray) -> None:
        self.say("act", {"t": t, "a": a}, self.env, ENVSERVER)

    def play(self, endpoints: dict[str, str]) -> list[socket.socket]:
        """Act at every step; attack at steps 2 to 5. Returns the local connections it holds
        open (silent) until the end."""
        held: list[socket.socket] = []
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
            t = step["t"]
            if t == 2:       # a stranger, with the endpoints only (any local user can)
                to_coordinator, to_env = _stranger_frames()
                send_raw(endpoints["coordinator"], b"stranger", to_coordinator)
                send_raw(endpoints["env"], b"stranger", to_env)
            elif t == 3:     # an enrolled key holder: nested fields of the wrong type
                self.say("security", {"counts": {"peer": [1, 2]}, "peers": []})
                self.say("metrics", {"step": 3, "scalars": {"loss": b"\x00bytes"}})
                self.say("files", {"files": [[f"logs/agent-{self.me}.log", 3, "0" * 64]]})
            elif t == 4:     # actions of the wrong shape, dtype and range: then a good one
                self.act(t, np.zeros((1, 2), dtype=np.int64))
                self.act(t, np.zeros((1, 1), dtype=np.float64))
                self.act(t, np.full((1, 1), 99, dtype=np.int64))
            elif t == 5 and self.info.get("env_local"):
                held = self.poke_local(self.info["env_local"]["path"])
            if step["last"]:
                self.say("bye", {"stats": {"files": "ship", "steps": STEPS}})
                self.wait_for("ack")
                return held
            self.act(t, np.zeros((1, 1), dtype=np.int64))
        raise AssertionError("the run did not reach its last step")

    @staticmethod
    def poke_local(path: str) -> list[socket.socket]:
        """A half token then close; a connection that never sends (held to the end)."""
        short = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        short.connect(path)
        short.sendall(b"half")
        short.close()
        silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        silent.connect(path)
        return [silent]

    def ship(self, files: dict[str, bytes], announce: list[list], alive) -> list[str]:
        """Announce ``announce``, serve what ``files`` holds, until the coordinator is gone."""
        self.say("files", {"files": announce})
        asked = []
        deadline = time.monotonic() + 60
        while alive() and time.monotonic() < deadline:
            self.tick()
            if self.control.poll(100):
                kind, body = self.receive(self.control)
                if kind == "file_get" and body["path"] in files:
                    asked.append(body["path"])
                    data = files[body["path"]][body["offset"]:body["offset"] + body["length"]]
                    self.say("file_chunk", {"path": body["path"], "offset": body["offset"],
                                            "data": data, "crc32": zlib.crc32(data)})
        return asked


def _forged_log(where: Path, welcome_frame: bytes, checkpoint: str, sha256: str) -> bytes:
    """Agent 1's message log as the attacker writes it: its welcome, then a restart record
    naming the checkpoint it ships."""
    path = where / "agent-1.log"
    log = MessageLog("agent-1", path)
    log.record("in", "control", [welcome_frame])
    log.note("restart", {"checkpoint": checkpoint, "sha256": sha256, "step": 5,
                         "env_step": 5})
    log.close()
    return path.read_bytes()


@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("attacks")
    run_dir, outside, own = tmp / "run", tmp / "outside", tmp / "attacker"
    outside.mkdir()
    own.mkdir()
    (outside / "target").write_bytes(b"keep me")
    marker = outside / "code-ran"
    runs = Runs()
    ctx = zmq.Context()
    try:
        coord = runs.start(["coordinator", "--bind", "tcp://127.0.0.1:*", "--run-dir",
                            str(run_dir), "--n", "2", "--steps", str(STEPS), "--episode-len",
                            "10", "--heartbeat-timeout", "2", "--quiet"], run_dir)
        wait_for(lambda: (run_dir / "coordinator.json").exists(), 30, "the coordinator")
        endpoint = read_json(run_dir / "coordinator.json")["endpoint"]
        others = [runs.start(["envserver", "--join", endpoint], cwd=tmp),
                  runs.start(["agent", "--connect", endpoint, "--bind", "tcp://127.0.0.1:*"],
                             cwd=tmp)]
        attacker = Attacker(ctx, endpoint)
        attacker.join()
        held = attacker.play({"coordinator": endpoint, "env": attacker.info["env_endpoint"]})
        # the end: a pickle as its recovery checkpoint, named by a forged restart record;
        # an oversize file; a file whose partial name is a link planted in the shared run dir
        payload = pickle.dumps({"format": "agentd-recovery", "core": _Payload(marker)})
        ckpt = "checkpoints/agent-1/restored-5.npz"
        files = {ckpt: payload, "logs/agent-1.log": _forged_log(
            own, attacker.welcome_frame, ckpt, hashlib.sha256(payload).hexdigest()),
            "logs/agent-1.out": b"0123456789"}
        (run_dir / "logs" / "agent-1.out.part").symlink_to(outside / "target")
        announce = [[p, len(d), hashlib.sha256(d).hexdigest()] for p, d in files.items()]
        announce.append(["checkpoints/agent-1/step-1.npz", 1 << 40, "0" * 64])    # 1 TiB
        asked = attacker.ship(files, announce, lambda: coord.poll() is None)
        out, _ = coord.communicate(timeout=60)
        codes = [p.wait(timeout=30) for p in others]
        for s in held:
            s.close()
        yield SimpleNamespace(run_dir=run_dir, outside=outside, marker=marker, tmp=tmp,
                              coord_code=coord.returncode, coord_out=out.decode(),
                              codes=codes, asked=asked, welcome=attacker.welcome_frame,
                              local=bool(attacker.info.get("env_local")))
    finally:
        ctx.destroy(linger=0)
        runs.cleanup()


def test_the_run_completes_and_writes_its_summary(attacked):
    assert attacked.coord_code == 0, attacked.coord_out[-3000:]
    assert attacked.codes == [0, 0]
    s = read_json(attacked.run_dir / "summary.json")
    assert s["status"] == "done" and s["steps_done"] == STEPS


def test_every_attack_is_a_counted_rejection(attacked):
    s = read_json(attacked.run_dir / "summary.json")
    coordinator = s["coordinator"]["rejected"]
    # the stranger's array version and 1.0 version; its unsortable keys; the attacker's
    # security counts of the wrong shape and bytes in metrics; its listing during the run
    assert coordinator.get("malformed") == 2, coordinator
    assert coordinator.get("schema_mismatch") == 3, coordinator
    assert coordinator.get("out_of_phase") == 1, coordinator
    env = s["envserver"]["rejected"]
    assert env.get("malformed") == 2, env              # the 0 x 2**63 arrays, both layouts
    assert {k: env.get(k) for k in ("bad_action_shape", "bad_action_dtype",
                                    "bad_action_value")} == dict.fromkeys(
        ("bad_action_shape", "bad_action_dtype", "bad_action_value"), 1), env
    if attacked.local:           # the half token; the silent connection costs nothing
        assert env.get("local_no_token", 0) >= 1, env
    refusals = s["files"]["refusals"]
    assert refusals.get("too_large") == 1 and refusals.get("disk_refused") == 1, refusals


def test_nothing_is_written_outside_the_run_directory_and_no_code_ran(attacked):
    assert sorted(p.name for p in attacked.outside.iterdir()) == ["target"]
    assert (attacked.outside / "target").read_bytes() == b"keep me"
    assert not attacked.marker.exists()
    run_dir = attacked.run_dir
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
    for log in (run_dir / "logs").glob("*.log"):
        assert stat.S_IMODE(log.stat().st_mode) == 0o600, log
    # the pickle did arrive (its name is one agent 1 may ship): it is data on disk, no more
    assert (run_dir / "checkpoints" / "agent-1" / "restored-5.npz").read_bytes()[:1] == b"\x80"


def _replay(attacked, agent: int) -> subprocess.CompletedProcess:
    return subprocess.run([*AGENTD, "replay", str(attacked.run_dir), "--agent", str(agent)],
                          capture_output=True, text=True, timeout=120, cwd=attacked.tmp,
                          check=False)


def test_a_replay_on_the_coordinators_host_refuses_the_shipped_pickle(attacked):
    run_dir = attacked.run_dir
    out = _replay(attacked, 1)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "is a pickle" in out.stderr and "never loaded" in out.stderr, out.stderr
    # the same record naming the pickle by its old name, or a path outside the run: refused
    log = run_dir / "logs" / "agent-1.log"
    for name in ("checkpoints/agent-1/restored-4.pkl", "../outside/target"):
        log.unlink()
        _forged_log(log.parent, attacked.welcome, name, "0" * 64)
        out = _replay(attacked, 1)
        assert out.returncode == 2 and "not a restored recovery checkpoint" in out.stderr, \
            out.stderr
    assert not attacked.marker.exists()
    # the honest agent replays exactly, as ever
    out = _replay(attacked, 0)
    assert out.returncode == 0, out.stdout + out.stderr
