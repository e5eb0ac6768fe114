"""Run configuration: one dataclass, filled from defaults < TOML file < CLI, validated once.

Errors name the field and what is allowed. The resolved config is written to the run
directory as ``config.toml`` (``agentd.configfile`` reads and writes the files) and handed to
every process in its welcome. The module stays whole past ~300 lines: the dataclass, its
resolution and its validation are one set of rules, read top to bottom.
"""

from __future__ import annotations

import dataclasses
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentd import dp_fields
from protocols.guard import DEFAULT_MAX_BYTES

if TYPE_CHECKING:
    from agentd.algorithms.base import Learner


class ConfigError(ValueError):
    """A configuration value that is not allowed; the message names the field."""


SEED_TAGS = {"env_model": 1, "env_reset": 2, "graph": 3, "agent": 4}


def derive_seed(seed: int, tag: str, index: int = 0) -> int:
    """A seed for one part of the run, derived from the run seed (stable across versions).
    Only the run plan (``agentd.plan``) and the graph's validation below call it."""
    import numpy as np

    state = np.random.SeedSequence([seed, SEED_TAGS[tag], index]).generate_state(1, np.uint32)
    return int(state[0])


@dataclass
class RunConfig:
    """Everything that defines a run."""

    topology: str = "ring"            # communication graph (see `agentd topology show`)
    n: int = 5                        # number of agents
    algo: str = "dac"                 # learner run by every agent
    env: str = "random-mdp"           # built-in env id or PettingZoo ParallelEnv module:callable
    obs: str = "auto"                 # what each agent observes: auto | local | state
    steps: int = 20000                # joint steps per env copy (message rounds)
    episode_len: int = 50             # episode length cap (truncation)
    num_envs: int = 1                 # K env copies stepped per message round
    seed: int = 0                     # run seed: env model, agents and graph derive from it
    run_dir: str = ""                 # default runs/<timestamp>
    rows: int = 0                     # grid topology: number of rows (must divide n)
    p: float = 0.5                    # random topology: edge probability
    k: int = 4                        # small-world: ring-lattice neighbours (even)
    rewire: float = 0.1               # small-world: rewiring probability
    edges: str = ""                   # edgelist topology: path of an "i j" per line file
    mixing: str = "kernel"            # mixing matrix: kernel (paper eq. 41) | metropolis
    params: dict[str, Any] = field(default_factory=dict)    # learner hyperparameters
    env_args: dict[str, Any] = field(default_factory=dict)  # keyword args of the env factory
    checkpoint_every: int = 0         # also checkpoint each agent every this many steps (0: end)
    recovery_every: int = 0           # recovery checkpoint of each agent every this many steps
    max_restarts: int = 0             # restarts of one agent (or the env server) before failing
    rejoin_timeout: float = 30.0      # seconds the coordinator waits for a dead process to rejoin
    peer_timeout: float = 0.0         # silence after which a neighbour is down for that step
    link_schedule: str = ""           # file of 'FROM TO I J' lines: edge I-J down for FROM<=t<TO
    links_down: list = field(default_factory=list)   # [FROM, TO, I, J] rows read from link_schedule
    heartbeat_interval: float = 0.5   # seconds between heartbeats
    heartbeat_timeout: float = 5.0    # silence after which a process is declared dead
    coordinator_timeout: float = 120.0  # seconds a process carries on without the coordinator
    join_timeout: float = 60.0        # seconds for all processes to join
    max_msg_bytes: int = 16 << 20     # size cap of one message (guard)
    host: str = "127.0.0.1"           # interface local processes bind to
    insecure: bool = False            # plaintext beyond loopback allowed on purpose (recorded)
    dp_sigma: float = 0.0             # DP noise multiplier on peer messages (0: DP off)
    dp_clip: float = 1.0              # DP: L2 norm each released row/array is clipped to
    dp_delta: float = 1e-5            # DP: the delta of the reported epsilon
    dp_accountant: str = "pld"        # DP accountant: pld (tight) | rdp (upper bound)
    dp_sample_rate: float = 1.0       # DP: Poisson rate q of releases carrying values (1: all)
    dp_broadcast: str = "off"         # DP: on: one noised release shared by its copies
    dp_kinds: dict[str, Any] = field(default_factory=dict)  # per-kind {sigma, clip, q} overrides
    act_ahead: str = "auto"           # act before the update: auto (the learner's say) | on | off
    env_plane: str = "auto"           # act/step: auto (a Unix socket on one machine) | zmq

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}
TABLES = ("params", "env_args", "dp_kinds")
OBS_CHOICES = ("auto", "local", "state")
ACT_AHEAD_CHOICES = ("auto", "on", "off")
ENV_PLANE_CHOICES = ("auto", "zmq")


