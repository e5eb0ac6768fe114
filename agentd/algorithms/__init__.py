"""The algorithm registry: algo name -> learner class, imported only when asked for.

Nothing here imports a learner module, so an agent process pays only for the learner it runs
(a tabular agent must not import torch, pettingzoo or gymnasium).

Plug-ins: ``--algo`` also takes a learner outside this package, as ``package.module:Class``
or as the name an installed distribution gives it in the ``agentd.learners`` entry-point group
(``[project.entry-points."agentd.learners"] mine = "mypkg.learner:Mine"``). A run records a
plug-in by its ``module:Class`` (``canonical_algo``), so every process of the run, and every
host, loads that very class; a built-in name always means the built-in.
"""

from __future__ import annotations

import importlib
import importlib.util
import re

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


LEARNER_GROUP = "agentd.learners"      # entry-point group of plug-in learners
_SPEC = re.compile(r"([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):([A-Za-z_]\w*)")


def is_spec(algo: str) -> bool:
    """Whether ``algo`` is written as a plug-in's ``package.module:Class``."""
    return isinstance(algo, str) and _SPEC.fullmatch(algo) is not None


def plugin_learners() -> dict[str, str]:
    """Installed plug-in learners: entry-point name -> ``module:Class`` (group
    ``agentd.learners``), built-in names left out (a built-in name means the built-in)."""
    from agentd.envs import entry_point_targets

    return entry_point_targets(LEARNER_GROUP, ALGORITHMS)


def canonical_algo(algo: str) -> str:
    """What a run records for ``--algo``: a built-in name as it is, a plug-in (entry-point
    name or ``module:Class``) as its ``module:Class``; LearnerConfigError for anything else."""
    if algo in ALGORITHMS or is_spec(algo):
        return algo
    plugins = plugin_learners() if isinstance(algo, str) else {}
    if algo in plugins:
        if not is_spec(plugins[algo]):
            raise LearnerConfigError(f"plug-in {algo!r}: its entry point ({LEARNER_GROUP}) "
                                     f"is {plugins[algo]!r}, not 'package.module:Class'")
        return plugins[algo]
    hint = "." in algo and ":" not in algo if isinstance(algo, str) else False
    raise LearnerConfigError(
        f"unknown algo {algo!r}: one of {', '.join(ALGORITHMS)}"
        + (f"; installed plug-ins: {', '.join(plugins)}" if plugins else "")
        + "; or a plug-in learner as package.module:Class"
        + (" (the class follows a ':')" if hint else ""))


def load_learner_class(name: str) -> type[Learner]:
    """Import and return the Learner subclass registered under name: a built-in name, an
    installed plug-in's entry-point name, or a plug-in's ``package.module:Class``."""
    target = ALGORITHMS.get(name)
    if target is None:
        return _load_plugin(canonical_algo(name))
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


def learner_on_this_host(algo: str) -> type[Learner]:
    """``load_learner_class`` in a process that joined a run: a learner it cannot load (a
    plug-in not installed on this host) is a LearnerConfigError naming this host."""
    try:
        return load_learner_class(algo)
    except LearnerConfigError as exc:
        import socket

        raise LearnerConfigError(f"host {socket.gethostname()!r} cannot load the run's "
                                 f"learner: {exc}") from None


def _load_plugin(spec: str) -> type[Learner]:
    """The plug-in learner class ``module:Class``; a LearnerConfigError names the module and
    what stopped its import (importing it registers its message kinds)."""
    module_name, class_name = spec.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == "torch":
            raise LearnerConfigError(torch_missing(spec)) from None
        missing = exc.name and (module_name == exc.name or module_name.startswith(exc.name + "."))
        raise LearnerConfigError(
            f"plug-in learner {spec!r}: module '{module_name}' "
            + ("not found (is its package installed in this environment?)" if missing
               else f"failed to import: {exc}")) from None
    except Exception as exc:  # noqa: BLE001 - any import-time failure of a plug-in is named
        raise LearnerConfigError(f"plug-in learner {spec!r}: importing module '{module_name}' "
                                 f"failed: {type(exc).__name__}: {exc}") from None
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Learner)):
        raise LearnerConfigError(f"plug-in learner {spec!r}: module '{module_name}' has no "
                                 f"Learner subclass '{class_name}'")
    if not cls.name:
        raise LearnerConfigError(f"plug-in learner {spec!r}: {class_name}.name is empty "
                                 "(name it as --algo will)")
    if cls.needs_torch and not torch_installed():
        raise LearnerConfigError(torch_missing(spec))
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
