"""``agentd plot RUN1 RUN2 ...``: the curves of several runs or replays on one figure."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="agentd plot", description=__doc__)
    parser.add_argument("runs", nargs="+", type=Path, help="run or replay directories")
    parser.add_argument("--out", type=Path, default=None,
                        help="image to write (default RUN1/compare.png)")
    parser.add_argument("--agent", default=None, help="plot this agent's scalars only")
    args = parser.parse_args(argv)
    from agentd.tools.plotting import plot_runs

    out = args.out or args.runs[0] / "compare.png"
    try:
        names = plot_runs(args.runs, out, args.agent)
    except (FileNotFoundError, ValueError) as exc:
        print(f"agentd plot: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({', '.join(names)})")
    return 0
