"""``agentd envserver``: join a coordinator and step the run's environment.

On another machine: ``agentd envserver --join tcp://A:5555 --keys KEYDIR``."""

from __future__ import annotations

import argparse

from agentd.cli.join import add_join_flags, join_options, run_joining


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="agentd envserver", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_join_flags(parser, "agents")
    args = parser.parse_args(argv)
    from coordinator.envprocess import run_envserver

    return run_joining("agentd envserver", lambda: run_envserver(join_options(args)))
