"""Learner hyper-parameters: a Params dataclass per learner, each field declared with its
default and allowed values, parsed from the user's overrides with errors naming the field."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


class LearnerConfigError(ValueError):
    """A learner parameter or an env/space combination the learner cannot handle."""


@dataclass(frozen=True)
class Allowed:
    """The values a parameter may take: a range (either end open or closed) or a set."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[Any, ...] = ()

    def admits(self, v: Any) -> bool:
        if self.choices:
            return v in self.choices
        return ((self.ge is None or v >= self.ge) and (self.gt is None or v > self.gt)
                and (self.le is None or v <= self.le) and (self.lt is None or v < self.lt))

    def __str__(self) -> str:
        if self.choices:
            return "one of " + ", ".join(str(c) for c in self.choices)
        lo = f"[{self.ge}" if self.ge is not None else f"({self.gt}" if self.gt is not None \
            else None
        hi = f"{self.le}]" if self.le is not None else f"{self.lt})" if self.lt is not None \
            else None
        if lo and hi:
            return f"in {lo}, {hi}"
        return (f">= {self.ge}" if self.ge is not None else f"> {self.gt}") if lo else \
            (f"<= {self.le}" if self.le is not None else f"< {self.lt}")


def param(default: Any, **allowed: Any) -> Any:
    """A Params field declared with its allowed values (``ge``/``gt``/``le``/``lt`` bounds or
    ``choices``), which ``parse_params`` checks for every learner: no ``check()`` body needed
    except for constraints between fields."""
    return field(default=default, metadata={"allowed": Allowed(**allowed)})


def parse_params(params_cls: type, raw: dict[str, Any], algo: str) -> Any:
    """Build a learner's Params dataclass from user overrides, naming bad fields."""
    fields = {f.name: f for f in dataclasses.fields(params_cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise LearnerConfigError(
            f"unknown parameter(s) {unknown} for algo '{algo}'; allowed: {sorted(fields)}"
        )
    values = {}
    for name, value in raw.items():
        default = getattr(params_cls(), name)
        try:
            values[name] = _coerce(default, value)
        except (TypeError, ValueError):
            raise LearnerConfigError(
                f"parameter '{name}' for algo '{algo}' must be {type(default).__name__}, "
                f"got {value!r}"
            ) from None
    out = params_cls(**values)
    for f in fields.values():
        allowed = _declared(params_cls, f.name)
        if allowed is not None and not allowed.admits(getattr(out, f.name)):
            raise LearnerConfigError(f"parameter '{f.name}' for algo '{algo}' must be "
                                     f"{allowed}, got {getattr(out, f.name)!r}")
    check = getattr(out, "check", None)
    if check is not None:
        check()
    return out


def _declared(params_cls: type, name: str) -> Allowed | None:
    """The allowed values of field ``name``, from the nearest class that declares them: a
    subclass that only changes a default (``alpha: float = 1.0``) keeps its parent's range."""
    for cls in params_cls.__mro__:
        f = vars(cls).get("__dataclass_fields__", {}).get(name)
        if f is not None and "allowed" in f.metadata:
            return f.metadata["allowed"]
    return None


_BOOL_WORDS = {"true": True, "false": False, "1": True, "0": False}


def _coerce(default: Any, value: Any) -> Any:
    """``value`` as the type of the field's default, refusing lossy conversions: "False" is
    not True, 0.5 is not the int 0 (ValueError/TypeError name the bad value)."""
    if default is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
            return _BOOL_WORDS[value.strip().lower()]
        raise ValueError(value)
    if isinstance(value, bool):       # True is an int in Python; never a number here
        raise TypeError(value)
    if isinstance(default, int):
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        return int(value)
    return type(default)(value)
