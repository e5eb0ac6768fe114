"""The Python API in one page: start a run, read its summary and metrics, open it again later,
and stop a run that is still going. Every run is the one ``agentd launch`` makes: real agent
processes exchanging real messages, a run directory with everything in it.

Usage::

    python examples/api_quickstart.py [--runs DIR]

(about 20 s on two cores; the runs go under DIR, default runs/api-quickstart).
"""

from __future__ import annotations

import argparse
import signal
import time
from pathlib import Path

from agentd import api
from agentd.config import ConfigError


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="runs/api-quickstart", help="where the runs go")
    runs = Path(parser.parse_args().runs)
    handlers = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))

    # 1. Start a run (keyword overrides are RunConfig's fields, as the flags) and wait for it.
    run = api.start(algo="dac", env="random-mdp", n=3, steps=1000, seed=1,
                    params={"alpha": 0.2}, run_dir=str(runs / "dac"))
    print("started:", run.run_dir, "->", run.status())
    print("ended:", run.wait())
    summary = run.summary()
    print(f"summary: {summary['episodes']} episodes, final_return "
          f"{summary['final_return']:.3f} (initial {summary['initial_return']:.3f}), "
          f"{summary['steps_per_s']:.0f} steps/s, private {summary['private']}")
    metrics = run.metrics()
    print(f"metrics: {len(metrics)} episodes; the last: episode {metrics[-1]['episode']}, "
          f"step {metrics[-1]['step']}, return {metrics[-1]['return']:.3f}")

    # 2. Open a finished run from its directory (in another script, days later).
    old = api.open(runs / "dac")
    print("opened:", old, "algo", old.config.algo, "n", old.config.n,
          "params", old.config.params)

    # 3. A mistake is refused by start itself: no process, no run directory.
    try:
        api.start(algo="dac", env="mpe2.simple_spread_v3:parallel_env", n=3,
                  run_dir=str(runs / "refused"))
    except ConfigError as exc:
        print("refused:", str(exc).split(";")[0], "| run dir made:",
              (runs / "refused").exists())

    # 4. Stop a run that is still going: it ends in order, as on Ctrl-C.
    long = api.start(algo="iql", env="random-mdp", n=3, steps=10**6,
                     run_dir=str(runs / "stopped"))
    while not long.metrics():        # a few episodes in
        time.sleep(0.2)
    print("stopping:", long.status(), "after", len(long.metrics()), "episode(s)")
    print("stopped:", long.stop(), "exit code", long.exit_code)

    same = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers
    print("signal handlers unchanged:", same)


if __name__ == "__main__":
    main()
