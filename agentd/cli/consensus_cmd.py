"""``agentd consensus RUN``: the consensus diagnostic, offline, from the agents' checkpoints.

Tabular learners (Q tables): the MSE between each agent's Boltzmann policy and the average
policy (seed 000 Fig. 2). dac-deep: the log-ratio consensus error max_i |N x^i - sum_j beta^j|
on each snapshot's last update batch. Needs a run with ``--checkpoint-every``. Writes
RUN/consensus.jsonl and RUN/consensus.png.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="agentd consensus", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="Boltzmann temperature for tabular policies (default 1)")
    args = parser.parse_args(argv)
    from agentd.diagnostics import consensus_curve, snapshot_steps, write_consensus

    if not (args.run_dir / "checkpoints").is_dir():
        print(f"agentd consensus: {args.run_dir} has no checkpoints/ (not a run directory?)")
        return 2
    if not snapshot_steps(args.run_dir):
        print(f"agentd consensus: {args.run_dir} has no periodic checkpoints; launch with "
              "--checkpoint-every STEPS")
        return 2
    try:
        curve = write_consensus(args.run_dir, args.temperature)
    except ValueError as exc:
        print(f"agentd consensus: {exc}")
        return 2
    _, key, label = consensus_curve(args.run_dir, args.temperature) if curve else ([], "", "")
    for point in curve:
        print(f"step {point['step']:>8}  {label} = {point[key]:.3g}")
    print(f"wrote {args.run_dir / 'consensus.jsonl'} and {args.run_dir / 'consensus.png'}")
    return 0
