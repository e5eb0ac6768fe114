"""An agent's transport pipeline for its run, composed once from the welcome: the guard that
knows its neighbours and its learner's peer kinds, and -- in a DP run -- the noise layer
(``agentd.privacy.dp``) between the guard and the codec. The layers every process has (codec,
message log, test shims, tally) are the transport's own (``agentd.runtime.layers``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentd.algorithms.base import Learner
from agentd.privacy.accountant import agent_report, logged_releases
from agentd.privacy.dp import DpLayer, DpSettings
from agentd.runtime.layers import Layer
from protocols import Guard


@dataclass(frozen=True)
class AgentPipeline:
    """What an admitted agent's transport runs its messages through, above the codec."""

    guard: Guard
    dp: DpLayer | None
    dp_settings: DpSettings | None

    @property
    def policy(self) -> list[Layer]:
        return [self.dp] if self.dp is not None else []

    def dp_report(self, live: bool = False, tick: Callable[[], None] | None = None
                  ) -> dict[str, Any] | None:
        """The agent's ε per out-edge and over all of them, so far (None without DP);
        ``tick`` keeps the heartbeats going through a slow final accounting."""
        dp, s = self.dp, self.dp_settings
        if dp is None or s is None:
            return None
        return {**agent_report(dp.releases, s.delta, s.accountant, live,
                               None if live else tick, dp.distinct),
                "delta": s.delta, "accountant": s.accountant, "exact_fields": dict(dp.exact),
                "sigma": {k: v.sigma for k, v in s.kinds.items()},
                "clip": {k: v.clip for k, v in s.kinds.items()},
                "q": {k: v.q for k, v in s.kinds.items()}, "broadcast": s.broadcast}

    def with_epsilon(self, body: dict[str, Any]) -> dict[str, Any]:
        """Metrics with the privacy spent so far: ``dp_epsilon`` and ``dp_epsilon_to_J``."""
        report = self.dp_report(live=True)
        if report is None:
            return body
        eps = {f"dp_epsilon_to_{j}": e["epsilon"] for j, e in report["edges"].items()}
        return {**body, "scalars": {**body["scalars"], "dp_epsilon": report["epsilon"], **eps}}


def agent_pipeline(config: dict[str, Any], me: int, neighbours: list[int],
                   learner: Learner, rejoin: int = 0,
                   log_path: Path | None = None) -> AgentPipeline:
    """Agent ``me``'s guard and policy layers, from its run's config (as in the welcome). A
    restarted agent (``rejoin`` k >= 1) draws DP noise from a stream of its own and its
    account goes on from every release its message log (``log_path``) holds."""
    guard = Guard(me, neighbours, learner.peer_kinds, config["max_msg_bytes"],
                  learner.peer_shapes())
    settings = DpSettings.from_config(config)
    dp = None
    if settings is not None:
        dp = DpLayer.for_agent(settings, config["seed"], me, rejoin)
        if rejoin and log_path is not None:
            releases, exact, distinct = logged_releases(log_path, settings)
            dp.load_state({"releases": [[d, s, q, n] for (d, s, q), n in releases.items()],
                           "distinct": [[s, q, n] for (s, q), n in distinct.items()],
                           "exact": dict(exact)})
    return AgentPipeline(guard, dp, settings)
