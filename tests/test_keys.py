"""Key files, addresses and the run-directory collector: the parts of secure multi-machine runs
that need no second host."""

from __future__ import annotations

import os
import stat
import zlib
from pathlib import Path

import pytest
import zmq

from agentd.runtime.keys import KeysError, load_keys, load_registry, name_of, new_keys, pid_of
from agentd.runtime.netaddr import AddressError, is_loopback, route_to, with_host
from agentd.runtime.runfiles import RunFiles, own_files, sha256_of, write_marker
from agentd.runtime.transport import InsecureBind, Transport
from coordinator.collect import Collector
from protocols import Guard


def test_keys_new_writes_private_secrets_and_a_public_registry(tmp_path, runs):
    proc = runs.start(["keys", "new", str(tmp_path / "k"), "--n", "3"])
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    names = ["coordinator", "envserver", "agent-0", "agent-1", "agent-2"]
    for name in names:
        mode = stat.S_IMODE((tmp_path / "k" / f"{name}.secret").stat().st_mode)
        assert mode == 0o600
        keys = load_keys(tmp_path / "k", name)
        assert zmq.curve_public(keys.identity.secret) == keys.identity.public
        assert keys.pid == pid_of(name) and name_of(keys.pid) == name
    assert list(load_registry(tmp_path / "k").keys) == names
    again = runs.start(["keys", "new", str(tmp_path / "k"), "--n", "3"])
    text, _ = again.communicate(timeout=60)
    assert again.returncode == 2 and b"refusing to overwrite" in text
    show = runs.start(["keys", "show", str(tmp_path / "k")])
    text, _ = show.communicate(timeout=60)
    assert show.returncode == 0 and text.count(b"secret here (0600)") == 5


@pytest.fixture
def keydir(tmp_path: Path) -> Path:
    new_keys(tmp_path / "k", 2)
    return tmp_path / "k"


def _break_secret(keydir: Path, field: str, value: str) -> None:
    path = keydir / "agent-1.secret"
    lines = [f'{field} = "{value}"' if line.startswith(f"{field} =") else line
             for line in path.read_text().splitlines()]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "public.toml").unlink(), "public.toml: missing"),
    (lambda d: (d / "agent-1.secret").unlink(), "agent-1.secret: missing"),
    (lambda d: os.chmod(d / "agent-1.secret", 0o644), "mode 0644 lets other users read"),
    (lambda d: _break_secret(d, "secret", "not-a-key"), "secret key is not a 40-character"),
    (lambda d: _break_secret(d, "public", "~" * 40), "public key is not valid Z85"),
    (lambda d: _break_secret(d, "name", "agent-0"), "holds the key of 'agent-0'"),
    (lambda d: (d / "public.toml").write_text((d / "public.toml").read_text().replace(
        'agent-1 = "', 'agent-1 = "0')), "key of 'agent-1' is not a 40-character"),
    (lambda d: (d / "public.toml").write_text("keys = 3"), "not an agentd key registry"),
    (lambda d: (d / "public.toml").write_text("[keys\n"), "public.toml: not valid TOML"),
])
def test_a_bad_keys_directory_is_an_error_naming_the_file(keydir, damage, message):
    damage(keydir)
    with pytest.raises(KeysError, match=message.replace("(", r"\(")):
        load_keys(keydir, "agent-1")


def test_a_secret_that_does_not_match_its_registry_entry_is_refused(keydir, tmp_path):
    other = new_keys(tmp_path / "other", 2)
    (keydir / "agent-1.secret").write_bytes((tmp_path / "other" / "agent-1.secret").read_bytes())
    os.chmod(keydir / "agent-1.secret", 0o600)
    assert other.public("agent-1") != load_registry(keydir).public("agent-1")
    with pytest.raises(KeysError, match="not the one .*public.toml enrols for 'agent-1'"):
        load_keys(keydir, "agent-1")


@pytest.mark.parametrize("command", [["coordinator", "--n", "2"],
                                     ["agent", "--join", "tcp://127.0.0.1:9", "--id", "1"],
                                     ["envserver", "--join", "tcp://127.0.0.1:9"]])
def test_processes_refuse_to_start_with_bad_keys(runs, keydir, command):
    os.chmod(keydir / "agent-1.secret", 0o640)
    (keydir / "envserver.secret").unlink()
    (keydir / "coordinator.secret").write_text("garbage")
    os.chmod(keydir / "coordinator.secret", 0o600)
    proc = runs.start([*command, "--keys", str(keydir)])
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2, out
    assert out.decode().count(str(keydir)) >= 1 and b"Traceback" not in out


