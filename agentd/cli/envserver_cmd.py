"""``agentd envserver``: join a coordinator and step the run's environment."""

from __future__ import annotations

import argparse


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="agentd envserver", description=__doc__)
    parser.add_argument("--connect", required=True, metavar="tcp://HOST:PORT",
                        help="the coordinator's control endpoint")
    parser.add_argument("--bind", default="tcp://127.0.0.1:*",
                        help="endpoint agents reach this server on (default tcp://127.0.0.1:*)")
    parser.add_argument("--advertise", default=None, metavar="HOST",
                        help="address agents on other machines should dial")
    parser.add_argument("--join-timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    from coordinator.envserver import run_envserver

    return run_envserver(args.connect, args.bind, args.advertise, args.join_timeout)
