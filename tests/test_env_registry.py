"""The env registry: one row per built-in env, and each row's facts are true of the env it
builds (its action and observation types with and without the switching env arg, its game
facts); the config reads its facts from the row."""

from __future__ import annotations

import pytest

from agentd.config import ConfigError, resolve
from agentd.envs import BUILTIN_ENVS, DETERMINISTIC_ENVS, ENVS, make_env


def _build(name: str, **env_args):
    return make_env(name, n_agents=2, num_envs=1, episode_len=5, seed=0, env_kwargs=env_args)


def _types(spaces: list[dict]) -> set[str]:
    return {sp["type"] for sp in spaces}


@pytest.mark.parametrize("name", sorted(ENVS))
def test_a_row_says_what_its_env_is(name):
    row = ENVS[name]
    settings = [{}]
    for switch in (row.box_actions_with, row.box_obs_with):
        if switch is not None:
            settings.append({switch[0]: not switch[1]})
    for args in settings:
        env = _build(name, **args)
        try:
            assert _types(env.act_spaces) == {row.action_type_of(args)}, args
            assert _types(env.obs_spaces) == {row.obs_type_of(args)}, args
            assert bool(env.known_returns().get("optimal_return") is not None) \
                == row.knows_optimum
            assert hasattr(env, "greedy_return") == row.scores_greedy
        finally:
            env.close()
    assert set(row.kwargs) and row.doc


def test_the_old_names_are_read_from_the_rows():
    assert BUILTIN_ENVS == ("random-mdp", "digital", "spread", "ipd", "lstage",
                            "stochastic-game", "matrix")
    assert DETERMINISTIC_ENVS == ("lstage", "matrix")


def test_the_config_takes_episode_length_and_space_types_from_the_row(tmp_path):
    run = {"run_dir": str(tmp_path / "run")}
    assert resolve({}, {**run, "algo": "naive-pg", "env": "ipd", "n": 2}).episode_len == 150
    assert resolve({}, {**run, "algo": "iql", "env": "lstage", "n": 2}).episode_len == 50
    with pytest.raises(ConfigError, match="needs continuous \\(Box\\) actions; env 'ipd'"):
        resolve({}, {**run, "algo": "dac-deep", "env": "ipd", "n": 2})
    with pytest.raises(ConfigError, match="pass --env-arg continuous_actions=false"):
        resolve({}, {**run, "algo": "iql", "env": "spread"})
    with pytest.raises(ConfigError, match="needs discrete observations; env 'spread'"):
        resolve({}, {**run, "algo": "iql", "env": "spread",
                     "env_args": {"continuous_actions": False}})
    with pytest.raises(ConfigError, match="needs discrete observations; for env "
                                          "'stochastic-game' pass --env-arg one_hot=false"):
        resolve({}, {**run, "algo": "iql", "env": "stochastic-game",
                     "env_args": {"one_hot": True}})
