"""The coordinator's kind -> handler table against the registry of kinds: every control kind
it can receive has a handler, every other control kind is one it only sends, and no handler
is registered for a kind the registry does not know (a misspelt handler cannot hide)."""

from __future__ import annotations

import inspect

from coordinator.coordinator import HANDLERS, SENDS_ONLY, Coordinator
from protocols.kinds import REGISTRY

CONTROL = {name for name, kind in REGISTRY.items() if kind.plane == "control"}


def test_every_control_kind_is_handled_or_only_sent_by_the_coordinator():
    assert set(HANDLERS) <= CONTROL, sorted(set(HANDLERS) - CONTROL)
    assert SENDS_ONLY <= CONTROL, sorted(SENDS_ONLY - CONTROL)
    assert not set(HANDLERS) & SENDS_ONLY
    # hello is answered before admission, by on_hello; everything else is in one table
    assert set(HANDLERS) | SENDS_ONLY | {"hello"} == CONTROL


def test_every_handler_method_is_in_the_table_under_its_own_kind():
    methods = {name[3:]: fn for name, fn in inspect.getmembers(Coordinator, inspect.isfunction)
               if name.startswith("on_") and name not in ("on_message", "on_hello")}
    assert methods == HANDLERS
    for kind, handler in HANDLERS.items():
        assert list(inspect.signature(handler).parameters) == ["self", "proc", "msg"], kind