def resolve(file_values: dict[str, Any], cli_values: dict[str, Any]) -> RunConfig:
    """Merge file and CLI values (CLI wins, tables merge key by key) and validate.

    A file's ``private`` key (the label config.toml carries) is derived, not set: it is
    checked against the algo instead of being merged."""
    file_values = dict(file_values)
    private = file_values.pop("private", None)
    merged: dict[str, Any] = {}
    for source in (file_values, {k: v for k, v in cli_values.items() if v is not None}):
        for key, value in source.items():
            if key not in FIELDS:
                raise ConfigError(f"unknown config field '{key}'; allowed: {sorted(FIELDS)}")
            if key in TABLES:
                if not isinstance(value, dict):
                    raise ConfigError(f"'{key}' must be a table of key = value")
                merged[key] = {**merged.get(key, {}), **value}
            else:
                merged[key] = value
    config = RunConfig(**{k: _coerce(k, v) for k, v in merged.items()})
    _canonical_plugins(config)
    if "episode_len" not in merged:     # an env may have its own default (ipd: 150)
        from agentd.envs import ENVS

        row = ENVS.get(config.env)
        if row is not None and row.episode_len is not None:
            config.episode_len = row.episode_len
    validate(config)
    _resolve_defaults(config, set(merged))
    if private is not None and private != is_private(config):
        raise ConfigError(f"'private' = {private!r} does not match algo '{config.algo}' "
                          f"(private = {is_private(config)}); the label is derived, remove it")
    if not config.run_dir:
        config.run_dir = str(Path("runs") / time.strftime("%Y%m%d-%H%M%S"))
    return config


def _canonical_plugins(c: RunConfig) -> None:
    """A plug-in learner or env named by its entry point is recorded as its module:attr, so
    every process and host of the run loads the very class (and factory) resolved here."""
    from agentd.algorithms import canonical_algo
    from agentd.algorithms.base import LearnerConfigError
    from agentd.envs import canonical_env

    try:
        c.algo = canonical_algo(c.algo)
    except LearnerConfigError as exc:
        raise ConfigError(f"'algo': {exc}") from None
    c.env = canonical_env(c.env)


def _coerce(name: str, value: Any) -> Any:
    default = FIELDS[name].default
    if name in TABLES:
        return value
    if name == "links_down":
        from topologies.live import is_schedule

        if not is_schedule(value):
            raise ConfigError("'links_down' must be a list of [from, to, i, j] integer lists")
        return value
    want = type(default)
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, want) or (want is int and isinstance(value, bool)):
        raise ConfigError(f"'{name}' must be {want.__name__}, got {value!r}")
    return value


def _require(ok: bool, name: str, allowed: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"'{name}' = {value!r} is not allowed: {allowed}")


