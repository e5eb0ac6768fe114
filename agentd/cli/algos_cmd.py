"""``agentd algos [NAME]``: the registered learners, or one learner's parameters."""

from __future__ import annotations

import argparse
import sys

from agentd.algorithms import ALGORITHMS


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="agentd algos", description=__doc__)
    parser.add_argument("name", nargs="?", help="a registered learner: show every parameter "
                                                "with its type, default, range and meaning")
    args = parser.parse_args(argv)
    from agentd.cli.catalog import describe_params, load_row

    if args.name is None:
        print("\n".join(load_row(name).describe() for name in ALGORITHMS))
        return 0
    if args.name not in ALGORITHMS:
        print(f"agentd algos: unknown algo {args.name!r}; registered: "
              f"{', '.join(ALGORITHMS)}", file=sys.stderr)
        return 2
    print(describe_params(args.name))
    return 0
