"""Many tabular agents on a Ray cluster of simulated nodes, next to the local launcher.

For each n: one ``agentd launch --backend ray`` on a cluster of 4 Ray nodes made on this machine
(127.0.0.1 .. 127.0.0.4, ``ray.cluster_utils.Cluster``; the cluster's own start is timed apart)
and one ``agentd launch`` (local processes) with the same run: ``dac`` on ``random-mdp``,
K = 1, ring. Reported side by side: start-up (command start to the first joint step, from the
run's own clock), joint steps/s, RSS per agent process, and for Ray the RSS of its actor worker
processes (the price of one Ray actor per agentd process).

    python benchmarks/ray_scale.py [--n 64 128] [--steps 300]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NODES = ("127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4")


def ray_worker_rss_mb() -> float:
    """Total RSS of Ray's actor worker processes on this machine (titles start 'ray::')."""
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
            if not title.startswith(b"ray::"):
                continue
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def launch(args: list[str], run_dir: Path, watch_ray: bool) -> dict:
    cmd = [sys.executable, "-m", "agentd", "launch", "--quiet", "--run-dir", str(run_dir),
           *args]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak_ray = 0.0
    try:
        while proc.poll() is None:
            if watch_ray:
                peak_ray = max(peak_ray, ray_worker_rss_mb())
            time.sleep(1.0)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    outer = time.monotonic() - started
    if not (run_dir / "summary.json").exists():
        raise RuntimeError(f"no summary (exit {proc.returncode}): {proc.stderr.read()[-800:]}")
    summary = json.loads((run_dir / "summary.json").read_text())
    if summary.get("status") != "done":
        raise RuntimeError(f"run failed: {summary.get('error')}; {proc.stderr.read()[-800:]}")
    env = summary["envserver"]
    agents = list(summary["agents"].values())
    return {"outer_s": outer, "startup_s": outer - env["wall_s"],
            "steps_per_s": summary["steps_per_s"],
            "agent_rss_mb": statistics.fmean(a["rss_mb"] for a in agents),
            "ray_workers_mb": peak_ray}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"    # node IPs stay on loopback
    from ray.cluster_utils import Cluster

    temp = Path(tempfile.mkdtemp(prefix="rs", dir="/tmp"))
    cluster = None
    rows = []
    try:
        t0 = time.monotonic()
        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 64, "node_ip_address": NODES[0], "include_dashboard": False,
            "temp_dir": str(temp)})
        for ip in NODES[1:]:
            cluster.add_node(num_cpus=64, node_ip_address=ip)
        cluster.wait_for_nodes()
        print(f"Ray cluster of {len(NODES)} nodes up in {time.monotonic() - t0:.1f} s",
              flush=True)
        slow_start = temp / "slow_start.toml"     # 128 processes on 2 cores take a while
        slow_start.write_text("join_timeout = 600.0\n")
        run = ["--config", str(slow_start), "--algo", "dac", "--env", "random-mdp",
               "--num-envs", "1", "--steps", str(args.steps), "--episode-len", "50"]
        for n in args.n:
            local = launch([*run, "--n", str(n)], temp / f"local-{n}", False)
            on_ray = launch([*run, "--n", str(n), "--backend", "ray", "--ray-address",
                             cluster.address, "--ray-cpus", "0.1", "--ray-timeout", "600",
                             "--ray-workdir", str(temp / "nodes")], temp / f"ray-{n}", True)
            rows.append((n, local, on_ray))
            print(f"n = {n} done", flush=True)
    finally:
        if cluster is not None:
            cluster.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
    print(f"\n{'n':>4} {'backend':8} {'start-up s':>11} {'steps/s':>8} {'RSS/agent MB':>13} "
          f"{'Ray workers MB':>15}")
    for n, local, on_ray in rows:
        for name, r in (("local", local), ("ray", on_ray)):
            workers = f"{r['ray_workers_mb']:,.0f}" if name == "ray" else "-"
            print(f"{n:>4} {name:8} {r['startup_s']:>11.1f} {r['steps_per_s']:>8.1f} "
                  f"{r['agent_rss_mb']:>13.1f} {workers:>15}")
        print(f"{'':>4} {'ray/local':8} {on_ray['startup_s'] / local['startup_s']:>11.2f} "
              f"{on_ray['steps_per_s'] / local['steps_per_s']:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
