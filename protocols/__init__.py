"""Message envelope, codec, the registry of permitted kinds, and the guard."""

from protocols.codec import Codec
from protocols.envelope import (COORDINATOR, ENVSERVER, UNASSIGNED, Message, encode,
                                process_name)
from protocols.errors import (DuplicateKind, KindNotPermitted, MalformedFrame, NotANeighbour,
                              Oversize, ProtocolError, SchemaMismatch, UnknownKind,
                              WrongDestination)
from protocols.guard import DEFAULT_MAX_BYTES, Guard, peer_identity
from protocols.kinds import REGISTRY, Arr, Kind, Val, lookup, peer_kinds, register

__all__ = [
    "Codec", "COORDINATOR", "ENVSERVER", "UNASSIGNED", "Message", "encode", "process_name",
    "DuplicateKind", "KindNotPermitted", "MalformedFrame", "NotANeighbour", "Oversize",
    "ProtocolError", "SchemaMismatch", "UnknownKind", "WrongDestination", "DEFAULT_MAX_BYTES",
    "Guard", "peer_identity", "REGISTRY", "Arr", "Kind", "Val", "lookup", "peer_kinds",
    "register",
]
