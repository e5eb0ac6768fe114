"""MkDocs hook: the pages generated from the code, so the site cannot drift from it.

* ``reference/cli.md``: every command's ``--help`` (the parsers the CLI itself builds) and every
  ``RunConfig`` field with its default and meaning (the comment written beside the field).
* ``algorithms/<name>.md``: one page per registered learner — what it declares (action and
  observation types, what it sends, privacy, act-ahead), every parameter with its default and
  range (the same rows as ``agentd algos NAME``), the paper, its results figure.
* The nav's "Algorithms" section: one entry per family (its hand-written page) with its
  learners under it, in registry order.

Paper links and results figures are the one hand-kept part, in ``docs/algorithms/papers.toml``.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import re
import tomllib
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File

DOCS = Path(__file__).parent / "docs"
FAMILIES = {"tabular": "Tabular learners", "offpolicy": "Off-policy deep learners",
            "onpolicy": "On-policy learners", "shaping": "Opponent shaping (IPD)"}


def on_config(config: Any) -> Any:
    """Put the family pages and one page per learner under the nav's "Algorithms" entry."""
    from agentd.algorithms import ALGORITHMS
    from agentd.cli.catalog import family
    section: list[Any] = ["algorithms/index.md"]
    for fam, title in FAMILIES.items():
        names = [a for a in ALGORITHMS if family(a) == fam]
        section.append({title: [f"algorithms/{fam}.md"]
                        + [{a: f"algorithms/{a}.md"} for a in names]})
    for entry in config["nav"]:
        if isinstance(entry, dict) and "Algorithms" in entry:
            entry["Algorithms"] = section
    return config


def on_files(files: Any, config: Any) -> Any:
    """Add the generated pages to the site."""
    from agentd.algorithms import ALGORITHMS
    pages = {"reference/cli.md": cli_page()}
    papers = tomllib.loads((DOCS / "algorithms" / "papers.toml").read_text())
    for name in ALGORITHMS:
        pages[f"algorithms/{name}.md"] = algo_page(name, papers.get(name, {}))
    for uri, text in pages.items():
        files.append(File.generated(config, uri, content=text))
    return files


# --- the CLI reference -------------------------------------------------------------------

def help_text(command: str) -> str:
    """What ``agentd COMMAND --help`` prints (the command's own parser)."""
    return command_output(command, ["--help"])


def command_output(command: str, argv: list[str]) -> str:
    """What ``agentd COMMAND ARGV`` prints, run in this process."""
    import importlib

    from agentd.cli import COMMANDS
    module = importlib.import_module(COMMANDS[command][0])
    entry = getattr(module, "topology_main", None) or module.run
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        entry(argv)
    return out.getvalue().rstrip()


def config_fields() -> list[tuple[str, str, str, str]]:
    """RunConfig's fields: name, type, default, meaning (the docstring under the field, or
    the comment beside it)."""
    import dataclasses

    from agentd.cli.catalog import field_docs
    from agentd.config import RunConfig
    comments = {}
    for line in inspect.getsource(RunConfig).splitlines():
        m = re.match(r"\s{4}(\w+): [^=]+= .+?#\s*(.*)$", line)
        if m:
            comments[m.group(1)] = m.group(2)
    docs = {**comments, **field_docs(RunConfig)}
    rows = []
    for f in dataclasses.fields(RunConfig):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        typ = f.type if isinstance(f.type, str) else f.type.__name__
        rows.append((f.name, typ, repr(default), docs.get(f.name, "")))
    return rows


def cli_page() -> str:
    import os

    from agentd.cli import COMMANDS, USAGE
    os.environ.setdefault("COLUMNS", "100")
    parts = ["# CLI reference\n",
             ("Generated from the command line's own parsers and from `RunConfig`, the same "
             "source `agentd COMMAND --help` prints from: a command, flag, learner or env added "
             "to the code appears here with nothing else to edit.\n"),
             "```\n$ agentd --help\n" + USAGE + "\n```\n"]
    for command in COMMANDS:
        parts.append(f"## agentd {command}\n")
        parts.append(f"```\n$ agentd {command} --help\n{help_text(command)}\n```\n")
    for command in ("algos", "envs"):
        parts.append(f"## What `agentd {command}` lists\n")
        parts.append(f"```\n$ agentd {command}\n{command_output(command, [])}\n```\n")
    parts.append("## Run configuration (`config.toml`)\n")
    parts.append("A config file (`--config FILE.toml`) uses these names; `--param KEY=VALUE` "
                 "fills `[params]`, `--env-arg KEY=VALUE` fills `[env_args]`; flags override "
                 "the file, and the resolved config is written to the run directory as "
                 "`config.toml`.\n")
    parts.append("| field | type | default | meaning |\n|---|---|---|---|")
    for name, typ, default, doc in config_fields():
        parts.append(f"| `{name}` | `{typ}` | `{default}` | {_cell(doc)} |")
    return "\n".join(parts) + "\n"


