"""``agentd`` command line: parses, then delegates to one module per subcommand."""

from __future__ import annotations

import importlib
import logging
import os
import sys

COMMANDS = {
    "launch": ("agentd.cli.launch", "run coordinator, env server and N agents locally"),
    "coordinator": ("agentd.cli.coordinator_cmd", "run a coordinator (admission, metrics)"),
    "envserver": ("agentd.cli.envserver_cmd", "run an environment server"),
    "agent": ("agentd.cli.agent_cmd", "run one agent process that joins a coordinator"),
    "keys": ("agentd.cli.keys_cmd", "make or show CURVE keys for secure runs"),
    "topology": ("topologies.show", "show a topology: edges, mixing matrix, spectral gap"),
    "audit": ("agentd.cli.audit_cmd", "audit a run's message logs: traffic, rejections, leakage"),
    "attack": ("agentd.cli.attack_cmd", "attack a run's message logs: what a neighbour learns"),
    "replay": ("agentd.cli.replay_cmd", "replay one agent alone from its message log"),
    "evaluate": ("agentd.cli.evaluate_cmd", "play a run's saved policies and report returns"),
    "plot": ("agentd.cli.plot_cmd", "plot several runs or replays on one figure"),
    "consensus": ("agentd.cli.consensus_cmd", "consensus diagnostic from a run's checkpoints"),
    "env": ("agentd.cli.env_cmd", "env check ENV: will this PettingZoo env run under agentd?"),
    "algos": ("agentd.cli.algos_cmd", "list the learners (--algo); algos NAME: its parameters"),
    "envs": ("agentd.cli.envs_cmd", "list the built-in envs (--env) and how to pass others"),
    "sweep": ("agentd.cli.sweep_cmd", "run a sweep spec: algos x grid x seeds, IQM and CIs"),
}

USAGE = "usage: agentd COMMAND [options]   (agentd COMMAND --help for its options)\n\n" + \
    "\n".join(f"  {name:<12} {doc}" for name, (_, doc) in COMMANDS.items())


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        raise SystemExit(0 if argv else 2)
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"agentd: unknown command '{command}'\n\n{USAGE}", file=sys.stderr)
        raise SystemExit(2)
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s: %(message)s")
    module = importlib.import_module(COMMANDS[command][0])
    entry = getattr(module, "topology_main", None) or module.run
    profile_dir = os.environ.get("AGENTD_PROFILE_DIR")
    if profile_dir:   # developer aid: one cProfile dump per process
        import cProfile
        import time

        # AGENTD_PROFILE_CLOCK=cpu: CPU time, so a wait on a socket (or being preempted
        # right after waking a receiver) costs nothing; the default is wall time
        cpu = os.environ.get("AGENTD_PROFILE_CLOCK") == "cpu"
        with cProfile.Profile(time.process_time if cpu else time.perf_counter) as prof:
            code = entry(rest)
        os.makedirs(profile_dir, exist_ok=True)
        prof.dump_stats(os.path.join(profile_dir, f"{command}-{os.getpid()}.prof"))
        raise SystemExit(code)
    try:
        code = entry(rest)
        sys.stdout.flush()
    except BrokenPipeError:          # `agentd algos | head`: the reader has gone, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    raise SystemExit(code)
