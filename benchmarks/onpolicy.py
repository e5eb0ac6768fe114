"""On-policy learners: env steps/s and update time, processes vs one process.

For ippo, dpo and mdpo (with ``share_latent``: one latent message per edge per step) on MPE
simple_spread (discrete actions, n = 3 ring, K env copies), each repeat measures, interleaved:

* agentd -- ``agentd launch``: 3 agent processes + env server + coordinator. Env steps/s =
  joint steps x K / the env server's wall time; update time = the learners' own mean
  ``update_seconds`` (one rollout's training: GAE, epochs; for mdpo also the model, the
  predictor and the imagined rollouts) from metrics.jsonl.
* single -- the same learners and env in ONE process (``agentd.launch.inprocess``).

Medians over repeats, and the ratio agentd / single of env steps/s.

    python benchmarks/onpolicy.py                      # 2 repeats, 1,000 steps x 8 copies
    python benchmarks/onpolicy.py --steps 2000 --repeats 3 --algos ippo
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

ENV = "mpe2.simple_spread_v3:parallel_env"
N, K, ROLLOUT = 3, 8, 100
EXTRA = {"ippo": [], "dpo": [], "mdpo": ["share_latent=true"]}


def params(algo: str) -> list[str]:
    return [f"rollout={ROLLOUT}", *EXTRA[algo]]


def launch(algo: str, steps: int, tmp: Path) -> dict[str, float]:
    run_dir = tmp / f"{algo}-{time.monotonic_ns()}"
    extra = [x for p in params(algo) for x in ("--param", p)]
    subprocess.run([sys.executable, "-m", "agentd", "launch", "--quiet", "--run-dir",
                    str(run_dir), "--algo", algo, "--env", ENV, "--n", str(N), "--num-envs",
                    str(K), "--episode-len", "25", "--steps", str(steps),
                    "--heartbeat-timeout", "30", *extra], check=True, stdout=subprocess.DEVNULL)
    s = json.loads((run_dir / "summary.json").read_text())
    updates = [sc["update_seconds"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()
               for sc in json.loads(line).get("agents", {}).values() if "update_seconds" in sc]
    return {"steps_s": K * steps / s["envserver"]["wall_s"],
            "update_s": statistics.mean(updates)}


def single(algo: str, steps: int) -> dict[str, float]:
    from agentd.launch.inprocess import build_env, make_learners, run_in_process

    env = build_env(ENV, N, num_envs=K, episode_len=25)
    raw = dict(p.split("=") for p in params(algo))
    learners = make_learners(algo, env, N, params={k: int(v) if v.isdigit() else v == "true"
                                                   for k, v in raw.items()})
    started = time.perf_counter()
    res = run_in_process(env, learners, steps, metrics_every=ROLLOUT)
    wall = time.perf_counter() - started
    env.close()
    updates = [sc["update_seconds"] for _, _, sc in res.scalars if "update_seconds" in sc]
    return {"steps_s": K * steps / wall, "update_s": statistics.mean(updates)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--algos", nargs="+", default=list(EXTRA))
    args = ap.parse_args()
    samples: dict[tuple[str, str], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            for algo in args.algos:
                for where, fn in (("agentd", lambda a: launch(a, args.steps, Path(tmp))),
                                  ("single", lambda a: single(a, args.steps))):
                    r = fn(algo)
                    samples.setdefault((algo, where), []).append(r)
                    print(f"  repeat {rep + 1} {algo:<5} {where:<6} {r['steps_s']:7.1f} env "
                          f"steps/s  update {r['update_s']:.3f} s", flush=True)
    med = {k: {m: statistics.median(r[m] for r in v) for m in v[0]} for k, v in samples.items()}
    print(f"\nsimple_spread (discrete), n = {N} ring, K = {K} copies, rollout {ROLLOUT} "
          f"(batch {ROLLOUT * K}), {args.steps} joint steps per run, medians of {args.repeats}")
    print(f"{'algo':<6} | {'agentd env steps/s':>18} {'update s':>9} | "
          f"{'single env steps/s':>18} {'update s':>9} | {'ratio':>5}")
    print("-" * 78)
    for algo in args.algos:
        a, s = med[algo, "agentd"], med[algo, "single"]
        print(f"{algo:<6} | {a['steps_s']:18.1f} {a['update_s']:9.3f} | {s['steps_s']:18.1f} "
              f"{s['update_s']:9.3f} | {a['steps_s'] / s['steps_s']:5.2f}")


if __name__ == "__main__":
    main()
