"""An agent's transport pipeline for its run, composed once from the welcome: the guard that
knows its neighbours and its learner's peer kinds, and -- in a DP run -- the noise layer
(``agentd.privacy.dp``) between the guard and the codec. The layers every process has (codec,
message log, test shims, tally) are the transport's own (``agentd.runtime.layers``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agentd.algorithms.base import Learner
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


def agent_pipeline(config: dict[str, Any], me: int, neighbours: list[int],
                   learner: Learner) -> AgentPipeline:
    """Agent ``me``'s guard and policy layers, from its run's config (as in the welcome)."""
    guard = Guard(me, neighbours, learner.peer_kinds, config["max_msg_bytes"],
                  learner.peer_shapes())
    settings = DpSettings.from_config(config)
    dp = DpLayer.for_agent(settings, config["seed"], me) if settings is not None else None
    return AgentPipeline(guard, dp, settings)
