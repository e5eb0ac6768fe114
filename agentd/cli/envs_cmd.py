"""``agentd envs``: the built-in envs, the installed plug-in envs, and how to pass any
PettingZoo env."""

from __future__ import annotations

import argparse

from agentd.config import RunConfig
from agentd.envs.registry import ENVS


def run(argv: list[str]) -> int:
    argparse.ArgumentParser(prog="agentd envs", description=__doc__).parse_args(argv)
    from agentd.cli.catalog import EXTERNAL_ENV, describe_env, describe_plugin_env
    from agentd.envs import plugin_envs

    for row in ENVS.values():
        print(describe_env(row, RunConfig().episode_len))
    for name, spec in plugin_envs().items():
        print(describe_plugin_env(name, spec))
    print(f"external envs: {EXTERNAL_ENV}")
    return 0
