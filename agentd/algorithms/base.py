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

The centralised mode (DESIGN §5.4) is one mechanism: the env server replies to each process
with the observations and rewards of the env agents in its *view*. A process's view is the env
agents it controls, except for a learner in the centralised mode (``centralised``: one process
controls them all; ``joint_view``: each process acts for one agent but sees them all), whose
view is every env agent. obs and reward then carry the view's axis: ``(K, n, ...)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from protocols.spaces import box_bounds  # noqa: F401 - learners read Box bounds here


class LearnerConfigError(ValueError):
    """A learner parameter or an env/space combination the learner cannot handle."""


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


@dataclass(frozen=True)
class Allowed:
    """The values a parameter may take: a range (either end open or closed) or a set."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[Any, ...] = ()

    def admits(self, v: Any) -> bool:
        if self.choices:
            return v in self.choices
        return ((self.ge is None or v >= self.ge) and (self.gt is None or v > self.gt)
                and (self.le is None or v <= self.le) and (self.lt is None or v < self.lt))

    def __str__(self) -> str:
        if self.choices:
            return "one of " + ", ".join(str(c) for c in self.choices)
        lo = f"[{self.ge}" if self.ge is not None else f"({self.gt}" if self.gt is not None \
            else None
        hi = f"{self.le}]" if self.le is not None else f"{self.lt})" if self.lt is not None \
            else None
        if lo and hi:
            return f"in {lo}, {hi}"
        return (f">= {self.ge}" if self.ge is not None else f"> {self.gt}") if lo else \
            (f"<= {self.le}" if self.le is not None else f"< {self.lt}")


def param(default: Any, **allowed: Any) -> Any:
    """A Params field declared with its allowed values (``ge``/``gt``/``le``/``lt`` bounds or
    ``choices``), which ``parse_params`` checks for every learner: no ``check()`` body needed
    except for constraints between fields."""
    return field(default=default, metadata={"allowed": Allowed(**allowed)})


def parse_params(params_cls: type, raw: dict[str, Any], algo: str) -> Any:
    """Build a learner's Params dataclass from user overrides, naming bad fields."""
    fields = {f.name: f for f in dataclasses.fields(params_cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise LearnerConfigError(
            f"unknown parameter(s) {unknown} for algo '{algo}'; allowed: {sorted(fields)}"
        )
    values = {}
    for name, value in raw.items():
        default = getattr(params_cls(), name)
        try:
            values[name] = _coerce(default, value)
        except (TypeError, ValueError):
            raise LearnerConfigError(
                f"parameter '{name}' for algo '{algo}' must be {type(default).__name__}, "
                f"got {value!r}"
            ) from None
    out = params_cls(**values)
    for f in fields.values():
        allowed = _declared(params_cls, f.name)
        if allowed is not None and not allowed.admits(getattr(out, f.name)):
            raise LearnerConfigError(f"parameter '{f.name}' for algo '{algo}' must be "
                                     f"{allowed}, got {getattr(out, f.name)!r}")
    check = getattr(out, "check", None)
    if check is not None:
        check()
    return out


def _declared(params_cls: type, name: str) -> Allowed | None:
    """The allowed values of field ``name``, from the nearest class that declares them: a
    subclass that only changes a default (``alpha: float = 1.0``) keeps its parent's range."""
    for cls in params_cls.__mro__:
        f = vars(cls).get("__dataclass_fields__", {}).get(name)
        if f is not None and "allowed" in f.metadata:
            return f.metadata["allowed"]
    return None


_BOOL_WORDS = {"true": True, "false": False, "1": True, "0": False}


def _coerce(default: Any, value: Any) -> Any:
    """``value`` as the type of the field's default, refusing lossy conversions: "False" is
    not True, 0.5 is not the int 0 (ValueError/TypeError name the bad value)."""
    if default is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
            return _BOOL_WORDS[value.strip().lower()]
        raise ValueError(value)
    if isinstance(value, bool):       # True is an int in Python; never a number here
        raise TypeError(value)
    if isinstance(default, int):
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        return int(value)
    return type(default)(value)


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

    Subclasses override what they need. ``peer_kinds`` lists the message kinds the learner
    may send and receive; the guard permits exactly these on peer edges for the run.
    """

    name: ClassVar[str] = ""
    Params: ClassVar[type | None] = None      # hyper-parameter dataclass (user-overridable)
    peer_kinds: ClassVar[frozenset[str]] = frozenset()
    needs_torch: ClassVar[bool] = False
    centralised: ClassVar[bool] = False   # controls every env agent from one process
    joint_view: ClassVar[bool] = False    # sees every env agent's obs/reward (centralised mode)
    wants_state: ClassVar[bool] = False   # observe the env's global state (config obs = "auto")
    action_type: ClassVar[str] = "any"    # "box" | "discrete" | "any": action spaces it handles

    def __init__(self, spec: LearnerSpec) -> None:
        self.spec = spec
        self.rng = np.random.default_rng(spec.seed)
        if self.Params is not None:
            self.params = parse_params(self.Params, spec.params, self.name)
        elif spec.params:
            raise LearnerConfigError(f"algo '{self.name}' takes no parameters")

    @classmethod
    def permitted_kinds(cls, params: dict[str, Any]) -> frozenset[str]:
        """The peer kinds a run with these (raw) params may exchange; the guard and the audit
        use it. A learner whose messages depend on its parameters overrides it."""
        return cls.peer_kinds

    def peer_shapes(self) -> dict[str, dict[str, tuple[tuple[int, ...], str]]]:
        """Exact (shape, dtype) of array fields of peer kinds, declared at admission: the guard
        rejects a message of such a kind whose array differs or is not finite. Empty: the
        registry's schema alone."""
        return {}

    @classmethod
    def non_private_reason(cls, params: dict[str, Any]) -> str:
        """Why a run of this learner with these (raw) params is NOT private, or "" if it is.
        Such runs are labelled in config.toml, summary.json and every log's meta."""
        if cls.centralised:
            return (f"'{cls.name}' is a centralised baseline; one process sees the joint "
                    "observations and actions of all agents (DESIGN §5.4).")
        if cls.joint_view:
            return (f"'{cls.name}' runs in the centralised mode: the env server gives every "
                    "agent the joint observation and rewards of all agents (DESIGN §5.4).")
        return ""

    @classmethod
    def check_run(cls, run: dict[str, Any]) -> dict[str, Any]:
        """Check the run this learner is configured into (``RunConfig.to_dict()``: env,
        env_args, n, params, ...) at config time; return env_args it needs by default (they
        show in config.toml). Raise LearnerConfigError naming the field."""
        return {}

    @classmethod
    def turn_schedule(cls, params: dict[str, Any], n_agents: int, seed: int
                      ) -> dict[str, Any] | None:
        """The turn schedule the coordinator broadcasts (``turn``) to a learner that learns in
        turns (``agentd.algorithms.plugins.turns``); None for every other learner."""
        return None

    def set_turns(self, body: dict[str, Any]) -> None:
        raise LearnerConfigError(f"{self.name} does not learn in turns")

    def act(self, obs: np.ndarray) -> np.ndarray:
        raise NotImplementedError

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
