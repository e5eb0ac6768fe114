"""``agentd algos [NAME]``: the registered learners and installed plug-ins, or one learner's
parameters."""

from __future__ import annotations

import argparse
import sys

from agentd.algorithms import ALGORITHMS, is_spec, plugin_learners


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="agentd algos", description=__doc__)
    parser.add_argument("name", nargs="?", help="a registered learner, an installed plug-in "
                                                "or package.module:Class: show every parameter "
                                                "with its type, default, range and meaning")
    args = parser.parse_args(argv)
    from agentd.cli.catalog import PLUGINS, describe_params, load_row

    plugins = plugin_learners()
    if args.name is None:
        print("\n".join(load_row(name).describe() for name in [*ALGORITHMS, *plugins]))
        if not plugins:
            print(f"\n  ({PLUGINS})")
        return 0
    if args.name not in ALGORITHMS and args.name not in plugins and not is_spec(args.name):
        print(f"agentd algos: unknown algo {args.name!r}; registered: "
              f"{', '.join(ALGORITHMS)}" + (f"; plug-ins: {', '.join(plugins)}" if plugins
                                            else ""), file=sys.stderr)
        return 2
    print(describe_params(args.name))
    return 0
