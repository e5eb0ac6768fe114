"""The env server's process: its part of the one process lifecycle (``agentd.runtime.lifecycle``)
-- once admitted, build the env and the local env plane, say ``env_ready``, serve the run
(``coordinator.envserver``), report its stats in the bye."""

from __future__ import annotations

import logging
from typing import Any

from agentd.algorithms import learner_on_this_host
from agentd.algorithms.base import LearnerConfigError
from agentd.envs import make_env
from agentd.envs.base import EnvError, VecEnv
from agentd.runtime.control import JoinOptions, RunFailed
from agentd.runtime.lifecycle import Joined, Role, Served, run_process
from agentd.runtime.localplane import LocalListener
from agentd.runtime.runfiles import RunFiles
from coordinator.envserver import EnvServer, StopRequested
from protocols import ENVSERVER, Guard

log = logging.getLogger("agentd.envserver")


def run_envserver(opts: JoinOptions) -> int:
    """Entry point of ``agentd envserver``: build the env, serve the run, ship its files.
    Returns the exit code. (Bad keys or an insecure bind raise before anything joins.)"""
    return _EnvRole().run(opts)


class _EnvRole:
    """The env server's own steps of the one process lifecycle (``agentd.runtime.lifecycle``)."""

    def __init__(self) -> None:
        self.listener: LocalListener | None = None

    def run(self, opts: JoinOptions) -> int:
        return run_process(Role("envserver", "env", self.admitted, self.serve, self.close), opts)

    def admitted(self, joined: Joined) -> str:
        try:              # a plug-in this host cannot import fails here, at join
            learner_on_this_host(joined.config["algo"])
        except LearnerConfigError as exc:
            raise RunFailed(str(exc)) from None
        joined.transport.enter_run(Guard(ENVSERVER, max_bytes=joined.config["max_msg_bytes"]))
        return "envserver"

    def serve(self, joined: Joined, files: RunFiles) -> Served:
        transport, control, cfg, info = joined.transport, joined.control, joined.config, \
            joined.info
        assert transport.msglog is not None
        transport.msglog.attach(files.log_path,
                                private=not learner_on_this_host(cfg["algo"]).non_private_reason(
                                    cfg["params"]),
                                meta={**transport.security_meta(),
                                      "insecure": transport.insecure or cfg["insecure"]})
        env = _build_env(cfg, info)
        self.listener = listener = _local_listener(cfg)
        control.send("env_ready", {"spaces": {"obs": env.obs_spaces, "act": env.act_spaces,
                                              "shared_reward": env.shared_reward,
                                              "agents": env.agent_names},
                                   **({"local": listener.offer()} if listener else {})})
        server = EnvServer(transport, control, joined.router, info, env, listener)
        try:
            server.run()
        except StopRequested:
            pass
        return Served({**server.stats(), "files": files.mode})

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()


def _local_listener(cfg: dict[str, Any]) -> LocalListener | None:
    """The local env plane's listening socket, unless the config says ZeroMQ only."""
    if cfg.get("env_plane", "auto") == "zmq":
        return None
    try:
        return LocalListener()
    except OSError as exc:
        log.warning("no local env plane (every agent stays on ZeroMQ): %s", exc)
        return None


def _build_env(cfg: dict[str, Any], info: dict[str, Any]) -> VecEnv:
    try:
        return make_env(cfg["env"], n_agents=cfg["n"], num_envs=cfg["num_envs"],
                        episode_len=cfg["episode_len"], seed=info["seeds"]["env_model"],
                        env_kwargs=cfg["env_args"], obs_mode=cfg.get("obs", "local"))
    except EnvError as exc:
        import socket

        raise RunFailed(f"env '{cfg['env']}' on host {socket.gethostname()!r}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - user env code may raise anything
        raise RunFailed(f"env '{cfg['env']}' could not be built: {type(exc).__name__}: "
                        f"{exc}") from None
