"""The one replay buffer of the off-policy learners, and the RNG-state codec their checkpoints
share. numpy only (no torch here).

A ring of ``capacity`` entries with named fields (``{"s": ((obs_dim,), float32), ...}``), so
iql-deep's (s, a, r, s', terminated), isac's rows with the behaviour's log-density and maddpg's
joint rows all live in the same store. ``count`` (entries ever stored) fixes the write position;
``add`` returns the positions it wrote, which dac-deep's consensus keys its estimates by.
Sampling is uniform with replacement from a seeded generator: a learner hands over its own
(one stream for acting and sampling, as before) or a seed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_MASK64 = (1 << 64) - 1

Fields = dict[str, tuple[tuple[int, ...], Any]]


class ReplayBuffer:
    """A ring of ``capacity`` entries, uniform sampling, its state as named arrays."""

    def __init__(self, capacity: int, fields: Fields,
                 rng: np.random.Generator | int = 0) -> None:
        if capacity < 1:
            raise ValueError(f"a replay buffer needs capacity >= 1, got {capacity}")
        self.capacity = capacity
        self.data = {name: np.zeros((capacity, *shape), dtype)
                     for name, (shape, dtype) in fields.items()}
        self.rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        self.count = 0

    def __getitem__(self, name: str) -> np.ndarray:
        """The whole storage of one field (index it with positions)."""
        return self.data[name]

    @property
    def size(self) -> int:
        """Entries that hold data (a position once written stays filled)."""
        return min(self.count, self.capacity)

    def positions(self, k: int) -> np.ndarray:
        """The next ``k`` write positions."""
        return (self.count + np.arange(k)) % self.capacity

    def add(self, **rows: np.ndarray) -> np.ndarray:
        """Store k entries (every field, each ``(k, *shape)``); returns their positions."""
        if rows.keys() != self.data.keys():
            raise ValueError(f"a replay entry has the fields {sorted(self.data)}, got "
                             f"{sorted(rows)}")
        k = len(next(iter(rows.values())))
        pos = self.positions(k)
        for name, value in rows.items():
            self.data[name][pos] = value
        self.count += k
        return pos

    def skip(self, k: int) -> np.ndarray:
        """Pass over k positions without writing (they keep what they held): a learner whose
        buffer is aligned by the global step with its neighbours' skips the steps it missed."""
        pos = self.positions(k)
        self.count += k
        return pos

    def sample(self, batch: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """``batch`` positions drawn uniformly with replacement from the filled ones (with the
        buffer's generator, or ``rng`` for draws every agent shares)."""
        if self.size == 0:
            raise ValueError("cannot sample an empty replay buffer")
        return (self.rng if rng is None else rng).integers(0, self.size, batch)

    def get(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        """The entries at positions ``idx``, field by field."""
        return {name: arr[idx] for name, arr in self.data.items()}

    # -- checkpoints -----------------------------------------------------------------------
    def state_dict(self, prefix: str = "buf") -> dict[str, np.ndarray]:
        """The filled entries, the write position and the sampling generator's state (a
        restored buffer holds and draws exactly what this one would)."""
        n = self.size
        out = {f"{prefix}.{name}": arr[:n].copy() for name, arr in self.data.items()}
        return {**out, f"{prefix}.count": np.array(self.count),
                f"{prefix}.rng": rng_state(self.rng)}

    def load_state_dict(self, state: dict[str, np.ndarray], prefix: str = "buf") -> None:
        missing = [name for name in self.data if f"{prefix}.{name}" not in state]
        if missing or f"{prefix}.count" not in state:
            raise KeyError(f"checkpoint lacks replay buffer fields {missing or ['count']}")
        n = len(state[f"{prefix}.{next(iter(self.data))}"])
        if n > self.capacity:
            raise ValueError(f"checkpoint holds {n} buffer entries, capacity is {self.capacity}")
        for name, arr in self.data.items():
            value = np.asarray(state[f"{prefix}.{name}"])
            if value.shape[1:] != arr.shape[1:]:
                raise ValueError(f"checkpoint buffer field {name} has entries of shape "
                                 f"{value.shape[1:]}, this buffer {arr.shape[1:]}")
            arr[:n] = value
        self.count = int(state[f"{prefix}.count"])
        if f"{prefix}.rng" in state:
            set_rng_state(self.rng, state[f"{prefix}.rng"])


def rng_state(rng: np.random.Generator) -> np.ndarray:
    """A PCG64 generator's full state as uint64 words (checkpointable with np.savez)."""
    st = rng.bit_generator.state
    if st["bit_generator"] != "PCG64":
        raise ValueError(f"only PCG64 generators are checkpointed, got {st['bit_generator']}")
    words = []
    for value in (st["state"]["state"], st["state"]["inc"]):
        words += [value >> 64, value & _MASK64]
    words += [st["has_uint32"], st["uinteger"]]
    return np.array(words, dtype=np.uint64)


def set_rng_state(rng: np.random.Generator, words: np.ndarray) -> None:
    w = [int(x) for x in np.asarray(words, dtype=np.uint64)]
    rng.bit_generator.state = {
        "bit_generator": "PCG64",
        "state": {"state": (w[0] << 64) | w[1], "inc": (w[2] << 64) | w[3]},
        "has_uint32": w[4], "uinteger": w[5]}
