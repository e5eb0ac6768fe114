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

Two levers lower the ε a run spends (``docs/privacy.md``):

* ``dp_sample_rate`` q < 1 (Poisson subsampling): each release includes the sender's values
  with probability q; otherwise the message carries the noise alone (zeros + the same
  N(0, (σ·C)²)), the same kind, shape and size on the wire, so a neighbour cannot tell which
  messages carry values. That indistinguishability is what the amplification by subsampling
  (``PoissonSampledDpEvent``) needs; a message simply not sent would show which were sampled
  and buy none. The receiver uses every message as it comes (expected value q × the clipped
  values).
* ``dp_broadcast = "on"``: a release the learner hands to several neighbours (the same
  arrays in each body: pr's rows, dac-deep's consensus estimates, mdpo's latent) is noised
  once and the same noised arrays go to all of them (copies are post-processing): the agent's
  ε composes its distinct releases, not every copy.
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
    """Noise of one kind: multiplier σ (std σ·C per element), clipping norm C, and the
    Poisson sampling rate q of its releases (1: every release carries the values)."""

    sigma: float
    clip: float
    q: float = 1.0


@dataclass(frozen=True)
class DpSettings:
    """What a DP run applies: per-kind σ, C and q, the δ of the reported ε, the accountant,
    and whether copies of one release to several neighbours share their noise."""

    kinds: dict[str, KindNoise]
    delta: float
    accountant: str = "pld"
    broadcast: bool = False

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> DpSettings | None:
        """The settings of a run's config (as handed out in the welcome); None when DP is off."""
        sigma = float(config.get("dp_sigma", 0.0))
        if sigma <= 0.0:
            return None
        clip = float(config.get("dp_clip", 1.0))
        q = float(config.get("dp_sample_rate", 1.0))
        overrides = config.get("dp_kinds", {}) or {}
        kinds = {}
        for name, kind in REGISTRY.items():
            if kind.plane == "peer":
                own = overrides.get(name, {})
                kinds[name] = KindNoise(float(own.get("sigma", sigma)),
                                        float(own.get("clip", clip)), float(own.get("q", q)))
        return cls(kinds, float(config.get("dp_delta", 1e-5)),
                   str(config.get("dp_accountant", "pld")),
                   config.get("dp_broadcast", "off") == "on")

    def to_meta(self) -> dict[str, Any]:
        """As written to the sender's log meta record, so the audit can recompute ε."""
        return {"sigma": {k: v.sigma for k, v in self.kinds.items()},
                "clip": {k: v.clip for k, v in self.kinds.items()},
                "q": {k: v.q for k, v in self.kinds.items()},
                "delta": self.delta, "accountant": self.accountant, "broadcast": self.broadcast}

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> DpSettings:
        q = meta.get("q", {})    # logs written before subsampling: q = 1
        kinds = {k: KindNoise(float(s), float(meta["clip"][k]), float(q.get(k, 1.0)))
                 for k, s in meta["sigma"].items()}
        return cls(kinds, float(meta["delta"]), str(meta["accountant"]),
                   bool(meta.get("broadcast", False)))

    def key(self, kind: str) -> tuple[float, float]:
        """The accountant's name for one release of ``kind``: (σ, q)."""
        k = self.kinds[kind]
        return (k.sigma, k.q)


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
class _Shared:
    """The last release of one kind, kept to send its noised arrays to the next neighbour the
    learner hands the same arrays to (``dp_broadcast``)."""

    source: tuple[np.ndarray, ...]     # the learner's arrays (held: their ids stay theirs)
    values: tuple[np.ndarray, ...]     # copies, to notice a learner that changed them in place
    noised: dict[str, np.ndarray]
    served: set[int]
    counted: bool = False              # one of its copies went out: the agent released it


@dataclass
class DpLayer(Layer):
    """One agent's noise: a seeded generator, the settings, and the releases per out-edge.
    On the send side it noises every peer message and counts the releases that went out;
    it does nothing to what is received."""

    on_receive = False

    settings: DpSettings
    rng: np.random.Generator
    # (destination, sigma, q) -> releases sent on that edge; (sigma, q) -> distinct releases
    # (the agent's own account: one per copy unless broadcast shares them); kind -> exact
    # (un-noised) fields' messages
    releases: Counter = field(default_factory=Counter)
    distinct: Counter = field(default_factory=Counter)
    exact: Counter = field(default_factory=Counter)
    shared: dict[str, _Shared] = field(default_factory=dict)

    @classmethod
    def for_agent(cls, settings: DpSettings, seed: int, agent: int,
                  incarnation: int = 0) -> DpLayer:
        """The layer of an agent's process; a restarted agent (``incarnation`` k >= 1) draws
        from a stream of its own, so no noise its earlier processes sent is drawn again (a
        neighbour could difference two messages noised alike)."""
        stream = [seed, agent, DP_STREAM, *([incarnation] if incarnation else [])]
        return cls(settings, np.random.default_rng(stream))

    def state_dict(self) -> dict[str, Any]:
        """The accountant's state: the releases per (out-edge, sigma, q), the distinct
        releases per (sigma, q) and the exact fields."""
        return {"releases": [[int(d), float(s), float(q), int(n)]
                             for (d, s, q), n in self.releases.items()],
                "distinct": [[float(s), float(q), int(n)] for (s, q), n in self.distinct.items()],
                "exact": dict(self.exact)}

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue the account of ``state`` (a restarted agent: what it had released)."""
        self.releases = Counter({(int(r[0]), float(r[1]), float(r[2]) if len(r) == 4 else 1.0):
                                 int(r[-1]) for r in state["releases"]})
        if "distinct" in state:
            self.distinct = Counter({(float(s), float(q)): int(n)
                                     for s, q, n in state["distinct"]})
        else:    # an account from before broadcast: every copy was its own release
            self.distinct = Counter()
            for (_, s, q), n in self.releases.items():
                self.distinct[(s, q)] += n
        self.exact = Counter({str(k): int(n) for k, n in state["exact"].items()})

    def send(self, batch: list[Parcel], down: Down) -> list[Parcel]:
        shares = {}
        for p in batch:
            if p.link.plane == "peer":
                p.body, shares[id(p)] = self.release(p.kind, p.body, p.dst)
        sent = down(batch)
        for p in sent:
            if p.link.plane == "peer":
                self.sent(p.kind, p.dst, shares.get(id(p)))
        return sent

    def release(self, kind: str, body: dict[str, Any], dst: int
                ) -> tuple[dict[str, Any], _Shared | None]:
        """The body to send to ``dst``, and the shared release it is a copy of (broadcast:
        the learner handed the same arrays to another neighbour before; None: its own)."""
        names = [n for n in REGISTRY[kind].released
                 if isinstance(body.get(n), np.ndarray) and body[n].size]
        if not self.settings.broadcast or not names:
            return self.privatise(kind, body), None
        source = tuple(body[n] for n in names)
        last = self.shared.get(kind)
        if (last is not None and dst not in last.served
                and all(a is b for a, b in zip(source, last.source, strict=True))
                and all(np.array_equal(a, b) for a, b in zip(source, last.values, strict=True))):
            last.served.add(dst)
            return {**body, **last.noised}, last
        out = self.privatise(kind, body)
        self.shared[kind] = _Shared(source, tuple(a.copy() for a in source),
                                    {n: out[n] for n in names}, {dst})
        return out, self.shared[kind]

    def privatise(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        """A new body with every released array clipped and noised (the input is not touched:
        a learner may hand the same body to every neighbour). With q < 1 the release carries
        the values with probability q, otherwise the noise alone (one draw per message)."""
        spec, noise = REGISTRY[kind], self.settings.kinds[kind]
        out = dict(body)
        sampled = noise.q >= 1.0 or bool(self.rng.random() < noise.q)
        for name, unit in spec.released.items():
            value = body.get(name)
            if not isinstance(value, np.ndarray) or value.size == 0:
                continue
            rows = clip_units(units(value, unit), noise.clip)
            if not sampled:
                rows = np.zeros_like(rows)
            rows = rows + self.rng.normal(0.0, noise.sigma * noise.clip, rows.shape)
            big = float(np.finfo(value.dtype).max)   # float16 noise must not become inf
            out[name] = np.clip(rows, -big, big).reshape(value.shape).astype(value.dtype)
        return out

    def sent(self, kind: str, dst: int, share: _Shared | None = None) -> None:
        """Count one release that went out on edge -> ``dst`` (called where the sender logs
        it); a copy of a shared release counts on its edge, and for the agent only once."""
        spec = REGISTRY[kind]
        if spec.released:
            key = self.settings.key(kind)
            self.releases[(dst, *key)] += 1
            if share is None or not share.counted:
                self.distinct[key] += 1
            if share is not None:
                share.counted = True
        if spec.exact:
            self.exact[kind] += 1