def validate(c: RunConfig) -> None:
    """Check every field; names the first bad one and what is allowed."""
    from topologies import MIXING_METHODS, TOPOLOGIES

    _require(c.topology in TOPOLOGIES, "topology", f"one of {', '.join(TOPOLOGIES)}",
             c.topology)
    _require(1 <= c.n <= 1024, "n", "an integer in 1..1024", c.n)
    _require(c.steps >= 1, "steps", "an integer >= 1", c.steps)
    _require(c.episode_len >= 1, "episode_len", "an integer >= 1", c.episode_len)
    _require(1 <= c.num_envs <= 4096, "num_envs", "an integer in 1..4096", c.num_envs)
    _require(c.seed >= 0, "seed", "an integer >= 0", c.seed)
    _require(c.checkpoint_every >= 0, "checkpoint_every", "an integer >= 0 (0: only at the end)",
             c.checkpoint_every)
    _require(c.recovery_every >= 0, "recovery_every", "an integer >= 0 (0: none)",
             c.recovery_every)
    _require(0 <= c.max_restarts <= 1000, "max_restarts", "an integer in 0..1000",
             c.max_restarts)
    _require(c.peer_timeout >= 0, "peer_timeout", "seconds >= 0 (0: wait for every neighbour)",
             c.peer_timeout)
    _require(c.rejoin_timeout > 0, "rejoin_timeout", "seconds > 0", c.rejoin_timeout)
    _require(c.mixing in MIXING_METHODS, "mixing", f"one of {', '.join(MIXING_METHODS)}",
             c.mixing)
    _require(c.obs in OBS_CHOICES, "obs", f"one of {', '.join(OBS_CHOICES)}", c.obs)
    _require(c.act_ahead in ACT_AHEAD_CHOICES, "act_ahead",
             f"one of {', '.join(ACT_AHEAD_CHOICES)}", c.act_ahead)
    _require(c.env_plane in ENV_PLANE_CHOICES, "env_plane",
             f"one of {', '.join(ENV_PLANE_CHOICES)}", c.env_plane)
    _require(0.0 < c.p <= 1.0, "p", "a probability in (0, 1]", c.p)
    _require(0.0 <= c.rewire <= 1.0, "rewire", "a probability in [0, 1]", c.rewire)
    _require(c.heartbeat_interval > 0, "heartbeat_interval", "seconds > 0",
             c.heartbeat_interval)
    _require(c.heartbeat_timeout >= 2 * c.heartbeat_interval, "heartbeat_timeout",
             "at least twice heartbeat_interval", c.heartbeat_timeout)
    _require(c.join_timeout > 0, "join_timeout", "seconds > 0", c.join_timeout)
    _require(c.coordinator_timeout >= c.heartbeat_timeout, "coordinator_timeout",
             "seconds >= heartbeat_timeout", c.coordinator_timeout)
    # the sockets' frame cap (ZMQ_MAXMSGSIZE) is set when a process binds, before it knows
    # its run: a larger message cap would let the guard admit frames the sockets drop
    _require(1024 <= c.max_msg_bytes <= DEFAULT_MAX_BYTES, "max_msg_bytes",
             f"an integer from 1024 to {DEFAULT_MAX_BYTES} (16 MiB, the sockets' frame cap)",
             c.max_msg_bytes)
    _require(bool(re.fullmatch(r"[\w.\-:\[\]]+", c.host)), "host", "an interface address",
             c.host)
    dp_fields.validate(c, _require)
    _validate_algo_env(c)
    _validate_graph(c)


def _validate_graph(c: RunConfig) -> None:
    """rows, p, k, rewire and the edge-list file are checked by building the run's graph
    (``run_graph``: the very graph the run plan uses, so a random draw cannot pass here and
    fail there)."""
    run_graph(c)


def run_graph(c: RunConfig) -> Any:
    """The run's communication graph over its agent processes, seeded from the run seed;
    a ``ConfigError`` names a bad topology parameter. The run plan (``agentd.plan``) holds it."""
    from topologies import TopologyError, build

    n = process_count(c)
    try:
        return build(c.topology if n > 1 else "complete", n, rows=c.rows or None, p=c.p,
                     k=c.k, rewire=c.rewire, seed=derive_seed(c.seed, "graph"),
                     edges_file=c.edges or None)
    except TopologyError as exc:
        raise ConfigError(f"'topology' {c.topology!r}: {exc}") from None


def _validate_algo_env(c: RunConfig) -> None:
    from agentd.algorithms import load_learner_class
    from agentd.algorithms.base import LearnerConfigError, parse_params
    from agentd.envs import check_env_id
    from agentd.envs.base import EnvError

    try:
        check_env_id(c.env)
    except EnvError as exc:
        raise ConfigError(f"'env': {exc}") from None
    try:
        learner = load_learner_class(c.algo)
    except LearnerConfigError as exc:
        raise ConfigError(f"'algo': {exc}") from None
    _check_spaces(c, learner)
    if learner.Params is not None:
        try:
            parse_params(learner.Params, c.params, c.algo)
        except LearnerConfigError as exc:
            raise ConfigError(f"'params': {exc}") from None
    elif c.params:
        raise ConfigError(f"'params': algo '{c.algo}' takes no parameters")


