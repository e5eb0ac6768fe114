"""Test-only fault injection: an agent that kills itself, to test restarts.

``AGENTD_TEST_CRASH="I:T"`` makes agent I send itself SIGKILL after every learning step from
its step T on -- restored from a checkpoint taken before T, it crashes again on reaching T, so
together with ``--recovery-every`` it is an agent that crashes on every start. A process with
the variable set warns at start-up (like the link-delay shim)."""

from __future__ import annotations

import logging
import os
import signal

ENV_VAR = "AGENTD_TEST_CRASH"
log = logging.getLogger("agentd.runtime.faults")


class CrashAt:
    """Kill this agent process (as ``kill -9`` would) once it has done ``step`` steps."""

    def __init__(self, step: int) -> None:
        self.step = step

    @classmethod
    def from_env(cls, agent: int) -> CrashAt | None:
        spec = os.environ.get(ENV_VAR, "").strip()
        if not spec:
            return None
        who, _, step = spec.partition(":")
        try:
            if int(who) != agent:
                return None
            crash = cls(int(step))
        except ValueError:
            raise ValueError(f"{ENV_VAR}={spec!r}: expected AGENT:STEP") from None
        log.warning("TEST-ONLY fault injection (%s): agent %d kills itself from step %d on",
                    ENV_VAR, agent, crash.step)
        return crash

    def check(self, steps_done: int) -> None:
        if steps_done >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)
