r"""MA2QL vs IQL (tabular) on the cooperative stochastic game of MA2QL (Su et al. 2022), with a Nash check.

The game (``stochastic-game``: 30 states, 3 agents, 5 actions, 30-step episodes from state 0)
has a known model, so every evaluation is exact: the agents' greedy policies argmax_a Q_i(s, a)
form a deterministic joint policy whose 30-step return from state 0, divided by the optimum
(finite-horizon DP over the 125 joint actions), is the "normalised return". The Nash check is
a best response computed by DP for one agent against the others' greedy policies: the joint
policy is an equilibrium when no agent gains. Two criteria are reported:

* ``gain_disc``: the discounted game the learners optimise (gamma of the learners, stationary
  policies, infinite horizon), the largest gain over all 30 states — the criterion of MA2QL's
  convergence theorem (``gain_disc0``: the gain at the start state only);
* ``gain_30``: the 30-step undiscounted return from state 0 (a time-dependent best response,
  stricter than any stationary policy can meet).

A joint policy passes the check when ``gain_disc <= --tol`` (default 1.0, about 1% of the
optimal discounted value ~98.6: the eps = 1 accuracy that ``agentd.algorithms.plugins.turns`` sizes a
turn for).

``changed`` is the fraction of (agent, state) greedy actions that differ from the previous
evaluation: an oscillating joint policy keeps it above zero.

Runs use ``agentd.launch.inprocess`` (the agents' own learners, live order, no sockets). ``--check
RUN_DIR`` instead evaluates the final Q tables of a live ``agentd launch`` run.

Usage::

    python examples/ma2ql_stochastic_game.py --jobs 2 --param alpha=0.5 \
        --param alpha_omega=0.7 --param epsilon=0.1 --ma2ql-param explore_off_turn=false \
        --steps 300000 --turn-len 10000 --every 5000 --out docs/ma2ql_stochastic_game
    python examples/ma2ql_stochastic_game.py --check RUN_DIR
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
import tomllib
from pathlib import Path

import numpy as np

from agentd.launch.inprocess import build_env, make_learners, run_in_process

# every hyper-parameter is the learner's own default unless --param / --ma2ql-param says
# otherwise (the README's run: see Usage)


def evaluate(env, tables: list[np.ndarray], gamma: float) -> dict[str, float]:
    """Exact normalised greedy return and the best-response gains of every agent."""
    pol = np.stack([q.argmax(axis=1) for q in tables])             # (N, S)
    opt = env.known_returns()["optimal_return"]
    ret = env.greedy_return(list(pol))
    disc = [env.best_response_gain(pol, i, gamma=gamma) for i in range(len(tables))]
    fin = [env.best_response_gain(pol, i, horizon=env.horizon)[0] for i in range(len(tables))]
    return {"norm": ret / opt, "gain_disc": max(d[1] for d in disc),
            "gain_disc0": max(d[0] for d in disc), "gain_30": max(fin) / abs(opt),
            "policy": pol}


def run_one(algo: str, seed: int, steps: int, k: int, turn_len: int, every: int,
            extra: dict | None = None) -> dict:
    env = build_env("stochastic-game", 3, num_envs=k, episode_len=30, seed=seed)
    turn = {"turn_len": turn_len} if algo == "ma2ql" and turn_len else {}
    params = {**(extra or {}), **turn}
    learners = make_learners(algo, env, 3, seed=seed, params=params)
    gamma = learners[0].params.gamma
    curve: list[dict] = []
    last = [None]

    def on_step(t: int) -> None:
        if t % every:
            return
        ev = evaluate(env, [lr.q for lr in learners], gamma)
        pol = ev.pop("policy")
        ev["changed"] = float(np.mean(pol != last[0])) if last[0] is not None else 1.0
        last[0] = pol
        curve.append({"step": t * k, **ev})

    t0 = time.time()
    run_in_process(env, learners, steps, reset_seed=seed, on_step=on_step)
    return {"algo": algo, "seed": seed, "curve": curve, "seconds": time.time() - t0,
            "optimal_return": env.known_returns()["optimal_return"],
            "random_return": env.known_returns()["random_return"]}


def run_job(job: tuple) -> dict:
    return run_one(*job)


def check_run(run_dir: Path, tol: float) -> None:
    """The Nash check of a live run: its config's game, its agents' final Q tables."""
    cfg = tomllib.loads((run_dir / "config.toml").read_text())
    # the env server builds the game from the run's derived env seed, not --seed itself
    model_seed = json.loads((run_dir / "seeds.json").read_text())["env_model"]
    env = build_env(cfg["env"], cfg["n"], episode_len=cfg["episode_len"], seed=model_seed,
                    env_args=cfg.get("env_args", {}))
    tables = []
    for i in range(cfg["n"]):
        with np.load(run_dir / "checkpoints" / f"agent-{i}.npz") as saved:
            tables.append(saved["q"])
    from agentd.algorithms import load_learner_class

    default = load_learner_class(cfg["algo"]).Params().gamma
    gamma = float(cfg.get("params", {}).get("gamma", default))
    ev = evaluate(env, tables, gamma)
    print(f"{run_dir}: normalised greedy return {ev['norm']:.3f}; best-response gain "
          f"(discounted, gamma {gamma}) {ev['gain_disc']:.4f}; (30-step, / optimum) "
          f"{ev['gain_30']:.4f}; NE (gain_disc <= {tol}) {'yes' if ev['gain_disc'] <= tol else 'no'}")


def plot(runs: list[dict], out: Path, tol: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for algo, colour in (("ma2ql", "tab:blue"), ("iql", "tab:red")):
        for r in (r for r in runs if r["algo"] == algo):
            x = [c["step"] for c in r["curve"]]
            for ax, key in zip(axes, ("norm", "gain_disc", "changed")):
                ax.plot(x, [c[key] for c in r["curve"]], color=colour, alpha=0.6,
                        label=algo if r["seed"] == runs[0]["seed"] else None)
    for ax, title in zip(axes, ("normalised greedy return (exact)",
                                "largest one-agent best-response gain (discounted)",
                                "fraction of greedy actions changed")):
        ax.set_title(title)
        ax.set_xlabel("env transitions")
        ax.legend()
    axes[1].axhline(tol, color="black", linestyle="--", linewidth=1)
    axes[1].text(0, tol * 1.15, f"Nash check: gain <= {tol}", fontsize=8)
    axes[1].set_yscale("symlog", linthresh=0.01)
    axes[1].set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=90)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--steps", type=int, default=150_000, help="joint steps per run")
    ap.add_argument("--num-envs", type=int, default=4)
    ap.add_argument("--turn-len", type=int, default=None,
                    help="joint steps per ma2ql turn (default: the learner's)")
    ap.add_argument("--every", type=int, default=2_500, help="joint steps between evaluations")
    ap.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                    help="a learner parameter for both algorithms (repeatable)")
    ap.add_argument("--ma2ql-param", action="append", default=[], metavar="KEY=VALUE",
                    help="a parameter for ma2ql only, e.g. explore_off_turn=false (repeatable)")
    ap.add_argument("--jobs", type=int, default=1, help="runs in parallel (processes)")
    ap.add_argument("--tol", type=float, default=1.0,
                    help="Nash check: passes when gain_disc <= tol")
    ap.add_argument("--algos", nargs="+", default=["ma2ql", "iql"])
    ap.add_argument("--out", type=Path, default=Path("docs/ma2ql_stochastic_game"))
    ap.add_argument("--check", type=Path, help="Nash check of a live run directory instead")
    args = ap.parse_args()
    if args.check:
        check_run(args.check, args.tol)
        return
    extra = dict(kv.split("=", 1) for kv in args.param)
    only = dict(kv.split("=", 1) for kv in args.ma2ql_param)
    jobs = [(algo, seed, args.steps, args.num_envs, args.turn_len, args.every,
             {**extra, **(only if algo == "ma2ql" else {})})
            for seed in args.seeds for algo in args.algos]
    runs = []
    with open(args.out.with_suffix(".jsonl"), "w") as f, \
            multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        for r in pool.imap(run_job, jobs):
            algo, seed = r["algo"], r["seed"]
            f.write(json.dumps(r) + "\n")
            f.flush()
            end = r["curve"][-1]
            tail = r["curve"][-4:]
            print(f"{algo:6s} seed {seed}: norm {end['norm']:.3f} (last 4 evals "
                  f"{min(c['norm'] for c in tail):.3f}..{max(c['norm'] for c in tail):.3f}), "
                  f"gain_disc {end['gain_disc']:.4f} (start state {end['gain_disc0']:.4f}), "
                  f"gain_30 {end['gain_30']:.4f}, "
                  f"changed {np.mean([c['changed'] for c in tail]):.3f}, "
                  f"NE {'yes' if end['gain_disc'] <= args.tol else 'no'}  "
                  f"[{r['seconds']:.0f} s]", flush=True)
            runs.append(r)
    for algo in args.algos:
        ends = [r["curve"][-1] for r in runs if r["algo"] == algo]
        gains = [e["gain_disc"] for e in ends]
        print(f"{algo:6s} {len(ends)} seeds: gain_disc mean {np.mean(gains):.3f} "
              f"({min(gains):.3f}..{max(gains):.3f}), at an NE (gain_disc <= {args.tol}) "
              f"{sum(g <= args.tol for g in gains)}/{len(ends)}, norm mean "
              f"{np.mean([e['norm'] for e in ends]):.3f}")
    plot(runs, args.out, args.tol)


if __name__ == "__main__":
    main()
