"""A secure run on three hosts, emulated on this machine (needs root): what the README's
"Running across machines" shows, with the hosts made of network namespaces.

Host 1 (10.77.0.1) runs the coordinator and the env server, host 2 agents 0 and 1, host 3
agents 2 and 3. Each host has its own disk (a tmpfs in its own mount namespace) holding only
public.toml and its own secret keys, and runs the very commands a user types on real
machines. Afterwards the run directory on host 1 alone is audited and replayed, and each
host's files are listed. Everything made here is removed at the end.

    sudo .venv/bin/python examples/three_hosts.py --algo pr --env digital --steps 5000
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from hosts import Network, missing_requirements, wait_all

from agentd.runtime.keys import new_keys

PLACES = {1: ["coordinator", "envserver"], 2: ["agent-0", "agent-1"], 3: ["agent-2", "agent-3"]}


def show(title: str, text: str, lines: int = 12) -> None:
    body = text.strip().splitlines()
    print(f"\n--- {title} ---")
    print("\n".join(body[:lines] + (["..."] if len(body) > lines else [])))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algo", default="pr")
    p.add_argument("--env", default="digital")
    p.add_argument("--steps", default="5000")
    args = p.parse_args()
    why = missing_requirements()
    if why:
        print(f"three_hosts: {why}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="agentd-three-hosts-") as tmp:
        keys = Path(tmp) / "keys"
        new_keys(keys, 4)
        net = Network(3, Path(tmp) / "disk")
        try:
            net.up()
            disk = net.disk
            for host, names in PLACES.items():
                for name in ["public.toml", *(f"{n}.secret" for n in names)]:
                    net.put(host, keys / name, disk / "keys" / name)
            kd = "keys"    # relative: every command runs in its host's home (its disk)
            commands = {
                1: [["coordinator", "--bind", "tcp://10.77.0.1:5555", "--keys", kd, "--n", "4",
                     "--algo", args.algo, "--env", args.env, "--steps", args.steps,
                     "--run-dir", "runs/demo", "--quiet"],
                    ["envserver", "--join", "tcp://10.77.0.1:5555", "--keys", kd]],
                2: [["agent", "--join", "tcp://10.77.0.1:5555", "--keys", kd, "--id", "0"],
                    ["agent", "--join", "tcp://10.77.0.1:5555", "--keys", kd, "--id", "1"]],
                3: [["agent", "--join", "tcp://10.77.0.1:5555", "--keys", kd, "--id", "2"],
                    ["agent", "--join", "tcp://10.77.0.1:5555", "--keys", kd, "--id", "3"]],
            }
            procs, names = [], []
            started = time.monotonic()
            for host, cmds in commands.items():
                for cmd in cmds:
                    print(f"host {host}$ agentd {' '.join(cmd)}")
                    procs.append(net.agentd(host, *cmd))
                    names.append(f"host {host}: agentd {cmd[0]}"
                                 + (f" {cmd[-1]}" if cmd[0] == "agent" else ""))
                    if cmd[0] == "coordinator":
                        time.sleep(1.0)
            results = wait_all(procs, 3600)
            print(f"\n(all processes ended after {time.monotonic() - started:.0f} s)")
            for name, (code, out) in zip(names, results, strict=True):
                show(f"{name} (exit {code})", out or "(no output)", 6)
            run = disk / "runs" / "demo"
            summary = json.loads(net.read(1, run / "summary.json"))
            show("summary.json on host 1 (excerpt)", json.dumps(
                {k: summary[k] for k in ("status", "secure", "insecure", "files", "security")},
                indent=2), 40)
            show("host 1$ find runs/demo -type f", "\n".join(net.files(1, run)), 40)
            for host in (2, 3):
                show(f"host {host}$ find . -type f",
                     "\n".join(net.files(host, disk)), 20)
            audit = net.run(1, [sys.executable, "-m", "agentd", "audit", "runs/demo"])
            show("host 1$ agentd audit runs/demo", audit.stdout, 200)
            replay = net.run(1, [sys.executable, "-m", "agentd", "replay", "runs/demo",
                                 "--agent", "2"])
            show("host 1$ agentd replay runs/demo --agent 2", replay.stdout + replay.stderr)
            return max(code for code, _ in results)
        finally:
            net.close()


if __name__ == "__main__":
    raise SystemExit(main())
