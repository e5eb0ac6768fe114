"""Several hosts on one machine: network namespaces joined by a bridge, each with its own disk.

``Network`` makes a switch namespace with a bridge and N host namespaces on veth pairs
(addresses 10.77.0.1..N/24, loopback up in each). Each host also gets a private mount
namespace, held open by a holder process, with a tmpfs mounted on the same path ``disk`` on
every host: a process on host 2 sees host 2's files at that path and nothing of host 1's,
just as on separate machines. Commands run on a host through ``nsenter`` into its holder's
network and mount namespaces. Everything is removed on ``close`` — processes first (by PID,
all of them ours: the namespaces are new), then holders, then namespaces — also after a
failure. Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) and iproute2/util-linux.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

SUBNET = "10.77.0"


def missing_requirements() -> str | None:
    """Why this machine cannot make test hosts, or None if it can."""
    if os.geteuid() != 0:
        return "multi-host tests need root to create network and mount namespaces"
    for tool in ("ip", "unshare", "nsenter"):
        if shutil.which(tool) is None:
            return f"multi-host tests need '{tool}' (iproute2 / util-linux)"
    probe = f"agentd-probe-{os.getpid()}"
    made = _run(["ip", "netns", "add", probe], text=True)
    if made.returncode != 0:
        return f"cannot create a network namespace here: {made.stderr.strip()}"
    _run(["ip", "netns", "delete", probe])
    return None


def _run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run to completion, output captured; the caller reads the exit code."""
    return subprocess.run(args, check=False, capture_output=True, **kwargs)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class Network:
    """A switch and ``n`` hosts; ``host(i)`` (1-based) runs commands there."""

    def __init__(self, n: int, disk: Path) -> None:
        self.tag = f"adt{os.getpid() % 100000}"
        self.n = n
        self.disk = disk
        self.switch = f"{self.tag}-sw"
        self.names = [f"{self.tag}-h{i}" for i in range(1, n + 1)]
        self.holders: list[subprocess.Popen] = []
        self.started: list[subprocess.Popen] = []

    def address(self, i: int) -> str:
        return f"{SUBNET}.{i}"

    def up(self) -> Network:
        self.disk.mkdir(parents=True, exist_ok=True)
        _ip("netns", "add", self.switch)
        _ip("-n", self.switch, "link", "set", "lo", "up")
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")
        for i, ns in enumerate(self.names, start=1):
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", f"p{i}",
                "netns", self.switch)
            _ip("-n", self.switch, "link", "set", f"p{i}", "master", "br0")
            _ip("-n", self.switch, "link", "set", f"p{i}", "up")
            _ip("-n", ns, "addr", "add", f"{self.address(i)}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            self.holders.append(self._holder(ns))
        return self

    def _holder(self, ns: str) -> subprocess.Popen:
        """A process that owns the host's mount namespace, with a tmpfs on ``disk``."""
        script = f"mount -t tmpfs -o size=512m tmpfs '{self.disk}' && echo ready && " \
                 "exec sleep 100000"
        proc = subprocess.Popen(["ip", "netns", "exec", ns, "unshare", "--mount",
                                 "--propagation", "private", "sh", "-c", script],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        line = proc.stdout.readline() if proc.stdout else b""
        if line.strip() != b"ready":
            raise RuntimeError(f"host {ns} could not mount its disk: "
                               f"{proc.stderr.read().decode() if proc.stderr else ''}")
        return proc

    def _enter(self, i: int, cwd: Path | None) -> list[str]:
        # cd after entering: nsenter's --wd changes directory before it enters the mount
        # namespace, which leaves the process on the directory *under* the host's tmpfs.
        return ["nsenter", "-t", str(self.holders[i - 1].pid), "-m", "-n", "--", "sh", "-c",
                'cd "$0" && exec "$@"', str(cwd or self.disk)]

    def start(self, i: int, args: list[str], cwd: Path | None = None,
              env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start a command on host i (in the background), output captured."""
        proc = subprocess.Popen([*self._enter(i, cwd), *args], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        self.started.append(proc)
        return proc

    def agentd(self, i: int, *args: str, env: dict[str, str] | None = None
               ) -> subprocess.Popen:
        return self.start(i, [sys.executable, "-m", "agentd", *args], env=env)

    def run(self, i: int, args: list[str], timeout: float = 120,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
        """Run a command on host i to completion."""
        return _run([*self._enter(i, cwd), *args], text=True, timeout=timeout)

    def read(self, i: int, path: Path) -> bytes:
        """A file as host i sees it."""
        res = _run([*self._enter(i, None), "cat", str(path)], timeout=60)
        if res.returncode != 0:
            raise FileNotFoundError(f"host {i}: {path}: {res.stderr.decode().strip()}")
        return res.stdout

    def files(self, i: int, root: Path) -> list[str]:
        """Every file under root on host i, relative, sorted."""
        res = self.run(i, ["find", str(root), "-type", "f"])
        return sorted(str(Path(p).relative_to(root)) for p in res.stdout.split())

    def put(self, i: int, src: Path, dst: Path) -> None:
        """Copy a file from the test's disk onto host i's disk (mode kept)."""
        res = self.run(i, ["sh", "-c", f"mkdir -p '{dst.parent}' && cp -p '{src}' '{dst}'"])
        if res.returncode != 0:
            raise RuntimeError(f"host {i}: cannot copy {src}: {res.stderr}")

    def in_switch(self, args: list[str]) -> subprocess.Popen:
        """Start a command in the switch's namespace (e.g. a capture on br0)."""
        proc = subprocess.Popen(["ip", "netns", "exec", self.switch, *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.started.append(proc)
        return proc

    def ns(self, i: int) -> str:
        return self.names[i - 1]

    def close(self) -> None:
        for proc in self.started:
            _end(proc)
        for ns in [*self.names, self.switch]:   # anything else left in our namespaces
            pids = _run(["ip", "netns", "pids", ns], text=True)
            holder_pids = {h.pid for h in self.holders}
            for pid in pids.stdout.split():
                if int(pid) not in holder_pids:
                    _kill(int(pid))
        for holder in self.holders:
            _end(holder)
        for ns in [*self.names, self.switch]:
            _run(["ip", "netns", "delete", ns])


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _end(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def wait_all(procs: list[subprocess.Popen], timeout: float) -> list[tuple[int, str]]:
    """Wait for every process; (exit code, output) each (-9 and the output so far on timeout)."""
    deadline = time.monotonic() + timeout
    out = []
    for proc in procs:
        try:
            text, _ = proc.communicate(timeout=max(0.1, deadline - time.monotonic()))
            out.append((proc.returncode, text.decode(errors="replace")))
        except subprocess.TimeoutExpired:
            proc.kill()
            text, _ = proc.communicate()
            out.append((-9, text.decode(errors="replace")))
    return out


def sniff(out_path: str) -> None:
    """Capture every frame on every interface of this namespace into out_path (raw bytes,
    length-prefixed) until SIGTERM. Run inside the switch namespace: it sees all host links."""
    import socket
    import struct

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    sock.settimeout(0.1)
    with open(out_path, "wb") as out:
        print("capturing", flush=True)
        while not stop:
            try:
                frame = sock.recv(1 << 16)
            except TimeoutError:
                continue
            out.write(struct.pack("<I", len(frame)) + frame)
    sock.close()
