"""The algorithm registry: algo name -> learner class, imported only when asked for.

Nothing here imports a learner module, so an agent process pays only for the learner it runs
(a tabular agent must not import torch, pettingzoo or gymnasium).
"""

from __future__ import annotations

import importlib
import importlib.util

from agentd.algorithms.base import Learner, LearnerConfigError

ALGORITHMS: dict[str, str] = {
    "dac": "agentd.algorithms.tabular.dac:DAC",
    "iql": "agentd.algorithms.tabular.iql:IQL",
    "central-q": "agentd.algorithms.tabular.central_q:CentralQ",
    "random": "agentd.algorithms.tabular.random_policy:RandomPolicy",
    "pr": "agentd.algorithms.tabular.pr:PR",
    "dac-deep": "agentd.algorithms.offpolicy.dac_deep:DacDeep",
    "isac": "agentd.algorithms.offpolicy.isac:Isac",
    "maddpg": "agentd.algorithms.offpolicy.maddpg:Maddpg",
    "naive-pg": "agentd.algorithms.shaping.naive_pg:NaivePG",
    "lola": "agentd.algorithms.shaping.lola:Lola",
    "meta-pg": "agentd.algorithms.shaping.meta:MetaPG",
    "meta-mapg": "agentd.algorithms.shaping.meta:MetaMAPG",
    "ippo": "agentd.algorithms.onpolicy.ippo:IPPO",
    "dpo": "agentd.algorithms.onpolicy.dpo:DPO",
    "mdpo": "agentd.algorithms.onpolicy.mdpo:MDPO",
    "ia2c": "agentd.algorithms.onpolicy.ia2c:IA2C",
    "maa2c": "agentd.algorithms.onpolicy.maa2c:MAA2C",
    "mappo": "agentd.algorithms.onpolicy.mappo:MAPPO",
    "coma": "agentd.algorithms.onpolicy.coma:COMA",
    "happo": "agentd.algorithms.onpolicy.happo:HAPPO",
    "mat": "agentd.algorithms.onpolicy.mat:MAT",
    "iql-deep": "agentd.algorithms.offpolicy.iql_deep:IqlDeep",
    "ma2ql": "agentd.algorithms.tabular.ma2ql:MA2QL",
    "ma2ql-deep": "agentd.algorithms.tabular.ma2ql:Ma2qlDeep",
    "i2q": "agentd.algorithms.tabular.i2q:I2Q",
    "i2q-deep": "agentd.algorithms.offpolicy.i2q_deep:I2qDeep",
}


def load_learner_class(name: str) -> type[Learner]:
    """Import and return the Learner subclass registered under name."""
    target = ALGORITHMS.get(name)
    if target is None:
        raise LearnerConfigError(f"unknown algo {name!r}; allowed: {sorted(ALGORITHMS)}")
    module_name, class_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == "torch":
            raise LearnerConfigError(torch_missing(name)) from None
        raise
    cls = getattr(module, class_name)
    if not (isinstance(cls, type) and issubclass(cls, Learner) and cls.name == name):
        raise LearnerConfigError(f"registry entry {name!r} -> {target} is not the "
                                 f"'{name}' Learner")   # a registry bug, not a user error
    if cls.needs_torch and not torch_installed():
        raise LearnerConfigError(torch_missing(name))
    return cls


def torch_installed() -> bool:
    """Whether torch can be imported here (found, not imported: that takes seconds)."""
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def torch_missing(name: str) -> str:
    return (f"algo '{name}' is a deep learner and needs PyTorch, which is not installed in "
            "this environment; install it with: pip install -c constraints.txt 'agentd[deep]' "
            "(from a checkout: pip install -c constraints.txt -e '.[deep]')")
