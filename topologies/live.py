"""Time-varying graphs: scheduled link failures and the mixing weights of the live graph.

A link schedule (``--link-schedule FILE``) lists step ranges during which given edges are down,
one per line: ``FROM TO I J`` -- edge I-J is down for the joint steps FROM <= t < TO (``#``
starts a comment). Every agent knows the schedule and the whole (public) graph, so at each step
both ends of an edge agree on which edges are live and on every live degree, and Metropolis-
Hastings weights on the live graph,

    W_ij(t) = 1 / (1 + max(d_i(t), d_j(t)))  for live edges,   W_ii(t) = 1 - sum_j W_ij(t),

are symmetric with non-negative diagonal: W(t) is doubly stochastic at every step.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class ScheduleError(ValueError):
    """A link schedule that cannot be used; the message names the file and line."""


def parse_schedule(path: str | Path, n: int) -> list[list[int]]:
    """``[[from, to, i, j], ...]`` (i < j) from a schedule file, checked against n agents."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise ScheduleError(f"link schedule {path}: {exc.strerror}") from None
    out = []
    for k, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            start, stop, i, j = (int(v) for v in text.split())
        except ValueError:
            raise ScheduleError(f"{path}:{k}: expected 'FROM TO I J' (four integers), "
                                f"got {line.strip()!r}") from None
        if not (0 <= start < stop and 0 <= i < n and 0 <= j < n and i != j):
            raise ScheduleError(f"{path}:{k}: need 0 <= FROM < TO and two different agents "
                                f"in 0..{n - 1}, got {line.strip()!r}")
        out.append([start, stop, min(i, j), max(i, j)])
    return out


def is_schedule(value: object) -> bool:
    """Is this a parsed schedule: a list of [from, to, i, j] integer lists?"""
    return isinstance(value, list) and all(
        isinstance(v, list) and len(v) == 4 and all(isinstance(x, int) for x in v)
        for v in value)


@dataclass(frozen=True)
class LiveGraph:
    """The run's graph with its scheduled failures: who is connected at step t."""

    edges: frozenset[tuple[int, int]]             # (i, j), i < j
    down: tuple[tuple[int, int, int, int], ...]   # (from, to, i, j)

    @classmethod
    def of(cls, edges: list, down: list) -> LiveGraph:
        return cls(frozenset((min(i, j), max(i, j)) for i, j in edges),
                   tuple(tuple(int(v) for v in d) for d in down))

    def is_down(self, i: int, j: int, t: int) -> bool:
        a, b = min(i, j), max(i, j)
        return any(s <= t < e and (a, b) == (x, y) for s, e, x, y in self.down)

    def neighbours(self, i: int, t: int) -> list[int]:
        return sorted(b if a == i else a for a, b in self.edges
                      if i in (a, b) and not self.is_down(a, b, t))

    def weights(self, i: int, t: int) -> dict[int, float]:
        """Row i of the Metropolis-Hastings W(t) on the live graph (self included)."""
        mine = self.neighbours(i, t)
        d_i = len(mine)
        row = {j: 1.0 / (1 + max(d_i, len(self.neighbours(j, t)))) for j in mine}
        row[i] = 1.0 - sum(row.values())
        return row
