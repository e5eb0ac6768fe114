"""DPO vs IPPO, and MDPO vs MDPO without prediction vs IPPO, on a tabular cooperative game.

Seed 003's tabular experiments: the 30-state, 3-agent, 5-action ``stochastic-game``
(docs/environments.md). Because the game's model is known, every policy iteration is evaluated exactly,
without sampling noise: each agent's policy pi_i(.|s) is read from its actor at every state,
and from the joint policy the script computes

* the expected undiscounted return of an episode (``--episode-len`` steps from the env's initial
  state distribution), divided by the optimum (finite-horizon dynamic programming over the
  joint action) — "normalised return"; the same for the greedy (argmax) joint policy;
* the state-visitation distribution d(s) = mean_t P(s_t = s) of an episode, and the total-
  variation distance between successive iterations' d, TV = 0.5 sum_s |d_k(s) - d_{k-1}(s)|
  (the stability the seed says MDPO improves).

Algorithms are learner names, optionally with parameters: ``mdpo:predict=false``. Runs use
``agentd.launch.inprocess`` (the agents' own learners in one process, live message order, no
sockets); results go to OUT.jsonl (resumable) and OUT.png.

Usage::

    python examples/tabular_game.py --algos dpo ippo --seeds 0 1 2 3 4 --out docs/game_dpo_ippo
    python examples/tabular_game.py --algos mdpo mdpo:predict=false ippo --out docs/game_mdpo
"""

from __future__ import annotations

import argparse
import json
import time
import tomllib
import warnings
from pathlib import Path

import numpy as np

from agentd.launch.inprocess import build_env, make_learners, run_in_process


