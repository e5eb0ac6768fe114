"""The field types message schemas are written in: exact types, ranges, lengths, finiteness.

A receiver checks every body against its kind's schema before a handler sees it, so a handler
may index what its schema declares without a second look. The checks are exact: ``True`` is
not an int, ``1.0`` is not an int, a dict key must be of the declared type, a float must be
finite unless the field says otherwise, and every container has a length cap (a peer cannot
make a receiver walk a million entries). The error names the field's path
(``stats.planes.peer.rejected``).

Each type maps onto a msgspec annotation, and ``protocols.typed`` compiles every kind's
schema to one when the kind is registered (``Kind.check_body`` runs that):
``Int`` -> ``Annotated[int, Meta(ge, le)]``, ``Num`` -> ``float`` (finite: ``Meta(ge, le)``
at the float range), ``Str`` -> ``Annotated[str, Meta(max_length, pattern)]`` (choices: a
``Literal``), ``Bytes`` -> ``Annotated[bytes, Meta(max_length)]``, ``Opt`` -> ``T | None``,
``ListOf`` -> ``Annotated[list[T], Meta(max_length)]``, ``Tup`` -> ``tuple[...]``, ``DictOf`` ->
``Annotated[dict[K, V], Meta(max_length)]``, ``Obj`` -> a ``Struct`` (``forbid_unknown_fields``
unless it takes ``extra`` fields). The ``check`` methods here are what msgspec cannot
express (numpy arrays, ``protocols.arrays.Arr``; free-form JSON; maps with extra fields), and
the reference the compiled checks are tested against (tests/test_typed_schema.py).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from protocols.errors import SchemaMismatch

I64_MIN, I64_MAX = -(1 << 63), (1 << 63) - 1


class Field:
    """A schema node: ``check(path, value)`` raises SchemaMismatch naming ``path``."""

    def check(self, path: str, value: Any) -> None:
        raise NotImplementedError


def _type_name(value: Any) -> str:
    return type(value).__name__


@dataclass(frozen=True)
class Int(Field):
    """An int (never a bool) in ``[lo, hi]`` (default: the int64 range)."""

    lo: int = I64_MIN
    hi: int = I64_MAX

    def check(self, path: str, value: Any) -> None:
        if type(value) is not int:
            raise SchemaMismatch(f"field '{path}' must be an int, got {_type_name(value)}")
        if not self.lo <= value <= self.hi:
            raise SchemaMismatch(f"field '{path}' is {value}, outside [{self.lo}, {self.hi}]")


@dataclass(frozen=True)
class Num(Field):
    """A number (a float, or an int unless ``ints`` is False; never a bool); finite unless
    ``finite`` is False."""

    finite: bool = True
    ints: bool = True

    def check(self, path: str, value: Any) -> None:
        kind = type(value)
        if kind is float:
            if self.finite and not math.isfinite(value):
                raise SchemaMismatch(f"field '{path}' is {value}, not a finite number")
        elif kind is int and self.ints:
            if not I64_MIN <= value <= I64_MAX:
                raise SchemaMismatch(f"field '{path}' is outside the int64 range")
        else:
            raise SchemaMismatch(f"field '{path}' must be a number, got {_type_name(value)}")


@dataclass(frozen=True)
class Str(Field):
    """A str of at most ``max_len`` characters; one of ``choices`` or matching ``pattern``
    (whole string) if given."""

    max_len: int = 4096
    choices: tuple[str, ...] = ()
    pattern: str | None = None
    _re: Any = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        if self.pattern is not None:
            object.__setattr__(self, "_re", re.compile(self.pattern))

    def check(self, path: str, value: Any) -> None:
        if type(value) is not str:
            raise SchemaMismatch(f"field '{path}' must be a str, got {_type_name(value)}")
        if len(value) > self.max_len:
            raise SchemaMismatch(f"field '{path}' has {len(value)} characters, max "
                                 f"{self.max_len}")
        if self.choices and value not in self.choices:
            raise SchemaMismatch(f"field '{path}' is {value[:40]!r}, allowed {self.choices}")
        if self._re is not None and self._re.fullmatch(value) is None:
            raise SchemaMismatch(f"field '{path}' ({value[:40]!r}) does not match "
                                 f"{self.pattern}")


@dataclass(frozen=True)
class Bytes(Field):
    """Raw bytes, at most ``max_len`` of them."""

    max_len: int = 1 << 24

    def check(self, path: str, value: Any) -> None:
        if type(value) is not bytes:
            raise SchemaMismatch(f"field '{path}' must be bytes, got {_type_name(value)}")
        if len(value) > self.max_len:
            raise SchemaMismatch(f"field '{path}' has {len(value)} bytes, max {self.max_len}")


@dataclass(frozen=True)
class Bool(Field):
    """True or False (never 0 or 1)."""

    def check(self, path: str, value: Any) -> None:
        if type(value) is not bool:
            raise SchemaMismatch(f"field '{path}' must be a bool, got {_type_name(value)}")


@dataclass(frozen=True)
class Opt(Field):
    """None, or a value of ``inner``."""

    inner: Field

    def check(self, path: str, value: Any) -> None:
        if value is not None:
            self.inner.check(path, value)


@dataclass(frozen=True)
class ListOf(Field):
    """A list of ``item`` values, ``min_len`` to ``max_len`` long."""

    item: Field
    max_len: int = 1024
    min_len: int = 0

    def check(self, path: str, value: Any) -> None:
        if type(value) is not list:
            raise SchemaMismatch(f"field '{path}' must be a list, got {_type_name(value)}")
        if not self.min_len <= len(value) <= self.max_len:
            raise SchemaMismatch(f"field '{path}' has {len(value)} entries, allowed "
                                 f"{self.min_len}..{self.max_len}")
        for i, item in enumerate(value):
            self.item.check(f"{path}[{i}]", item)


@dataclass(frozen=True)
class Tup(Field):
    """A fixed-length list whose entries have the given types (msgpack has no tuples)."""

    items: tuple[Field, ...]

    def check(self, path: str, value: Any) -> None:
        if type(value) is not list or len(value) != len(self.items):
            raise SchemaMismatch(f"field '{path}' must be a list of {len(self.items)} entries")
        for i, (spec, item) in enumerate(zip(self.items, value)):
            spec.check(f"{path}[{i}]", item)


@dataclass(frozen=True)
class DictOf(Field):
    """A map from ``key`` values to ``value`` values, at most ``max_len`` entries."""

    key: Field
    value: Field
    max_len: int = 256

    def check(self, path: str, value: Any) -> None:
        if type(value) is not dict:
            raise SchemaMismatch(f"field '{path}' must be a map, got {_type_name(value)}")
        if len(value) > self.max_len:
            raise SchemaMismatch(f"field '{path}' has {len(value)} entries, max {self.max_len}")
        for k, v in value.items():
            self.key.check(f"{path} key", k)
            self.value.check(f"{path}.{k}", v)


@dataclass(frozen=True)
class Obj(Field):
    """A map with named fields (all required but ``optional``); other keys are refused,
    unless ``extra`` gives the type every other field's value must have (str keys only)."""

    fields: Mapping[str, Field]
    optional: frozenset[str] = frozenset()
    extra: Field | None = None
    max_extra: int = 64

    def check(self, path: str, value: Any) -> None:
        if type(value) is not dict:
            raise SchemaMismatch(f"field '{path}' must be a map, got {_type_name(value)}")
        check_fields(path, value, self.fields, self.optional, self.extra, self.max_extra)


