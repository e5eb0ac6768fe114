"""Flags shared by the processes that join a run by hand: ``agentd agent`` and ``agentd envserver``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from agentd.runtime.control import JoinOptions


def add_join_flags(parser: argparse.ArgumentParser, serves: str) -> None:
    parser.add_argument("--join", "--connect", dest="join", required=True,
                        metavar="tcp://HOST:PORT", help="the coordinator's control endpoint")
    parser.add_argument("--keys", default=None, metavar="KEYDIR",
                        help="secure mode: CURVE keys (public.toml and this process's secret; "
                             "made by 'agentd keys new')")
    parser.add_argument("--bind", default=None, metavar="ENDPOINT",
                        help=f"endpoint {serves} reach this process on (default: "
                             "tcp://<the local address that routes to the coordinator>:*)")
    parser.add_argument("--advertise", default=None, metavar="HOST",
                        help="address others should dial, if not the bound one (NAT, names)")
    parser.add_argument("--insecure", action="store_true",
                        help="allow plaintext beyond loopback, on purpose (recorded in the logs)")
    parser.add_argument("--run-dir", default=None, metavar="DIR",
                        help="where this host keeps the process's files when it cannot write "
                             "the coordinator's run directory (default runs/<run name>); they "
                             "are shipped to the coordinator when the run ends")
    parser.add_argument("--join-timeout", type=float, default=120.0)


def join_options(args: argparse.Namespace) -> JoinOptions:
    return JoinOptions(args.join, args.bind, args.advertise, args.keys, args.insecure,
                       args.run_dir, args.join_timeout)


def run_joining(prog: str, start: Callable[[], int]) -> int:
    """Run a joining process; a start-up refusal (keys, insecure bind, address) is one clear
    line and exit code 2, not a traceback."""
    from agentd.runtime.keys import KeysError
    from agentd.runtime.netaddr import AddressError
    from agentd.runtime.transport import EndpointError, InsecureBind

    try:
        return start()
    except (KeysError, InsecureBind, AddressError, EndpointError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
