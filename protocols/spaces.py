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
    finite floats for a Box."""
    if a.ndim < 2 or a.shape[:2] != (num_envs, len(spaces)):
        return "bad_action_shape"
    for j, space in enumerate(spaces):
        col = a[:, j]
        if space["type"] == "discrete":
            if col.shape != (num_envs,) or col.dtype.kind not in "iu":
                return "bad_action_shape" if col.shape != (num_envs,) else "bad_action_dtype"
            if col.size and (col.min() < 0 or col.max() >= int(space["n"])):
                return "bad_action_value"
        else:
            if col.shape[1:] != tuple(int(d) for d in space["shape"]):
                return "bad_action_shape"
            if col.dtype.kind not in "iuf":
                return "bad_action_dtype"
            if col.dtype.kind == "f" and not np.isfinite(col).all():
                return "bad_action_value"
    return ""
