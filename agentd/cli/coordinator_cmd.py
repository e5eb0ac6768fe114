"""``agentd coordinator``: admission, topology hand-out, heartbeats, metrics, run directory.

Across machines: ``agentd coordinator --bind tcp://0.0.0.0:5555 --keys KEYDIR --n N ...``;
binding beyond loopback needs keys (or --insecure, on purpose)."""

from __future__ import annotations

import argparse
import sys

from agentd.cli.common import add_run_flags, config_from_args


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="agentd coordinator", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_flags(parser)
    parser.add_argument("--bind", default=None,
                        help="control endpoint to bind (default tcp://HOST:5555; "
                             "port * picks a free one)")
    parser.add_argument("--keys", default=None, metavar="KEYDIR",
                        help="secure mode: CURVE keys (public.toml and coordinator.secret; "
                             "made by 'agentd keys new')")
    parser.add_argument("--insecure", action="store_true",
                        help="allow plaintext beyond loopback, on purpose (written into "
                             "config.toml, summary.json and every log)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    config = config_from_args(args)
    from agentd.runtime.keys import KeysError, load_keys
    from agentd.runtime.netaddr import AddressError
    from agentd.runtime.transport import EndpointError, InsecureBind
    from coordinator.coordinator import Coordinator

    try:
        keys = load_keys(args.keys, "coordinator") if args.keys else None
        coord = Coordinator(config, args.bind or f"tcp://{config.host}:5555", quiet=args.quiet,
                            keys=keys)
    except (KeysError, InsecureBind, EndpointError, AddressError) as exc:
        print(f"agentd coordinator: {exc}", file=sys.stderr)
        return 2
    coord.write_start_files()
    mode = f"CURVE, keys from {args.keys}" if keys else "plaintext"
    print(f"coordinator listening on {coord.endpoint} ({mode}); run directory {coord.run_dir}",
          flush=True)
    return coord.serve()
