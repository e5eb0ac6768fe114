"""`agentd topology show`: print a topology, its mixing matrix and its spectral gap."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from topologies.graphs import TOPOLOGIES, Graph, TopologyError, build
from topologies.mixing import MIXING_METHODS, mixing_matrix, spectral_gap

# Larger matrices are cut to their top-left corner so the output stays readable.
MAX_SHOWN = 16
EDGES_PER_LINE = 8


def _format_edges(g: Graph) -> list[str]:
    pairs = [f"({i},{j})" for i, j in g.edges]
    lines = [f"edges ({len(pairs)}):" + ("" if pairs else " none")]
    for start in range(0, len(pairs), EDGES_PER_LINE):
        lines.append("  " + " ".join(pairs[start:start + EDGES_PER_LINE]))
    return lines


def _format_matrix(w: np.ndarray) -> list[str]:
    shown = min(w.shape[0], MAX_SHOWN)
    label = len(str(shown - 1))
    header = " " * label + " " + " ".join(f"{j:>6}" for j in range(shown))
    lines = [header]
    for i in range(shown):
        row = " ".join(f"{w[i, j]:6.4f}" for j in range(shown))
        lines.append(f"{i:>{label}} {row}")
    if w.shape[0] > shown:
        lines.append(f"(showing the first {shown} of {w.shape[0]} rows and columns)")
    return lines


def format_topology(g: Graph, w: np.ndarray, method: str) -> str:
    """A readable multi-line description of g and its mixing matrix w."""
    degrees = [g.degree(i) for i in range(g.n)]
    lines = [f"topology: {g.name}  n={g.n}"]
    lines += _format_edges(g)
    lines.append(f"degree: min {min(degrees)}, max {max(degrees)}")
    lines.append(f"mixing matrix W ({method}):")
    lines += ["  " + line for line in _format_matrix(w)]
    lines.append(f"spectral gap: {spectral_gap(w):.6f}")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agentd topology", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    show = sub.add_parser("show", help="print a topology and its mixing matrix")
    show.add_argument("name", help=f"one of: {', '.join(TOPOLOGIES)}")
    show.add_argument("--n", type=int, required=True, help="number of agents")
    show.add_argument("--rows", type=int, default=None, help="grid rows (must divide n)")
    show.add_argument("--p", type=float, default=0.5, help="edge probability for random")
    show.add_argument("--k", type=int, default=4, help="lattice degree for small-world")
    show.add_argument("--rewire", type=float, default=0.1, help="rewiring prob for small-world")
    show.add_argument("--seed", type=int, default=0, help="seed for random graphs")
    show.add_argument("--edges", default=None, help="edge-list file for edgelist")
    show.add_argument("--mixing", choices=MIXING_METHODS, default="kernel")
    return parser


def topology_main(argv: list[str]) -> int:
    """Run `agentd topology ...` on argv (the arguments after "topology"); return an exit code."""
    args = _parser().parse_args(argv)
    try:
        g = build(
            args.name, args.n, rows=args.rows, p=args.p, k=args.k, rewire=args.rewire,
            seed=args.seed, edges_file=args.edges,
        )
        w = mixing_matrix(g, args.mixing)
    except TopologyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_topology(g, w, args.mixing))
    return 0
