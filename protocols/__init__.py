"""Message envelope, codec, the registry of permitted kinds, and the guard."""

from protocols.codec import Codec
from protocols.envelope import COORDINATOR, ENVSERVER, UNASSIGNED, Message, encode, process_name
from protocols.errors import (
                                DuplicateKind,
                                KindNotPermitted,
                                MalformedFrame,
                                NotANeighbour,
                                Oversize,
                                ProtocolError,
                                SchemaMismatch,
                                Spoofed,
                                UnknownKind,
                                WrongDestination,
)
from protocols.guard import DEFAULT_MAX_BYTES, Guard, peer_identity
from protocols.kinds import REGISTRY, Arr, Kind, Val, lookup, peer_kinds, register

__all__ = [
                                "COORDINATOR",
                                "DEFAULT_MAX_BYTES",
                                "ENVSERVER",
                                "REGISTRY",
                                "UNASSIGNED",
                                "Arr",
                                "Codec",
                                "DuplicateKind",
                                "Guard",
                                "Kind",
                                "KindNotPermitted",
                                "MalformedFrame",
                                "Message",
                                "NotANeighbour",
                                "Oversize",
                                "ProtocolError",
                                "SchemaMismatch",
                                "Spoofed",
                                "UnknownKind",
                                "Val",
                                "WrongDestination",
                                "encode",
                                "lookup",
                                "peer_identity",
                                "peer_kinds",
                                "process_name",
                                "register",
]