def _check_spaces(c: RunConfig, learner: type[Learner]) -> None:
    """The learner's declared action and observation types against a built-in env's."""
    from agentd.envs import ENVS

    row = ENVS.get(c.env)         # a PettingZoo env's spaces are known once it is built
    why = row.refuses(c.algo, learner.action_type, learner.obs_type, c.env_args) if row else ""
    if why:
        raise ConfigError(f"'algo' {why}")


def _resolve_defaults(c: RunConfig, given: set[str] = frozenset()) -> None:
    """Replace learner-dependent defaults by what will run, so config.toml shows it.

    * The learner checks the run it is put into and adds env_args it needs (``check_run``:
      e.g. meta-mapg sets ipd's ``episodes_per_task`` to its chain length + 1).
    * obs "auto" becomes "state" for a learner that wants the global state, else "local".
    * A learner of Box actions on an mpe2 env gets ``continuous_actions = true`` unless
      env_args sets it: MPE envs default to discrete actions, and without this
      ``--algo dac-deep --env mpe2.simple_spread_v3:parallel_env`` would fail as written.
    """
    from agentd.algorithms import load_learner_class
    from agentd.algorithms.base import LearnerConfigError
    from agentd.envs import ENVS
    from agentd.envs.pettingzoo_env import split_factory_spec

    learner = load_learner_class(c.algo)
    try:
        needed = learner.check_run(c.to_dict())
    except LearnerConfigError as exc:
        raise ConfigError(str(exc)) from None
    c.env_args = {**needed, **c.env_args}
    _resolve_links(c, learner)
    if c.dp_sigma > 0:    # again: the links may have switched the learner's kinds
        dp_fields.require_declared(c, _require)
    if c.obs == "auto":
        c.obs = "state" if learner.wants_state else "local"
    _resolve_act_ahead(c, learner)
    if (learner.action_type == "box" and c.env not in ENVS
            and split_factory_spec(c.env)[0].startswith("mpe2.")
            and "continuous_actions" not in c.env_args):
        c.env_args = {**c.env_args, "continuous_actions": True}


def _resolve_act_ahead(c: RunConfig, learner: type[Learner]) -> None:
    """auto becomes on or off by the learner's ``act_ahead``; on for a learner that does not
    allow it is an error (its update rule needs the action of the updated policy)."""
    allowed, why = learner.act_ahead_allowed(c.params)
    if c.act_ahead == "on" and not allowed:
        raise ConfigError(f"'act_ahead' = 'on' is not allowed for algo '{c.algo}': {why}")
    if c.act_ahead == "auto":
        # with a peer timeout, a neighbour acting ahead is late by up to one of its updates
        # (it answers this step after updating the last one): auto keeps it off there
        c.act_ahead = "on" if allowed and not c.peer_timeout else "off"


def _resolve_links(c: RunConfig, learner: type[Learner]) -> None:
    """Read the link schedule into ``links_down`` (config.toml carries it to every process);
    the learner says whether it follows one, and with which params (``params_for_links``:
    a consensus may switch to running sums when links may fail)."""
    from agentd.algorithms.base import LearnerConfigError
    from topologies.live import ScheduleError, parse_schedule

    try:
        if c.link_schedule:
            c.links_down = parse_schedule(c.link_schedule, process_count(c))
        c.params = learner.params_for_links(c.params, bool(c.links_down), c.peer_timeout)
    except (ScheduleError, LearnerConfigError) as exc:
        raise ConfigError(f"'link_schedule': {exc}") from None


def process_count(c: RunConfig) -> int:
    """Agent processes in the run: n, or 1 for a centralised learner over all n env agents."""
    from agentd.algorithms import load_learner_class

    return 1 if load_learner_class(c.algo).centralised else c.n


def is_private(c: RunConfig) -> bool:
    """False for a centralised baseline (one process sees every agent's observations and
    actions; the one centralised mode) or a learner whose params make it share private state (e.g.
    ``opponent = shared``): such runs are labelled in config.toml, summary.json and the logs."""
    return not non_private_reason(c)


def non_private_reason(c: RunConfig) -> str:
    """Why the run is not private ("" if it is)."""
    from agentd.algorithms import load_learner_class

    return load_learner_class(c.algo).non_private_reason(c.params)
