"""A sweep's spec file (``agentd sweep SPEC.toml``) and the cells it expands to.

A spec is TOML::

    [sweep]
    name = "i2q_lstage"            # default: the file's stem
    seeds = 5                      # an integer n (seeds 0..n-1) or a list of seeds
    backend = "inprocess"          # inprocess (default) | local
    metric = "final_return"        # the summary.json key the results table reports
    algos = ["dac", "iql"]         # shorthand for [configs.dac] algo = "dac", ...
    claim = "..."                  # free text, copied into the report
    source = "..."                 # the paper or seed the claim is from

    [base]                         # RunConfig fields (as in a config.toml), every cell
    env = "lstage"
    n = 2

    [configs.iql]                  # named configurations: fields merged over [base]
    algo = "i2q"                   # (params and env_args merge key by key)
    params = { ideal = false }

    [grid]                         # the cartesian product, over every configuration
    "env_args.L" = [3, 4, 5]       # a RunConfig field, or params.KEY / env_args.KEY

Cells are configurations x grid points x seeds. Every cell's config is resolved and validated
(``agentd.config.resolve``) before anything runs, so a bad spec fails at once, naming the
cell and the field.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentd.config import FIELDS, TABLES, ConfigError, RunConfig, resolve
from agentd.configfile import load_toml, to_toml

BACKENDS = ("inprocess", "local")
SWEEP_KEYS = {"name", "seeds", "backend", "metric", "algos", "claim", "source", "note",
              "report_dir"}
# fields a sweep sets per cell, or which would make cells interfere
RESERVED = {"seed", "run_dir"}


class SpecError(ValueError):
    """A sweep spec that cannot run; the message names the key (and the cell)."""


@dataclass(frozen=True)
class Cell:
    """One run of the sweep: a configuration at one grid point and one seed.

    ``digest`` hashes what the cell runs (its resolved config.toml without the run directory,
    and the backend); the cell's directory ends in it, so a changed spec or budget runs in
    directories of its own and never overwrites a finished run of another."""

    config_name: str
    grid: tuple[tuple[str, Any], ...]     # (key, value) of the grid point, in spec order
    seed: int
    digest: str = ""
    config: RunConfig = field(default_factory=RunConfig, compare=False, repr=False)

    @property
    def group(self) -> str:
        """The table row it belongs to: configuration and grid point."""
        return self.config_name + ("" if not self.grid else " " + grid_label(self.grid))

    @property
    def rel_dir(self) -> Path:
        parts = [self.config_name] + ([slug(grid_label(self.grid))] if self.grid else [])
        return Path(*parts) / f"seed-{self.seed}-{self.digest}"


def digest_of(config: RunConfig, backend: str) -> str:
    text = to_toml(dataclasses.replace(config, run_dir="")) + f"\nbackend = {backend!r}\n"
    return hashlib.sha256(text.encode()).hexdigest()[:10]


@dataclass
class Spec:
    name: str
    path: Path
    seeds: list[int]
    backend: str
    metric: str
    configs: dict[str, dict[str, Any]]
    grid: dict[str, list[Any]]
    claim: str = ""
    source: str = ""
    note: str = ""
    report_dir: Path | None = None   # where --report writes (relative to the spec file)

    def cells(self, runs_dir: Path) -> list[Cell]:
        """Every cell, configuration-major, seeds innermost; each config resolved."""
        out = []
        points = list(itertools.product(*self.grid.values())) if self.grid else [()]
        for name, values in self.configs.items():
            for point in points:
                grid = tuple(zip(self.grid, point, strict=True))
                for seed in self.seeds:
                    probe = Cell(name, grid, seed)
                    cell_values = merge(values, dict(grid))
                    cell_values.update(seed=seed, run_dir=".")
                    try:
                        config = resolve(cell_values, {})
                    except ConfigError as exc:
                        raise SpecError(f"{self.path}: cell {probe.group} seed {seed}: "
                                        f"{exc}") from None
                    cell = Cell(name, grid, seed, digest_of(config, self.backend), config)
                    config.run_dir = str(runs_dir / cell.rel_dir)
                    out.append(cell)
        return out


def grid_label(grid: tuple[tuple[str, Any], ...]) -> str:
    return ",".join(f"{k.split('.')[-1]}={v}" for k, v in grid)


def slug(text: str) -> str:
    return re.sub(r"[^\w.=,+-]", "_", text)


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on ``base``; tables merge key by key, ``params.KEY`` sets one table entry."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for key, value in over.items():
        table, dot, sub = key.partition(".")
        if dot:
            out[table] = {**out.get(table, {}), sub: value}
        elif key in TABLES and isinstance(value, dict):
            out[key] = {**out.get(key, {}), **value}
        else:
            out[key] = value
    return out


def _check_key(key: str, where: str, path: Path) -> None:
    table, dot, sub = key.partition(".")
    if dot:
        if table not in TABLES or not sub:
            raise SpecError(f"{path}: {where} key '{key}': a dotted key must be one of "
                            f"{', '.join(t + '.KEY' for t in TABLES)}")
        return
    if key in RESERVED:
        raise SpecError(f"{path}: {where} sets '{key}'; the sweep sets it per cell (seeds in "
                        "[sweep] seeds, run directories under the sweep directory)")
    if key not in FIELDS:
        raise SpecError(f"{path}: {where} key '{key}' is no run config field; allowed: "
                        f"{', '.join(sorted(FIELDS))}")


def load_spec(path: str | Path) -> Spec:
    """Read and check a spec file; ``SpecError`` names what is wrong."""
    path = Path(path)
    try:
        raw = load_toml(path)
    except ConfigError as exc:
        raise SpecError(str(exc)) from None
    unknown = set(raw) - {"sweep", "base", "configs", "grid"}
    if unknown:
        raise SpecError(f"{path}: unknown table(s) {sorted(unknown)}; a spec has [sweep], "
                        "[base], [configs.NAME] and [grid]")
    head = _table(raw, "sweep", path)
    bad = set(head) - SWEEP_KEYS
    if bad:
        raise SpecError(f"{path}: unknown [sweep] key(s) {sorted(bad)}; allowed: "
                        f"{', '.join(sorted(SWEEP_KEYS))}")
    base = _table(raw, "base", path)
    for key in base:
        _check_key(key, "[base]", path)
    configs = {str(k): v for k, v in _table(raw, "configs", path).items()}
    for name in _list(head.get("algos", []), "[sweep] algos", path, str):
        if name in configs:
            raise SpecError(f"{path}: '{name}' is both in [sweep] algos and a [configs] table")
        configs[name] = {"algo": name}
    if not configs:
        raise SpecError(f"{path}: no configuration to run: give [sweep] algos = [...] or "
                        "[configs.NAME] tables")
    for name, values in configs.items():
        if not isinstance(values, dict):
            raise SpecError(f"{path}: [configs.{name}] must be a table of run config fields")
        if not re.fullmatch(r"[\w.+-]+", name):
            raise SpecError(f"{path}: configuration name {name!r}: letters, digits, . + - _")
        for key in values:
            _check_key(key, f"[configs.{name}]", path)
    grid = _table(raw, "grid", path)
    for key, values in grid.items():
        _check_key(key, "[grid]", path)
        if not isinstance(values, list) or not values:
            raise SpecError(f"{path}: [grid] '{key}' must be a non-empty list of values")
    seeds = head.get("seeds", 5)
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if seeds < 1:
            raise SpecError(f"{path}: [sweep] seeds = {seeds}: at least 1")
        seeds = list(range(seeds))
    seeds = _list(seeds, "[sweep] seeds", path, int)
    if len(set(seeds)) != len(seeds) or any(s < 0 for s in seeds):
        raise SpecError(f"{path}: [sweep] seeds must be distinct integers >= 0, got {seeds}")
    backend = head.get("backend", "inprocess")
    if backend not in BACKENDS:
        raise SpecError(f"{path}: [sweep] backend = {backend!r}: one of {', '.join(BACKENDS)}")
    spec = Spec(name=str(head.get("name", path.stem)), path=path, seeds=seeds, backend=backend,
                metric=str(head.get("metric", "final_return")),
                configs={k: merge(base, v) for k, v in configs.items()}, grid=grid,
                claim=str(head.get("claim", "")), source=str(head.get("source", "")),
                note=str(head.get("note", "")),
                report_dir=(Path(os.path.normpath(path.parent / str(head["report_dir"])))
                            if "report_dir" in head
                            else None))
    if not re.fullmatch(r"[\w.+-]+", spec.name):
        raise SpecError(f"{path}: [sweep] name {spec.name!r}: letters, digits, . + - _")
    return spec


def _table(raw: dict[str, Any], name: str, path: Path) -> dict[str, Any]:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise SpecError(f"{path}: '{name}' must be a table ([{name}])")
    return value


def _list(value: Any, where: str, path: Path, kind: type) -> list:
    if not isinstance(value, list) or not all(isinstance(v, kind) and not isinstance(v, bool)
                                              for v in value):
        raise SpecError(f"{path}: {where} must be a list of {kind.__name__}, got {value!r}")
    return value
