"""Topologies and mixing matrices: structure, consensus properties, argument errors, CLI."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from topologies import (
    MIXING_METHODS,
    TOPOLOGIES,
    Graph,
    TopologyError,
    build,
    check_mixing,
    kernel_weights,
    mixing_matrix,
    spectral_gap,
)
from topologies.graphs import grid, random, ring, small_world, star
from topologies.show import topology_main

EDGE_FILE = """\
# a 6-cycle with a chord, a duplicate and a reversed duplicate
0 1
1 2   # trailing comment
2 3

3 4
4 5
5 0
0 3
1 0
"""

CASES: dict[str, dict[str, object]] = {
    "ring": {"n": 7},
    "ring-2": {"n": 2, "name": "ring"},
    "line": {"n": 8},
    "star": {"n": 6},
    "complete": {"n": 5},
    "complete-1": {"n": 1, "name": "complete"},
    "grid": {"n": 12, "rows": 3},
    "random": {"n": 10, "p": 0.3, "seed": 3},
    "small-world": {"n": 12, "k": 4, "rewire": 0.3, "seed": 5},
    "edgelist": {"n": 6},
}


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "edges.txt"
    path.write_text(text)
    return str(path)


@pytest.fixture(params=list(CASES))
def graph(request: pytest.FixtureRequest, tmp_path: Path) -> Graph:
    kwargs = dict(CASES[request.param])
    name = str(kwargs.pop("name", request.param))
    if name == "edgelist":
        kwargs["edges_file"] = write(tmp_path, EDGE_FILE)
    return build(name, **kwargs)  # type: ignore[arg-type]


def test_cases_cover_every_topology() -> None:
    assert {str(c.get("name", key)) for key, c in CASES.items()} == set(TOPOLOGIES)


# ---- structure --------------------------------------------------------------------------


def test_graph_is_connected_and_normalised(graph: Graph) -> None:
    assert graph.is_connected()
    assert list(graph.edges) == sorted(set(graph.edges))
    assert all(i < j for i, j in graph.edges)
    adj = graph.adjacency()
    assert adj.dtype == bool and (adj == adj.T).all() and not adj.diagonal().any()
    for i in range(graph.n):
        assert graph.neighbours(i) == sorted(np.flatnonzero(adj[i]).tolist())
        assert graph.degree(i) == len(graph.neighbours(i))
    assert graph.max_degree == max(graph.degree(i) for i in range(graph.n))


def test_exact_edges() -> None:
    assert ring(5).edges == ((0, 1), (0, 4), (1, 2), (2, 3), (3, 4))
    assert ring(2).edges == ((0, 1),)
    assert star(4).edges == ((0, 1), (0, 2), (0, 3))
    assert grid(6, rows=2).edges == ((0, 1), (0, 3), (1, 2), (1, 4), (2, 5), (3, 4), (4, 5))


def test_edge_list_collapses_duplicates(tmp_path: Path) -> None:
    g = build("edgelist", 6, edges_file=write(tmp_path, EDGE_FILE))
    assert g.edges == ((0, 1), (0, 3), (0, 5), (1, 2), (2, 3), (3, 4), (4, 5))


def test_random_is_reproducible() -> None:
    assert random(12, 0.3, seed=1) == random(12, 0.3, seed=1)
    assert random(12, 0.3, seed=1).edges != random(12, 0.3, seed=2).edges
    assert small_world(12, 4, 0.3, seed=1) == small_world(12, 4, 0.3, seed=1)


def test_small_world_without_rewiring_is_a_lattice() -> None:
    g = small_world(8, 4, 0.0, seed=0)
    assert all(g.degree(i) == 4 for i in range(8))
    assert g.neighbours(0) == [1, 2, 6, 7]


# ---- mixing matrices --------------------------------------------------------------------


@pytest.mark.parametrize("method", MIXING_METHODS)
def test_mixing_properties(graph: Graph, method: str) -> None:
    w = mixing_matrix(graph, method)
    assert np.allclose(w, w.T, rtol=0, atol=1e-12)
    assert np.allclose(w.sum(axis=0), 1, rtol=0, atol=1e-12)
    assert np.allclose(w.sum(axis=1), 1, rtol=0, atol=1e-12)
    assert (w >= 0).all()
    off = ~(graph.adjacency() | np.eye(graph.n, dtype=bool))
    assert (w[off] == 0).all()
    assert 0 < spectral_gap(w) <= 1


@pytest.mark.parametrize("method", MIXING_METHODS)
def test_consensus_converges_to_mean(graph: Graph, method: str) -> None:
    w = mixing_matrix(graph, method)
    gap = spectral_gap(w)
    # The error shrinks by (1 - gap) per step; start error is at most a few units.
    steps = 500 if gap == 1 else max(500, math.ceil(math.log(1e-9) / math.log(1 - gap)))
    x = np.random.default_rng(0).normal(size=graph.n)
    target = x.mean()
    for _ in range(steps):
        x = w @ x
    assert np.abs(x - target).max() < 1e-6


def test_kernel_weights_on_ring() -> None:
    w = kernel_weights(ring(5))
    for i, j in ring(5).edges:
        assert w[i, j] == w[j, i] == pytest.approx(1 / 3)
    assert np.allclose(w.diagonal(), 1 / 3)


def test_check_mixing_rejects_bad_matrices() -> None:
    g = ring(4)
    w = mixing_matrix(g, "kernel")
    asym = w.copy()
    asym[0, 1] += 0.1
    asym[0, 0] -= 0.1
    with pytest.raises(TopologyError, match="symmetric"):
        check_mixing(asym, g)
    with pytest.raises(TopologyError, match="doubly stochastic"):
        check_mixing(w * 0.9, g)
    off = w.copy()
    off[0, 2] = off[2, 0] = 0.1
    off[0, 0] -= 0.1
    off[2, 2] -= 0.1
    with pytest.raises(TopologyError, match="off the edges"):
        check_mixing(off, g)
    neg = np.array([[1.5, -0.5, 0, 0], [-0.5, 1.5, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    with pytest.raises(TopologyError, match="negative"):
        check_mixing(neg, g)
    with pytest.raises(TopologyError, match="method"):
        mixing_matrix(g, "uniform")


# ---- argument errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kwargs", "param"),
    [
        ("hypercube", {"n": 4}, "topology"),
        ("ring", {"n": 1}, "n"),
        ("grid", {"n": 6, "rows": 4}, "rows"),
        ("grid", {"n": 6}, "rows"),
        ("small-world", {"n": 10, "k": 3}, "k"),
        ("small-world", {"n": 10, "k": 10}, "k"),
        ("random", {"n": 20, "p": 0.01}, "p"),
        ("random", {"n": 5, "p": 1.5}, "p"),
        ("edgelist", {"n": 4}, "edges_file"),
    ],
)
def test_bad_arguments_name_the_parameter(name: str, kwargs: dict, param: str) -> None:
    with pytest.raises(TopologyError, match=rf"\b{param}\b"):
        build(name, **kwargs)


def test_unknown_name_lists_allowed() -> None:
    with pytest.raises(TopologyError) as info:
        build("hypercube", 4)
    assert all(t in str(info.value) for t in TOPOLOGIES)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("0 1\n1 1\n", "line 2: self loop"),
        ("0 1\n1 7\n", "line 2: node id 7"),
        ("0 1\n2 3\n", "not connected"),
        ("0 1\n1 two\n", "line 2"),
    ],
)
def test_bad_edge_list(tmp_path: Path, text: str, needle: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(TopologyError, match="edges file") as info:
        build("edgelist", 4, edges_file=path)
    assert needle in str(info.value) and path in str(info.value)


# ---- CLI --------------------------------------------------------------------------------


def test_cli_show(capsys: pytest.CaptureFixture[str]) -> None:
    assert topology_main(["show", "ring", "--n", "5"]) == 0
    out = capsys.readouterr().out
    assert "(0,1) (0,4) (1,2) (2,3) (3,4)" in out
    assert "spectral gap" in out and "0.3333" in out


def test_cli_show_metropolis_grid(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["show", "grid", "--n", "20", "--rows", "4", "--mixing", "metropolis"]
    assert topology_main(argv) == 0
    assert "first 16 of 20" in capsys.readouterr().out


def test_cli_unknown_topology(capsys: pytest.CaptureFixture[str]) -> None:
    assert topology_main(["show", "hypercube", "--n", "5"]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and "topology must be one of" in captured.err
    assert captured.out == ""
