"""Ray backend for ``agentd launch --backend ray``: Ray places the processes, agentd keeps its own
data plane.

Ray decides *where* each process runs (a placement group over the cluster's nodes) and keeps
the process's host alive; everything between the processes stays agentd's: ZeroMQ sockets bound
on each node's own IP, CURVE keys, the guard, the message logs and the run directory assembled
on the coordinator's host. Each agentd process runs as a child of one long-lived Ray actor (a
``ProcessHost``), exactly as ``agentd agent --join`` would run it by hand on that node; the
actor only starts it, reports on it and stops it.

* The coordinator's actor is pinned to the node this command runs on, so the run directory is
  assembled where the user is (as with a LAN run, it is on the coordinator's host).
* The env server and the agents take one bundle each of a placement group (SPREAD by default).
* Secure by default: a throw-away key directory is made in the run directory and each actor
  receives only its own secret and the public registry. Those travel over Ray's own channels,
  which are not encrypted unless the cluster is set up with TLS: with nodes beyond loopback
  and no ``RAY_USE_TLS``, the launcher warns before it sends them, and placement.json records
  how they travelled (``key_delivery``). ``--insecure`` opts out of CURVE on purpose and is
  recorded like any insecure run.

It stays whole past ~300 lines: placement, key delivery and the actors' lifecycle are one
sequence, each step needing the one before.
"""

from __future__ import annotations

import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentd.config import RunConfig
from agentd.configfile import to_toml
from agentd.launch.precheck import precheck
from agentd.launch.supervisor import COORDINATOR_RESTARTS, LaunchError, Supervisor, Unreachable
from agentd.plan import RunPlan, plan
from agentd.runtime.keys import REGISTRY_FILE, name_of, new_keys
from agentd.runtime.netaddr import is_loopback
from agentd.runtime.runfiles import MARKER

STRATEGIES = ("SPREAD", "STRICT_SPREAD", "PACK", "STRICT_PACK")
INSTALL_HINT = "pip install 'agentd[ray]'"


@dataclass
class RayOptions:
    """How the run is placed on the cluster."""

    address: str | None = None        # None: RAY_ADDRESS if set, else a one-node cluster on loopback
    strategy: str = "SPREAD"          # placement-group strategy for the env server and the agents
    cpus: float = 1.0                 # CPUs reserved per process (fractions allowed)
    timeout: float = 60.0             # seconds to wait for the placement group, and for the coordinator
    workdir: str | None = None        # per node: where actors keep private files (default: temp dir)


def import_ray() -> Any:
    """Ray, or a LaunchError that says how to install it."""
    try:
        import ray
    except ImportError:
        raise LaunchError(f"--backend ray needs Ray, which is not installed: {INSTALL_HINT}") \
            from None
    return ray


def key_delivery(secure: bool, node_ips: list[str], environ: dict[str, str]) -> str:
    """How the actors' secret key files travel to them over Ray's own channels:
    ``none`` (a plaintext run sends no keys), ``this-machine`` (every node of the cluster is on
    loopback: the files never leave the machine), ``ray-tls`` (Ray's channels run TLS:
    ``RAY_USE_TLS``) or ``ray-plaintext`` (they cross the network unencrypted, once, at start:
    the launcher says so before it sends them)."""
    if not secure:
        return "none"
    if node_ips and all(is_loopback(f"tcp://{ip}:0") for ip in node_ips):
        return "this-machine"
    if environ.get("RAY_USE_TLS", "").strip().lower() in ("1", "true"):
        return "ray-tls"
    return "ray-plaintext"


KEY_WARNING = ("agentd: warning: Ray's channels on this cluster are not encrypted "
               "(RAY_USE_TLS is not set) and it has nodes beyond loopback ({nodes}): each "
               "process's secret key file crosses the network in plaintext once, as its actor "
               "starts. agentd's own traffic stays CURVE-encrypted, but whoever reads the "
               "cluster's network then can read those keys. Set up the cluster with Ray's TLS, "
               "or run where the network is trusted.")


