"""An object graph as data: a JSON skeleton plus named numpy arrays, and loaded back *into* a
freshly built object of the same shape -- never built from what a file names.

``flatten`` walks what an agent holds: scalars, numpy arrays and scalars, torch tensors,
dicts, lists, tuples, deques, sets, numpy/torch/Python RNGs (by their state), torch modules
and optimisers (by their ``state_dict``) and plain objects (by their attributes). Modules,
functions, classes and dtypes are recorded by name only. The skeleton records every node's
kind, an object's class, an array's dtype and shape.

``load_into`` walks the skeleton together with an object built the normal way (from the
welcome, by the learner's own constructor): an object's class must be the fresh one's, an
array's dtype and shape the fresh array's, an object's attributes the fresh one's; the first
difference is refused (``Mismatch`` names its path). Values are copied into the fresh object
(arrays and tensors in place, so aliases stay aliases); only plain data is ever created from
the file, and nothing in it is looked up by name or called. This is what lets a recovery
checkpoint cross hosts: a file can at worst hold wrong numbers for the learner it claims.
"""

from __future__ import annotations

import sys
import types
from collections import deque
from typing import Any

import numpy as np

SCALARS = (bool, int, float, str, type(None))
NUMERIC = "biufc"


class Mismatch(ValueError):
    """A saved tree that does not fit the fresh object (or cannot be saved); names the path."""

    def __init__(self, path: str, why: str) -> None:
        super().__init__(f"at {path}: {why}")
        self.path = path


def loaded_torch() -> Any:
    return sys.modules.get("torch")


def class_name(obj: Any) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def const_name(obj: Any) -> str | None:
    """A name for what is kept by reference, not saved: modules, functions, classes, dtypes."""
    if isinstance(obj, types.ModuleType):
        return f"module {obj.__name__}"
    if isinstance(obj, type):
        return f"class {class_name(obj)}"
    if isinstance(obj, (types.FunctionType, types.BuiltinFunctionType, types.MethodType)):
        return f"function {getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}"
    if isinstance(obj, np.dtype):
        return f"dtype {obj.str}"
    torch = loaded_torch()
    if torch is not None and isinstance(obj, (torch.dtype, torch.device)):
        return f"torch {obj}"
    return None


class _Flattener:
    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}
        self.seen: dict[int, tuple[str, Any]] = {}     # id -> (path, obj): objects met once

    def array(self, arr: np.ndarray, path: str, kind: str = "arr", **extra: Any) -> dict:
        if arr.dtype.kind not in NUMERIC:
            raise Mismatch(path, f"an array of dtype {arr.dtype} cannot be saved")
        name = f"a{len(self.arrays)}"
        self.arrays[name] = arr
        return {"t": kind, "name": name, "dtype": arr.dtype.str, "shape": list(arr.shape),
                **extra}

    def node(self, obj: Any, path: str) -> Any:
        if isinstance(obj, SCALARS):
            return obj
        if isinstance(obj, np.ndarray):
            return self.array(obj, path)
        if isinstance(obj, np.generic):
            if obj.dtype.kind not in NUMERIC:
                raise Mismatch(path, f"a numpy scalar of dtype {obj.dtype} cannot be saved")
            return {"t": "npscalar", "dtype": obj.dtype.str, "v": obj.item()}
        if isinstance(obj, bytes):
            return self.array(np.frombuffer(obj, np.uint8), path, "bytes")
        const = const_name(obj)
        if const is not None:
            return {"t": "const", "what": const}
        torch = loaded_torch()
        if torch is not None and isinstance(obj, torch.Tensor):
            return self.array(obj.detach().cpu().numpy(), path, "tensor",
                              grad=bool(obj.requires_grad))
        if isinstance(obj, dict):
            factory = getattr(obj, "default_factory", None)
            return {"t": "dict", "cls": class_name(obj),
                    **({"factory": const_name(factory)} if factory is not None else {}),
                    "items": [
                [self.key(k, path), self.node(v, f"{path}[{k!r}]")] for k, v in obj.items()]}
        if isinstance(obj, (list, tuple, deque, set, frozenset)):
            items = sorted(obj, key=repr) if isinstance(obj, (set, frozenset)) else obj
            return {"t": type(obj).__name__ if type(obj) in (list, tuple, deque, set, frozenset)
                    else "tuple", "cls": class_name(obj),
                    "items": [self.node(v, f"{path}[{i}]") for i, v in enumerate(items)]}
        return self.shared(obj, path)

    def key(self, k: Any, path: str) -> Any:
        if isinstance(k, SCALARS):
            return k
        if isinstance(k, np.generic) or (isinstance(k, tuple) and len(k) < 64):
            return self.node(k, f"{path} key")
        raise Mismatch(path, f"a dict key of type {type(k).__name__} cannot be saved")

    def shared(self, obj: Any, path: str) -> dict:
        """Objects: each saved once, later meetings are references to the first path."""
        if id(obj) in self.seen:
            return {"t": "ref", "path": self.seen[id(obj)][0]}
        self.seen[id(obj)] = (path, obj)
        torch = loaded_torch()
        if isinstance(obj, np.random.Generator):
            return {"t": "npgen", "state": self.node(obj.bit_generator.state, f"{path}.state")}
        if isinstance(obj, np.random.RandomState):
            return {"t": "nprs", "state": self.node(obj.get_state(legacy=False),
                                                    f"{path}.state")}
        if isinstance(obj, __import__("random").Random):
            return {"t": "pyrandom", "state": self.node(obj.getstate(), f"{path}.state")}
        if torch is not None and isinstance(obj, torch.Generator):
            return {"t": "torchgen", "state": self.node(obj.get_state(), f"{path}.state")}
        if torch is not None and isinstance(obj, (torch.nn.Module, torch.optim.Optimizer)):
            attrs = {k: v for k, v in vars(obj).items() if not k.startswith("_")
                     and k not in ("state", "param_groups", "defaults")}
            return {"t": "torchobj", "cls": class_name(obj),
                    "state": self.node(obj.state_dict(), f"{path}.state_dict()"),
                    "attrs": {k: self.node(v, f"{path}.{k}") for k, v in attrs.items()}}
        if not hasattr(obj, "__dict__") or hasattr(type(obj), "__slots__"):
            raise Mismatch(path, f"an object of type {class_name(obj)} cannot be saved")
        return {"t": "obj", "cls": class_name(obj),
                "attrs": {k: self.node(v, f"{path}.{k}") for k, v in vars(obj).items()}}


def flatten(roots: dict[str, Any]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The skeleton of each root (JSON-able, by the root's name) and all their arrays."""
    walker = _Flattener()
    return {name: walker.node(obj, name) for name, obj in roots.items()}, walker.arrays

