"""The ndarray field of message schemas: dtypes, ranks, an element cap and finiteness."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from protocols.errors import SchemaMismatch
from protocols.schema import Field

NUMERIC = frozenset(["bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64",
                     "uint64", "float16", "float32", "float64"])
FLOATS = frozenset(["float16", "float32", "float64"])
INTS = frozenset(["int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64"])


@dataclass(frozen=True)
class Arr(Field):
    """An ndarray field: allowed dtypes, allowed ranks, a cap on the element count, and (for
    float dtypes, unless ``finite`` is False) no NaN or infinity."""

    dtypes: frozenset[str] = NUMERIC
    ndims: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 7, 8)
    max_size: int = 1 << 24
    finite: bool = True
    _dtype_set: frozenset = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:   # dtype objects: a set lookup, not a .name per check
        object.__setattr__(self, "_dtype_set", frozenset(np.dtype(d) for d in self.dtypes))

    def check(self, path: str, value: Any) -> None:
        if type(value) is not np.ndarray:
            raise SchemaMismatch(f"field '{path}' must be an array, got {type(value).__name__}")
        if value.dtype not in self._dtype_set:
            raise SchemaMismatch(f"field '{path}' has dtype {value.dtype}, allowed "
                                 f"{sorted(self.dtypes)}")
        if value.ndim not in self.ndims:
            raise SchemaMismatch(f"field '{path}' has rank {value.ndim}, allowed {self.ndims}")
        if value.size > self.max_size:
            raise SchemaMismatch(f"field '{path}' has {value.size} elements, max "
                                 f"{self.max_size}")
        if self.finite and value.dtype.kind == "f" and not all_finite(value):
            raise SchemaMismatch(f"field '{path}' has NaN or infinite values")


def all_finite(value: np.ndarray) -> bool:
    """No NaN or infinity in a float array. A small one (a step's rewards) is looked at
    element by element in Python: cheaper than any numpy call on it. Otherwise the sum is
    finite exactly when every element is, unless it overflowed: only then is every element
    looked at (the sum allocates nothing)."""
    if value.size <= _SMALL:
        return all(map(math.isfinite, value.ravel().tolist()))
    with np.errstate(all="ignore"):
        return math.isfinite(value.sum()) or bool(np.isfinite(value).all())


_SMALL = 32
