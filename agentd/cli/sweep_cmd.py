"""``agentd sweep SPEC.toml``: configurations x grid x seeds, a bounded number of runs at a
time, resumable, then a results table (IQM, 95% CI, per-seed values) and a figure with CI
bands. ``--report`` writes the table and figure again from the finished runs, running
nothing. The spec format: ``agentd.tools.sweep_spec`` (docs/sweeps.md)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="agentd sweep", description=__doc__)
    parser.add_argument("spec", type=Path, help="sweep spec (TOML)")
    parser.add_argument("--jobs", type=int, default=None,
                        help="runs at a time (default: the CPUs this process may use for "
                             "--backend inprocess; CPUs // (processes per run) for local, at "
                             "least 1)")
    parser.add_argument("--backend", choices=("inprocess", "local"), default=None,
                        help="override the spec's backend (default: the spec's, else "
                             "inprocess)")
    parser.add_argument("--steps", type=int, default=None,
                        help="override every cell's steps (a smaller budget; its own runs)")
    parser.add_argument("--seeds", type=int, default=None, metavar="N",
                        help="override the spec's seeds with 0..N-1")
    parser.add_argument("--grid", action="append", default=[], metavar="KEY=[V, ...]",
                        help="override one axis of the spec's grid with these values (a TOML "
                             "list), e.g. --grid 'env_args.L=[4]' (repeatable)")
    parser.add_argument("--dir", type=Path, default=None,
                        help="where the runs go (default runs/sweeps/NAME)")
    parser.add_argument("--report-dir", type=Path, default=None,
                        help="where the table and figure go (default: the spec's report_dir, else results/NAME beside "
                             "the spec)")
    parser.add_argument("--report", action="store_true",
                        help="only write the table and figure from the finished runs")
    parser.add_argument("--dry-run", action="store_true",
                        help="list the cells and which are finished; run nothing")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.jobs is not None and args.jobs < 1:
        parser.error("--jobs must be at least 1")
    if args.steps is not None and args.steps < 1:
        parser.error("--steps must be at least 1")
    if args.seeds is not None and args.seeds < 1:
        parser.error("--seeds must be at least 1")
    from agentd.config import ConfigError
    from agentd.configfile import parse_assignments
    from agentd.tools.sweep_spec import SpecError, load_spec

    try:
        spec = load_spec(args.spec)
        if args.steps is not None:
            spec.configs = {k: {**v, "steps": args.steps} for k, v in spec.configs.items()}
        if args.seeds is not None:
            spec.seeds = list(range(args.seeds))
        if args.backend is not None:
            spec.backend = args.backend
        for key, values in parse_assignments(args.grid, "--grid").items():
            if key not in spec.grid:
                raise SpecError(f"--grid {key}: the spec's grid has {sorted(spec.grid)}")
            if not isinstance(values, list) or not values:
                raise SpecError(f"--grid {key}: give a non-empty TOML list, e.g. {key}=[1, 2]")
            spec.grid[key] = values
        runs_dir = args.dir or Path("runs") / "sweeps" / spec.name
        cells = spec.cells(runs_dir)
    except (SpecError, ConfigError) as exc:
        print(f"agentd sweep: {exc}", file=sys.stderr)
        return 2
    from agentd.tools.sweep_report import collect, table_md, write_report
    from agentd.tools.sweep_run import SweepRunner, default_jobs, finished

    if args.dry_run:
        for cell in cells:
            state = "finished" if finished(cell, runs_dir) else "to run"
            print(f"{cell.rel_dir}  {state}")
        return 0
    failed = 0
    if not args.report:
        jobs = args.jobs or default_jobs(cells, spec.backend)
        print(f"agentd sweep {spec.name}: {len(cells)} runs ({len(spec.configs)} "
              f"configuration(s) x {len(cells) // len(spec.configs) // len(spec.seeds)} grid "
              f"point(s) x {len(spec.seeds)} seeds), {jobs} at a time, backend "
              f"{spec.backend}, runs in {runs_dir}", flush=True)
        try:
            out = SweepRunner(runs_dir, spec.backend, jobs, quiet=args.quiet).run(cells)
        except KeyboardInterrupt:
            print("agentd sweep: interrupted; finished runs are kept, run the same command "
                  "to resume", file=sys.stderr)
            return 130
        failed = len(out.failed)
        print(f"sweep done: {out.done} run, {out.skipped} already finished, {failed} failed, "
              f"wall time {out.wall_s:.1f} s (CPU of the runs {out.cpu_s:.1f} s)", flush=True)
    rows = collect(spec, cells, runs_dir)
    report_dir = args.report_dir or spec.report_dir or spec.path.parent / "results" / spec.name
    command = "agentd sweep " + " ".join(shlex.quote(a) for a in argv if a != "--report")
    paths = write_report(spec, rows, report_dir, command)
    print(table_md(spec, rows))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 1 if failed else 0
