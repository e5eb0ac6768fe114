"""``agentd agent``: one agent process that joins a coordinator and learns.

On another machine: ``agentd agent --join tcp://A:5555 --keys KEYDIR [--id I]`` binds on the
local address that routes to A, advertises it, and ships its files to A when the run ends."""

from __future__ import annotations

import argparse
import sys

from agentd.cli.join import add_join_flags, join_options, run_joining


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="agentd agent", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_join_flags(parser, "neighbours")
    parser.add_argument("--id", type=int, default=None,
                        help="ask for this agent id (with --keys: which key to use; optional "
                             "when KEYDIR holds one agent secret)")
    parser.add_argument("--preload-torch", action="store_true",
                        help="import torch before joining (a deep learner's ~1 s start-up then "
                             "cannot delay the first heartbeats)")
    args = parser.parse_args(argv)
    if args.preload_torch:
        try:
            import torch  # noqa: F401 - the point is the import's side effect (loading it)
        except ImportError:
            print("agentd agent: --preload-torch, but PyTorch is not installed; install it "
                  "with: pip install -c constraints.txt 'agentd[deep]'", file=sys.stderr)
            return 2
    from agentd.agent.process import run_agent

    return run_joining("agentd agent", lambda: run_agent(join_options(args), args.id))
