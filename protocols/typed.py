"""The schemas compiled to msgspec types: a body is checked by ``msgspec.convert`` in C.

Each kind's field tree (``protocols.schema``, ``protocols.arrays``) is translated once, when
the kind is registered, into a msgspec ``Struct`` (``forbid_unknown_fields``; optional fields
default to ``UNSET``): ``Int`` -> ``Annotated[int, Meta(ge, le)]``, ``Num`` -> ``int | float``
(finite: ``Meta(ge, le)`` at the float range, which NaN fails too), ``Str`` ->
``Annotated[str, Meta(max_length, pattern)]`` (choices: a ``Literal``), ``Bytes``, ``Bool``,
``Opt`` -> ``T | None``, ``ListOf`` -> ``list``, ``Tup`` -> ``tuple``, ``DictOf`` -> ``dict``,
``Obj`` -> a nested ``Struct``, ``OneOf`` -> a union where msgspec allows it.

What msgspec cannot express -- numpy arrays (``Arr``), free-form JSON, an ``Obj`` that takes
``extra`` fields, ``Val``, a union msgspec refuses -- becomes a marker type whose ``dec_hook``
runs the field's own Python check on that value alone. The converted object is thrown away: the
body stays the dict the handlers index; only the check moved. A mismatch is a
``SchemaMismatch`` naming the kind and the path (``$.stats.planes``), as msgspec reports it.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

import msgspec

from protocols.arrays import Arr
from protocols.errors import SchemaMismatch
from protocols.schema import (
    I64_MAX,
    I64_MIN,
    Bool,
    Bytes,
    DictOf,
    Field,
    Int,
    ListOf,
    Num,
    Obj,
    OneOf,
    Opt,
    Str,
    Tup,
)

_FMAX = 1.7976931348623157e308
_INT64 = Annotated[int, msgspec.Meta(ge=I64_MIN, le=I64_MAX)]
_FINITE = Annotated[float, msgspec.Meta(ge=-_FMAX, le=_FMAX)]


class _Marker:
    """Base of the types that stand for a field msgspec cannot check itself."""

    __slots__ = ()


# bytes pass as they are (without this, convert would take a str as base64 for a bytes field)
_RAW = (bytes, bytearray, memoryview)
_CHECKS: dict[type, Callable[[Any], None]] = {}
_INSTANCES: dict[type, Any] = {}


def _hook(tp: type, value: Any) -> Any:
    check = _CHECKS.get(tp)
    if check is None:
        raise NotImplementedError
    check(value)     # raises ValueError; msgspec adds the path
    return _INSTANCES[tp]


def _marker(field: Field, name: str) -> type:
    """A type for ``field`` checked by its Python ``check`` in the hook."""
    tp = type(f"_{name}", (_Marker,), {"__slots__": ()})

    def check(value: Any) -> None:
        try:
            field.check("", value)
        except SchemaMismatch as exc:
            raise ValueError(str(exc).replace("field '' ", "").replace("'' ", "")) from None

    _CHECKS[tp] = check
    _INSTANCES[tp] = tp()
    return tp


def annotation(field: Field, name: str = "field") -> Any:
    """The msgspec annotation that checks what ``field`` checks."""
    kind = type(field)
    if kind is Int:
        return Annotated[int, msgspec.Meta(ge=field.lo, le=field.hi)]
    if kind is Num and field.ints:
        return _INT64 | _FINITE if field.finite else _INT64 | float
    if kind is Str:
        if field.choices and all(len(c) <= field.max_len for c in field.choices) \
                and field.pattern is None:
            return Literal[field.choices]
        meta = {"max_length": field.max_len}
        if field.pattern is not None:
            meta["pattern"] = rf"\A(?:{field.pattern})\Z"
        if not field.choices:
            return Annotated[str, msgspec.Meta(**meta)]
    elif kind is Bytes:
        return Annotated[bytes, msgspec.Meta(max_length=field.max_len)]
    elif kind is Bool:
        return bool
    elif kind is Opt:
        return annotation(field.inner, name) | None
    elif kind is ListOf:
        return Annotated[list[annotation(field.item, name)],
                         msgspec.Meta(min_length=field.min_len, max_length=field.max_len)]
    elif kind is Tup:
        return tuple[tuple(annotation(f, f"{name}_{i}") for i, f in enumerate(field.items))]
    elif kind is DictOf:
        return Annotated[dict[annotation(field.key, f"{name}_key"),
                              annotation(field.value, name)],
                         msgspec.Meta(max_length=field.max_len)]
    elif kind is Obj and field.extra is None:
        return struct_of(name, field.fields, field.optional)
    elif kind is OneOf:
        try:
            tp = functools.reduce(operator.or_, [annotation(o, name) for o in field.options])
            msgspec.convert(None, tp | None)     # msgspec refuses some unions here
            return tp
        except TypeError:
            pass
    return _marker(field, name)


def struct_of(name: str, fields: Mapping[str, Field], optional: frozenset[str],
              passed: frozenset[str] = frozenset()) -> type:
    """A Struct with these fields (wire names as they are), unknown fields refused; the
    ``passed`` fields take any value (checked elsewhere)."""
    spec = []
    for i, (key, field) in enumerate(fields.items()):
        tp = Any if key in passed else annotation(field, f"{name}_{key}")
        spec.append((f"f{i}", tp, msgspec.UNSET) if key in optional else (f"f{i}", tp))
    return msgspec.defstruct(name, spec, kw_only=True, forbid_unknown_fields=True,
                             rename={f"f{i}": key for i, key in enumerate(fields)})


def compile_check(name: str, fields: Mapping[str, Field],
                  optional: frozenset[str]) -> Callable[[Any], None]:
    """The check of a kind's body: a dict with these fields, each of its type. The body's own
    arrays are checked by their ``Arr`` after the conversion, directly: through a hook they
    cost a third more (measured with ``benchmarks/codec.py``)."""
    arrays = tuple((key, spec) for key, spec in fields.items() if isinstance(spec, Arr))
    tp = struct_of(f"Body_{name}", fields, optional, frozenset(key for key, _ in arrays))
    convert, hook, ValidationError = msgspec.convert, _hook, msgspec.ValidationError

    def check(body: Any) -> None:
        if type(body) is not dict:
            raise SchemaMismatch(f"'{name}' body must be a map, got {type(body).__name__}")
        try:
            convert(body, tp, strict=True, dec_hook=hook, builtin_types=_RAW)
        except ValidationError as exc:
            raise SchemaMismatch(f"'{name}' body: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - e.g. an array where a map belongs: msgspec
            # takes it for a mapping and its .keys() raises AttributeError
            raise SchemaMismatch(f"'{name}' body does not fit its schema: "
                                 f"{type(exc).__name__}: {exc}") from None
        for key, spec in arrays:
            value = body.get(key, _MISSING)
            if value is not _MISSING:
                spec.check(f"{name}.{key}", value)

    return check


_MISSING = object()
