"""The differential-privacy fields of the run config (``dp_*``), checked when it is validated.

Below the config and above the learners: what a DP run may be is known before any process
starts, from the config and the learner's declared ``dp_releases``; the layer that applies
the noise (``agentd.privacy.dp``) reads the same constants from here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agentd.algorithms import LearnerConfigError, load_learner_class
from protocols.kinds import REGISTRY

ACCOUNTANTS = ("pld", "rdp")
BROADCAST = ("off", "on")

Require = Callable[[bool, str, str, Any], None]   # require(ok, field, allowed, value) raises


def validate(c: Any, require: Require) -> None:
    """Check a RunConfig's dp_* fields."""
    require(c.dp_sigma >= 0, "dp_sigma", "a noise multiplier >= 0 (0: DP off)", c.dp_sigma)
    require(c.dp_clip > 0, "dp_clip", "an L2 norm > 0", c.dp_clip)
    require(0 < c.dp_delta < 1, "dp_delta", "a probability in (0, 1)", c.dp_delta)
    require(c.dp_accountant in ACCOUNTANTS, "dp_accountant", f"one of {', '.join(ACCOUNTANTS)}",
            c.dp_accountant)
    require(0 < c.dp_sample_rate <= 1, "dp_sample_rate", "a probability in (0, 1]",
            c.dp_sample_rate)
    require(c.dp_broadcast in BROADCAST, "dp_broadcast", f"one of {', '.join(BROADCAST)}",
            c.dp_broadcast)
    for name, value, off in (("dp_sample_rate", c.dp_sample_rate, 1.0),
                             ("dp_broadcast", c.dp_broadcast, "off")):
        require(c.dp_sigma > 0 or value == off, name, "set only with dp_sigma > 0", value)
    if c.dp_sigma > 0:
        require_declared(c, require)
    noised = sorted(k.name for k in REGISTRY.values() if k.plane == "peer" and k.released)
    for kind, table in c.dp_kinds.items():
        require(c.dp_sigma > 0, "dp_kinds", "per-kind overrides only with dp_sigma > 0", kind)
        require(kind in noised, "dp_kinds", f"a table per kind, kinds: {', '.join(noised)}",
                kind)
        require(isinstance(table, dict) and set(table) <= {"sigma", "clip", "q"},
                f"dp_kinds.{kind}", "a table with sigma, clip and/or q", table)
        for key, value in table.items():
            require(isinstance(value, int | float) and not isinstance(value, bool)
                    and value > 0 and (key != "q" or value <= 1), f"dp_kinds.{kind}.{key}",
                    "a probability in (0, 1]" if key == "q" else "a number > 0", value)


def require_declared(c: Any, require: Require) -> None:
    """Fail closed: a peer kind the run may send must say what DP releases or leaves exact;
    a kind that says neither would cross edges un-noised and unreported."""
    try:
        releases = load_learner_class(c.algo).dp_releases(c.params)
    except LearnerConfigError:
        return    # the learner's own check names the bad parameter
    for kind, fields in releases.items():
        require(bool(fields), "dp_sigma",
                f"a DP run only with peer kinds that declare their released arrays; "
                f"'{kind}' (sent by {c.algo}) declares none", c.dp_sigma)
