"""Values made from the message schemas: Hypothesis strategies for valid bodies (and the hostile
values that ride along with them), used by the property tests and by fuzz/run.py."""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np
from hypothesis import strategies as st

from protocols.arrays import Arr
from protocols.kinds import Kind
from protocols.schema import (
    I64_MAX,
    I64_MIN,
    Bool,
    Bytes,
    DictOf,
    Field,
    Int,
    Json,
    ListOf,
    Num,
    Obj,
    OneOf,
    Opt,
    Str,
    Tup,
    Val,
)

SMALL = 4     # containers drawn hold at most this many entries (the caps are tested apart)

# Values no schema declares: what a hostile sender puts where a field is expected.
HOSTILE = st.one_of(
    st.none(), st.booleans(), st.integers(I64_MIN, I64_MAX + 5),
    st.integers(-(1 << 63), (1 << 64) - 1), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8), st.binary(max_size=8), st.just("\x00"), st.just("x" * 300),
    st.lists(st.integers(I64_MIN, I64_MAX), max_size=3), st.just([[]]), st.just({0: 1, "x": 1}),
    st.just({b"k": 1}), st.just({None: []}), st.just({1.5: "a"}),
    st.just(np.array([np.nan, np.inf])), st.just(np.zeros((0, 3))),
    st.just(np.zeros((2,) * 5, dtype=np.float32)), st.just(np.zeros(3, dtype=np.uint64)),
    st.just(msgpack.ExtType(1, b"\x0b\x02" + b"\xff" * 16)), st.just(msgpack.ExtType(9, b"")),
    st.just(msgpack.ExtType(1, b"\x07\x02" + (0).to_bytes(8, "little")
                            + (1 << 63).to_bytes(8, "little"))))


def valid(spec: Field) -> st.SearchStrategy:
    """Values that pass ``spec.check``."""
    if isinstance(spec, Int):
        return st.one_of(st.integers(max(spec.lo, -1000), min(spec.hi, 1000)),
                         st.sampled_from(sorted({spec.lo, spec.hi})))
    if isinstance(spec, Num):
        floats = st.floats(allow_nan=not spec.finite, allow_infinity=not spec.finite)
        return st.one_of(floats, st.integers(-1000, 1000)) if spec.ints else floats
    if isinstance(spec, Str):
        if spec.choices:
            return st.sampled_from(spec.choices)
        if spec.pattern is not None:
            return st.from_regex(spec.pattern, fullmatch=True).filter(
                lambda s: len(s) <= spec.max_len)
        return st.text(max_size=min(spec.max_len, 12))
    if isinstance(spec, Bytes):
        return st.binary(max_size=min(spec.max_len, 64))
    if isinstance(spec, Bool):
        return st.booleans()
    if isinstance(spec, Opt):
        return st.one_of(st.none(), valid(spec.inner))
    if isinstance(spec, ListOf):
        return st.lists(valid(spec.item), min_size=spec.min_len,
                        max_size=max(spec.min_len, min(spec.max_len, SMALL)))
    if isinstance(spec, Tup):
        return st.tuples(*(valid(i) for i in spec.items)).map(list)
    if isinstance(spec, DictOf):
        return st.dictionaries(valid(spec.key), valid(spec.value),
                               max_size=min(spec.max_len, SMALL))
    if isinstance(spec, Obj):
        return _obj(spec.fields, spec.optional, spec.extra)
    if isinstance(spec, OneOf):
        return st.one_of(*(valid(o) for o in spec.options))
    if isinstance(spec, Json):
        return _json(spec.max_depth)
    if isinstance(spec, Arr):
        return _array(spec)
    if isinstance(spec, Val):
        return st.one_of(*(_plain(t) for t in spec.types))
    raise TypeError(f"no strategy for {spec!r}")


def body(kind: Kind) -> st.SearchStrategy:
    """Bodies of ``kind`` that its schema accepts."""
    return _obj(kind.fields, kind.optional, None)


def hostile_body(kind: Kind) -> st.SearchStrategy:
    """A valid body with one field replaced by a hostile value, removed, or one added."""
    def spoil(draw_body: dict, data: st.DataObject) -> Any:
        keys = sorted(draw_body) or ["x"]
        how = data.draw(st.sampled_from(["replace", "drop", "add", "not_a_map"]))
        out = dict(draw_body)
        if how == "replace":
            out[data.draw(st.sampled_from(keys))] = data.draw(HOSTILE)
        elif how == "drop" and out:
            out.pop(data.draw(st.sampled_from(keys)), None)
        elif how == "add":
            out[data.draw(st.one_of(st.text(max_size=4), st.integers(-5, 5), st.none()))] = 1
        else:
            return data.draw(HOSTILE)
        return out
    return st.tuples(body(kind), st.data()).map(lambda bd: spoil(*bd))


def _obj(fields: dict, optional: frozenset, extra: Field | None) -> st.SearchStrategy:
    required = {k: valid(v) for k, v in fields.items() if k not in optional}
    opt = {k: valid(v) for k, v in fields.items() if k in optional}
    base = st.fixed_dictionaries(required, optional=opt)
    if extra is None:
        return base
    more = st.dictionaries(st.text(min_size=1, max_size=6).filter(lambda k: k not in fields),
                           valid(extra), max_size=2)
    return st.tuples(base, more).map(lambda bm: {**bm[1], **bm[0]})


def _json(depth: int) -> st.SearchStrategy:
    leaf = st.one_of(st.none(), st.booleans(), st.integers(-1000, 1000), st.floats(),
                     st.text(max_size=6))
    return st.recursive(leaf, lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)),
        max_leaves=6 if depth > 2 else 2)


def _array(spec: Arr) -> st.SearchStrategy:
    from hypothesis.extra import numpy as hnp
    dtypes = st.sampled_from(sorted(spec.dtypes)).map(np.dtype)
    ndim = st.sampled_from([d for d in spec.ndims if d <= 3] or [min(spec.ndims)])

    def make(dtype: np.dtype, nd: int, data: st.DataObject) -> np.ndarray:
        shape = data.draw(hnp.array_shapes(min_dims=nd, max_dims=nd, min_side=0, max_side=3)
                          if nd else st.just(()))
        elements = st.floats(-1000, 1000, width=dtype.itemsize * 8) if dtype.kind == "f" \
            else None
        return data.draw(hnp.arrays(dtype.newbyteorder("<") if dtype.itemsize > 1 else dtype,
                                    shape, elements=elements))
    return st.tuples(dtypes, ndim, st.data()).map(lambda t: make(*t))


def _plain(t: type) -> st.SearchStrategy:
    return {int: st.integers(-1000, 1000), float: st.floats(allow_nan=False),
            str: st.text(max_size=8), dict: st.just({"a": 1, "nested": [1, 2.5]}),
            bool: st.booleans(), type(None): st.none(), list: st.just([["a", 1], 2.5]),
            bytes: st.binary(max_size=8)}[t]


def sample(spec: Field, seed: int = 0) -> Any:
    """One valid value of ``spec`` (Hypothesis's example, made reproducible)."""
    from hypothesis import find, settings
    return find(valid(spec), lambda _: True, settings=settings(database=None, max_examples=1,
                                                                 derandomize=True))
