"""Differential privacy on the peer send path: clip each released array, add seeded Gaussian
noise, and count every release for the accountant (docs/privacy.md).

A layer of the transport's pipeline (``agentd.runtime.layers``), between the guard and the
codec: it noises what the guard let through, before it is encoded and logged; never code
inside a learner. For each permitted kind the registry (``protocols.kinds``) declares which float arrays
are released and their sensitivity unit. The layer clips every unit (a row, or the whole
array) to L2 norm ``C`` and adds N(0, (σ·C)²) to every element, from a generator seeded by the
run seed and the agent id: the noised message is what goes on the wire and into the sender's
log, so replays of the receivers stay exact. Each message sent is one Gaussian mechanism with
noise multiplier σ on its directed edge (copies to different neighbours are noised
independently, so they compose; see ``agentd.privacy.accountant`` for what the ε then means).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agentd.runtime.layers import Down, Layer, Parcel
from protocols.kinds import REGISTRY

DP_STREAM = 0xD1FF   # separates the noise stream from every other use of the run seed


@dataclass(frozen=True)
class KindNoise:
    """Noise of one kind: multiplier σ (std σ·C per element) and clipping norm C."""

    sigma: float
    clip: float


@dataclass(frozen=True)
class DpSettings:
    """What a DP run applies: per-kind σ and C, the δ of the reported ε, the accountant."""

    kinds: dict[str, KindNoise]
    delta: float
    accountant: str = "pld"

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> DpSettings | None:
        """The settings of a run's config (as handed out in the welcome); None when DP is off."""
        sigma = float(config.get("dp_sigma", 0.0))
        if sigma <= 0.0:
            return None
        clip = float(config.get("dp_clip", 1.0))
        overrides = config.get("dp_kinds", {}) or {}
        kinds = {}
        for name, kind in REGISTRY.items():
            if kind.plane == "peer":
                own = overrides.get(name, {})
                kinds[name] = KindNoise(float(own.get("sigma", sigma)),
                                        float(own.get("clip", clip)))
        return cls(kinds, float(config.get("dp_delta", 1e-5)),
                   str(config.get("dp_accountant", "pld")))

    def to_meta(self) -> dict[str, Any]:
        """As written to the sender's log meta record, so the audit can recompute ε."""
        return {"sigma": {k: v.sigma for k, v in self.kinds.items()},
                "clip": {k: v.clip for k, v in self.kinds.items()},
                "delta": self.delta, "accountant": self.accountant}

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> DpSettings:
        kinds = {k: KindNoise(float(s), float(meta["clip"][k])) for k, s in meta["sigma"].items()}
        return cls(kinds, float(meta["delta"]), str(meta["accountant"]))


def units(value: np.ndarray, unit: str) -> np.ndarray:
    """A float64 copy of ``value`` with one sensitivity unit per row."""
    flat = np.asarray(value, dtype=np.float64)
    if unit == "array":
        return flat.reshape(1, -1)
    return flat.reshape(-1, 1) if flat.ndim <= 1 else flat.reshape(len(flat), -1)


def clip_units(rows: np.ndarray, clip: float) -> np.ndarray:
    """Scale every row whose L2 norm exceeds ``clip`` down to norm ``clip``."""
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    scale = np.minimum(1.0, clip / np.maximum(norms, np.finfo(np.float64).tiny))
    return rows * scale


@dataclass
class DpLayer(Layer):
    """One agent's noise: a seeded generator, the settings, and the releases per out-edge.
    On the send side it noises every peer message and counts the releases that went out;
    it does nothing to what is received."""

    on_receive = False

    settings: DpSettings
    rng: np.random.Generator
    # (destination, sigma) -> releases sent; kind -> exact (un-noised) fields' messages
    releases: Counter = field(default_factory=Counter)
    exact: Counter = field(default_factory=Counter)

    @classmethod
    def for_agent(cls, settings: DpSettings, seed: int, agent: int,
                  incarnation: int = 0) -> DpLayer:
        """The layer of an agent's process; a restarted agent (``incarnation`` k >= 1) draws
        from a stream of its own, so no noise its earlier processes sent is drawn again (a
        neighbour could difference two messages noised alike)."""
        stream = [seed, agent, DP_STREAM, *([incarnation] if incarnation else [])]
        return cls(settings, np.random.default_rng(stream))

    def state_dict(self) -> dict[str, Any]:
        """The accountant's state: the releases per (out-edge, sigma) and the exact fields."""
        return {"releases": [[int(d), float(s), int(n)] for (d, s), n in self.releases.items()],
                "exact": dict(self.exact)}

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue the account of ``state`` (a restarted agent: what it had released)."""
        self.releases = Counter({(int(d), float(s)): int(n) for d, s, n in state["releases"]})
        self.exact = Counter({str(k): int(n) for k, n in state["exact"].items()})

    def send(self, batch: list[Parcel], down: Down) -> list[Parcel]:
        for p in batch:
            if p.link.plane == "peer":
                p.body = self.privatise(p.kind, p.body)
        sent = down(batch)
        for p in sent:
            if p.link.plane == "peer":
                self.sent(p.kind, p.dst)
        return sent

    def privatise(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        """A new body with every released array clipped and noised (the input is not touched:
        a learner may hand the same body to every neighbour)."""
        spec, noise = REGISTRY[kind], self.settings.kinds[kind]
        out = dict(body)
        for name, unit in spec.released.items():
            value = body.get(name)
            if not isinstance(value, np.ndarray) or value.size == 0:
                continue
            rows = clip_units(units(value, unit), noise.clip)
            rows = rows + self.rng.normal(0.0, noise.sigma * noise.clip, rows.shape)
            big = float(np.finfo(value.dtype).max)   # float16 noise must not become inf
            out[name] = np.clip(rows, -big, big).reshape(value.shape).astype(value.dtype)
        return out

    def sent(self, kind: str, dst: int) -> None:
        """Count one release that went out (called where the sender logs it)."""
        spec = REGISTRY[kind]
        if spec.released:
            self.releases[(dst, self.settings.kinds[kind].sigma)] += 1
        if spec.exact:
            self.exact[kind] += 1
