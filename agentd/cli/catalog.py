"""What exists, read from the registries: learners (``ALGORITHMS``) and built-in envs (``ENVS``).

``agentd algos``, ``agentd envs`` and ``agentd launch --help`` print from here, so a learner or
env added to its registry shows everywhere without a second list to keep. Learner facts are
the class's own declarations (``agentd.algorithms.base.Learner``); a parameter's meaning is the
docstring under its field in the learner's Params dataclass.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import re
import textwrap
from dataclasses import dataclass
from typing import Any

from agentd.algorithms import ALGORITHMS, load_learner_class
from agentd.algorithms.base import Learner, LearnerConfigError
from agentd.algorithms.params import _declared
from agentd.envs.registry import ENVS, EnvRow

PLUGINS = ('plug-ins: a package installed with entry points in the groups "agentd.learners" '
           '(learners) and "agentd.envs" (PettingZoo env factories) adds them by name; '
           "--algo also takes package.module:Class")
EXTERNAL_ENV = ("any PettingZoo ParallelEnv as module:callable, e.g. "
                "mpe2.simple_spread_v3:parallel_env (agentd env check MODULE:CALLABLE)")


def family(algo: str) -> str:
    """The package a registered learner lives in: tabular, offpolicy, onpolicy or shaping;
    "plug-in" for a learner outside agentd (an entry point, or package.module:Class)."""
    if algo not in ALGORITHMS:
        return "plug-in"
    module = ALGORITHMS[algo].split(":")[0]
    return module.removeprefix("agentd.algorithms.").split(".")[0]


def algo_names() -> str:
    """The registered learners, then the installed plug-ins' (entry points), for ``--algo``'s
    help (no learner module imported)."""
    from agentd.algorithms import plugin_learners

    return ", ".join([*ALGORITHMS, *sorted(plugin_learners())])


def env_names() -> str:
    """The built-in envs, then the installed plug-ins' (entry points), for ``--env``'s help
    (no env module imported)."""
    from agentd.envs import plugin_envs

    return ", ".join([*ENVS, *sorted(plugin_envs())])


def config_field_docs() -> dict[str, str]:
    """RunConfig field -> the comment written beside it (its documentation, and the help of
    its flag)."""
    import io
    import tokenize

    from agentd.config import RunConfig

    docs: dict[str, str] = {}
    name = None
    source = textwrap.dedent(inspect.getsource(RunConfig))
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.NAME and tok.start[1] == 4 and name is None:
            name = tok.string          # a field's name starts its line, one indent in
        elif tok.type == tokenize.COMMENT and name is not None:
            docs[name] = tok.string.lstrip("#").strip()
        elif tok.type == tokenize.NEWLINE:
            name = None
    return {k: v for k, v in docs.items() if k in {f.name for f in
                                                  dataclasses.fields(RunConfig)}}


def declared_flags() -> tuple[str, ...]:
    """The yes/no capabilities the Learner base class declares (``ClassVar[bool]``)."""
    return tuple(name for name, kind in Learner.__annotations__.items()
                 if kind in ("ClassVar[bool]", "typing.ClassVar[bool]"))


@dataclass(frozen=True)
class AlgoRow:
    """One registered learner as ``agentd algos`` shows it."""

    name: str
    family: str
    cls: type[Learner] | None       # None: it could not be loaded here (see ``missing``)
    missing: str = ""               # "needs torch", or the error that stopped the import

    def describe(self) -> str:
        if self.cls is None:
            return f"{self.name:<11} {self.family:<9} ({self.missing})"
        c = self.cls
        flags = [f for f in declared_flags() if getattr(c, f)]
        kinds = ", ".join(sorted(c.permitted_kinds({}))) or "none"
        private = "not private" if c.non_private_reason({}) else "private"
        return (f"{self.name:<11} {self.family:<9} actions {c.action_type:<8} "
                f"obs {c.obs_type:<8} {private}; sends: {kinds}"
                + (f"; {', '.join(flags)}" if flags else "") + f"\n{'':<12}{about(c)}")


def load_row(name: str) -> AlgoRow:
    """The row of a registered learner or a plug-in; a deep one without torch shows as "needs
    torch", a plug-in that cannot be imported as the error that stopped it."""
    try:
        return AlgoRow(name, family(name), load_learner_class(name))
    except LearnerConfigError as exc:
        return AlgoRow(name, family(name), None,
                       "needs torch" if "PyTorch" in str(exc) else str(exc))