def check_fields(path: str, value: dict, fields: Mapping[str, Field], optional: frozenset[str],
                 extra: Field | None = None, max_extra: int = 0) -> None:
    """The map ``value`` holds exactly the declared fields (with the right types)."""
    if not value.keys() <= fields.keys():
        unknown = [k for k in value if k not in fields]
        if extra is None or len(unknown) > max_extra:
            shown = sorted(repr(k)[:40] for k in unknown[:8])
            raise SchemaMismatch(f"'{path}' has {len(unknown)} unexpected fields {shown}")
        for k in unknown:
            if type(k) is not str or len(k) > 128:
                raise SchemaMismatch(f"'{path}' has a field name {repr(k)[:40]} that is not "
                                     "a short str")
            extra.check(f"{path}.{k}", value[k])
    for name, spec in fields.items():
        item = value.get(name, _MISSING)
        if item is _MISSING:
            if name in optional:
                continue
            raise SchemaMismatch(f"'{path}' lacks field '{name}'")
        spec.check(f"{path}.{name}" if path else name, item)


_MISSING = object()


@dataclass(frozen=True)
class Json(Field):
    """Free-form data that can go into a JSON file as it is: maps with str keys, lists, str,
    int64, floats (non-finite ones allowed: json writes them), bool, None; ``arrays``: numpy
    arrays too (a space's bounds). Bounded in depth and in entries per container."""

    max_depth: int = 8
    max_len: int = 4096
    arrays: bool = False

    def check(self, path: str, value: Any) -> None:
        self._walk(path, value, 0)

    def _walk(self, path: str, value: Any, depth: int) -> None:
        kind = type(value)
        if kind is str or kind is float or kind is bool or value is None:
            if kind is str and len(value) > self.max_len * 16:
                raise SchemaMismatch(f"field '{path}' is a str of {len(value)} characters")
            return
        if kind is int:
            if not I64_MIN <= value <= I64_MAX:
                raise SchemaMismatch(f"field '{path}' is outside the int64 range")
            return
        if kind is np.ndarray and self.arrays:
            return
        if kind is not dict and kind is not list:
            raise SchemaMismatch(f"field '{path}' holds a {_type_name(value)}, which JSON "
                                 "cannot")
        if depth >= self.max_depth:
            raise SchemaMismatch(f"field '{path}' nests deeper than {self.max_depth}")
        if len(value) > self.max_len:
            raise SchemaMismatch(f"field '{path}' has {len(value)} entries, max {self.max_len}")
        if kind is list:
            for i, item in enumerate(value):
                self._walk(f"{path}[{i}]", item, depth + 1)
            return
        for k, item in value.items():
            if type(k) is not str:
                raise SchemaMismatch(f"field '{path}' has a key of type {_type_name(k)}")
            self._walk(f"{path}.{k}", item, depth + 1)


@dataclass(frozen=True)
class OneOf(Field):
    """A value of any one of ``options`` (the first that fits)."""

    options: tuple[Field, ...]

    def check(self, path: str, value: Any) -> None:
        for option in self.options:
            try:
                option.check(path, value)
                return
            except SchemaMismatch:
                continue
        raise SchemaMismatch(f"field '{path}' ({_type_name(value)}) fits none of its types")


@dataclass(frozen=True)
class Val(Field):
    """A plain value of one of the given Python types (None allowed if listed); a bool is
    not an int here unless bool is listed."""

    types: tuple[type, ...]

    def check(self, path: str, value: Any) -> None:
        if not isinstance(value, self.types) or (isinstance(value, bool) and bool not in
                                                 self.types and int in self.types):
            allowed = "/".join(t.__name__ for t in self.types)
            raise SchemaMismatch(f"field '{path}' must be {allowed}, got {_type_name(value)}")
