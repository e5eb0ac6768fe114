"""Addresses: is an endpoint loopback-only, and which local address routes to a host.

No packet is sent to find a route: connecting a UDP socket only asks the kernel's routing
table which source address it would use.
"""

from __future__ import annotations

import ipaddress
import socket


class AddressError(ValueError):
    """An endpoint that cannot be parsed or resolved."""


def split_endpoint(endpoint: str) -> tuple[str, str, str]:
    """``tcp://host:port`` -> ("tcp", "host", "port"); IPv6 hosts lose their brackets."""
    scheme, sep, rest = endpoint.partition("://")
    if not sep:
        raise AddressError(f"{endpoint!r} is not an endpoint like tcp://HOST:PORT")
    if scheme != "tcp":
        return scheme, rest, ""
    host, sep, port = rest.rpartition(":")
    if not sep or not host:
        raise AddressError(f"{endpoint!r} lacks a port (tcp://HOST:PORT, port * for any)")
    if port != "*" and not (port.isdigit() and int(port) <= 65535):
        raise AddressError(f"{endpoint!r}: port {port!r} is not 0..65535 or *")
    return scheme, host.strip("[]"), port


def is_loopback(endpoint: str) -> bool:
    """True if binding this endpoint exposes nothing beyond this machine.

    ``ipc://`` and ``inproc://`` are local; ``tcp://`` is local only on a loopback address
    (``*``, ``0.0.0.0``, ``::`` and every routable address are not)."""
    scheme, host, _ = split_endpoint(endpoint)
    if scheme in ("ipc", "inproc"):
        return True
    if scheme != "tcp":
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False   # an interface name or a host name: treat it as exposed


def route_to(endpoint: str) -> str:
    """The local address this machine would use to reach the host of a tcp:// endpoint."""
    scheme, host, port = split_endpoint(endpoint)
    if scheme != "tcp":
        raise AddressError(f"--join needs a tcp:// endpoint, got {endpoint!r}")
    try:
        infos = socket.getaddrinfo(host, int(port) if port.isdigit() else 9, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise AddressError(f"cannot resolve {host!r}: {exc}") from None
    family, _, _, _, sockaddr = infos[0]
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(sockaddr)
        except OSError as exc:
            raise AddressError(f"no route to {host!r}: {exc}") from None
        local = probe.getsockname()[0]
    return f"[{local}]" if family == socket.AF_INET6 else local


def with_host(endpoint: str, host: str) -> str:
    """The same endpoint on another host (``tcp://0.0.0.0:4242`` -> ``tcp://A:4242``)."""
    scheme, _, port = split_endpoint(endpoint)
    return f"{scheme}://{host}:{port}"
