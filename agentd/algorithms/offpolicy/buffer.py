"""A private replay buffer of (s, a, r, s', terminated) for the off-policy Q-learners, and the
RNG-state codec their recovery checkpoints share. numpy only (no torch here)."""

from __future__ import annotations

import numpy as np

_MASK64 = (1 << 64) - 1


class ReplayBuffer:
    """A ring of ``capacity`` transitions; ``count`` (entries ever stored) fixes the position."""

    def __init__(self, capacity: int, obs_dim: int) -> None:
        self.capacity = capacity
        self.s = np.zeros((capacity, obs_dim), np.float32)
        self.s2 = np.zeros((capacity, obs_dim), np.float32)
        self.a = np.zeros(capacity, np.int64)
        self.r = np.zeros(capacity, np.float32)
        self.done = np.zeros(capacity, np.float32)
        self.count = 0

    @property
    def size(self) -> int:
        return min(self.count, self.capacity)

    def add(self, s: np.ndarray, a: np.ndarray, r: np.ndarray, s2: np.ndarray,
            done: np.ndarray) -> None:
        pos = (self.count + np.arange(len(a))) % self.capacity
        self.s[pos], self.s2[pos], self.a[pos] = s, s2, a
        self.r[pos], self.done[pos] = r, done
        self.count += len(a)

    def sample(self, rng: np.random.Generator, batch: int) -> np.ndarray:
        return rng.integers(0, self.size, batch)

    def state_dict(self, prefix: str = "buf") -> dict[str, np.ndarray]:
        """The filled entries and the write position (a restored run goes on where it was)."""
        n = self.size
        return {f"{prefix}.s": self.s[:n].copy(), f"{prefix}.s2": self.s2[:n].copy(),
                f"{prefix}.a": self.a[:n].copy(), f"{prefix}.r": self.r[:n].copy(),
                f"{prefix}.done": self.done[:n].copy(), f"{prefix}.count": np.array(self.count)}

    def load_state_dict(self, state: dict[str, np.ndarray], prefix: str = "buf") -> None:
        n = len(state[f"{prefix}.a"])
        if n > self.capacity:
            raise ValueError(f"checkpoint holds {n} buffer entries, capacity is {self.capacity}")
        for name in ("s", "s2", "a", "r", "done"):
            getattr(self, name)[:n] = state[f"{prefix}.{name}"]
        self.count = int(state[f"{prefix}.count"])


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
