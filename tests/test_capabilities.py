"""Declared capabilities: every registered learner's declarations are well-formed (the
conformance check, which must also catch a learner whose declarations are not), the runtime
reads them without probing (no getattr with a default on a learner or a core), and no
algorithm is named outside agentd/algorithms."""

from __future__ import annotations

import ast
import pickle
from pathlib import Path
from typing import ClassVar

import pytest

from agentd.agent.core import AgentCore
from agentd.algorithms import ALGORITHMS, load_learner_class
from agentd.algorithms.base import Learner, LearnerSpec
from agentd.algorithms.conformance import check_learner, check_registry
from agentd.algorithms.tabular.iql import IQL
from agentd.config import ConfigError, resolve

ROOT = Path(__file__).resolve().parents[1]
# where the runtime lives: everything but the learners themselves
RUNTIME = [ROOT / "coordinator", ROOT / "topologies", ROOT / "protocols",
           *(p for p in (ROOT / "agentd").iterdir() if p.name != "algorithms")]


def test_every_registered_learner_declares_its_capabilities_well():
    assert check_registry() == {name: [] for name in ALGORITHMS}


class Broken(Learner):
    name = "broken"
    peer_kinds = frozenset({"no-such-kind", "act"})
    action_type = "boxes"
    centralised = True
    joint_view = True
    greedy_q = True
    takes_turns = True                  # but no turn schedule
    follows_link_schedule = True        # but params_for_links refuses a schedule
    act_ahead = 1                       # type: ignore[assignment]
    act_ahead_why = ""
    act_ahead_off_with: ClassVar[dict[str, str]] = {"no_such_param": "why"}


def test_the_conformance_check_names_every_bad_declaration():
    problems = "\n".join(check_learner(Broken, "other"))
    for words in ("not the registered name 'other'", "act_ahead must be a bool",
                  "declare one", "action_type must be one of", "greedy_q needs",
                  "'no-such-kind' is not a registered peer-plane kind",
                  "'act' is not a registered peer-plane kind", "act_ahead_why must say",
                  "act_ahead_off_with names 'no_such_param'", "takes_turns is True",
                  "follows_link_schedule is True"):
        assert words in problems, words
    assert check_learner(IQL, "iql") == []


def test_the_capabilities_the_runtime_reads_come_from_the_class():
    assert load_learner_class("iql").greedy_q and not load_learner_class("central-q").greedy_q
    assert load_learner_class("ma2ql").takes_turns and not load_learner_class("iql").takes_turns
    dac_deep = load_learner_class("dac-deep")
    assert dac_deep.act_ahead_allowed({}) == (True, dac_deep.act_ahead_why)
    allowed, why = dac_deep.act_ahead_allowed({"pr_weight": 0.5})
    assert not allowed and why.startswith("pr_weight is set")
    assert load_learner_class("dac").act_ahead_allowed({})[0] is False
    assert dac_deep.params_for_links({}, True, 0.0) == {"running_sums": True}
    assert dac_deep.params_for_links({}, False, 2.0) == {"running_sums": True}
    assert dac_deep.params_for_links({}, False, 0.0) == {}
    assert set(dac_deep.dp_releases({})) == {"consensus"}


def test_only_a_learner_that_follows_link_schedules_gets_one(tmp_path):
    path = tmp_path / "links.txt"
    path.write_text("10 20 0 1\n")
    with pytest.raises(ConfigError, match="'isac' does not follow a link schedule"):
        resolve({}, {"algo": "isac", "env": "spread", "link_schedule": str(path)})
    config = resolve({}, {"algo": "dac-deep", "env": "spread", "link_schedule": str(path),
                          "run_dir": str(tmp_path / "run")})
    assert config.links_down == [[10, 20, 0, 1]] and config.params["running_sums"] is True


def test_a_core_pickled_before_its_later_fields_existed_restores_with_them_off():
    learner = IQL(LearnerSpec(agent_id=0, n_agents=1, neighbours=[], weights={0: 1.0},
                              obs_spaces=[{"type": "discrete", "n": 2}],
                              act_spaces=[{"type": "discrete", "n": 2}], controls=[0],
                              num_envs=1, seed=0))
    core = AgentCore({"config": {"episode_len": 5, "act_ahead": "on"}, "controls": [0]},
                     learner)
    core.early_replies = 3
    for name in AgentCore.LATER_FIELDS:
        if name != "early_replies":
            del core.__dict__[name]
    old = pickle.loads(pickle.dumps(core))
    assert old.early_replies == 3 and old.act_ahead is False and old.held is None
    assert not old.paused and not old.blocks_step()


def _python_files() -> list[Path]:
    out: list[Path] = []
    for p in RUNTIME:
        out += [p] if p.suffix == ".py" else sorted(p.rglob("*.py")) if p.is_dir() else []
    return out


def test_the_runtime_never_probes_with_getattr_and_a_default():
    found = []
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                    and node.func.id == "getattr" and len(node.args) == 3:
                target = ast.unparse(node.args[0])
                if any(word in target for word in ("learner", "core", "cls", "self")):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert found == []


def test_no_algorithm_is_named_outside_the_algorithms_package():
    def names(node: ast.AST) -> set[str]:
        elts = node.elts if isinstance(node, ast.Tuple | ast.List | ast.Set) else [node]
        return {e.value for e in elts if isinstance(e, ast.Constant) and e.value in ALGORITHMS}

    found = []
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                sides = [node.left, *node.comparators]
                if any("algo" in ast.unparse(s) for s in sides) and \
                        any(names(s) for s in sides):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert found == []
