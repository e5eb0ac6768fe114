"""``agentd env check ENV [--env-arg KEY=VALUE ...]``: will this PettingZoo env run here?"""

from __future__ import annotations

import argparse
import sys

from agentd.config import ConfigError
from agentd.configfile import parse_assignments


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="agentd env", description=__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    check = sub.add_parser("check", help="PettingZoo's parallel_api_test and agentd's env "
                                         "server contract, with a verdict")
    check.add_argument("env", help="a ParallelEnv factory as module:callable, e.g. "
                                   "pettingzoo.butterfly.pistonball_v6:parallel_env")
    check.add_argument("--env-arg", action="append", metavar="KEY=VALUE",
                       help="keyword argument of the env factory (repeatable)")
    check.add_argument("--steps", type=int, default=5, help="cycles/steps to try (default 5)")
    check.add_argument("--max-msg-bytes", type=int, default=16 << 20,
                       help="the message size cap the run will use (default 16 MiB)")
    args = parser.parse_args(argv)
    try:
        kwargs = parse_assignments(args.env_arg, "--env-arg")
    except ConfigError as exc:
        print(f"agentd env check: {exc}", file=sys.stderr)
        return 2
    from agentd.tools.env_check import check_env, report

    findings, n_agents, kinds = check_env(args.env, kwargs, args.max_msg_bytes,
                                          max(1, args.steps))
    text, ok = report(args.env, findings, args.env_arg, n_agents, kinds)
    print(text)
    return 0 if ok else 1
