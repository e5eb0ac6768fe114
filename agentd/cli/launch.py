"""``agentd launch``: run a whole experiment on this machine (coordinator, env server, agents)."""

from __future__ import annotations

import argparse
import sys

from agentd.cli.common import add_run_flags, config_from_args
from agentd.config import ConfigError, RunConfig

RAY_FLAGS = ("ray_address", "ray_strategy", "ray_cpus", "ray_timeout", "ray_workdir")


def add_backend_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=("local", "ray", "inprocess"), default="local",
                        help="local: processes on this machine (default); ray: actors placed "
                             "on a Ray cluster (pip install 'agentd[ray]'), secure by default; "
                             "inprocess: the same run (plan, learners, message order) in one "
                             "process, no sockets")
    parser.add_argument("--ray-address", default=None, metavar="HOST:PORT",
                        help="Ray cluster to join (default: RAY_ADDRESS, else a one-node "
                             "cluster on this machine, on loopback)")
    parser.add_argument("--ray-strategy", default=None,
                        help="placement-group strategy: SPREAD (default), STRICT_SPREAD, PACK, "
                             "STRICT_PACK")
    parser.add_argument("--ray-cpus", type=float, default=None, metavar="C",
                        help="CPUs reserved per process (default 1; fractions allowed)")
    parser.add_argument("--ray-timeout", type=float, default=None, metavar="S",
                        help="seconds to wait for the placement and for the coordinator "
                             "(default 60)")
    parser.add_argument("--ray-workdir", default=None, metavar="DIR",
                        help="directory on each node for the processes' private files (keys, "
                             "files not yet shipped); default the node's temporary directory")


def _launch_on_ray(config: RunConfig, args: argparse.Namespace) -> int:
    from agentd.launch.ray_backend import RayLauncher, RayOptions

    opts = RayOptions(address=args.ray_address, strategy=args.ray_strategy or "SPREAD",
                      cpus=1.0 if args.ray_cpus is None else args.ray_cpus,
                      timeout=60.0 if args.ray_timeout is None else args.ray_timeout,
                      workdir=args.ray_workdir)
    return RayLauncher(config, opts, quiet=args.quiet, secure=not args.insecure,
                       catch_signals=True).run()


def _launch_in_process(config: RunConfig) -> int:
    from agentd.launch.inprocess import InProcessError, launch_in_process

    try:
        return launch_in_process(config)
    except InProcessError as exc:
        print(f"agentd launch: {exc}", file=sys.stderr)
        return 2


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="agentd launch", description=__doc__)
    add_run_flags(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--pin-cpus", action="store_true",
                        help="pin each process to one CPU, round-robin (faster on a dedicated "
                             "machine; may hurt when other work shares the CPUs)")
    parser.add_argument("--secure", action="store_true",
                        help="CURVE on every link, with a throw-away key directory made inside "
                             "the run directory (RUN/keys)")
    parser.add_argument("--insecure", action="store_true",
                        help="allow plaintext beyond loopback (with --host), on purpose")
    add_backend_flags(parser)
    args = parser.parse_args(argv)
    if args.secure and args.insecure:
        parser.error("--secure and --insecure contradict each other")
    if args.backend == "local" and any(getattr(args, f) is not None for f in RAY_FLAGS):
        parser.error("--ray-* flags need --backend ray")
    if args.backend == "ray" and args.pin_cpus:
        parser.error("--pin-cpus is for --backend local (Ray places the processes)")
    if args.backend == "inprocess" and (args.pin_cpus or args.secure or args.insecure):
        parser.error("--pin-cpus, --secure and --insecure are for processes; --backend "
                     "inprocess runs one process without sockets")
    config = config_from_args(args)
    from agentd.launch.local import Launcher, LaunchError

    try:
        if args.backend == "inprocess":
            return _launch_in_process(config)
        if args.backend == "ray":
            return _launch_on_ray(config, args)
        return Launcher(config, quiet=args.quiet, pin_cpus=args.pin_cpus,
                        secure=args.secure, catch_signals=True).run()
    except ConfigError as exc:        # found by the launcher's precheck: nothing started
        print(f"agentd: config error: {exc}", file=sys.stderr)
        return 2
    except LaunchError as exc:
        print(f"agentd launch: {exc}", file=sys.stderr)
        return 1
