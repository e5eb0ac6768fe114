"""The Learner interface: every algorithm plugs into the one agent loop through these hooks.

The agent loop (``agentd.agent.process``) calls, for each joint step t::

    actions = learner.act(obs)                       # before the env step
    learner.observe(obs, actions, reward, final_obs, terminated, truncated)
    for msg in learner.outbox(): send it             # peer messages, guarded
    while learner.awaiting(): deliver peer messages via learner.inbox(...)
    scalars = learner.update()                       # learning step, scalar diagnostics
    obs = next obs (reset obs where an episode ended)

Shapes: K = number of vectorised env copies. For a learner controlling one env agent
(``len(spec.controls) == 1``) obs is ``(K, *obs_shape)``, actions ``(K, *act_shape)``, reward
``(K,)``. A learner controlling m > 1 env agents (the centralised baselines) sees an extra
axis after K: obs ``(K, m, *obs_shape)``, actions ``(K, m, *act_shape)``, reward ``(K, m)``.
terminated / truncated are always ``(K,)`` bool.

Spaces travel as plain dicts (see ``protocols.spaces``): ``{"type": "discrete", "n": 3}`` or
``{"type": "box", "shape": [5], "low": -1.0, "high": <ndarray>, "dtype": "float32"}``, a bound
being one number when uniform, else an array; read them with ``box_bounds``. Box observations
arrive in the space's dtype (an image as uint8).

The centralised mode is one mechanism: the env server replies to each process
with the observations and rewards of the env agents in its *view*. A process's view is the env
agents it controls, except for a learner in the centralised mode (``centralised``: one process
controls them all; ``joint_view``: each process acts for one agent but sees them all), whose
view is every env agent. obs and reward then carry the view's axis: ``(K, n, ...)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from agentd.algorithms.params import (  # noqa: F401 - learners import these from here
    Allowed,
    LearnerConfigError,
    param,
    parse_params,
)
from protocols.kinds import (  # noqa: F401 - a learner declares its own peer kinds with these
    FLOATS,
    INTS,
    NUMERIC,
    REGISTRY,
    Arr,
    peer_kind,
)
from protocols.schema import Int, Num  # noqa: F401 - scalar fields of a peer kind
from protocols.spaces import box_bounds  # noqa: F401 - learners read Box bounds here

SPACE_TYPES = ("discrete", "box", "any")   # what an action_type / obs_type may say


@dataclass(frozen=True)
class Outgoing:
    """A peer message a learner wants sent: kind, destination neighbour id, body dict."""

    kind: str
    dst: int
    body: dict[str, Any]


@dataclass
class LearnerSpec:
    """Everything a learner may know about its world, handed over by the agent loop."""

    agent_id: int
    n_agents: int
    neighbours: list[int]
    weights: dict[int, float]          # this agent's row of W (self included), id -> weight
    obs_spaces: list[dict]             # one per env agent in its view (see ``seen``)
    act_spaces: list[dict]             # one per controlled env agent
    controls: list[int]                # env agent indices this learner acts for
    num_envs: int
    seed: int
    params: dict[str, Any] = field(default_factory=dict)   # raw user overrides
    shared_reward: bool = True
    shared_seed: int = 0               # the run seed: the same in every agent (common draws)
    live: Any = None                   # topologies.live.LiveGraph: the graph with its scheduled
    #                                    failures (None: the graph never changes)
    view: list[int] | None = None      # env agents whose obs/rewards it receives (None: controls)

    @property
    def seen(self) -> list[int]:
        """The env agents whose observations and rewards this learner receives."""
        return list(self.controls) if self.view is None else list(self.view)


_keepalive: list[Callable[[], None]] = []


def set_keepalive(send: Callable[[], None] | None) -> None:
    """What ``keepalive()`` calls in this process: the agent loop's heartbeat (None: nothing)."""
    _keepalive[:] = [send] if send is not None else []


def keepalive() -> None:
    """Call this inside any learning loop that can run for longer than a heartbeat interval
    (the epochs of an on-policy update, a model fit): it sends a heartbeat when one is due, so
    the heartbeat timeout can stay short and still catch a dead agent quickly. Cheap: a clock
    read when none is due. A no-op in a replay."""
    for send in _keepalive:
        send()


