"""The schemas compiled to msgspec types (protocols.typed) decide exactly as the field checks
they are compiled from (protocols.schema.check_fields): on valid bodies of every kind, on
hostile ones (a field replaced, removed or added), and on the values msgspec would convert
rather than refuse (a str for bytes, a float for an int, a bool for a number). One difference
is known and kept: a tuple where a list is declared passes the compiled check (msgspec takes
any sequence for a list); a received body never holds one (msgpack decodes arrays to lists),
and one this process sends goes out as the same msgpack array a list would."""

from __future__ import annotations

import numpy as np
import pytest
import strategies
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.errors import SchemaMismatch
from protocols.kinds import REGISTRY
from protocols.schema import check_fields

KINDS = sorted(REGISTRY)
SETTINGS = settings(max_examples=20, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))


def verdicts(kind: str, body) -> tuple[bool, bool]:
    """(compiled accepts, field checks accept)."""
    spec = REGISTRY[kind]
    try:
        spec.check_body(body)
        compiled = True
    except SchemaMismatch:
        compiled = False
    try:
        if type(body) is not dict:
            raise SchemaMismatch("not a map")
        check_fields(kind, body, spec.fields, spec.optional)
        python = True
    except SchemaMismatch:
        python = False
    return compiled, python


@pytest.mark.parametrize("kind", KINDS)
@SETTINGS
@given(data=st.data())
def test_compiled_check_agrees_with_the_field_checks(kind, data):
    body = data.draw(st.one_of(strategies.body(REGISTRY[kind]),
                               strategies.hostile_body(REGISTRY[kind])))
    compiled, python = verdicts(kind, body)
    assert compiled == python, body


@pytest.mark.parametrize("kind, body", [
    ("file_chunk", {"path": "logs/agent-0.log", "offset": 0, "data": "aGVsbG8=", "crc32": 1}),
    ("file_get", {"path": "logs/agent-0.log", "offset": 1.0, "length": 1}),
    ("metrics", {"step": True, "scalars": {}}),
    ("metrics", {"step": 2 ** 64, "scalars": {}}),
    ("consensus_sum", {"t": 0, "r": 0, "idx": np.zeros(1, np.int64), "s": np.zeros(1),
                       "w": 1}),
    ("consensus", {"t": 0, "r": 0, "idx": np.zeros(1, np.int64),
                   "x": np.array([np.nan])}),
    ("hello", {"role": "agent", "pid": 1, "host": "h", "endpoint": "tcp://h:1\n",
               "want_id": None, "caps": {}}),
    ("act", {"t": 0, "a": np.zeros((1, 1), ">i8")}),
    # an array where a map belongs: msgspec takes it for a mapping and raises AttributeError
    # (found by fuzz/run.py); a refusal like any other
    ("security", {"counts": np.zeros(3), "peers": []}),
    ("bye", {"stats": {"planes": np.zeros(3)}}),
])
def test_what_msgspec_would_convert_is_refused(kind, body):
    assert verdicts(kind, body) == (False, False)


def test_a_tuple_for_a_list_is_the_one_known_difference():
    assert verdicts("turn", {"order": (0, 1), "turn_len": 3}) == (True, False)
    assert verdicts("turn", {"order": [0, 1], "turn_len": 3}) == (True, True)
