"""``agentd evaluate RUN --agent I | --all --episodes N``: play a finished run's saved policies.

Every agent plays its final checkpoint (greedy where its learner defines it: the argmax of Q,
the mode of its action distribution; else as it acted in training) for N episodes on fresh
resets of the run's env; nothing is learned. Prints the returns per episode's mean, spread and
range, of env agent I (``--agent``) or of every agent and the team (``--all``), and writes
RUN/evaluation.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="agentd evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, metavar="RUN")
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--agent", type=int, metavar="I", help="report env agent I's returns")
    who.add_argument("--all", action="store_true", help="report every agent and the team")
    parser.add_argument("--episodes", type=int, default=10, metavar="N",
                        help="episodes to play (default 10)")
    parser.add_argument("--seed", type=int, default=1,
                        help="seed of the env resets (default 1)")
    parser.add_argument("--num-envs", type=int, default=1, metavar="K",
                        help="env copies stepped at once (default 1)")
    args = parser.parse_args(argv)
    from agentd.algorithms.base import LearnerConfigError
    from agentd.tools.evaluate import EvaluateError, evaluate

    try:
        res = evaluate(args.run_dir, args.episodes, args.seed, args.num_envs)
    except (EvaluateError, LearnerConfigError) as exc:
        print(f"agentd evaluate: {exc}", file=sys.stderr)
        return 2
    if args.agent is not None and args.agent not in res.agents:
        print(f"agentd evaluate: no env agent {args.agent}; the run's env has agents "
              f"0..{len(res.agents) - 1}", file=sys.stderr)
        return 2
    summary = res.summary()
    print(f"evaluated {args.run_dir}: {summary['episodes']} episodes of the saved policies "
          f"(mean length {summary['mean_length']:.1f})")
    rows = [(f"agent {args.agent}", summary["agents"][str(args.agent)])] \
        if args.agent is not None else \
        [("team", summary["team"]), *((f"agent {i}", s) for i, s in summary["agents"].items())]
    for name, s in rows:
        print(f"  {name:<9} return {s['mean']:10.3f} ± {s['std']:.3f}  "
              f"(min {s['min']:.3f}, max {s['max']:.3f})")
    out = args.run_dir / "evaluation.json"
    out.write_text(json.dumps({**summary, "seed": args.seed,
                               "returns": {"team": res.team,
                                           **{str(i): v for i, v in res.agents.items()}}},
                              indent=2) + "\n")
    print(f"  wrote {out}")
    return 0
