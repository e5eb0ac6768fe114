"""``agentd consensus RUN``: the consensus diagnostic, offline, after a run.

Tabular learners (Q tables): the MSE between each agent's Boltzmann policy and the average
policy (Wang et al. 2023, Fig. 2), from periodic checkpoints (launch with ``--checkpoint-every``).
dac-deep: the log-ratio consensus error max_i |N x^i - sum_j beta^j| — with ``--from-logs``
computed from the consensus messages in the message logs alone (every ``--every``-th step),
otherwise from the checkpoints on each snapshot's last update batch. Writes
RUN/consensus.jsonl and RUN/consensus.png.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="agentd consensus", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="Boltzmann temperature for tabular policies (default 1)")
    parser.add_argument("--from-logs", action="store_true",
                        help="dac-deep: compute the error from the message logs alone")
    parser.add_argument("--every", type=int, default=100,
                        help="with --from-logs: every this many steps (default 100)")
    args = parser.parse_args(argv)
    from agentd.tools.diagnostics import (
        consensus_curve,
        logratio_consensus_from_logs,
        snapshot_steps,
        write_consensus,
    )

    run_dir = args.run_dir
    if args.from_logs:
        if not (run_dir / "logs").is_dir():
            print(f"agentd consensus: {run_dir} has no logs/ (not a run directory?)")
            return 2
        curve = logratio_consensus_from_logs(run_dir, max(1, args.every))
        if not curve:
            print(f"agentd consensus: no consensus messages in {run_dir / 'logs'}")
            return 2
        with open(run_dir / "consensus.jsonl", "w") as f:
            f.writelines(json.dumps(p) + "\n" for p in curve)
        key, label = "max_err", "max_i |N x^i - sum_j beta^j| (from the logs)"
    else:
        if not (run_dir / "checkpoints").is_dir() or not snapshot_steps(run_dir):
            print(f"agentd consensus: {run_dir} has no periodic checkpoints; launch with "
                  "--checkpoint-every STEPS (or, for dac-deep, use --from-logs)")
            return 2
        try:
            computed = consensus_curve(run_dir, args.temperature)
            curve, key, label = computed
            write_consensus(run_dir, args.temperature, computed)
        except ValueError as exc:
            print(f"agentd consensus: {exc}")
            return 2
    for point in curve:
        print(f"step {point['step']:>8}  {label} = {point[key]:.3g}")
    print(f"wrote {run_dir / 'consensus.jsonl'}")
    return 0
