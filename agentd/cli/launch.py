"""``agentd launch``: run a whole experiment on this machine (coordinator, env server, agents)."""

from __future__ import annotations

import argparse
import sys

from agentd.cli.common import add_run_flags, config_from_args


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="agentd launch", description=__doc__)
    add_run_flags(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    config = config_from_args(args)
    from agentd.launcher import Launcher, LaunchError

    try:
        return Launcher(config, quiet=args.quiet).run()
    except LaunchError as exc:
        print(f"agentd launch: {exc}", file=sys.stderr)
        return 1
