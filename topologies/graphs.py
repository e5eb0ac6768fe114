"""Communication graphs: which agents may talk to which.

Every builder validates its arguments, returns a connected undirected graph and raises
`TopologyError` naming the offending parameter otherwise. The grid and random generators are
networkx's (imported only for them: it takes a few hundred ms, and every agent process imports
this module); ours are the checks, the node ids 0..n-1 and the sorted edge tuples the runtime
reads.
"""

from __future__ import annotations

import random as pyrandom
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import networkx as nx

TOPOLOGIES: tuple[str, ...] = (
    "ring", "line", "star", "complete", "grid", "random", "small-world", "edgelist",
)

# A disconnected random draw is redrawn at most this many times before giving up.
MAX_DRAWS = 1000

Edge = tuple[int, int]


class TopologyError(ValueError):
    """A topology cannot be built from the given parameters."""


@dataclass(frozen=True)
class Graph:
    """An undirected simple graph on nodes 0..n-1; edges are stored sorted with i < j."""

    n: int
    edges: tuple[Edge, ...]
    name: str
    _nbrs: tuple[tuple[int, ...], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.n < 1:
            raise TopologyError(f"n must be >= 1 (got {self.n})")
        normal: set[Edge] = set()
        for i, j in self.edges:
            if i == j:
                raise TopologyError(f"edges must not contain self loops (got ({i}, {j}))")
            if not (0 <= i < self.n and 0 <= j < self.n):
                raise TopologyError(f"edge ({i}, {j}) has a node id outside [0, {self.n})")
            normal.add((min(i, j), max(i, j)))
        edges = tuple(sorted(normal))
        nbrs: list[list[int]] = [[] for _ in range(self.n)]
        for i, j in edges:
            nbrs[i].append(j)
            nbrs[j].append(i)
        object.__setattr__(self, "edges", edges)
        object.__setattr__(self, "_nbrs", tuple(tuple(sorted(a)) for a in nbrs))

    def neighbours(self, i: int) -> list[int]:
        """The sorted neighbours of node i."""
        return list(self._nbrs[i])

    def degree(self, i: int) -> int:
        """The number of neighbours of node i."""
        return len(self._nbrs[i])

    @property
    def max_degree(self) -> int:
        """The largest degree over all nodes."""
        return max(len(a) for a in self._nbrs)

    def is_connected(self) -> bool:
        """Whether every node can reach every other node."""
        seen, todo = {0}, [0]
        while todo:
            for j in self._nbrs[todo.pop()]:
                if j not in seen:
                    seen.add(j)
                    todo.append(j)
        return len(seen) == self.n

    def to_networkx(self) -> nx.Graph:
        import networkx as nx

        g = nx.Graph()
        g.add_nodes_from(range(self.n))
        g.add_edges_from(self.edges)
        return g

    def adjacency(self) -> np.ndarray:
        """The boolean n x n adjacency matrix."""
        a = np.zeros((self.n, self.n), dtype=bool)
        for i, j in self.edges:
            a[i, j] = a[j, i] = True
        return a


# ---- argument checks --------------------------------------------------------------------


def _check_n(n: int, name: str, minimum: int = 2) -> None:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < minimum:
        raise TopologyError(f"n must be an integer >= {minimum} for topology {name!r} (got {n!r})")


def _check_prob(value: float, param: str) -> None:
    if not 0.0 <= value <= 1.0:
        raise TopologyError(f"{param} must be a probability in [0, 1] (got {value!r})")


def _connected(g: Graph) -> Graph:
    if not g.is_connected():
        raise TopologyError(f"topology {g.name!r} with n={g.n} is not connected")
    return g


# ---- deterministic builders -------------------------------------------------------------


def _from(edges: list[Edge], n: int, name: str) -> Graph:
    return _connected(Graph(n, tuple(edges), name))


def ring(n: int) -> Graph:
    """A cycle 0-1-...-(n-1)-0; for n == 2 a single edge."""
    _check_n(n, "ring")
    return _from([(i, (i + 1) % n) for i in range(n)], n, "ring")


def line(n: int) -> Graph:
    """A path 0-1-...-(n-1)."""
    _check_n(n, "line")
    return _from([(i, i + 1) for i in range(n - 1)], n, "line")


def star(n: int) -> Graph:
    """Node 0 is the hub, joined to every other node."""
    _check_n(n, "star")
    return _from([(0, i) for i in range(1, n)], n, "star")


def complete(n: int) -> Graph:
    """Every pair joined; n == 1 is a single node (a centralised run)."""
    _check_n(n, "complete", minimum=1)
    return _from([(i, j) for i in range(n) for j in range(i + 1, n)], n, "complete")


def grid(n: int, rows: int) -> Graph:
    """A 4-neighbour grid of rows x n//rows, no wraparound; node id = r * cols + c."""
    _check_n(n, "grid")
    if isinstance(rows, bool) or not isinstance(rows, int | np.integer) or rows < 1:
        raise TopologyError(f"rows must be a positive integer for topology 'grid' (got {rows!r})")
    if n % rows:
        raise TopologyError(f"rows must divide n={n} for topology 'grid' (got rows={rows})")
    import networkx as nx

    cols = n // rows
    g = nx.convert_node_labels_to_integers(nx.grid_2d_graph(rows, cols), ordering="sorted")
    return _from(list(g.edges), n, "grid")


# ---- random builders --------------------------------------------------------------------


def _draw_connected(n: int, name: str, draw: Callable[[], nx.Graph], why: str) -> Graph:
    """Call draw() until it gives a connected graph, at most MAX_DRAWS times."""
    import networkx as nx

    for _ in range(MAX_DRAWS):
        g = draw()
        if nx.is_connected(g):
            return Graph(n, tuple(g.edges), name)
    raise TopologyError(f"no connected {name!r} graph in {MAX_DRAWS} draws: {why}")


def random(n: int, p: float, seed: int) -> Graph:
    """Erdős–Rényi G(n, p), redrawn until connected."""
    _check_n(n, "random")
    _check_prob(p, "p")
    import networkx as nx

    rng = pyrandom.Random(seed)      # one stream: each redraw differs, the sequence does not
    return _draw_connected(n, "random", lambda: nx.gnp_random_graph(n, p, seed=rng),
                           f"p={p} is too small for n={n}")


def small_world(n: int, k: int, p: float, seed: int) -> Graph:
    """Watts–Strogatz: a ring lattice of k nearest neighbours, each edge rewired with prob p."""
    _check_n(n, "small-world", minimum=3)
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k % 2 or not 2 <= k < n:
        raise TopologyError(f"k must be an even integer with 2 <= k < n={n} (got k={k!r})")
    _check_prob(p, "rewire probability p")
    import networkx as nx

    rng = pyrandom.Random(seed)
    return _draw_connected(n, "small-world", lambda: nx.watts_strogatz_graph(n, k, p, seed=rng),
                           f"rewire p={p} disconnects n={n}, k={k}")


# ---- edge-list files --------------------------------------------------------------------


def _parse_edge_line(text: str, where: str, n: int) -> Edge | None:
    body = text.split("#", 1)[0].split()
    if not body:
        return None
    if len(body) != 2:
        raise TopologyError(f"edges file {where}: expected 'i j', got {text.strip()!r}")
    try:
        i, j = int(body[0]), int(body[1])
    except ValueError:
        raise TopologyError(f"edges file {where}: node ids must be integers") from None
    for v in (i, j):
        if not 0 <= v < n:
            raise TopologyError(f"edges file {where}: node id {v} outside [0, n={n})")
    if i == j:
        raise TopologyError(f"edges file {where}: self loop ({i}, {j}) is not allowed")
    return (i, j)


def edge_list(path: str | Path, n: int) -> Graph:
    """Read one 'i j' pair per line; '#' comments and blank lines are ignored."""
    _check_n(n, "edgelist")
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise TopologyError(f"edges file '{path}' cannot be read: {exc.strerror}") from None
    edges = []
    for lineno, text in enumerate(lines, start=1):
        edge = _parse_edge_line(text, f"'{path}' line {lineno}", n)
        if edge is not None:
            edges.append(edge)
    g = Graph(n, tuple(edges), "edgelist")
    if not g.is_connected():
        raise TopologyError(f"edges file '{path}': graph on n={n} nodes is not connected")
    return g


# ---- dispatcher -------------------------------------------------------------------------


def build(
    name: str,
    n: int,
    *,
    rows: int | None = None,
    p: float = 0.5,
    k: int = 4,
    rewire: float = 0.1,
    seed: int = 0,
    edges_file: str | None = None,
) -> Graph:
    """Build the named topology on n nodes; the only entry point the runtime needs."""
    if name not in TOPOLOGIES:
        raise TopologyError(f"topology must be one of {', '.join(TOPOLOGIES)} (got {name!r})")
    if name == "ring":
        return ring(n)
    if name == "line":
        return line(n)
    if name == "star":
        return star(n)
    if name == "complete":
        return complete(n)
    if name == "grid":
        if rows is None:
            raise TopologyError("rows is required for topology 'grid'")
        return grid(n, rows)
    if name == "random":
        return random(n, p, seed)
    if name == "small-world":
        return small_world(n, k, rewire, seed)
    if edges_file is None:
        raise TopologyError("edges_file is required for topology 'edgelist'")
    return edge_list(edges_file, n)
