"""Discovery from the registries: `agentd algos`, `agentd algos NAME`, `agentd envs` and the
--algo/--env help of `agentd launch` list exactly what is registered (no hand-kept list)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest

from agentd.algorithms import ALGORITHMS
from agentd.algorithms.tabular.dac import DACParams
from agentd.cli.catalog import family, field_docs
from agentd.envs.registry import ENVS


def agentd(*args: str, prelude: str = "") -> subprocess.CompletedProcess:
    code = f"{prelude}\nfrom agentd.cli import main\nmain({list(args)!r})"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, check=False,
                          env={**os.environ, "COLUMNS": "100000"})   # help lines unwrapped


@pytest.fixture(scope="module")
def launch_help() -> str:
    res = agentd("launch", "--help")
    assert res.returncode == 0, res.stderr
    return res.stdout


def listed(help_text: str, flag: str, prefix: str) -> list[str]:
    """The comma-separated names the help of ``flag`` lists after ``prefix``."""
    line = next(line for line in help_text.splitlines() if line.lstrip().startswith(flag))
    names = line.split(prefix, 1)[1].split(" (default")[0]
    return [name.strip() for name in names.split(",")]


@pytest.fixture(scope="module")
def algos_out() -> str:
    res = agentd("algos")
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_launch_help_names_every_registered_algo_and_env(launch_help):
    assert listed(launch_help, "--algo ALGO", "learner: ") == list(ALGORITHMS)
    assert listed(launch_help, "--env ENV", "ENV ") == list(ENVS)
    assert "module:callable" in launch_help


def test_algos_lists_every_learner_with_its_declarations(algos_out):
    firsts = {line.split()[0]: line for line in algos_out.splitlines() if line[:1].strip()}
    assert list(firsts) == list(ALGORITHMS)
    dac, pr, maddpg = firsts["dac"], firsts["pr"], firsts["maddpg"]
    assert dac.split()[1] == "tabular" and "actions discrete obs discrete private" in dac
    assert "sends: pr_values" in pr and "greedy_q" in pr
    assert family("maddpg") == "offpolicy" and "not private" in maddpg
    assert "centralised" in maddpg and "needs_torch" in maddpg
    assert "Li & Jia" in algos_out.split("\n", 2)[1]       # the paper, from the docstring


def test_envs_lists_every_builtin_env_and_external_ones():
    res = agentd("envs")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert [line.split()[0] for line in lines if line[:1].strip()][:-1] == list(ENVS)
    ipd = next(line for line in lines if line.startswith("ipd "))
    assert "episode length 150" in ipd and "obs discrete (box with onehot=true)" in ipd
    spread = next(line for line in lines if line.startswith("spread "))
    assert "actions box (discrete with continuous_actions=false); obs box" in spread
    assert lines[-1].startswith("external envs:") and "module:callable" in lines[-1]


def test_algos_dac_lists_every_param_with_default_range_and_meaning():
    res = agentd("algos", "dac", prelude="import sys")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    for f in dataclasses.fields(DACParams):
        line = next(line for line in out.splitlines() if line.split()[:1] == [f.name])
        assert f"default {f.default!r}" in line, line
    assert "gamma            float  default 0.95 in [0.0, 1.0)" in out
    assert "discount factor" in out and "upper clip T_M for the preferences zeta" in out


def test_a_tabular_learner_is_described_without_torch():
    code = ("import sys\nfrom agentd.cli.algos_cmd import run\nrun(['dac'])\n"
            "print('torch loaded:', 'torch' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code],
                         capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout.rstrip().endswith("torch loaded: False")


def test_without_torch_deep_learners_show_needs_torch():
    res = agentd("algos", prelude="import sys; sys.modules['torch'] = None")
    assert res.returncode == 0, res.stderr
    lines = {line.split()[0]: line for line in res.stdout.splitlines() if line[:1].strip()}
    assert lines["dac-deep"].endswith("(needs torch)")
    assert lines["ippo"].endswith("(needs torch)")
    assert "actions discrete obs discrete" in lines["dac"]


def test_an_unknown_algo_is_refused_with_the_registered_names():
    res = agentd("algos", "nope")
    assert res.returncode == 2
    assert "unknown algo 'nope'" in res.stderr and "dac-deep" in res.stderr


def test_inherited_fields_keep_their_parents_meaning():
    from agentd.algorithms.tabular.pr import PRParams

    docs = field_docs(PRParams)
    assert set(docs) == {f.name for f in dataclasses.fields(PRParams)}
    assert all(docs.values())


@pytest.mark.parametrize("algo", ["dac", "pr", "random"])
def test_config_toml_records_every_resolved_param(algo, tmp_path):
    import tomllib

    from agentd.algorithms import load_learner_class
    from agentd.config import resolve
    from agentd.configfile import to_toml

    given = {"gamma": 0.9} if algo != "random" else {}
    config = resolve({}, {"algo": algo, "params": given or None})
    written = tomllib.loads(to_toml(config)).get("params", {})
    params_cls = load_learner_class(algo).Params
    fields = [f.name for f in dataclasses.fields(params_cls)]
    assert sorted(written) == sorted(fields)
    for name in fields:
        expected = given.get(name, getattr(params_cls(), name))
        assert written[name] == expected, name
    again = resolve(tomllib.loads(to_toml(config)), {})   # the file re-makes the same run
    assert again.params == written and again.algo == algo


def help_entries(help_text: str) -> dict[str, str]:
    """Each option of a --help text (its first flag) -> its whole help text, one line."""
    entries: dict[str, str] = {}
    flag = None
    for line in help_text.split("\n\n", 2)[-1].splitlines():
        if line.startswith("  -"):
            head = line.strip().split("  ", 1)
            flag = head[0].split()[0].rstrip(",")
            entries[flag] = head[1].strip() if len(head) > 1 else ""
        elif flag is not None and line.startswith(" " * 6):
            entries[flag] = (entries[flag] + " " + line.strip()).strip()
        else:
            flag = None
    return entries


def test_launch_help_documents_every_run_config_field_with_its_default(launch_help):
    """The drift test: every RunConfig field is in `agentd launch --help` -- a flag of its
    name with RunConfig's default, a table named by its flag, or a file-only field in the
    epilog -- and has its comment in RunConfig (the flag's help comes from it)."""
    from agentd.cli.catalog import config_field_docs
    from agentd.config import RunConfig

    docs = config_field_docs()
    entries = help_entries(launch_help)
    epilog = launch_help.split("set in the --config file only:", 1)[1]
    for f in dataclasses.fields(RunConfig):
        assert docs.get(f.name), f"RunConfig.{f.name} has no comment"
        flag = "--" + f.name.replace("_", "-")
        if flag in entries:
            assert entries[flag], flag
            if f.default not in ("", dataclasses.MISSING) and not isinstance(f.default, bool):
                assert f"default {f.default}" in entries[flag], (flag, entries[flag])
        else:
            assert f"[{f.name}]" in launch_help or f"{f.name}: {docs[f.name]}" in epilog, \
                f"RunConfig.{f.name} is missing from agentd launch --help"


def test_launch_help_follows_the_registries():
    """A learner and an env registered at run time show in the help (it is generated)."""
    prelude = ("from agentd.algorithms import ALGORITHMS\nfrom agentd.envs.registry import "
               "ENVS\nimport dataclasses\n"
               "ALGORITHMS['zz-new'] = ALGORITHMS['dac']\n"
               "ENVS['zz-env'] = dataclasses.replace(ENVS['matrix'], name='zz-env')")
    res = agentd("launch", "--help", prelude=prelude)
    assert res.returncode == 0, res.stderr
    assert listed(res.stdout, "--algo ALGO", "learner: ")[-1] == "zz-new"
    assert listed(res.stdout, "--env ENV", "ENV ")[-1] == "zz-env"
