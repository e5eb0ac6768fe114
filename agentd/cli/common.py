"""Run-config flags shared by ``agentd launch`` and ``agentd coordinator``."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from agentd.cli.catalog import EXTERNAL_ENV, algo_names, config_field_docs, env_names
from agentd.config import ConfigError, RunConfig, resolve
from agentd.configfile import load_toml, parse_assignments

# What a flag's help says beyond its RunConfig field's comment (which is the help of every
# other field); the default is added from RunConfig unless the text names it.
FLAG_HELP = {
    "topology": "communication graph: ring, line, star, complete, grid, random, small-world, "
                "edgelist",
    "obs": "what each agent observes: auto (what the learner wants), local (its own "
           "observation) or state (the env's global state)",
    "episode-len": "episode length cap (a built-in env may have its own: agentd envs)",
    "run-dir": "run directory (default runs/<timestamp>)",
    "checkpoint-every": "also checkpoint every agent every this many steps, for "
                        "`agentd consensus` (0: only at the end)",
    "max-msg-bytes": "size cap of one message in bytes (16 MiB at most)",
    "recovery-every": "recovery checkpoint of every agent's complete state every this many "
                      "steps, written atomically (0: none; a restart then starts over)",
    "max-restarts": "restart a dead agent or env server up to this many times each, then fail "
                    "the run (0: a dead process ends the run)",
    "coordinator-timeout": "seconds every process carries on while the coordinator is "
                           "unreachable (stepping, learning, queueing its reports) before it "
                           "fails with CoordinatorLost",
    "peer-timeout": "seconds a silent neighbour is waited for before the step goes ahead "
                    "without it (learners that can: dac-deep with running sums; 0: wait)",
    "link-schedule": "file of 'FROM TO I J' lines: edge I-J is down for steps FROM <= t < TO "
                     "(a time-varying graph; weights: Metropolis-Hastings on the live graph)",
    "dp-sigma": "differential privacy: noise multiplier on released peer arrays (0: off); "
                "per-kind overrides in the config file's [dp_kinds] table",
    "dp-accountant": "differential privacy accountant: pld (tight) or rdp",
    "dp-sample-rate": "differential privacy: Poisson rate q at which a release carries the "
                      "values, otherwise the noise alone; the accountant counts the "
                      "amplification (1: every release)",
    "dp-broadcast": "differential privacy: on: a release the learner sends to several "
                    "neighbours is noised once and counts once for the agent; off: each copy "
                    "noised on its own",
    "act-ahead": "auto (on where the learner allows it), on or off: an agent sends its next "
                 "action before its update (with the policy of the previous update), so the "
                 "env server steps while the agents update",
    "env-plane": "how actions and step replies travel: auto (over a Unix socket for agents on "
                 "the env server's machine, ZeroMQ otherwise) or zmq (always ZeroMQ)",
}
# RunConfig fields with a flag of another name (each command adds its own --insecure) or none
# (set in the --config file; listed in the help's epilog)
OTHER_FLAGS = {"params": "--param", "env_args": "--env-arg", "insecure": "--insecure"}
FILE_ONLY = ("links_down", "dp_kinds")


def registry_help() -> dict[str, str]:
    """--algo's and --env's help: the registries and the installed plug-ins, read when a
    parser is built (the entry points are scanned then, not at every import of this module)."""
    return {
        "algo": f"learner: {algo_names()} (default {RunConfig.algo}; agentd algos [NAME] for "
                "each one's spaces and parameters; or package.module:Class)",
        "env": f"{env_names()} (default {RunConfig.env}; agentd envs for each one), or "
               f"{EXTERNAL_ENV}"}


def config_flags() -> dict[str, tuple[type, str]]:
    """Flag name -> (type, help) for every RunConfig field that is a flag of its own name,
    in the dataclass's order: the help is FLAG_HELP's text (or the registries'), else the
    field's comment, with RunConfig's default."""
    docs = config_field_docs()
    helps = {**FLAG_HELP, **registry_help()}
    out = {}
    for f in dataclasses.fields(RunConfig):
        if f.name in OTHER_FLAGS or f.name in FILE_ONLY:
            continue
        flag = f.name.replace("_", "-")
        text = helps.get(flag) or docs.get(f.name, "")
        if "(default" not in text and f.default not in ("", dataclasses.MISSING):
            text += f" (default {f.default})"
        out[flag] = (type(f.default), text)
    return out


def file_only_epilog() -> str:
    """The fields set only in the --config file, each with its comment."""
    docs = config_field_docs()
    return ("set in the --config file only: "
            + "; ".join(f"{name}: {docs.get(name, '')}" for name in FILE_ONLY))


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE.toml", help="config file (flags override it)")
    for flag, (kind, text) in config_flags().items():
        parser.add_argument(f"--{flag}", type=kind, default=None, help=text)
    parser.add_argument("--param", action="append", metavar="KEY=VALUE",
                        help="learner hyperparameter, e.g. --param alpha=0.2 (repeatable; "
                             "the config file's [params])")
    parser.add_argument("--pr-weight", type=float, default=None, metavar="W",
                        help="deep policy reciprocity: weight of the neighbours' target values "
                             "in the TD target (dac-deep, isac; same as --param pr_weight=W)")
    parser.add_argument("--env-arg", action="append", metavar="KEY=VALUE",
                        help="keyword argument of the env factory, e.g. --env-arg N=5 "
                             "(repeatable; the config file's [env_args])")
    parser.epilog = file_only_epilog()


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """Resolve defaults < --config file < flags; exits with the field named on error."""
    try:
        file_values = load_toml(args.config) if args.config else {}
        cli = {flag.replace("-", "_"): getattr(args, flag.replace("-", "_"))
               for flag in config_flags()}
        cli["params"] = parse_assignments(args.param, "--param") or None
        if getattr(args, "pr_weight", None) is not None:
            cli["params"] = {**(cli["params"] or {}), "pr_weight": args.pr_weight}
        cli["env_args"] = parse_assignments(args.env_arg, "--env-arg") or None
        cli["insecure"] = True if getattr(args, "insecure", False) else None
        return resolve(file_values, cli)
    except ConfigError as exc:
        print(f"agentd: config error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
