"""``agentd coordinator``: admission, topology hand-out, heartbeats, metrics, run directory.

Across machines: ``agentd coordinator --bind tcp://0.0.0.0:5555 --keys KEYDIR --n N ...``;
binding beyond loopback needs keys (or --insecure, on purpose)."""

from __future__ import annotations

import argparse
import sys
import time

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
    parser.add_argument("--resume", default=None, metavar="RUN",
                        help="pick up run directory RUN after its coordinator died: its state "
                             "from RUN/journal.jsonl, its config from RUN/config.toml, bound "
                             "to its old endpoint (the processes reconnect)")
    args = parser.parse_args(argv)
    if args.resume:
        return resume(args)
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


def resume(args: argparse.Namespace) -> int:
    """``--resume RUN``: the run's own config and endpoint; the journal's state."""
    from pathlib import Path

    from agentd.config import ConfigError, resolve
    from agentd.configfile import load_toml
    from agentd.runtime.keys import KeysError, load_keys
    from agentd.runtime.transport import EndpointError
    from coordinator.coordinator import Coordinator
    from coordinator.journal import JournalError, read_journal

    run_dir = Path(args.resume)
    try:
        journal = read_journal(run_dir)
        config = resolve(load_toml(run_dir / "config.toml"), {"run_dir": str(run_dir)})
        keys = load_keys(args.keys, "coordinator") if args.keys else None
    except (JournalError, ConfigError, KeysError, OSError) as exc:
        print(f"agentd coordinator: cannot resume {run_dir}: {exc}", file=sys.stderr)
        return 2
    endpoint = journal.first("start")["endpoint"]
    deadline = time.monotonic() + 10.0
    while True:     # the dead coordinator's port is free again at once, unless it is taken
        try:
            coord = Coordinator(config, endpoint, quiet=args.quiet, keys=keys, resumed=journal)
            break
        except EndpointError as exc:
            if time.monotonic() > deadline:
                print(f"agentd coordinator: cannot resume {run_dir}: {exc}", file=sys.stderr)
                return 2
            time.sleep(0.2)
    coord.write_resume_files()
    torn = f", {journal.torn} torn journal record ignored" if journal.torn else ""
    print(f"coordinator resumed on {coord.endpoint} (epoch {coord.epoch}{torn}); run "
          f"directory {coord.run_dir}", flush=True)
    return coord.serve()
