"""Deep learners at n = 3: env steps/s and gradient updates/s, processes vs one process.

For dac-deep (batch consensus, the default), dac-deep in the paper's full-buffer mode and isac
on ``spread`` (global state, n = 3 ring), each repeat measures, interleaved:

* agentd -- ``agentd launch`` (3 agent processes + env server + coordinator) with act-ahead
  (the default for these learners: an agent sends its next action before its update, so the
  env server steps while the agents update). Env steps/s is
  the env server's rate over the whole run; gradient updates/s = 3 agents x (steps - start)
  updates / the same wall time (each agent does one critic + one actor step per joint step
  once its buffer holds ``start`` entries).
* agentd-off -- the same launch with ``--act-ahead off`` (observe -> update -> act in series,
  the path before act-ahead).
* single -- the same learners and env in ONE process (``agentd.launch.inprocess``: the agents' cores
  wired to each other directly, consensus messages handed over in memory).

and the consensus traffic: peer bytes per directed edge per step, averaged over the run and at
its last step (full mode grows with the buffer; batch mode does not). The table shows medians
over repeats and the ratios agentd / single and agentd-off / single.

    python benchmarks/deep.py                  # 2 repeats, 3,000 steps per run
    python benchmarks/deep.py --steps 6000 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = {"dac-deep": ["mode=batch"], "dac-deep:full": ["mode=full"], "isac": []}
N, START = 3, 500


def params_for(variant: str) -> list[str]:
    return [f"start={START}", *VARIANTS[variant]]


def launch(variant: str, steps: int, tmp: Path, act_ahead: str = "auto") -> dict[str, float]:
    run_dir = tmp / f"{variant.replace(':', '-')}-{time.monotonic_ns()}"
    extra = [x for p in params_for(variant) for x in ("--param", p)]
    cmd = [sys.executable, "-m", "agentd", "launch", "--quiet", "--run-dir", str(run_dir),
           "--algo", variant.split(":")[0], "--env", "spread", "--n", str(N), "--steps",
           str(steps), "--act-ahead", act_ahead, *extra]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    s = json.loads((run_dir / "summary.json").read_text())
    wall = s["envserver"]["wall_s"]
    return {"steps_s": s["steps_per_s"], "updates_s": N * (steps - START) / wall,
            "bytes_edge_step": s["peer_bytes_per_edge_per_step"],
            "bytes_edge_last": s["peer_bytes_per_edge_last_step"]}


def single(variant: str, steps: int) -> dict[str, float]:
    from agentd.launch.inprocess import build_env, make_learners, run_in_process

    env = build_env("spread", N, obs_mode="state")
    params = dict(p.split("=") for p in params_for(variant))
    learners = make_learners(variant.split(":")[0], env, N,
                             params={k: int(v) if v.isdigit() else v for k, v in params.items()})
    started = time.perf_counter()
    res = run_in_process(env, learners, steps)     # act-ahead auto, as the launch
    wall = time.perf_counter() - started
    env.close()
    edges = 2 * N   # ring of 3: 3 undirected edges
    last = res.peer_bytes_by_step.get(steps - 1, 0) / edges
    return {"steps_s": steps / wall, "updates_s": N * (steps - START) / wall,
            "bytes_edge_step": res.peer_bytes / edges / steps, "bytes_edge_last": last}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    args = parser.parse_args()
    samples: dict[tuple[str, str], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            for variant in args.variants:
                for where, fn in (
                        ("agentd", lambda v: launch(v, args.steps, Path(tmp))),
                        ("agentd-off", lambda v: launch(v, args.steps, Path(tmp), "off")),
                        ("single", lambda v: single(v, args.steps))):
                    result = fn(variant)
                    samples.setdefault((variant, where), []).append(result)
                    print(f"  repeat {rep + 1} {variant:<14} {where:<10} "
                          f"{result['steps_s']:6.1f} steps/s  {result['updates_s']:6.1f} "
                          "updates/s", flush=True)
    med = {k: {m: statistics.median(r[m] for r in v) for m in v[0]} for k, v in samples.items()}
    print(f"\nn = {N} ring, spread (global state), {args.steps} steps per run, updates from "
          f"step {START}, medians of {args.repeats}")
    print(f"{'variant':<14} | {'agentd steps/s':>14} {'updates/s':>10} | {'off steps/s':>11} | "
          f"{'single steps/s':>14} {'updates/s':>10} | {'ratio':>5} {'off':>5} | "
          f"{'bytes/edge/step':>15} {'at last step':>12}")
    print("-" * 128)
    for variant in args.variants:
        a, o, s = (med[variant, w] for w in ("agentd", "agentd-off", "single"))
        print(f"{variant:<14} | {a['steps_s']:14.1f} {a['updates_s']:10.1f} | "
              f"{o['steps_s']:11.1f} | {s['steps_s']:14.1f} {s['updates_s']:10.1f} | "
              f"{a['steps_s'] / s['steps_s']:5.2f} {o['steps_s'] / s['steps_s']:5.2f} | "
              f"{a['bytes_edge_step']:15.0f} {a['bytes_edge_last']:12.0f}")
    print("ratio: agentd (act-ahead) / single; off: agentd --act-ahead off / single.")
    print("bytes: agentd's are wire bytes (envelope included); single's are body bytes.")


if __name__ == "__main__":
    main()