def test_without_keys_only_loopback_may_be_bound():
    for endpoint in ("tcp://127.0.0.1:*", "tcp://[::1]:*", "ipc:///tmp/x", "tcp://localhost:1"):
        assert is_loopback(endpoint)
    for endpoint in ("tcp://0.0.0.0:*", "tcp://*:5555", "tcp://10.1.2.3:1", "tcp://[::]:1",
                     "tcp://myhost:1"):
        assert not is_loopback(endpoint)
    t = Transport(0, Guard(0), None)
    try:   # TEST-NET-1: refused before any socket exists; never bindable here anyway
        with pytest.raises(InsecureBind, match="agentd keys new KEYDIR"):
            t.bind_router("tcp://192.0.2.1:*", "peer")
        assert not t.links
    finally:
        t.close()
    assert route_to("tcp://127.0.0.1:5555") == "127.0.0.1"
    assert with_host("tcp://0.0.0.0:4242", "10.0.0.7") == "tcp://10.0.0.7:4242"
    with pytest.raises(AddressError):
        route_to("ipc:///tmp/x")


# -- the collector: what the coordinator does with shipped files ---------------------------
def _shipping(tmp_path: Path, files: dict[str, bytes]) -> tuple[Path, list[list]]:
    src = tmp_path / "src"
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    manifest = [[p.relative_to(src).as_posix(), p.stat().st_size, sha256_of(p)]
                for p in own_files(src, "agent-2")]
    return src, manifest


def _pump(collector: Collector, src: Path, outbox: list, damage=None) -> None:
    """Answer the collector's chunk requests from src (optionally damaging some)."""
    while outbox:
        key, kind, body = outbox.pop(0)
        if kind != "file_get":
            continue
        data = (src / body["path"]).read_bytes()[body["offset"]:body["offset"] + body["length"]]
        crc = zlib.crc32(data)
        if damage is not None:
            data = damage(body, data)
        collector.on_chunk(key, {**body, "data": data, "crc32": crc})


def test_collector_assembles_verified_files_and_asks_again_for_damaged_chunks(tmp_path):
    rng = __import__("numpy").random.default_rng(0)
    files = {"logs/agent-2.log": rng.bytes(700_000), "logs/agent-2.out": b"",
             "checkpoints/agent-2.npz": rng.bytes(1000),
             "checkpoints/agent-2/step-10.npz": rng.bytes(10)}
    src, manifest = _shipping(tmp_path, files)
    run = tmp_path / "run"
    run.mkdir()
    outbox: list = []
    collector = Collector(run, lambda k, kind, body: outbox.append((k, kind, body)), 1 << 20)
    spoiled: set[int] = set()

    def damage_once(body, data):          # the first chunk at each offset arrives damaged
        if body["path"].endswith(".log") and body["offset"] not in spoiled:
            spoiled.add(body["offset"])
            return data[:-1] + bytes([data[-1] ^ 1])
        return data

    collector.announce("agent-2", manifest)
    _pump(collector, src, outbox, damage_once)
    ship = collector.shipments["agent-2"]
    assert ship.finished and sorted(ship.done) == sorted(files) and ship.failed == []
    for rel, data in files.items():
        assert (run / rel).read_bytes() == data
    assert len(spoiled) == 3                       # 700 kB in 256 kB chunks, each re-asked
    assert not list(run.rglob("*.part"))


def test_collector_refuses_paths_outside_the_process_own_files(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    outbox: list = []
    collector = Collector(run, lambda k, kind, body: outbox.append((k, kind, body)), 1 << 20)
    collector.announce("agent-2", [
        ["logs/agent-3.log", 5, "0" * 64], ["../escape", 5, "0" * 64],
        ["/etc/passwd", 5, "0" * 64], ["checkpoints/agent-2/../../x", 5, "0" * 64],
        ["logs/agent-2.log.part", 5, "0" * 64], "junk"])
    assert len(collector.refused) == 6 and collector.shipments["agent-2"].files == {}
    assert outbox == [("agent-2", "files_done", {"received": [], "failed": []})]


def test_a_file_whose_digest_never_matches_is_given_up_after_two_fetches(tmp_path):
    src, manifest = _shipping(tmp_path, {"logs/agent-2.log": b"abc" * 1000})
    manifest[0][2] = "f" * 64                       # a digest no content has
    run = tmp_path / "run"
    run.mkdir()
    outbox: list = []
    collector = Collector(run, lambda k, kind, body: outbox.append((k, kind, body)), 1 << 20)
    collector.announce("agent-2", manifest)
    _pump(collector, src, outbox)
    ship = collector.shipments["agent-2"]
    assert ship.failed == ["logs/agent-2.log"] and not (run / "logs" / "agent-2.log").exists()
    assert "SHA-256 does not match" in collector.refused[0]


def test_a_process_on_the_coordinator_disk_writes_in_place(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    write_marker(run, "abc")
    shared = RunFiles.choose({"run_dir": str(run), "run_id": "abc"}, "agent-0", None)
    assert shared.shared and shared.root == run and shared.mode == "shared"
    elsewhere = RunFiles.choose({"run_dir": str(run), "run_id": "other-run"}, "agent-0",
                                str(tmp_path / "local"))
    assert not elsewhere.shared and elsewhere.root == tmp_path / "local"
    assert elsewhere.log_path == tmp_path / "local" / "logs" / "agent-0.log"
