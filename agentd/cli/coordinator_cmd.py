"""``agentd coordinator``: admission, topology hand-out, heartbeats, metrics, run directory."""

from __future__ import annotations

import argparse

from agentd.cli.common import add_run_flags, config_from_args


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="agentd coordinator", description=__doc__)
    add_run_flags(parser)
    parser.add_argument("--bind", default=None,
                        help="control endpoint to bind (default tcp://HOST:5555; "
                             "port * picks a free one)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    config = config_from_args(args)
    from coordinator.coordinator import Coordinator

    coord = Coordinator(config, args.bind or f"tcp://{config.host}:5555", quiet=args.quiet)
    coord.write_start_files()
    print(f"coordinator listening on {coord.endpoint}; run directory {coord.run_dir}",
          flush=True)
    return coord.serve()
