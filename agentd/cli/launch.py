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
    args = parser.parse_args(argv)
    config = config_from_args(args)
    from agentd.launcher import Launcher, LaunchError

    try:
        return Launcher(config, quiet=args.quiet, pin_cpus=args.pin_cpus).run()
    except LaunchError as exc:
        print(f"agentd launch: {exc}", file=sys.stderr)
        return 1
