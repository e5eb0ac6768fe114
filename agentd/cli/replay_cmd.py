"""``agentd replay RUN --agent I``: rebuild one agent from its log and check it reproduces."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from agentd.tools.replay import Perturbation, ReplayError, ReplayResult, compare_state, replay


def _pair(text: str, kind: type) -> tuple[int, float]:
    src, sep, value = text.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected J:VALUE, got {text!r}")
    try:
        return int(src), kind(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected J:VALUE, got {text!r}") from None


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="agentd replay", description=__doc__)
    p.add_argument("run", type=Path, help="run directory")
    p.add_argument("--agent", type=int, required=True, help="agent id to replay")
    p.add_argument("--drop-from", type=int, action="append", default=[], metavar="J",
                   help="messages from neighbour J never arrive")
    p.add_argument("--delay-from", type=lambda t: _pair(t, int), action="append", default=[],
                   metavar="J:K", help="messages from J arrive K steps late")
    p.add_argument("--noise-from", type=lambda t: _pair(t, float), action="append",
                   default=[], metavar="J:SIGMA", help="Gaussian noise on J's numeric arrays")
    p.add_argument("--only-env", action="store_true", help="no peer messages at all")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise")
    p.add_argument("--out", type=Path, default=None,
                   help="directory for metrics, summary and plot (default for a perturbed "
                        "replay: RUN/replays/agent-I-<perturbation>)")
    return p.parse_args(argv)


def run(argv: list[str]) -> int:
    args = parse(argv)
    pert = Perturbation(frozenset(args.drop_from), dict(args.delay_from),
                        dict(args.noise_from), args.only_env, args.seed)
    try:
        res = replay(args.run, args.agent, pert)
    except ReplayError as exc:
        print(f"agentd replay: {exc}", file=sys.stderr)
        return 2
    checkpoint = args.run / "checkpoints" / f"agent-{args.agent}.npz"
    same = compare_state(res.state, checkpoint) if checkpoint.exists() else None
    report(args, pert, res, same)
    out = args.out or (args.run / "replays" / f"agent-{args.agent}-{_slug(pert)}"
                       if pert.active else None)
    if out is not None:
        write_dir(out, args, pert, res, same)
    exact = res.first_divergence is None and same is not None and all(same.values())
    return 0 if exact or pert.active else 1


def report(args: argparse.Namespace, pert: Perturbation, res: ReplayResult,
           same: dict[str, bool] | None) -> None:
    print(f"replayed agent {res.agent} of {args.run}: {res.steps} steps from "
          f"{res.env_items} env replies and {res.peer_items} peer messages "
          f"({res.peer_delivered} delivered; perturbation: {pert.describe()})")
    if res.forced_steps:
        print(f"  {res.forced_steps} updates went ahead without neighbour messages the "
              "learner waited for (withheld by the perturbation)")
    if res.restarts:
        print(f"  restored {res.restarts} recovery checkpoint(s) where the live agent restarted")
    if res.truncated_tail:
        print("  the log's last record was truncated (a crash mid-write) and was skipped")
    if res.first_divergence is None:
        print(f"  actions: identical to the log at all {res.actions_compared} steps")
    else:
        print(f"  actions: first differ at step {res.first_divergence}; "
              f"{res.actions_equal}/{res.actions_compared} equal")
    if same is None:
        print("  final state: no checkpoint to compare with (the live run did not finish)")
    elif not same:
        print("  final state: the learner keeps no learned state")
    elif all(same.values()):
        print(f"  final state: bit-for-bit identical to the checkpoint ({_names(list(same))})")
    else:
        diff = [k for k, ok in same.items() if not ok]
        print(f"  final state: differs from the checkpoint in {_names(diff)} "
              f"({len(diff)} of {len(same)} arrays)")


def _names(names: list[str], most: int = 6) -> str:
    """A few array names, not a deep learner's hundred tensors on one line."""
    if len(names) <= most:
        return ", ".join(names)
    return f"{', '.join(names[:most])} and {len(names) - most} more"


def write_dir(out: Path, args: argparse.Namespace, pert: Perturbation, res: ReplayResult,
              same: dict[str, bool] | None) -> None:
    import numpy as np

    from agentd.tools.plotting import plot_runs

    out.mkdir(parents=True, exist_ok=True)
    with open(out / "metrics.jsonl", "w") as f:
        f.writelines(json.dumps(m) + "\n" for m in res.metrics)
    summary = {"kind": "replay", "run": str(args.run), "agent": res.agent,
               "perturbation": pert.describe(), "steps": res.steps,
               "peer_messages": res.peer_items, "peer_delivered": res.peer_delivered,
               "actions_compared": res.actions_compared, "actions_equal": res.actions_equal,
               "first_divergence": res.first_divergence, "forced_steps": res.forced_steps,
               "restarts": res.restarts,
               "state_identical": same}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    np.savez(out / f"agent-{res.agent}.npz", **res.state)
    if res.metrics:
        plot_runs([out], out / "learning_curve.png")
    print(f"  wrote {out}")


def _slug(pert: Perturbation) -> str:
    return pert.describe().replace(", ", "_").replace(" ", "").replace(":", "-")
