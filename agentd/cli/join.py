"""Flags shared by the processes that join a run by hand: ``agentd agent`` and ``agentd envserver``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from agentd.runtime.control import JoinOptions


def add_join_flags(parser: argparse.ArgumentParser, serves: str) -> None:
    parser.add_argument("--join", "--connect", dest="join", required=True,
                        metavar="tcp://HOST:PORT", help="the coordinator's control endpoint, "
                        "or @FILE: the endpoint in FILE (coordinator.json) once it is written")
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
    return JoinOptions(endpoint_of(args.join, args.join_timeout), args.bind, args.advertise, args.keys, args.insecure,
                       args.run_dir, args.join_timeout)


def endpoint_of(join: str, timeout: float, notice_first: float = 2.0,
                notice_every: float = 5.0) -> str:
    """``@FILE``: wait for the coordinator to write its endpoint to FILE (a local launcher
    starts every process at once, so they import while the coordinator starts), saying every
    few seconds what it waits for and until when."""
    if not join.startswith("@"):
        return join
    path, started = Path(join[1:]), time.monotonic()
    deadline, notice = started + timeout, started + notice_first
    while True:
        try:
            return json.loads(path.read_text())["endpoint"]
        except (OSError, ValueError, KeyError, TypeError):
            now = time.monotonic()
            if now > deadline:
                raise SystemExit(f"no coordinator endpoint in {path} after {timeout:.0f} s") \
                    from None
            if now >= notice:
                until = time.strftime("%H:%M:%S %Z", time.localtime(time.time() + deadline - now))
                print(f"waiting {now - started:.0f} s so far for the coordinator's endpoint in "
                      f"{path} (written once it listens); waiting until {until}", file=sys.stderr,
                      flush=True)
                notice = now + notice_every
            time.sleep(0.01)


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
