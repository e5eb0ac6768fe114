"""Run-config flags shared by ``agentd launch`` and ``agentd coordinator``."""

from __future__ import annotations

import argparse
import sys

from agentd.cli.catalog import EXTERNAL_ENV, algo_names, env_names
from agentd.config import ConfigError, RunConfig, resolve
from agentd.configfile import load_toml, parse_assignments

FLAG_HELP = {
    "topology": "communication graph: ring, line, star, complete, grid, random, small-world, "
                "edgelist (default ring)",
    "n": "number of agents (default 5)",
    "algo": f"learner: {algo_names()} (default {RunConfig.algo}; agentd algos [NAME] for each "
            "one's spaces and parameters)",
    "env": f"{env_names()} (default {RunConfig.env}; agentd envs for each one), or "
           f"{EXTERNAL_ENV}",
    "obs": "what each agent observes: auto (what the learner wants), local (its own "
           "observation) or state (the env's global state) (default auto)",
    "steps": "joint steps per env copy (default 20000)",
    "episode-len": "episode length cap (default 50; 150 for ipd)",
    "num-envs": "K env copies stepped per message round (default 1)",
    "seed": "run seed (default 0)",
    "run-dir": "run directory (default runs/<timestamp>)",
    "rows": "grid topology: rows", "p": "random topology: edge probability",
    "k": "small-world: lattice neighbours", "rewire": "small-world: rewiring probability",
    "edges": "edgelist topology: file of 'i j' lines",
    "mixing": "mixing matrix: kernel (paper eq. 41) or metropolis",
    "heartbeat-timeout": "seconds of silence before a process is declared dead",
    "checkpoint-every": "also checkpoint every agent every this many steps, for "
                        "`agentd consensus` (default 0: only at the end)",
    "max-msg-bytes": "size cap of one message in bytes (default 16 MiB)",
    "recovery-every": "recovery checkpoint of every agent's complete state every this many "
                      "steps, written atomically (default 0: none; a restart then starts over)",
    "max-restarts": "restart a dead agent or env server up to this many times each, then fail "
                    "the run (default 0: a dead process ends the run)",
    "rejoin-timeout": "seconds the coordinator waits for a dead process to rejoin (default 30)",
    "coordinator-timeout": "seconds every process carries on while the coordinator is "
                           "unreachable (stepping, learning, queueing its reports) before it "
                           "fails with CoordinatorLost (default 120)",
    "peer-timeout": "seconds a silent neighbour is waited for before the step goes ahead "
                    "without it (learners that can: dac-deep with running sums; default 0: "
                    "wait)",
    "link-schedule": "file of 'FROM TO I J' lines: edge I-J is down for steps FROM <= t < TO "
                     "(a time-varying graph; weights: Metropolis-Hastings on the live graph)",
    "dp-sigma": "differential privacy: noise multiplier on released peer arrays (default 0: "
                "off); per-kind overrides in the config file's [dp_kinds] table",
    "dp-clip": "differential privacy: L2 norm each released row/array is clipped to "
               "(default 1.0)",
    "dp-delta": "differential privacy: delta of the reported epsilon (default 1e-5)",
    "dp-accountant": "differential privacy accountant: pld (default, tight) or rdp",
    "act-ahead": "auto (default: on where the learner allows it), on or off: an agent sends "
                 "its next action before its update (with the policy of the previous update), "
                 "so the env server steps while the agents update",
    "env-plane": "how actions and step replies travel: auto (default: over a Unix socket for "
                 "agents on the env server's machine, ZeroMQ otherwise) or zmq (always "
                 "ZeroMQ)",
}
TYPES = {"n": int, "steps": int, "episode-len": int, "num-envs": int, "seed": int,
         "rows": int, "p": float, "k": int, "rewire": float, "heartbeat-timeout": float,
         "checkpoint-every": int, "max-msg-bytes": int, "recovery-every": int,
         "max-restarts": int, "rejoin-timeout": float, "peer-timeout": float,
         "coordinator-timeout": float,
         "dp-sigma": float, "dp-clip": float, "dp-delta": float}


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE.toml", help="config file (flags override it)")
    for flag, text in FLAG_HELP.items():
        parser.add_argument(f"--{flag}", type=TYPES.get(flag, str), default=None, help=text)
    parser.add_argument("--param", action="append", metavar="KEY=VALUE",
                        help="learner hyperparameter, e.g. --param alpha=0.2 (repeatable)")
    parser.add_argument("--pr-weight", type=float, default=None, metavar="W",
                        help="deep policy reciprocity: weight of the neighbours' target values "
                             "in the TD target (dac-deep, isac; same as --param pr_weight=W)")
    parser.add_argument("--env-arg", action="append", metavar="KEY=VALUE",
                        help="keyword argument of the env factory, e.g. --env-arg N=5")


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """Resolve defaults < --config file < flags; exits with the field named on error."""
    try:
        file_values = load_toml(args.config) if args.config else {}
        cli = {flag.replace("-", "_"): getattr(args, flag.replace("-", "_"))
               for flag in FLAG_HELP}
        cli["params"] = parse_assignments(args.param, "--param") or None
        if getattr(args, "pr_weight", None) is not None:
            cli["params"] = {**(cli["params"] or {}), "pr_weight": args.pr_weight}
        cli["env_args"] = parse_assignments(args.env_arg, "--env-arg") or None
        cli["insecure"] = True if getattr(args, "insecure", False) else None
        return resolve(file_values, cli)
    except ConfigError as exc:
        print(f"agentd: config error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
