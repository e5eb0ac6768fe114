"""``agentd keys``: CURVE keys for secure runs across machines.

  agentd keys new KEYDIR --n N    keypairs for coordinator, envserver, agent-0..N-1 and the
                                  public registry KEYDIR/public.toml
  agentd keys show KEYDIR         the registry, and which secrets this directory holds

A host needs only public.toml and the .secret files of the processes it runs."""

from __future__ import annotations

import argparse
import stat
import sys
from pathlib import Path


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="agentd keys", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)
    new = sub.add_parser("new", help="make keypairs and the public registry")
    new.add_argument("dir", metavar="KEYDIR")
    new.add_argument("--n", type=int, required=True, help="number of agent keys")
    new.add_argument("--force", action="store_true", help="replace existing keys")
    show = sub.add_parser("show", help="print the public registry")
    show.add_argument("dir", metavar="KEYDIR")
    args = parser.parse_args(argv)
    from agentd.runtime.keys import KeysError, load_keys, load_registry, new_keys

    try:
        if args.action == "new":
            registry = new_keys(args.dir, args.n, args.force)
            print(f"wrote {len(registry.keys)} keypairs and {registry.path}")
        else:
            registry = load_registry(args.dir)
        for name, key in registry.keys.items():
            secret = Path(args.dir) / f"{name}.secret"
            note = ""
            if secret.exists():
                load_keys(args.dir, name)            # checks mode, format, pairing
                note = f"  secret here ({stat.S_IMODE(secret.stat().st_mode):04o})"
            print(f"  {name:<12} {key.decode()}{note}")
    except KeysError as exc:
        print(f"agentd keys: {exc}", file=sys.stderr)
        return 2
    return 0
