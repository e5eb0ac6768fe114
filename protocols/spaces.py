"""Observation and action spaces as they travel in ``env_ready`` and ``welcome``.

A space is a plain dict::

    {"type": "discrete", "n": 5}
    {"type": "box", "shape": [457, 120, 3], "low": 0.0, "high": 255.0, "dtype": "uint8"}

A Box's ``low``/``high`` is one number when every element shares it, otherwise an ndarray of
the Box's shape (the codec's array type): never a per-element list, so a 457x120x3 image costs
a few bytes to describe, not tens of megabytes. ``dtype`` is the dtype observations travel in.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# The dtypes a Box may declare (what the codec carries, minus bool and float16).
BOX_DTYPES = frozenset({"int8", "uint8", "int16", "uint16", "int32", "uint32", "int64",
                        "uint64", "float32", "float64"})


def compact_bound(values: np.ndarray) -> float | np.ndarray:
    """One number when every element is the same (inf and nan included), else the array."""
    flat = np.asarray(values, dtype=np.float64).ravel()
    if flat.size == 0 or np.all(flat == flat[0]) or np.all(np.isnan(flat)):
        return float(flat[0]) if flat.size else 0.0
    return np.asarray(values, dtype=np.float64)


def box_space(shape: tuple[int, ...] | list[int], low: Any, high: Any,
              dtype: str = "float32") -> dict:
    """The wire form of a Box."""
    shape = [int(d) for d in shape]
    if dtype not in BOX_DTYPES:
        raise ValueError(f"Box dtype {dtype!r} cannot travel (allowed: {sorted(BOX_DTYPES)})")
    low_a = np.broadcast_to(np.asarray(low, dtype=np.float64), shape)
    high_a = np.broadcast_to(np.asarray(high, dtype=np.float64), shape)
    return {"type": "box", "shape": shape, "low": compact_bound(low_a),
            "high": compact_bound(high_a), "dtype": dtype}


def box_bounds(space: dict, dtype: Any = np.float64) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of a Box space as full arrays of its shape (a scalar bound broadcast; the
    per-element lists older runs sent are still read)."""
    shape = tuple(int(d) for d in space["shape"])
    return (_full(space["low"], shape, dtype), _full(space["high"], shape, dtype))


def _full(bound: Any, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    arr = np.asarray(bound, dtype=dtype)
    if arr.ndim == 1 and arr.size == int(np.prod(shape)) and arr.shape != shape:
        arr = arr.reshape(shape)
    return np.array(np.broadcast_to(arr, shape))


def obs_dtype(space: dict) -> np.dtype:
    """The dtype observations of this space travel in."""
    if space["type"] == "discrete":
        return np.dtype(np.int64)
    return np.dtype(space.get("dtype", "float32"))


def action_problem(a: np.ndarray, spaces: list[dict], num_envs: int) -> str:
    """Why ``a`` cannot be this agent's actions ("" if it can): shape (num_envs, one column
    per controlled env agent, + the action shape), integers in range for a Discrete space,
    finite floats for a Box. On every step of the env server: whole-array checks first."""
    if a.ndim < 2 or a.shape[0] != num_envs or a.shape[1] != len(spaces):
        return "bad_action_shape"
    kinds = {space["type"] for space in spaces}
    if kinds == {"discrete"}:
        if a.ndim != 2:
            return "bad_action_shape"
        if a.dtype.kind not in "iu":
            return "bad_action_dtype"
        # one reduction: seen unsigned, a negative action is larger than any n
        unsigned = a.view(f"u{a.dtype.itemsize}") if a.dtype.kind == "i" else a
        if a.size and unsigned.max() >= min(int(s["n"]) for s in spaces) and any(
                unsigned[:, j].max() >= int(s["n"]) for j, s in enumerate(spaces)):
            return "bad_action_value"
        return ""
    if len(spaces) > 1 and len(kinds) > 1:       # mixed spaces: one column at a time
        return next((why for j, s in enumerate(spaces)
                     if (why := action_problem(a[:, j:j + 1], [s], num_envs))), "")
    shape = tuple(int(d) for d in spaces[0]["shape"])
    if any(tuple(int(d) for d in s["shape"]) != shape for s in spaces) or a.shape[2:] != shape:
        return "bad_action_shape"
    if a.dtype.kind not in "iuf":
        return "bad_action_dtype"
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        return "bad_action_value"
    return ""
