"""The end of a run on the coordinator's side: summary.json, the learning curve, the line on
stdout. Everything here reads what the processes reported in their ``bye`` (their transport
counters, steps, DP accounts; an agent's counters as its ``tally`` after the ack updated them)
and what the coordinator kept (metrics, restarts, its own counters)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentd.config import is_private
from agentd.privacy.accountant import summary_block as dp_summary_block
from coordinator.rundir import (
    known_return_figures,
    plot_learning_curve,
    return_figures,
    write_json,
)
from topologies import spectral_gap

if TYPE_CHECKING:
    from coordinator.coordinator import Coordinator, Proc

log = logging.getLogger("agentd.coordinator")


def security_summary(coord: Coordinator, agents: dict[str, dict],
                     env_stats: dict | None) -> dict[str, Any]:
    """Failed handshakes and refused identities across the run's processes."""
    by_proc: dict[str, Any] = {}
    for proc in coord.procs.values():
        stats = proc.stats or {}
        counts = {p: v["handshakes_failed"] for p, v in stats.get("planes", {}).items()
                  if v.get("handshakes_failed")}
        if not counts and proc.handshakes:
            counts = proc.handshakes["counts"]
        if counts:
            by_proc[proc.name()] = counts
    own = coord.transport.handshake_counts()
    if own:
        by_proc["coordinator"] = own
    totals: dict[str, int] = {}
    for counts in by_proc.values():
        for reasons in counts.values():
            for reason, n in reasons.items():
                totals[reason] = totals.get(reason, 0) + n
    everyone = [*agents.values(), env_stats or {}, coord.transport.summary()]
    spoofed = sum(s.get("rejected", {}).get("spoofed", 0) for s in everyone)
    return {"handshakes_failed": totals, "handshakes_failed_by_process": by_proc,
            "spoofed": spoofed}


def tallies_due(procs: Iterable[Proc]) -> set[int]:
    """Agents that said bye (and were acked): each sends a tally of its counters after the
    ack, with the messages it exchanged after its bye."""
    return {p.id for p in procs if p.role == "agent" and p.id is not None
            and p.stats is not None and "error" not in p.stats and not p.stats.get("missing")}


def fold_tally(stats: dict[str, Any], tally: dict[str, Any]) -> dict[str, Any]:
    """An agent's bye stats with its tally in: the counters (and DP account) as they stood
    after the ack, so summary.json counts what the logs hold, post-bye answers included, and
    ``after_bye``: per plane, the messages sent and received after the bye."""
    before, after = stats.get("planes", {}), tally.get("planes", {})
    post = {plane: {k: after[plane][k] - before.get(plane, {}).get(k, 0)
                    for k in ("msgs_sent", "msgs_recv")} for plane in after}
    return {**stats, **tally, "after_bye": post}


def write_summary(coord: Coordinator, status: str, reason: str,
                  consensus: dict[str, Any] | None = None,
                  files: dict[str, Any] | None = None) -> dict[str, Any]:
    """summary.json of the run, and its learning curve next to it."""
    c = coord.config
    steps, returns = coord.metrics.in_step_order()
    agents = {str(p.id): p.stats or {"pid": p.pid, "host": p.host, "missing": True}
              for p in sorted(coord.procs.values(), key=lambda p: (p.id is None, p.id or 0))
              if p.role == "agent" and p.id is not None}
    env_stats = coord.env_proc.stats if coord.env_proc else None
    summary = {"status": status, "error": reason or None, "algo": c.algo, "env": c.env,
               "n": c.n, "processes": coord.n_procs, "topology": coord.graph.name,
               "mixing": c.mixing, "spectral_gap": spectral_gap(coord.W),
               "steps": c.steps, "num_envs": c.num_envs, "seed": c.seed,
               "steps_done": (env_stats or {}).get("steps", 0),
               "steps_per_s": (env_stats or {}).get("steps_per_s", coord.env_rate),
               "wall_s": round(time.monotonic() - coord.started, 2),
               **return_figures(returns), "private": is_private(c),
               **known_return_figures(c, returns, coord.run_dir),
               "secure": coord.transport.secure, "insecure": c.insecure,
               "security": security_summary(coord, agents, env_stats), "files": files,
               "peer_bytes_per_edge_per_step": peer_bytes_per_edge_per_step(coord, agents),
               "peer_bytes_per_edge_last_step": peer_bytes_per_edge_last_step(coord, agents),
               **coord.restarts.summary(), **coord.resume_summary(),
               "consensus": consensus, "dp": dp_summary_block(agents),
               "agents": agents, "envserver": env_stats,
               "coordinator": coord.transport.summary()}
    write_json(coord.run_dir / "summary.json", summary)
    try:
        plot_learning_curve(coord.run_dir / "learning_curve.png", steps, returns,
                            f"{c.algo} on {c.env}, n={c.n}, {coord.graph.name}, seed {c.seed}")
    except Exception as exc:  # noqa: BLE001 - a missing plot must not hide the outcome
        log.warning("could not draw the learning curve: %s", exc)
    return summary


def peer_bytes_per_edge_per_step(coord: Coordinator, agents: dict[str, dict]) -> float:
    """Mean over directed edges of the peer bytes sent along them per joint step."""
    edges = 2 * len(coord.graph.edges)
    sent = sum(a.get("planes", {}).get("peer", {}).get("bytes_sent", 0)
               for a in agents.values())
    steps = max((a.get("steps", 0) for a in agents.values()), default=0)
    return round(sent / (edges * steps), 1) if edges and steps else 0.0


def peer_bytes_per_edge_last_step(coord: Coordinator, agents: dict[str, dict]) -> float:
    """The same for the run's last full step (traffic that grows with the run shows)."""
    edges = 2 * len(coord.graph.edges)
    sent = sum(a.get("peer_bytes_last_step", 0) for a in agents.values())
    return round(sent / edges, 1) if edges else 0.0


def report(run_dir: Path, s: dict[str, Any]) -> None:
    """The run's one-line outcome (and the figures some envs and learners add) on stdout."""
    if s["status"] != "done":
        log.error("run %s: %s", s["status"], s["error"])
    fmt = (lambda v: "n/a" if v is None else f"{v:.3f}")
    print(f"run {s['status']}: {run_dir}  episodes {s['episodes']}  "
          f"final_return {fmt(s['final_return'])} (initial {fmt(s['initial_return'])})  "
          f"{s['steps_per_s']:.0f} steps/s", flush=True)
    if s.get("optimal_return") is not None:     # an env that knows its optimum
        print(f"  normalised_return {fmt(s['normalised_return'])} (optimal_return "
              f"{s['optimal_return']:.3f}, random policy {s['random_return']:.3f})",
              flush=True)
    if s.get("greedy_normalised_return") is not None:   # tabular Q-learners
        print(f"  greedy policy: return {s['greedy_return']:.3f}, normalised "
              f"{fmt(s['greedy_normalised_return'])} (exact, argmax of each agent's final "
              "Q table)", flush=True)
    if s.get("dp"):
        edges = "  ".join(f"{e['src']}->{e['dst']} {e['epsilon']:.3g}" for e in s["dp"]["edges"])
        print(f"  dp epsilon (delta {s['dp']['delta']:g}, {s['dp']['accountant']}): max per "
              f"agent {s['dp']['max_epsilon']:.3g}; per edge {edges}", flush=True)
