"""CURVE key files: one keypair per process of a run and one public registry.

Layout of a keys directory (``agentd keys new DIR --n N``)::

    DIR/public.toml          name -> public key (Z85) for coordinator, envserver, agent-0..N-1
    DIR/<name>.secret        that process's keypair, mode 0600

A host needs only ``public.toml`` and the secret files of the processes it runs. Every key is
checked when it is loaded; a bad file is a ``KeysError`` that names it and says how to fix it.
A process's identity on the wire is its key: ``name_of`` / ``pid_of`` map key names to the
process ids of the envelope (agents 0..N-1, the coordinator -1, the env server -2).
"""

from __future__ import annotations

import os
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path

import zmq
from zmq.utils import z85

from protocols import COORDINATOR, ENVSERVER

REGISTRY_FILE = "public.toml"
FORMAT = "agentd-keys/1"
_SERVICES = {"coordinator": COORDINATOR, "envserver": ENVSERVER}


class KeysError(Exception):
    """A keys directory or key file that cannot be used; the message names the file."""


def name_of(pid: int) -> str:
    """The key name of a process id (0 -> 'agent-0', -1 -> 'coordinator', ...)."""
    for name, service in _SERVICES.items():
        if pid == service:
            return name
    if pid < 0:
        raise ValueError(f"process id {pid} has no key")
    return f"agent-{pid}"


def pid_of(name: str) -> int | None:
    """The process id a key name stands for, or None for a name that is no process."""
    if name in _SERVICES:
        return _SERVICES[name]
    number = name.removeprefix("agent-")
    return int(number) if number != name and number.isdigit() else None


def _check_key(text: object, where: str) -> bytes:
    if not isinstance(text, str) or len(text) != 40:
        raise KeysError(f"{where} is not a 40-character Z85 CURVE key")
    try:
        raw = z85.decode(text.encode("ascii"))
    except (ValueError, UnicodeEncodeError, KeyError):
        raise KeysError(f"{where} is not valid Z85 text") from None
    if len(raw) != 32:
        raise KeysError(f"{where} does not decode to a 32-byte key")
    return text.encode("ascii")


@dataclass(frozen=True)
class Registry:
    """The public keys of a run, by name; the file it came from (for error messages)."""

    keys: dict[str, bytes]          # name -> Z85 public key
    path: Path

    def public(self, name: str) -> bytes:
        key = self.keys.get(name)
        if key is None:
            raise KeysError(f"{self.path}: no public key for '{name}' (known: "
                            f"{', '.join(sorted(self.keys))})")
        return key

    def owner(self, public_raw: bytes) -> str | None:
        """The name enrolled for a raw 32-byte public key, or None."""
        return self._by_raw().get(public_raw)

    def _by_raw(self) -> dict[bytes, str]:
        cached = self.__dict__.get("_raw")
        if cached is None:
            cached = {z85.decode(k): name for name, k in self.keys.items()}
            object.__setattr__(self, "_raw", cached)
        return cached


@dataclass(frozen=True)
class Identity:
    """One process's keypair (Z85)."""

    name: str
    public: bytes
    secret: bytes


@dataclass(frozen=True)
class Keys:
    """What a process runs with in secure mode: its own keypair and the registry."""

    identity: Identity
    registry: Registry

    @property
    def pid(self) -> int:
        pid = pid_of(self.identity.name)
        assert pid is not None   # load_keys only accepts process names
        return pid


def load_registry(directory: str | Path) -> Registry:
    directory = Path(directory)
    if not directory.is_dir():
        raise KeysError(f"keys directory {directory} does not exist (make one with: "
                        f"agentd keys new {directory} --n N)")
    path = directory / REGISTRY_FILE
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise KeysError(f"{path}: missing; it is the run's public key registry "
                        f"(agentd keys new {directory} --n N writes it)") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise KeysError(f"{path}: not valid TOML: {exc}") from None
    table = data.get("keys")
    if data.get("format") != FORMAT or not isinstance(table, dict) or not table:
        raise KeysError(f"{path}: not an agentd key registry (expected format = "
                        f"\"{FORMAT}\" and a [keys] table)")
    keys = {}
    for name, text in table.items():
        if pid_of(name) is None:
            raise KeysError(f"{path}: '{name}' is not a process name (coordinator, envserver, "
                            "agent-<i>)")
        keys[name] = _check_key(text, f"{path}: key of '{name}'")
    if len(set(keys.values())) != len(keys):
        raise KeysError(f"{path}: two names share one public key")
    return Registry(keys, path)


def load_keys(directory: str | Path, name: str) -> Keys:
    """Load the registry and the secret of ``name``; every problem names its file."""
    registry = load_registry(directory)
    path = Path(directory) / f"{name}.secret"
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise KeysError(f"{path}: missing; this host needs the secret key of {name}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeysError(f"{path}: mode {stat.S_IMODE(mode):04o} lets other users read a secret "
                        f"key; run: chmod 600 {path}")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise KeysError(f"{path}: not valid TOML: {exc}") from None
    if data.get("name") != name:
        raise KeysError(f"{path}: holds the key of {data.get('name')!r}, not of '{name}'")
    public = _check_key(data.get("public"), f"{path}: public key")
    secret = _check_key(data.get("secret"), f"{path}: secret key")
    if zmq.curve_public(secret) != public:
        raise KeysError(f"{path}: the secret key does not belong to its public key")
    if registry.public(name) != public:
        raise KeysError(f"{path}: its public key is not the one {registry.path} enrols for "
                        f"'{name}'")
    return Keys(Identity(name, public, secret), registry)


def agent_names_with_secrets(directory: str | Path) -> list[str]:
    """Names of the agents whose secret files lie in a directory, in id order."""
    names = [p.name.removesuffix(".secret") for p in Path(directory).glob("agent-*.secret")]
    return sorted((n for n in names if pid_of(n) is not None), key=lambda n: pid_of(n) or 0)


def new_keys(directory: str | Path, n: int, force: bool = False) -> Registry:
    """Write keypairs for coordinator, envserver and agent-0..n-1, and the registry."""
    directory = Path(directory)
    if n < 1:
        raise KeysError(f"--n must be >= 1, got {n}")
    if (directory / REGISTRY_FILE).exists() and not force:
        raise KeysError(f"{directory / REGISTRY_FILE} exists; refusing to overwrite keys "
                        "(pass --force to replace them)")
    directory.mkdir(parents=True, exist_ok=True)
    names = ["coordinator", "envserver", *(f"agent-{i}" for i in range(n))]
    lines = ["# agentd public key registry: every host of the run needs this file.",
             "# It holds no secret.", f'format = "{FORMAT}"', "", "[keys]"]
    for name in names:
        public, secret = zmq.curve_keypair()
        _write_secret(directory / f"{name}.secret", name, public, secret)
        lines.append(f'{name} = "{public.decode()}"')
    (directory / REGISTRY_FILE).write_text("\n".join(lines) + "\n")
    return load_registry(directory)


def _write_secret(path: Path, name: str, public: bytes, secret: bytes) -> None:
    text = (f"# agentd CURVE secret key of {name}. Keep it private: only the host that runs "
            f"{name} needs it.\n"
            f'name = "{name}"\npublic = "{public.decode()}"\nsecret = "{secret.decode()}"\n')
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
