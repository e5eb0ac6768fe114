"""``agentd launch``: run a whole experiment on this machine (coordinator, env server, agents)."""

from __future__ import annotations

import argparse
import sys

from agentd.cli.common import add_run_flags, config_from_args


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
    args = parser.parse_args(argv)
    if args.secure and args.insecure:
        parser.error("--secure and --insecure contradict each other")
    config = config_from_args(args)
    from agentd.launcher import Launcher, LaunchError

    try:
        return Launcher(config, quiet=args.quiet, pin_cpus=args.pin_cpus,
                        secure=args.secure).run()
    except LaunchError as exc:
        print(f"agentd launch: {exc}", file=sys.stderr)
        return 1
