"""A run of `agentd launch --backend ray` on a three-node Ray cluster made on this machine.

Ray's `cluster_utils.Cluster` starts a head node on 127.0.0.1 and worker nodes on 127.0.0.2 and
127.0.0.3 (each its own raylet), so placement, per-node addresses and the run directory's
assembly can be seen without three machines. On real machines, start the cluster with
`ray start` instead and pass `--ray-address HEAD:6379` (see the README).

    python examples/ray_three_nodes.py [--n 5] [--steps 5000] [-- extra launch flags]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--run-dir", default="runs/ray-three-nodes")
    parser.add_argument("extra", nargs="*", help="more flags for agentd launch")
    args = parser.parse_args()
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"   # node IPs stay on loopback
    from ray.cluster_utils import Cluster

    temp = tempfile.mkdtemp(prefix="rx", dir="/tmp")
    cluster = None
    try:
        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 2, "node_ip_address": "127.0.0.1", "include_dashboard": False,
            "temp_dir": temp})
        for ip in ("127.0.0.2", "127.0.0.3"):
            cluster.add_node(num_cpus=2, node_ip_address=ip)
        cluster.wait_for_nodes()
        cmd = [sys.executable, "-m", "agentd", "launch", "--backend", "ray",
               "--ray-address", cluster.address, "--ray-cpus", "0.5", "--n", str(args.n),
               "--steps", str(args.steps), "--run-dir", args.run_dir, *args.extra]
        print("$ agentd " + " ".join(cmd[3:]), flush=True)
        code = subprocess.run(cmd, check=False).returncode
        placement = Path(args.run_dir) / "placement.json"
        if placement.exists():
            where = json.loads(placement.read_text())["processes"]
            for name, p in where.items():
                print(f"  {name:12s} on {p['ip']}")
        return code
    finally:
        if cluster is not None:
            cluster.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
