"""gymnasium spaces of a PettingZoo env, described for the wire (see ``protocols.spaces``).

Observation spaces:

* ``Discrete(n)`` (starting at 0) travels as is; ``Box`` keeps its shape and dtype (a uint8
  image stays uint8 from the env to the learner), with scalar bounds where they are uniform;
* ``MultiBinary(shape)`` is a Box of that shape in {0, 1}, dtype int8;
* ``MultiDiscrete(nvec)`` is a Box of nvec's shape in [start, start + nvec - 1], dtype int64;
* ``Dict`` and ``Tuple`` are flattened by gymnasium's ``flatten_space``/``flatten`` into one
  Box: sub-spaces in their (sorted, for Dict) order, each Discrete as a one-hot vector.

Action spaces are ``Discrete`` (from 0) or ``Box``; any other is refused naming the agent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from agentd.envs.base import EnvError
from protocols.spaces import BOX_DTYPES, box_space

Flatten = Callable[[Any], np.ndarray] | None


def describe_space(space: Any, agent: str, role: str = "observation") -> dict:
    """The wire form of a gymnasium space (EnvError naming the agent for one we refuse)."""
    return describe_with_flatten(space, agent, role)[0]


def describe_with_flatten(space: Any, agent: str, role: str = "observation"
                          ) -> tuple[dict, Flatten]:
    """The wire form and, for a Dict/Tuple observation, the function that flattens one."""
    from gymnasium import spaces

    if isinstance(space, spaces.Discrete):
        if int(space.start) != 0:
            raise EnvError(f"agent {agent}: Discrete {role} space {space} must start at 0")
        return {"type": "discrete", "n": int(space.n)}, None
    if isinstance(space, spaces.Box):
        return _box(space.shape, space.low, space.high, space.dtype, agent, role), None
    if role == "observation":
        if isinstance(space, spaces.MultiBinary):
            return box_space(space.shape, 0, 1, "int8"), None
        if isinstance(space, spaces.MultiDiscrete):
            start = np.asarray(space.start, dtype=np.float64)
            return box_space(space.shape, start, start + space.nvec - 1, "int64"), None
        if isinstance(space, (spaces.Dict, spaces.Tuple)):
            flat = spaces.flatten_space(space)
            desc = _box(flat.shape, flat.low, flat.high, flat.dtype, agent, role)
            return desc, lambda obs: spaces.flatten(space, obs)
    supported = ("Discrete, Box, MultiBinary, MultiDiscrete, Dict and Tuple"
                 if role == "observation" else "Discrete and Box")
    raise EnvError(f"agent {agent}: unsupported {role} space {space!r}; supported {role} "
                   f"spaces are {supported}")


def _box(shape: tuple[int, ...], low: Any, high: Any, dtype: Any, agent: str,
         role: str) -> dict:
    name = np.dtype(dtype).name
    if name not in BOX_DTYPES:
        if np.dtype(dtype).kind != "f":
            raise EnvError(f"agent {agent}: Box {role} space of dtype {name} cannot travel "
                           f"(allowed: {', '.join(sorted(BOX_DTYPES))})")
        name = "float32"      # float16 and longer floats travel as float32
    return box_space(shape, low, high, name)
