"""``agentd attack RUN``: what a neighbour learns from a run's message logs (action, reward,
observation and membership inference, each against a stated baseline with a 95% CI); prints
the table and writes RUN/attack.json."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="agentd attack", description=__doc__)
    parser.add_argument("run", metavar="RUN", help="run directory made by 'agentd launch'")
    args = parser.parse_args(argv)
    from agentd.tools.attack import attack_run, write_report
    from agentd.tools.attack_data import AttackError
    from agentd.tools.attack_stats import MissingDependency

    run_dir = Path(args.run)
    try:
        report = attack_run(run_dir)
    except (AttackError, MissingDependency) as exc:
        print(f"agentd attack: {exc}", file=sys.stderr)
        return 2
    print(write_report(run_dir, report), end="")
    return 0
