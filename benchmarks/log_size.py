"""Message-log bytes per joint step, compressed (today's writer) against the same records
uncompressed (the version 1 layout: ``u32 length | msgpack`` per record).

For each run below this launches ``agentd launch`` once, then reads every ``logs/*.log`` of
the run directory and counts, per process and in all, the bytes on disk and the bytes the
same records take in the version 1 layout (4 + the msgpack length of each record: exactly
what the version 1 writer wrote for them). Both figures come from one run, so machine
noise does not enter the ratio. ``--baseline REV`` also runs the same commands with the
agentd of commit REV (exported with ``git archive``), whose logs show what that commit
really wrote.

Runs (``--runs``):
* default  -- ``agentd launch --topology ring --n 5`` (dac on random-mdp, 20,000 steps)
* pursuit  -- SISL pursuit (8 pursuers), n = 8, ``random``
* dac-deep -- ``dac-deep`` on MPE simple_spread (mpe2), n = 3, updates (and consensus
  messages: 128 float64 values and 128 int32 indices per edge and step) from step 500

``--steps S`` sets the steps of the pursuit and dac-deep runs, ``--default-steps`` those of
the default run (20,000, the main job). ``--levels L ...`` writes each run's records again at
those zstandard levels (the writer uses ``agentd.runtime.msglog.LEVEL``), chunk for chunk.
"""

from __future__ import annotations

import argparse
import io
import os
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import msgpack
import zstandard
from throughput import export_tree

RUNS: dict[str, list[str]] = {
    "default": ["--topology", "ring", "--n", "5"],
    "pursuit": ["--env", "pettingzoo.sisl.pursuit_v5:parallel_env", "--n", "8",
                "--algo", "random"],
    "dac-deep": ["--env", "mpe2.simple_spread_v3:parallel_env", "--n", "3",
                 "--algo", "dac-deep", "--env-arg", "N=3", "--param", "start=500"],
}
SHORT = {"pursuit": 1000, "dac-deep": 1500}     # dac-deep: 1000 steps of consensus traffic
_LEN = struct.Struct("<I")
CHUNK = 0x8000_0000
TARGET = 0.25


def log_bytes(path: Path) -> tuple[int, int, int]:
    """(bytes on disk, bytes of the same records in the version 1 layout, records), parsed
    here from the file format alone."""
    data, pos, plain, records = path.read_bytes(), 0, 0, 0
    stream = None
    while pos + 4 <= len(data):
        (word,) = _LEN.unpack_from(data, pos)
        end = pos + 4 + (word & ~CHUNK)
        if end > len(data):
            break
        if word & CHUNK:
            for record in msgpack.Unpacker(io.BytesIO(stream.decompress(data[pos + 4:end])),
                                           raw=False):
                plain += 4 + len(msgpack.packb(record, use_bin_type=True))
                records += 1
        else:
            record = msgpack.unpackb(data[pos + 4:end], raw=False)
            if record[0] == "meta":    # as the version 1 writer had it
                record[2].pop("compression", None)
                record[2]["version"] = 1
            plain += 4 + len(msgpack.packb(record, use_bin_type=True))
            records += 1
            stream = zstandard.ZstdDecompressor().decompressobj()
        pos = end
    return len(data), plain, records


def relevel(path: Path, level: int) -> int:
    """Bytes on disk of the same log written at zstandard ``level``: every chunk's records
    compressed again, chunk for chunk (one stream per meta record, a block flush per chunk,
    as the writer does), so only the level differs."""
    data, pos, total = path.read_bytes(), 0, 0
    stream = out = None
    while pos + 4 <= len(data):
        (word,) = _LEN.unpack_from(data, pos)
        end = pos + 4 + (word & ~CHUNK)
        if end > len(data):
            break
        if word & CHUNK:
            plain = stream.decompress(data[pos + 4:end])
            total += 4 + len(out.compress(plain) + out.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK))
        else:
            total += end - pos
            stream = zstandard.ZstdDecompressor().decompressobj()
            out = zstandard.ZstdCompressor(level=level).compressobj()
        pos = end
    return total


