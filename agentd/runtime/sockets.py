"""The sockets of one process: a ROUTER bound, a DEALER connected (CURVE on both in secure
mode), closed again; and the ``Link`` that names one socket with the plane it carries.

Secure mode: server sockets check clients against the registry through the process's ZAP
handler (domain per plane, enforced), every DEALER pins its server's public key. DEALERs set
no routing identity of their own there: a self-chosen one could only collide with an
attacker's claim, which ZeroMQ would then hold back silently instead of letting the guard
count it. Without keys, binding beyond loopback is refused unless ``insecure`` says the user
asked for plaintext.
"""

from __future__ import annotations

import socket as pysocket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import zmq

from agentd.runtime.keys import Keys, name_of
from agentd.runtime.netaddr import is_loopback, split_endpoint
from agentd.runtime.sentinel import Sentinel, domain
from protocols.guard import DEFAULT_MAX_BYTES

# A send blocks only while a peer's queue is full (back-pressure) -- or forever if the peer
# never connected (a DEALER after a failed handshake has no pipe). This bounds it.
SEND_TIMEOUT_MS = 10_000


@dataclass
class Link:
    """One socket, the plane it carries, and (for ROUTERs) the endpoint it is bound to.
    ``server`` is the process a DEALER talks to (its key is pinned in secure mode)."""

    sock: Any                 # a zmq.Socket, or a local connection (agentd.runtime.localplane)
    plane: str
    router: bool
    endpoint: str
    server: int | None = None
    local: bool = False       # a Unix socket of the local env plane, not ZeroMQ


class InsecureBind(RuntimeError):
    """Binding beyond loopback without keys (and without ``insecure``)."""


class EndpointError(RuntimeError):
    """An endpoint that cannot be bound or connected (in use, malformed, no such address)."""


def bind_router(ctx: zmq.Context, sentinel: Sentinel, keys: Keys | None, insecure: bool,
                address: str, plane: str, max_bytes: int = DEFAULT_MAX_BYTES) -> Link:
    split_endpoint(address)              # a malformed endpoint is an AddressError here
    if keys is None and not insecure and not is_loopback(address):
        raise InsecureBind(
            f"refusing to bind {address} without keys: every message would cross the "
            "network in plaintext and anyone who reaches the port could join. Make keys "
            "with 'agentd keys new KEYDIR --n N' and pass --keys KEYDIR to every process "
            "(or pass --insecure to run in plaintext on purpose; it is recorded)")
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.MAXMSGSIZE, max_bytes)   # a larger frame drops its connection
    sock.setsockopt(zmq.LINGER, 1000)
    sock.setsockopt(zmq.SNDTIMEO, SEND_TIMEOUT_MS)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    # A restarted process dials in again under its old routing id: it takes the
    # connection over instead of being ignored while the dead one lingers.
    sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
    if keys is not None:
        sock.curve_server = True     # set before bind: the role applies to later binds
        sock.curve_secretkey = keys.identity.secret
        sock.zap_domain = domain(plane)
        sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)   # with a domain: fail closed
    sentinel.watch(sock, plane, True, address)
    with _closed_on_error(sock, f"cannot bind {address}"):
        sock.bind(address)
    endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
    return Link(sock, plane, True, endpoint)


def connect_dealer(ctx: zmq.Context, sentinel: Sentinel, keys: Keys | None, address: str,
                   plane: str, server: int, identity: bytes | None = None,
                   max_bytes: int = DEFAULT_MAX_BYTES) -> Link:
    """A DEALER to ``server``'s ROUTER; in secure mode pinned to its public key."""
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.MAXMSGSIZE, max_bytes)
    sock.setsockopt(zmq.LINGER, 1000)
    sock.setsockopt(zmq.SNDTIMEO, SEND_TIMEOUT_MS)
    if keys is not None:
        sock.curve_serverkey = keys.registry.public(name_of(server))
        sock.curve_publickey = keys.identity.public
        sock.curve_secretkey = keys.identity.secret
    elif identity is not None:
        sock.setsockopt(zmq.IDENTITY, identity)
    sentinel.watch(sock, plane, False, address)
    with _closed_on_error(sock, f"cannot connect to {address}"):
        sock.connect(address)
    return Link(sock, plane, False, address, server)


@contextmanager
def _closed_on_error(sock: zmq.Socket, what: str) -> Iterator[None]:
    """A socket that fails to bind or connect is closed at once (an open socket would
    keep the context -- and so ``close`` -- waiting forever)."""
    try:
        yield
    except zmq.ZMQError as exc:
        sock.disable_monitor()
        sock.close(linger=0)
        raise EndpointError(f"{what}: {exc.strerror}") from None


def close_socket(link: Link) -> None:
    if link.local:
        link.sock.close()
        return
    try:
        link.sock.disable_monitor()
    except zmq.ZMQError:
        pass
    link.sock.close(linger=0)


def hostname() -> str:
    return pysocket.gethostname()