def check_options(opts: RayOptions) -> None:
    if opts.strategy not in STRATEGIES:
        raise LaunchError(f"--ray-strategy {opts.strategy!r}: expected one of "
                          f"{', '.join(STRATEGIES)}")
    if not opts.cpus > 0:
        raise LaunchError(f"--ray-cpus {opts.cpus}: expected a number of CPUs > 0")
    if not opts.timeout > 0:
        raise LaunchError(f"--ray-timeout {opts.timeout}: expected seconds > 0")


class RayLauncher:
    """Owns the Ray actors of one run, and the placement group they live in."""

    def __init__(self, config: RunConfig, opts: RayOptions, quiet: bool = False,
                 secure: bool = True, run_plan: RunPlan | None = None,
                 catch_signals: bool = False) -> None:
        check_options(opts)
        self.config, self.opts, self.quiet, self.secure = config, opts, quiet, secure
        self.catch_signals = catch_signals     # True (the CLI): Ctrl-C stops the run in order
        # which processes to place, checked before Ray starts (a ConfigError: no actor, no
        # run directory)
        self.plan = precheck(config, run_plan or plan(config))
        self.run_dir = Path(config.run_dir).absolute()
        self.address = opts.address or os.environ.get("RAY_ADDRESS")
        if self.address is None:
            # Ray would put a one-node cluster on the host's primary address; this setting (read
            # when Ray is imported, here and in every process it starts) keeps it on loopback.
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        self.ray = import_ray()
        self.actors: list[tuple[str, Any]] = []
        self.tag = uuid.uuid4().hex[:12]             # names the actors' directories on their nodes
        self.supervisor = Supervisor(self.run_dir, config.max_restarts, tick=0.1, look_every=0.5)
        self.group: Any = None
        self._started_ray = False
        self.key_delivery = "none" if not secure else "unknown"

    # -- the run -----------------------------------------------------------------------------

    def run(self) -> int:
        (self.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        self.config.run_dir = str(self.run_dir)
        config_path = self.run_dir / "config.toml"
        config_path.write_text(to_toml(self.config))
        if self.catch_signals:
            self.supervisor.catch_signals()
        try:
            self._connect()
            security = self._key_files()
            self._say_how_keys_travel()
            coord = self._start_coordinator(config_path, security)
            endpoint = self.supervisor.wait_endpoint(
                coord, self.opts.timeout, 0.05, self.run_dir / "logs" / "coordinator.out")
            run_id = (self.run_dir / MARKER).read_text().strip()
            bundles = self._place(self.plan.n_procs + 1)
            names = ["envserver"] + [name_of(i) for i in range(self.plan.n_procs)]
            for index, name in enumerate(names):
                self._start_member(name, index, bundles, endpoint, run_id, security)
            self._record_placement()
            echo = _Tail(self.run_dir / "logs" / "coordinator.out")   # it runs on this node
            return self.supervisor.wait(coord, echo.flush)
        finally:
            self.cleanup()

    def _connect(self) -> None:
        ray = self.ray
        if ray.is_initialized():
            return
        address = self.address
        if address is None:     # no cluster named: a one-node cluster on this machine, for this run
            ray.init(log_to_driver=False, include_dashboard=False,
                     _node_ip_address="127.0.0.1")
            self._started_ray = True
        else:
            ray.init(address=address, log_to_driver=False)
        if not self.quiet:
            nodes = [n for n in ray.nodes() if n.get("Alive")]
            print(f"ray: {len(nodes)} node(s), "
                  f"{ray.cluster_resources().get('CPU', 0):g} CPUs; "
                  f"placement {self.opts.strategy}, {self.opts.cpus:g} CPU per process",
                  flush=True)

    def _say_how_keys_travel(self) -> None:
        """Before any key leaves: warn (on stderr, also with --quiet) if the keys will cross
        the network unencrypted; placement.json records how they travelled."""
        ips = sorted({n["NodeManagerAddress"] for n in self.ray.nodes() if n.get("Alive")})
        self.key_delivery = key_delivery(self.secure, ips, dict(os.environ))
        if self.key_delivery == "ray-plaintext":
            print(KEY_WARNING.format(nodes=", ".join(ips)), file=sys.stderr, flush=True)

    def _key_files(self) -> dict[str, dict[str, tuple[str, int]]] | None:
        """Per process, the key files its actor writes for it; None for a plaintext run."""
        if not self.secure:
            return None
        keys = self.run_dir / "keys"
        new_keys(keys, self.plan.n_procs)
        registry = (keys / REGISTRY_FILE).read_text()
        files = {}
        for secret in keys.glob("*.secret"):
            name = secret.name.removesuffix(".secret")
            files[name] = {REGISTRY_FILE: (registry, 0o644), secret.name: (secret.read_text(), 0o600)}
        return files

    def _flags(self, security: dict | None) -> list[str]:
        return ["--keys", "{keys}"] if security is not None else ["--insecure"]

    def _start_coordinator(self, config_path: Path, security: dict | None) -> Any:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = self.ray.get_runtime_context().get_node_id()
        argv = ["coordinator", "--config", str(config_path), "--bind", "tcp://{ip}:*",
                *self._flags(security), *(["--quiet"] if self.quiet else [])]
        # a coordinator that dies (its process under the actor, or the actor) is resumed from
        # its journal: the supervisor restarts the process, Ray the actor
        again = ["coordinator", "--resume", str(self.run_dir), *self._flags(security),
                 *(["--quiet"] if self.quiet else [])]
        return self._actor("coordinator", security, NodeAffinitySchedulingStrategy(here, soft=False),
                           argv, out=str(self.run_dir / "logs" / "coordinator.out"),
                           run=None, cwd=os.getcwd(),
                           restarts=max(self.config.max_restarts, COORDINATOR_RESTARTS),
                           again=again)

    def _start_member(self, name: str, index: int, group: Any, endpoint: str, run_id: str,
                      security: dict | None) -> None:
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        strategy = PlacementGroupSchedulingStrategy(placement_group=group,
                                                    placement_group_bundle_index=index)
        role = ["envserver"] if name == "envserver" else ["agent", "--id", name.split("-")[1]]
        # A member waits for its welcome as long as the coordinator waits for everyone to join
        # (many actors start slowly), not the by-hand default.
        argv = [*role, "--join", endpoint, "--bind", "tcp://{ip}:*", *self._flags(security),
                "--run-dir", "{home}/run",
                "--join-timeout",
                f"{max(self.config.join_timeout + 30.0, self.config.coordinator_timeout):g}"]
        # Ray restarts a lost actor (its process with it) up to max_restarts times; a process
        # that dies under a live actor is restarted by the supervisor. The coordinator counts both.
        self._actor(name, security, strategy, argv, out=None, run=(str(self.run_dir), run_id),
                    cwd=None, restarts=self.config.max_restarts)

    def _actor(self, name: str, security: dict | None, strategy: Any, argv: list[str],
               out: str | None, run: tuple[str, str] | None, cwd: str | None,
               restarts: int, again: list[str] | None = None) -> Any:
        actor_cls = process_host_class(self.ray)
        files = (security or {}).get(name, {})
        host = actor_cls.options(num_cpus=self.opts.cpus, max_restarts=restarts,
                                 scheduling_strategy=strategy).remote(
            name, files, self.opts.workdir, self.tag, argv, out, run, cwd, again)
        self.ray.get(host.poll.remote())     # started (or the error of its constructor)
        self.actors.append((name, host))
        member = ActorMember(name, host, self.ray, patient=name == "coordinator")
        member.resumable = again is not None
        self.supervisor.members.append(member)
        return member

    def _record_placement(self) -> None:
        """RUN/placement.json: which node (IP and Ray node id) each process runs on."""
        import json

        where = self.ray.get([host.where.remote() for _, host in self.actors])
        record = {"backend": "ray", "strategy": self.opts.strategy, "cpus": self.opts.cpus,
                  "key_delivery": self.key_delivery,
                  "processes": {name: w for (name, _), w in zip(self.actors, where, strict=True)}}
        (self.run_dir / "placement.json").write_text(json.dumps(record, indent=2) + "\n")
        if not self.quiet:
            nodes = sorted({w["ip"] for w in where})
            print(f"ray: {len(self.actors)} processes on {len(nodes)} node(s): "
                  f"{', '.join(nodes)}", flush=True)

    def _place(self, count: int) -> Any:
        from ray.util.placement_group import placement_group

        self.group = placement_group([{"CPU": self.opts.cpus}] * count,
                                     strategy=self.opts.strategy)
        ready, _ = self.ray.wait([self.group.ready()], timeout=self.opts.timeout)
        if not ready:
            total = self.ray.cluster_resources().get("CPU", 0)
            raise LaunchError(
                f"Ray could not place {count} processes (env server + agents) with "
                f"{self.opts.cpus:g} CPU each, strategy {self.opts.strategy}, within "
                f"{self.opts.timeout:.0f} s (the cluster has {total:g} CPUs in "
                f"{len(self.ray.nodes())} node(s)); lower --ray-cpus or use --ray-strategy PACK")
        return self.group

    def cleanup(self, grace: float = 3.0) -> None:
        """Stop every process this run started (the supervisor's grace, SIGTERM, SIGKILL;
        then each actor confirms its own and deletes its keys), then the actors and the
        placement group."""
        ray = self.ray
        try:
            self.supervisor.cleanup(grace, poll_s=0.1)   # as a local run: grace, TERM, KILL
        except Exception as exc:   # noqa: BLE001 - the actors' own stop below still runs
            print(f"ray: could not stop every process from here ({exc})", file=sys.stderr)
        stops = [host.stop.remote(grace) for _, host in self.actors]
        try:
            ray.get(stops, timeout=grace + 10.0)
        except Exception as exc:   # noqa: BLE001 - a lost actor's process died with its node
            print(f"ray: not every actor confirmed its process stopped ({exc})", file=sys.stderr)
        for _, host in self.actors:
            ray.kill(host)
        if self.group is not None:
            from ray.util.placement_group import remove_placement_group

            remove_placement_group(self.group)
        if self._started_ray:
            ray.shutdown()


class ActorMember:
    """A process under its Ray actor, as the supervisor sees it (``Member``). A lost actor is
    Ray's to restart, and an unreachable one is skipped -- except the coordinator's
    (``patient``): it is waited for (also while Ray restarts its actor, which resumes it from
    its journal), and losing it for good ends the launch with Ray's error."""

    def __init__(self, name: str, host: Any, ray: Any, patient: bool = False) -> None:
        self.name, self.host, self.ray, self.patient = name, host, ray, patient
        self.resumable = False      # restarted with --resume (the coordinator)

    def poll(self) -> tuple[int | None, int | None]:
        from ray.exceptions import GetTimeoutError, RayActorError

        if self.patient:
            from ray.exceptions import ActorUnavailableError

            try:
                pid, code, _ = self.ray.get(self.host.poll.remote())
            except ActorUnavailableError:     # Ray is restarting it: still running, for us
                return None, None
            return pid, code
        try:
            pid, code, _ = self.ray.get(self.host.poll.remote(), timeout=5.0)
        except (RayActorError, GetTimeoutError) as exc:
            raise Unreachable(str(exc)) from None
        return pid, code

    def restart(self) -> None:
        self.host.restart.remote()

    def send_signal(self, signum: int) -> None:
        """Best effort: an actor that is gone took its process with it."""
        from ray.exceptions import GetTimeoutError, RayActorError

        try:
            self.ray.get(self.host.send_signal.remote(signum), timeout=5.0)
        except (RayActorError, GetTimeoutError):
            pass


class _Tail:
    """Echo what a growing file gains, line-buffered as the coordinator wrote it."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset = path, 0

    def flush(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return
        self.offset += len(data)
        if data:
            sys.stdout.write(data.decode(errors="replace"))
            sys.stdout.flush()


_HOST_CLASS: Any = None


def process_host_class(ray: Any) -> Any:
    """The Ray actor class, made once (defining it needs Ray imported)."""
    global _HOST_CLASS
    if _HOST_CLASS is None:
        from agentd.launch.ray_host import ProcessHost

        _HOST_CLASS = ray.remote(ProcessHost)
    return _HOST_CLASS
