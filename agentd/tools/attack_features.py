"""What an attacking neighbour j holds about agent i's step t: the raw arrays of the messages i
sent it right after acting (header t + 1: the first message that can depend on the action of
step t), and its own observation of step t. Samples are (t, copy) pairs, in step order."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agentd.tools.attack_data import RunLogs

MAX_WIDTH = 256     # numbers per kind kept as features (the rest of a long array is cut)
MIN_SAMPLES = 20    # fewer samples than this and an attack says it cannot score


@dataclass
class Samples:
    """The (t, copy) pairs of one edge i -> j where both the truth and a message exist."""

    src: int
    dst: int
    steps: np.ndarray      # t per sample
    copies: np.ndarray     # env copy per sample

    def __len__(self) -> int:
        return len(self.steps)

    def split(self) -> int:
        """Index of the first test sample: the first half of the run fits, the rest scores."""
        return len(self) // 2


def samples(logs: RunLogs, src: int, dst: int, need: str = "actions") -> Samples:
    """Steps t with i's truth (``actions`` of t, or ``rewards`` of t + 1: the reward of the
    action of t) and a message i -> j at t + 1, and j's own observation of t."""
    truth = getattr(logs, need)[src]
    offset = 1 if need == "rewards" else 0
    got = logs.received[(src, dst)]
    own = logs.obs.get(dst, {})
    steps = [t for t in sorted(logs.actions[src]) if t + offset in truth and t + 1 in got
             and t in own]
    k = logs.num_envs
    return Samples(src, dst, np.repeat(np.array(steps, dtype=np.int64), k),
                   np.tile(np.arange(k), len(steps)))


def attacker_state(logs: RunLogs, dst: int, t: int, copy: int) -> int | None:
    """j's own observation of step t as a state index, when it is one (a tabular env)."""
    o = logs.obs[dst][t][copy]
    if o.size != 1 or o.dtype.kind not in "iu":
        return None
    return int(o[0])


def pr_row(body: dict, state: int | None) -> np.ndarray | None:
    """The Q row a ``pr_values`` message carries for ``state``, if it carries one."""
    states, values = body.get("states"), body.get("values")
    if state is None or not isinstance(states, np.ndarray) or not isinstance(values, np.ndarray):
        return None
    hit = np.flatnonzero(states.ravel() == state)
    if not len(hit) or values.ndim != 2 or hit[0] >= len(values):
        return None
    return values[hit[0]].astype(np.float64)


def message_for(logs: RunLogs, src: int, dst: int, t: int, kind: str) -> dict | None:
    for k, body in logs.received[(src, dst)].get(t + 1, []):
        if k == kind:
            return body
    return None


def _numbers(kind: str, body: dict, copy: int, k: int) -> np.ndarray:
    """Every float the body carries (its released arrays, and its scalars), row ``copy`` of
    an array with one row per env copy."""
    parts = []
    for name in sorted(body):
        v = body[name]
        if isinstance(v, np.ndarray) and v.dtype.kind == "f":
            if kind == "latent" and v.ndim == 2 and len(v) == k:
                v = v[copy]
            parts.append(v.astype(np.float64).ravel())
    return np.concatenate(parts) if parts else np.zeros(0)


def raw_features(logs: RunLogs, s: Samples) -> np.ndarray:
    """One row per sample: per kind on the edge, the raw numbers of i's message at t + 1
    (zero-padded to the widest, at most MAX_WIDTH), and for ``pr_values`` first the row of j's
    own state (zeros and a 0 flag when the message has none)."""
    blocks = []
    for kind in logs.kinds((s.src, s.dst)):
        rows, extra = [], []
        for t, c in zip(s.steps, s.copies, strict=True):
            body = message_for(logs, s.src, s.dst, int(t), kind)
            rows.append(np.zeros(0) if body is None else
                        _numbers(kind, body, int(c), logs.num_envs)[:MAX_WIDTH])
            if kind == "pr_values":
                row = None if body is None else pr_row(
                    body, attacker_state(logs, s.dst, int(t), int(c)))
                extra.append(row)
        width = max((len(r) for r in rows), default=0)
        block = np.zeros((len(s), width))
        for n, r in enumerate(rows):
            block[n, :len(r)] = r
        if extra:
            w = max((len(r) for r in extra if r is not None), default=0)
            own = np.zeros((len(s), w + 1))
            for n, r in enumerate(extra):
                if r is not None:
                    own[n, :len(r)], own[n, w] = r, 1.0
            block = np.hstack([own, block])
        blocks.append(block)
    return np.hstack(blocks) if blocks else np.zeros((len(s), 0))