def game_model(env) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(P[s, j, s'], R[s, j], initial distribution) of a joint-action tabular env; j is the
    joint index sum_i a_i * A**i (agent 0 least significant)."""
    if hasattr(env, "P") and hasattr(env, "R"):       # stochastic-game: tabulated, starts in 0
        return env.P, env.R, np.eye(env.n_states)[0]
    n_s, n_j = env.n_states, env.n_actions ** env.n_agents
    P, R = np.zeros((n_s, n_j, n_s)), np.zeros((n_s, n_j))
    for s in range(n_s):
        for j in range(n_j):
            cdf, reward = env.row(s, j)
            P[s, j] = np.diff(np.concatenate([[0.0], cdf]))
            R[s, j] = float(np.mean(reward))
    return P, R, np.full(n_s, 1.0 / n_s)


def joint_policy(pis: list[np.ndarray]) -> np.ndarray:
    """pi(j|s) = prod_i pi_i(a_i|s) with agent 0 the least significant digit of j."""
    joint = np.ones((pis[0].shape[0], 1))
    for pi in pis:                      # agent i's digit varies slowest so far: outer product
        joint = (pi[:, :, None] * joint[:, None, :]).reshape(len(pi), -1)
    return joint


def evaluate(P, R, init, pj: np.ndarray, horizon: int) -> tuple[float, np.ndarray]:
    """Expected undiscounted return over ``horizon`` steps and the mean state distribution."""
    p_pi, r_pi = np.einsum("sj,sjt->st", pj, P), (pj * R).sum(1)
    d, total, visit = init.copy(), 0.0, np.zeros_like(init)
    for _ in range(horizon):
        visit += d
        total += d @ r_pi
        d = d @ p_pi
    return float(total), visit / horizon


def optimum(P, R, init, horizon: int) -> float:
    v = np.zeros(P.shape[0])
    for _ in range(horizon):
        v = (R + P @ v).max(1)
    return float(init @ v)


def policies(learners) -> list[np.ndarray]:
    """pi_i(.|s) at every state, from each agent's actor."""
    import torch

    out = []
    for lr in learners:
        discrete = lr.spec.obs_spaces[0]["type"] == "discrete"
        states = np.arange(lr.obs_dim) if discrete else np.eye(lr.obs_dim, dtype=np.float32)
        x = torch.as_tensor(lr.encode(states))
        with torch.no_grad():
            out.append(lr.actor(x).softmax(-1).numpy().astype(np.float64))
    return out


def parse_algo(spec: str) -> tuple[str, dict]:
    name, _, rest = spec.partition(":")
    params = {}
    for item in filter(None, rest.split(",")):
        key, _, raw = item.partition("=")
        params[key] = tomllib.loads(f"v = {raw}")["v"]
    return name, params


def run_one(args, spec: str, seed: int, model) -> dict:
    P, R, init, best = model
    name, params = parse_algo(spec)
    env = build_env(args.env, args.n, num_envs=args.num_envs, episode_len=args.episode_len,
                    seed=args.model_seed)
    learners = make_learners(name, env, args.n, seed=seed,
                             params={**dict(kv.split("=", 1) for kv in args.param), **params})
    points, last = [], {"it": -1, "visit": None}

    def on_step(t: int) -> None:
        it = learners[0].iteration
        if it == last["it"]:
            return
        pis = policies(learners)
        ret, visit = evaluate(P, R, init, joint_policy(pis), args.episode_len)
        greedy = [np.eye(pi.shape[1])[pi.argmax(1)] for pi in pis]
        gret, _ = evaluate(P, R, init, joint_policy(greedy), args.episode_len)
        tv = None if last["visit"] is None else 0.5 * float(np.abs(visit - last["visit"]).sum())
        points.append({"step": t, "iteration": it, "return": ret / best, "greedy": gret / best,
                       "tv": tv})
        last.update(it=it, visit=visit)

    started = time.monotonic()
    run_in_process(env, learners, args.steps, reset_seed=seed, on_step=on_step)
    return {"algo": spec, "seed": seed, "steps": args.steps, "points": points,
            "seconds": time.monotonic() - started}


def summary(spec: str, runs: list[dict]) -> str:
    def tail(key):
        vals = [np.mean([p[key] for p in r["points"][-max(1, len(r["points"]) // 10):]])
                for r in runs]
        return f"{np.mean(vals):.3f} ± {np.std(vals):.3f}"

    tvs = [np.mean([p["tv"] for p in r["points"][len(r["points"]) // 2:] if p["tv"] is not None])
           for r in runs]
    return (f"{spec:22s} seeds {len(runs)}  normalised return (last 10% of iterations) "
            f"{tail('return')}  greedy {tail('greedy')}  TV between iterations (second half) "
            f"{np.mean(tvs):.4f} ± {np.std(tvs):.4f}  {np.mean([r['seconds'] for r in runs]):.0f} s/run")


def plot(results: dict[str, list[dict]], title: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for spec, runs in results.items():
        n = min(len(r["points"]) for r in runs)
        steps = np.array([p["step"] for p in runs[0]["points"][:n]])
        for ax, key in zip(axes, ("return", "tv")):
            vals = np.array([[np.nan if p[key] is None else p[key] for p in r["points"][:n]]
                             for r in runs])
            with warnings.catch_warnings():      # the first iteration has no TV
                warnings.simplefilter("ignore", RuntimeWarning)
                mean, sd = np.nanmean(vals, 0), np.nanstd(vals, 0)
            ax.plot(steps, mean, label=f"{spec} ({len(runs)} seeds)")
            ax.fill_between(steps, mean - sd, mean + sd, alpha=0.2)
    axes[0].set_ylabel("normalised return (exact)")
    axes[1].set_ylabel("TV(d_k, d_k-1) of state visitation")
    for ax in axes:
        ax.set_xlabel("joint steps per env copy")
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--env", default="stochastic-game")
    ap.add_argument("--n", type=int, default=3)
    ap.add_argument("--algos", nargs="+", default=["dpo", "ippo"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--num-envs", type=int, default=8)
    ap.add_argument("--episode-len", type=int, default=30)
    ap.add_argument("--model-seed", type=int, default=0, help="the game's model seed")
    ap.add_argument("--param", action="append", default=[], help="KEY=VALUE for every algo")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    env = build_env(args.env, args.n, num_envs=1, episode_len=args.episode_len,
                    seed=args.model_seed)
    P, R, init = game_model(env)
    best = optimum(P, R, init, args.episode_len)
    if hasattr(env, "known_returns"):                  # the env's own DP must agree
        assert abs(env.known_returns()["optimal_return"] - best) < 1e-6 * max(1, abs(best))
    log = args.out.with_suffix(".jsonl")
    log.parent.mkdir(parents=True, exist_ok=True)
    done = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
    results = {a: [r for r in done if r["algo"] == a and r["steps"] == args.steps
                   and r["seed"] in args.seeds] for a in args.algos}
    for seed in args.seeds:
        for spec in args.algos:
            if any(r["seed"] == seed for r in results[spec]):
                continue
            run = run_one(args, spec, seed, (P, R, init, best))
            with log.open("a") as f:
                f.write(json.dumps(run) + "\n")
            results[spec].append(run)
            print(f"  {spec} seed {seed}: {run['seconds']:.0f} s", flush=True)
    title = (f"{args.env}, n = {args.n}, {args.steps} steps x {args.num_envs} copies, "
             f"optimum {best:.2f} ({args.episode_len}-step episode)")
    print(title)
    for spec, runs in results.items():
        print(summary(spec, runs))
    plot(results, title, args.out)


if __name__ == "__main__":
    main()