def report_levels(run_dir: Path, steps: int, levels: list[int]) -> None:
    """The lever of the compression level, on this run's own records."""
    logs = sorted((run_dir / "logs").glob("*.log"))
    plain = sum(log_bytes(p)[1] for p in logs)
    for level in levels:
        disk = sum(relevel(p, level) for p in logs)
        print(f"  zstd level {level:>2}: {disk / steps:>8,.0f} B/step, {disk / plain:.3f} of v1")


def launch(name: str, steps: int | None, tmp: Path, tree: Path | None) -> Path:
    run_dir = tmp / f"{name}-{'before' if tree else 'now'}"
    cmd = [sys.executable, "-m", "agentd", "launch", "--quiet", "--run-dir", str(run_dir),
           *RUNS[name], *(["--steps", str(steps)] if steps else [])]
    env = None if tree is None else {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=env, cwd=tmp, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stdout[-3000:]}")
    print(f"  {name} ({'before' if tree else 'now'}): "
          f"{next(t for t in done.stdout.splitlines() if t.startswith('run done'))}", flush=True)
    return run_dir


def measure(run_dir: Path, steps: int) -> dict[str, tuple[int, int, int]]:
    sizes = {p.stem: log_bytes(p) for p in sorted((run_dir / "logs").glob("*.log"))}
    sizes["all"] = tuple(sum(v[i] for v in sizes.values()) for i in range(3))
    return sizes


def report(name: str, steps: int, now: dict, before: dict | None) -> float:
    disk, plain, _ = now["all"]
    print(f"\n{name}: agentd launch {' '.join(RUNS[name])} --steps {steps}")
    print(f"  {'log':<12} {'records':>9} {'v1 B/step':>10} {'zstd B/step':>12} {'ratio':>6}")
    for proc, (d, p, r) in now.items():
        print(f"  {proc:<12} {r:>9,} {p / steps:>10,.0f} {d / steps:>12,.0f} {d / p:>6.3f}")
    if before is not None:
        b = before["all"][0]
        print(f"  measured before (the baseline's own logs): {b / steps:,.0f} B/step, "
              f"now/before {disk / b:.3f}")
    million = disk / steps * 1e6
    print(f"  a million joint steps: {million / 2**30:.2f} GiB compressed, "
          f"{plain / steps * 1e6 / 2**30:.2f} GiB uncompressed")
    return disk / (before["all"][0] if before else plain)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", nargs="+", choices=list(RUNS), default=list(RUNS))
    parser.add_argument("--steps", type=int, default=None,
                        help="steps of the pursuit and dac-deep runs (default 1000, 1500)")
    parser.add_argument("--default-steps", type=int, default=20000,
                        help="steps of the default run (default 20000, the main job)")
    parser.add_argument("--baseline", default=None, metavar="REV",
                        help="also run the agentd of commit REV and read its logs")
    parser.add_argument("--levels", nargs="*", type=int, default=[],
                        help="also write the same records again at these zstandard levels")
    args = parser.parse_args()
    ratios = {}
    with tempfile.TemporaryDirectory(prefix="agentd-logsize-") as tmp_name:
        tmp = Path(tmp_name)
        tree = export_tree(args.baseline, tmp / "baseline") if args.baseline else None
        for name in args.runs:
            steps = args.default_steps if name == "default" else (args.steps or SHORT[name])
            before = None
            if tree is not None:
                before = measure(launch(name, steps, tmp, tree), steps)
            run_dir = launch(name, steps, tmp, None)
            now = measure(run_dir, steps)
            ratios[name] = report(name, steps, now, before)
            if args.levels:
                report_levels(run_dir, steps, args.levels)
    print("\nTarget: logs <= 1/4 of the uncompressed size in bytes per joint step.")
    for name, ratio in ratios.items():
        print(f"  {name:<9} {ratio:.3f}  {'met' if ratio <= TARGET else 'NOT MET'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