def about(cls: type) -> str:
    """The first sentence of its module's docstring (which names the paper), else of the
    class docstring."""
    module = inspect.getmodule(cls)
    return _first_sentence(module.__doc__ if module else "") or _first_sentence(cls.__doc__)


def _first_sentence(doc: str | None) -> str:
    text = " ".join((doc or "").strip().split("\n\n")[0].split())
    end = re.search(r"\.\s+(?=[A-Z])", text)    # not at "et al. 2018"
    return text if end is None else text[:end.start() + 1]


@dataclass(frozen=True)
class ParamRow:
    """One field of a learner's Params dataclass."""

    name: str
    type: str
    default: Any
    allowed: str
    meaning: str


def param_rows(params_cls: type) -> list[ParamRow]:
    """Every field of a Params dataclass: type, default, declared range, meaning."""
    docs = field_docs(params_cls)
    rows = []
    for f in dataclasses.fields(params_cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        allowed = _declared(params_cls, f.name)
        rows.append(ParamRow(f.name, f.type if isinstance(f.type, str) else f.type.__name__,
                             default, str(allowed) if allowed is not None else "",
                             docs.get(f.name, "")))
    return rows


def field_docs(params_cls: type) -> dict[str, str]:
    """Field name -> the docstring written under it, from the nearest class declaring it."""
    docs: dict[str, str] = {}
    for cls in reversed(params_cls.__mro__):
        if not dataclasses.is_dataclass(cls) or cls is object:
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, after in itertools.pairwise(body):
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and \
                    isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) and \
                    isinstance(after.value.value, str):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def describe_params(name: str) -> str:
    """``agentd algos NAME``: the learner's row and every parameter."""
    row = load_row(name)
    lines = [row.describe()]
    if row.cls is None:
        return lines[0]
    if row.cls.Params is None:
        return lines[0] + "\n\nno parameters"
    lines.append(f"\nparameters (--param NAME=VALUE), from {row.cls.Params.__name__}:")
    rows = param_rows(row.cls.Params)
    if not rows:
        lines.append("  (none)")
    for p in rows:
        rng = f" {p.allowed}" if p.allowed else ""
        lines.append(f"  {p.name:<16} {p.type:<6} default {p.default!r}{rng}\n"
                     f"  {'':<16} {p.meaning or '(undocumented)'}")
    return "\n".join(lines)


def describe_plugin_env(name: str, spec: str) -> str:
    """An installed plug-in env: its name and the factory it stands for."""
    return (f"{name:<16} plug-in: {spec}\n{'':<17}a PettingZoo ParallelEnv factory "
            f"(agentd env check {name})")


def describe_env(row: EnvRow, default_episode_len: int) -> str:
    """One built-in env: id, action and observation types, default episode length, doc."""
    def kind(fixed: str, switch: tuple[str, bool] | None) -> str:
        if switch is None:
            return fixed
        arg, default = switch
        now, other = ("box", "discrete") if default else ("discrete", "box")
        return f"{now} ({other} with {arg}={str(not default).lower()})"

    length = row.episode_len if row.episode_len is not None else default_episode_len
    args = ", ".join(row.kwargs) or "none"
    return (f"{row.name:<16} actions {kind(row.action_type, row.box_actions_with)}; "
            f"obs {kind(row.obs_type, row.box_obs_with)}; episode length {length}\n"
            f"{'':<17}{row.doc}; --env-arg: {args}")