# --- one page per learner ----------------------------------------------------------------

def algo_page(name: str, paper: dict[str, Any]) -> str:
    from agentd.cli.catalog import about, declared_flags, family, load_row, param_rows
    row = load_row(name)
    fam = family(name)
    out = [f"# `{name}`\n"]
    if row.cls is None:
        return "\n".join(out + [(f"Could not be loaded where the site was built "
                                f"({row.missing}).\n")])
    cls = row.cls
    out.append(about(cls) + "\n")
    out.append(f"Family: [{FAMILIES[fam]}]({fam}.md). Run it: "
               f"`agentd launch --algo {name}`" + (f" {paper['example']}" if paper.get(
                   "example") else "") + f"; every parameter: `agentd algos {name}`.\n")
    kinds = sorted(cls.permitted_kinds({}))
    private = cls.non_private_reason({})
    facts = [("actions", cls.action_type), ("observations", cls.obs_type),
             ("sends to neighbours", ", ".join(f"`{k}`" for k in kinds) or "nothing"),
             ("private", "no: " + private if private else "yes"),
             ("act-ahead", "allowed" if cls.act_ahead else "off: " + cls.act_ahead_why),
             ("needs torch", "yes" if cls.needs_torch else "no")]
    flags = [f for f in declared_flags() if f not in ("needs_torch", "act_ahead")
             and getattr(cls, f)]
    if flags:
        facts.append(("declares", ", ".join(f"`{f}`" for f in flags)))
    out.append("## What it is\n\n| | |\n|---|---|")
    out += [f"| {k} | {_cell(str(v))} |" for k, v in facts]
    if paper.get("sends"):
        out.append(f"\n{paper['sends']}\n")
    out += messages_section({*kinds, *re.findall(r"`(\w+)`", paper.get("sends", ""))})
    out.append("\n## Parameters\n")
    if cls.Params is None:
        out.append("None.\n")
    else:
        out.append(f"`--param NAME=VALUE` (or `[params]` in a config file); from "
                   f"`{cls.Params.__module__}.{cls.Params.__name__}`.\n")
        out.append("| name | type | default | allowed | meaning |\n|---|---|---|---|---|")
        for p in param_rows(cls.Params):
            out.append(f"| `{p.name}` | `{p.type}` | `{p.default!r}` | {_cell(p.allowed)} | "
                       f"{_cell(p.meaning)} |")
    out.append("\n## Paper\n")
    cites = paper.get("papers", [])
    out.append("\n".join(f"* [{c['title']}]({c['url']}) — {c['authors']}" for c in cites)
               or "None: a baseline of this project.")
    if paper.get("figure"):
        out.append(f"\n## Results\n\n![{name}]({paper['figure']})\n\n{paper.get('caption', '')}"
                   f" The full write-up, with the command that makes the figure: "
                   f"[{FAMILIES[fam]}]({fam}.md).\n")
    return "\n".join(out) + "\n"


def messages_section(kinds: set[str]) -> list[str]:
    """The peer kinds a learner may send, as the registry of kinds declares them."""
    from protocols.kinds import REGISTRY
    kinds = sorted(k for k in kinds if k in REGISTRY and REGISTRY[k].plane == "peer")
    if not kinds:
        return []
    out = ["## Messages\n", "| kind | what it carries | fields | released under DP |",
           "|---|---|---|---|"]
    for k in kinds:
        kind = REGISTRY[k]
        released = ", ".join(f"`{f}` (per {u})" for f, u in kind.released.items()) or "—"
        out.append(f"| `{k}` | {_cell(kind.doc)} | {', '.join(f'`{f}`' for f in kind.fields)} "
                   f"| {released} |")
    return [*out, ""]


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")
