"""Named rejections: every reason a frame or message can be refused has its own exception."""

from __future__ import annotations


class ProtocolError(Exception):
    """Base of every refusal; ``reason`` is the short counter key used in stats and logs."""

    reason = "protocol_error"


class MalformedFrame(ProtocolError):
    """Bytes that are not a valid envelope: wrong frame count, bad msgpack, bad field types."""

    reason = "malformed"


class Oversize(ProtocolError):
    """A message larger than the size cap."""

    reason = "oversize"


class UnknownKind(ProtocolError):
    """A kind that is not in the registry."""

    reason = "unknown_kind"


class KindNotPermitted(ProtocolError):
    """A registered kind that this run (or this socket) does not allow."""

    reason = "kind_not_permitted"


class NotANeighbour(ProtocolError):
    """A peer message whose sender or receiver is not a neighbour on the graph."""

    reason = "not_a_neighbour"


class WrongDestination(ProtocolError):
    """A message addressed to another process."""

    reason = "wrong_destination"


class Spoofed(ProtocolError):
    """A message whose routing identity or header ``src`` names another process than the
    owner of the key that authenticated its connection (secure mode)."""

    reason = "spoofed"


class SchemaMismatch(ProtocolError):
    """A body whose fields or arrays do not match the kind's schema."""

    reason = "schema_mismatch"


class DuplicateKind(Exception):
    """A message kind registered twice (raised at import time)."""