def space_size(space: dict) -> int:
    """Number of discrete values of a Discrete space (error for anything else)."""
    if space.get("type") != "discrete":
        raise LearnerConfigError(f"expected a Discrete space, got {space}")
    return int(space["n"])


class Learner:
    """Base class: a private learner living inside one agent process.

    Subclasses override the hooks they need and *declare* what the runtime needs to know
    about them below: every capability the runtime reads is one of these class attributes or
    class methods, with its default here. The runtime never probes a learner for anything
    else (``agentd.algorithms.conformance`` checks every registered learner's declarations).
    """

    # -- identity ------------------------------------------------------------------------------
    name: ClassVar[str] = ""                  # the registry name (``--algo``)
    Params: ClassVar[type | None] = None      # hyper-parameter dataclass (user-overridable)

    # -- declared capabilities -----------------------------------------------------------------
    # peer message kinds it sends and accepts; the guard permits exactly these on peer edges
    # (``permitted_kinds`` when they depend on the params)
    peer_kinds: ClassVar[frozenset[str]] = frozenset()
    # the agent process imports torch (between two heartbeats) before building it
    needs_torch: ClassVar[bool] = False
    # one process controls every env agent (the centralised baselines)
    centralised: ClassVar[bool] = False
    # one process per env agent, each seeing every env agent's obs/reward (centralised mode)
    joint_view: ClassVar[bool] = False
    # observe the env's global state (config ``obs = "auto"`` becomes "state")
    wants_state: ClassVar[bool] = False
    # the action / observation spaces it handles: "discrete" | "box" | "any"
    action_type: ClassVar[str] = "any"
    obs_type: ClassVar[str] = "any"
    # its greedy policy is the argmax of a per-agent ``q`` table in its final checkpoint, so
    # the summary scores it exactly on an env that knows its optimum
    greedy_q: ClassVar[bool] = False
    # it learns in turns: the coordinator broadcasts its ``turn_schedule`` after the welcome
    takes_turns: ClassVar[bool] = False
    # its consensus survives scheduled link failures (``--link-schedule``, ``topologies.live``)
    follows_link_schedule: ClassVar[bool] = False
    # act-ahead (``act_ahead = "auto"`` turns it on): the next action may come from the policy
    # one update older, sent before the update, so the env server steps while it learns
    act_ahead: ClassVar[bool] = False
    act_ahead_why: ClassVar[str] = ("the learner does not allow it (tabular learners gain "
                                    "nothing; others need the updated policy's action)")
    # params that switch act-ahead off when set (non-zero), each with why
    act_ahead_off_with: ClassVar[dict[str, str]] = {}

    def __init__(self, spec: LearnerSpec) -> None:
        self.spec = spec
        self.rng = np.random.default_rng(spec.seed)
        if self.Params is not None:
            self.params = parse_params(self.Params, spec.params, self.name)
        elif spec.params:
            raise LearnerConfigError(f"algo '{self.name}' takes no parameters")

    # -- capabilities that depend on the run's (raw) params --------------------------------------
    @classmethod
    def permitted_kinds(cls, params: dict[str, Any]) -> frozenset[str]:
        """The peer kinds a run with these (raw) params may exchange; the guard and the audit
        use it. A learner whose messages depend on its parameters overrides it."""
        return cls.peer_kinds

    @classmethod
    def dp_releases(cls, params: dict[str, Any]) -> dict[str, tuple[str, ...]]:
        """What a DP run accounts for, per peer kind a run with these params may send: the
        fields the registry declares released (clipped and noised) or exact (sent as they
        are, reported). An empty tuple: the kind declares neither, and a DP run refuses it."""
        return {kind: (*REGISTRY[kind].released, *REGISTRY[kind].exact)
                for kind in sorted(cls.permitted_kinds(params))}

    @classmethod
    def act_ahead_allowed(cls, params: dict[str, Any] | None = None) -> tuple[bool, str]:
        """Whether a run of this learner with these (raw) params may act ahead, and why."""
        for name, why in cls.act_ahead_off_with.items():
            value = (params or {}).get(name)
            if value not in (None, 0, 0.0, False, "0", "0.0", "false", "False"):
                return False, f"{name} is set: {why}"
        return cls.act_ahead, cls.act_ahead_why

    @classmethod
    def non_private_reason(cls, params: dict[str, Any]) -> str:
        """Why a run of this learner with these (raw) params is NOT private, or "" if it is.
        Such runs are labelled in config.toml, summary.json and every log's meta."""
        if cls.centralised:
            return (f"'{cls.name}' is a centralised baseline; one process sees the joint "
                    "observations and actions of all agents.")
        if cls.joint_view:
            return (f"'{cls.name}' runs in the centralised mode: the env server gives every "
                    "agent the joint observation and rewards of all agents.")
        return ""

    @classmethod
    def check_run(cls, run: dict[str, Any]) -> dict[str, Any]:
        """Check the run this learner is configured into (``RunConfig.to_dict()``: env,
        env_args, n, params, ...) at config time; return env_args it needs by default (they
        show in config.toml). Raise LearnerConfigError naming the field."""
        return {}

    @classmethod
    def params_for_links(cls, params: dict[str, Any], links_fail: bool,
                         peer_timeout: float) -> dict[str, Any]:
        """Its params for a run whose links fail on a schedule (``links_fail``) or whose
        neighbours may go silent (``peer_timeout`` > 0); LearnerConfigError if it cannot run
        so. Only a learner that ``follows_link_schedule`` overrides it."""
        if links_fail:
            raise LearnerConfigError(f"algo '{cls.name}' does not follow a link schedule "
                                     "(dac-deep's running-sum consensus does)")
        return params

    @classmethod
    def turn_schedule(cls, params: dict[str, Any], n_agents: int, seed: int
                      ) -> dict[str, Any] | None:
        """The turn schedule the coordinator broadcasts (``turn``) to a learner that learns in
        turns (``agentd.algorithms.plugins.turns``); None for every other learner."""
        return None

    def peer_shapes(self) -> dict[str, dict[str, tuple[tuple[int, ...], str]]]:
        """Exact (shape, dtype) of array fields of peer kinds, declared at admission: the guard
        rejects a message of such a kind whose array differs or is not finite. Empty: the
        registry's schema alone."""
        return {}

    # -- the hooks the agent loop calls -----------------------------------------------------------
    def set_turns(self, body: dict[str, Any]) -> None:
        raise LearnerConfigError(f"{self.name} does not learn in turns")

    def act(self, obs: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def act_eval(self, obs: np.ndarray) -> np.ndarray:
        """The action of the saved policy under evaluation (``agentd evaluate``): greedy where
        the learner defines it (argmax of Q, the mode of its distribution), else as it acts
        in training. Nothing is learned or stored."""
        return self.act(obs)

    def observe(self, obs: np.ndarray, action: np.ndarray, reward: np.ndarray,
                next_obs: np.ndarray, terminated: np.ndarray, truncated: np.ndarray) -> None:
        """Record the transition batch of this step (K copies)."""

    def outbox(self) -> list[Outgoing]:
        """Peer messages to send now. Polled after ``observe`` and after every ``inbox``, so
        it must return each message once (a reply or a next gossip round may follow an inbox).
        """
        return []

    def inbox(self, src: int, kind: str, body: dict[str, Any]) -> None:
        raise LearnerConfigError(f"{type(self).__name__} does not accept '{kind}' messages")

    def awaiting(self) -> frozenset[int]:
        """Neighbour ids whose messages this step's update still waits for."""
        return frozenset()

    def update(self) -> dict[str, float]:
        """One learning step on what was observed; returns scalar diagnostics."""
        return {}

    def peers_silent(self, silent: frozenset[int]) -> bool:
        """These awaited neighbours stayed silent past ``peer_timeout``: go ahead without them
        this step if the learner can (True); False keeps waiting (the default)."""
        return False

    def on_gap(self, steps: int) -> None:
        """The run went on without this learner for ``steps`` joint steps (it was restored from
        a recovery checkpoint, or the env server restarted); the step in flight is dropped.
        A learner whose state is aligned by the global step skips ahead here."""

    def state_dict(self) -> dict[str, np.ndarray]:
        """The learned state, as named arrays (checkpointed at the end of a run)."""
        return {}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        for key, value in state.items():
            getattr(self, key)[...] = value
