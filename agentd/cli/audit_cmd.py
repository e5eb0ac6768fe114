"""``agentd audit RUN``: summarise a run's message logs (traffic per edge and kind, guard
rejections, kinds on peer edges, a leakage probe); writes RUN/audit.json and RUN/audit.md."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="agentd audit", description=__doc__)
    parser.add_argument("run", metavar="RUN", help="run directory made by 'agentd launch'")
    args = parser.parse_args(argv)
    from agentd.tools.audit import AuditError, audit_run
    from agentd.tools.audit_report import write_reports

    run_dir = Path(args.run)
    try:
        report = audit_run(run_dir)
    except AuditError as exc:
        print(f"agentd audit: {exc}", file=sys.stderr)
        return 2
    print(write_reports(run_dir, report), end="")
    return 0
