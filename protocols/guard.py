"""The guard: the checks every message passes on the way in and on the way out.

On receive, in order, stopping at the first failure: frame count, size cap, header decode,
(secure mode) the header's src and the routing identity name the key's owner, kind
registered, kind belongs to this socket's plane, addressed to me, (peer plane) sender is a
neighbour and (insecure mode) its socket identity matches, kind permitted for this run, body
decode, schema, array shapes declared at admission (e.g. MDPO's latent), (secure mode) a hello
asks to join only as the key's owner.
The header is validated before the body is decoded. On send: the kind is registered and on the
right plane, a peer destination is a neighbour, the kind is permitted, the body matches.
The guard only decides; counting and logging rejections is the transport's job.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from protocols.codec import Codec
from protocols.envelope import (
    ENVSERVER,
    FIXED_KINDS,
    Message,
    decode_body,
    decode_header,
    is_fixed,
    process_name,
    split,
)
from protocols.errors import (
    KindNotPermitted,
    MalformedFrame,
    NotANeighbour,
    Oversize,
    SchemaMismatch,
    Spoofed,
    WrongDestination,
)
from protocols.fixed import decode_body as fixed_body
from protocols.fixed import head as fixed_head
from protocols.kinds import lookup

DEFAULT_MAX_BYTES = 16 << 20


def peer_identity(agent_id: int) -> bytes:
    """The ZeroMQ routing id an agent's DEALERs use towards its neighbours."""
    return b"a%d" % agent_id


class Guard:
    """Validates messages for one process: who it is, its neighbours, what the run permits."""

    def __init__(self, me: int, neighbours: Iterable[int] = (),
                 permitted_peer_kinds: Iterable[str] = (),
                 max_bytes: int = DEFAULT_MAX_BYTES,
                 declared: Mapping[str, Mapping[str, tuple[tuple[int, ...], str]]] | None = None
                 ) -> None:
        self.me = me
        self.neighbours = frozenset(neighbours)
        self.permitted = frozenset(permitted_peer_kinds)
        self.max_bytes = max_bytes
        # kind -> field -> (exact shape, dtype) declared at admission (e.g. the latent z)
        self.declared = {k: dict(v) for k, v in (declared or {}).items()}
        self._codec = Codec()

    def incoming(self, frames: list[bytes], plane: str, identity: bytes | None = None,
                 sender: int | None = None) -> Message:
        """Decode and validate a received message (frames without the routing id).

        ``sender`` is the process whose key authenticated the connection (secure mode; None
        in plaintext, where the routing identity is all there is to go on)."""
        if len(frames) != 1:
            raise MalformedFrame(f"expected 1 frame (the envelope), got {len(frames)}")
        nbytes = len(frames[0])
        if nbytes > self.max_bytes:
            raise Oversize(f"{nbytes} bytes exceeds the cap of {self.max_bytes}")
        head, body_part = split(frames[0])
        fixed = is_fixed(head)
        if fixed:           # the hot kinds: a struct, no header map
            v, name, src, dst, step, seq = fixed_head(head)
        else:
            header = decode_header(self._codec, head)
            name, src, dst, step, seq = (header["k"], header["s"], header["d"], header["t"],
                                         header["q"])
        if sender is not None:
            _check_sender(src, identity, sender)
            identity = None    # checked against the key: the peer check below needs no more
        kind = lookup(name)
        if kind.plane != plane:
            raise KindNotPermitted(f"'{kind.name}' is a {kind.plane} kind, not {plane}")
        if dst != self.me:
            raise WrongDestination(f"addressed to {dst}, I am {self.me}")
        if plane == "peer":
            self._check_peer(kind.name, src, identity)
        if fixed:           # checked against the schema while it is decoded
            body = fixed_body(name, body_part, v)
        else:
            body = decode_body(self._codec, head, body_part, kind.max_objects)
            kind.check_body(body)
        if self.declared:
            self._check_declared(kind.name, body)
        if sender is not None and kind.name == "hello":
            _check_hello(body, sender)
        return Message(kind.name, src, dst, step, seq, body, nbytes)

    def _check_peer(self, kind: str, src: int, identity: bytes | None) -> None:
        if src not in self.neighbours:
            raise NotANeighbour(f"agent {src} is not a neighbour of agent {self.me}")
        if identity is not None and identity != peer_identity(src):
            raise NotANeighbour(f"socket identity {identity!r} does not match src {src}")
        if kind not in self.permitted:
            raise KindNotPermitted(f"'{kind}' is not permitted in this run "
                                   f"(permitted: {sorted(self.permitted) or 'none'})")

    def outgoing(self, kind_name: str, dst: int, body: dict, plane: str,
                 encoded_checked: bool = False) -> None:
        """Refuse a message this process must not send. ``encoded_checked``: the codec checks
        the body of a kind with a fixed layout as it encodes it (``encode(check=True)``),
        with the verdicts of the layouts it has seen; the guard leaves it to it."""
        kind = lookup(kind_name)
        if kind.plane != plane:
            raise KindNotPermitted(f"'{kind.name}' is a {kind.plane} kind, not {plane}")
        if plane == "peer":
            if dst not in self.neighbours:
                raise NotANeighbour(f"agent {dst} is not a neighbour of agent {self.me}")
            if kind.name not in self.permitted:
                raise KindNotPermitted(f"'{kind.name}' is not permitted in this run")
        if not (encoded_checked and kind.name in FIXED_KINDS):
            kind.check_body(body)
        self._check_declared(kind.name, body)

    def _check_declared(self, kind: str, body: dict) -> None:
        """Arrays of a kind declared at admission: exactly that shape and dtype, all finite."""
        for name, (shape, dtype) in self.declared.get(kind, {}).items():
            value = body[name]
            if value.shape != tuple(shape) or value.dtype != np.dtype(dtype):
                raise SchemaMismatch(f"'{kind}' field '{name}' is {value.dtype}{list(value.shape)}"
                                     f", declared {dtype}{list(shape)}")
            if value.dtype.kind in "fc" and not np.all(np.isfinite(value)):
                raise SchemaMismatch(f"'{kind}' field '{name}' has non-finite values")


def _check_sender(src: int, identity: bytes | None, sender: int) -> None:
    """Secure mode: the envelope and the routing identity may only name the key's owner.
    Identities ZeroMQ assigns itself start with a zero byte; any other was chosen by the
    client, and then it must be the one its key's owner would use."""
    if src != sender:
        raise Spoofed(f"header src is {process_name(src)}, but the connection's key is "
                      f"{process_name(sender)}'s")
    if identity and identity[0] != 0 and (sender < 0 or identity != peer_identity(sender)):
        raise Spoofed(f"routing identity {identity[:32]!r} does not belong to "
                      f"{process_name(sender)}, whose key signed the connection")


def _check_hello(body: dict, sender: int) -> None:
    """Secure mode: the env server's key joins only as the env server, agent i's only as
    agent i."""
    role, want = body["role"], body["want_id"]
    if (role == "envserver") != (sender == ENVSERVER) or (role == "agent" and sender < 0):
        raise Spoofed(f"the key of {process_name(sender)} says hello as {role!r}")
    if role == "agent" and want not in (None, sender):
        raise Spoofed(f"the key of {process_name(sender)} asks to join as agent {want}")
