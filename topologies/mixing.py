"""Mixing matrices: how much weight each agent gives its neighbours' values in consensus."""

from __future__ import annotations

import numpy as np

from topologies.graphs import Graph, TopologyError

MIXING_METHODS: tuple[str, ...] = ("kernel", "metropolis")

# Tolerance for symmetry and stochasticity; weights are sums of a few exact fractions.
ATOL = 1e-12


def kernel_weights(g: Graph) -> np.ndarray:
    """The paper's eq. 41: 1/(d+1) on edges, the rest of each row on the diagonal."""
    w = np.zeros((g.n, g.n))
    share = 1.0 / (g.max_degree + 1)
    for i, j in g.edges:
        w[i, j] = w[j, i] = share
    for i in range(g.n):
        w[i, i] = 1.0 - g.degree(i) * share
    return w


def metropolis_weights(g: Graph) -> np.ndarray:
    """Metropolis–Hastings: 1/(1 + max(d_i, d_j)) on edges, the rest of each row on the diagonal."""
    w = np.zeros((g.n, g.n))
    for i, j in g.edges:
        w[i, j] = w[j, i] = 1.0 / (1 + max(g.degree(i), g.degree(j)))
    for i in range(g.n):
        w[i, i] = 1.0 - w[i].sum()
    return w


def check_mixing(w: np.ndarray, g: Graph) -> None:
    """Raise TopologyError unless w is a symmetric doubly stochastic matrix supported on g."""
    if w.shape != (g.n, g.n):
        raise TopologyError(f"mixing matrix must have shape ({g.n}, {g.n}) (got {w.shape})")
    if not np.allclose(w, w.T, rtol=0.0, atol=ATOL):
        raise TopologyError("mixing matrix must be symmetric")
    ones = np.ones(g.n)
    if not (np.allclose(w.sum(axis=1), ones, rtol=0.0, atol=ATOL)
            and np.allclose(w.sum(axis=0), ones, rtol=0.0, atol=ATOL)):
        raise TopologyError("mixing matrix must be doubly stochastic (rows and columns sum to 1)")
    if (w < 0).any():
        raise TopologyError("mixing matrix must have no negative entries")
    allowed = g.adjacency() | np.eye(g.n, dtype=bool)
    if (w[~allowed] != 0).any():
        raise TopologyError(f"mixing matrix has weight off the edges of topology {g.name!r}")


def mixing_matrix(g: Graph, method: str) -> np.ndarray:
    """The checked mixing matrix of g built by method ("kernel" or "metropolis")."""
    if method == "kernel":
        w = kernel_weights(g)
    elif method == "metropolis":
        w = metropolis_weights(g)
    else:
        raise TopologyError(
            f"mixing method must be one of {', '.join(MIXING_METHODS)} (got {method!r})"
        )
    check_mixing(w, g)
    return w


def spectral_gap(w: np.ndarray) -> float:
    """1 - the second largest eigenvalue magnitude; how fast x <- W x reaches consensus."""
    if w.shape[0] == 1:
        return 1.0
    mags = np.sort(np.abs(np.linalg.eigvalsh(w)))[::-1]
    return float(min(1.0, max(0.0, 1.0 - mags[1])))
