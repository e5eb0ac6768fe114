"""``agentd agent``: one agent process that joins a coordinator and learns."""

from __future__ import annotations

import argparse


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="agentd agent", description=__doc__)
    parser.add_argument("--connect", required=True, metavar="tcp://HOST:PORT",
                        help="the coordinator's control endpoint")
    parser.add_argument("--bind", default="tcp://127.0.0.1:*",
                        help="endpoint neighbours reach this agent on (default tcp://127.0.0.1:*)")
    parser.add_argument("--advertise", default=None, metavar="HOST",
                        help="address neighbours on other machines should dial")
    parser.add_argument("--id", type=int, default=None, help="ask for this agent id")
    parser.add_argument("--log-dir", default=None,
                        help="where to write this agent's message log (default RUN_DIR/logs)")
    parser.add_argument("--join-timeout", type=float, default=120.0)
    parser.add_argument("--preload-torch", action="store_true",
                        help="import torch before joining (a deep learner's ~1 s start-up then "
                             "cannot delay the first heartbeats)")
    args = parser.parse_args(argv)
    if args.preload_torch:
        import torch  # noqa: F401 - the point is the import's side effect (loading it)
    from agentd.agent import run_agent

    return run_agent(args.connect, args.bind, args.id, args.log_dir, args.advertise,
                     args.join_timeout)
