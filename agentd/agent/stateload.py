"""Loading a state tree (``agentd.agent.statetree``) into a freshly built object: the
skeleton and the fresh object are walked together; the first difference is refused. (It
stays whole past ~300 lines: every node kind's check is one case of the same walk.)"""

from __future__ import annotations

from collections import defaultdict, deque
from typing import Any

import numpy as np

from agentd.agent.statetree import NUMERIC, SCALARS, Mismatch, class_name, const_name, loaded_torch


def _describe(obj: Any) -> str:
    if isinstance(obj, np.ndarray):
        return f"a {obj.dtype} array of shape {tuple(obj.shape)}"
    torch = loaded_torch()
    if torch is not None and isinstance(obj, torch.Tensor):
        return f"a {obj.dtype} tensor of shape {tuple(obj.shape)}"
    return "None" if obj is None else f"a {class_name(obj)}"


def _fits(fresh: tuple, saved: tuple) -> bool:
    """A saved array's shape is the fresh one's, or fills an empty placeholder of its rank."""
    return saved == fresh or (len(saved) == len(fresh) and 0 in fresh)


# the factories a defaultdict made from the file alone may have (they are only named there)
_FACTORIES = {f"class builtins.{t.__name__}": t for t in (int, float, list, dict, set)}


def _plain_dict(node: dict, items: dict, path: str) -> dict:
    """A dict the fresh object does not have yet: a plain dict, or a defaultdict of a
    builtin factory (an OrderedDict is a dict that keeps its order: a plain dict does too)."""
    if node.get("cls") == class_name(defaultdict()):
        factory = _FACTORIES.get(node.get("factory"))
        if factory is None:
            raise Mismatch(path, f"a defaultdict of {node.get('factory')!r}")
        return defaultdict(factory, items)
    return items


KINDS = frozenset({"arr", "bytes", "npscalar", "tensor", "const", "ref", "list", "tuple",
                   "deque", "set", "frozenset", "dict", "obj", "torchobj", "npgen", "nprs",
                   "pyrandom", "torchgen"})


def _is_data(value: Any) -> bool:
    """Plain data (which may become None), not an object the learner calls into."""
    torch = loaded_torch()
    return isinstance(value, (*SCALARS, np.generic, np.ndarray, list, tuple, dict, deque, set,
                              frozenset, bytes)) or (torch is not None
                                                     and isinstance(value, torch.Tensor))


class _Loader:
    def __init__(self, arrays: Any) -> None:
        self.arrays = arrays
        self.loaded: dict[str, Any] = {}     # path -> the fresh object loaded there

    def take(self, node: dict, path: str) -> np.ndarray:
        name = node.get("name")
        if not isinstance(name, str) or name not in self.arrays:
            raise Mismatch(path, f"the file names array {name!r}, which it does not hold")
        arr = self.arrays[name]
        if arr.dtype.kind not in NUMERIC or arr.dtype.str != node.get("dtype") \
                or list(arr.shape) != node.get("shape"):
            raise Mismatch(path, f"array {name} is {arr.dtype} {tuple(arr.shape)}, the "
                                 f"skeleton says {node.get('dtype')} {node.get('shape')}")
        return arr

    def value(self, fresh: Any, node: Any, path: str) -> Any:
        """``node`` loaded over ``fresh`` (the fresh object's value at ``path``)."""
        if not isinstance(node, dict):
            if not isinstance(node, SCALARS):
                raise Mismatch(path, f"a bare {type(node).__name__} in the skeleton")
            if isinstance(fresh, str) != isinstance(node, str) and None not in (fresh, node) \
                    or not (fresh is None or isinstance(fresh, (*SCALARS, np.generic))
                            or node is None and _is_data(fresh)):
                raise Mismatch(path, f"the file has {node!r}, a fresh learner "
                                     f"{_describe(fresh)}")
            return node
        kind = node.get("t")
        if kind not in KINDS:
            raise Mismatch(path, f"unknown node kind {kind!r}")
        return getattr(self, f"_{kind}")(fresh, node, path)

    def _expect(self, fresh: Any, node: dict, path: str, allow_none: bool = True) -> None:
        if fresh is None and allow_none:
            return
        if fresh is None or class_name(fresh) != node.get("cls"):
            raise Mismatch(path, f"the file has a {node.get('cls')}, a fresh learner "
                                 f"{_describe(fresh)}")

    def _arr(self, fresh: Any, node: dict, path: str) -> Any:
        arr = self.take(node, path)
        if fresh is None:
            return np.array(arr)
        if not isinstance(fresh, np.ndarray):
            raise Mismatch(path, f"the file has an array, a fresh learner {_describe(fresh)}")
        if fresh.dtype != arr.dtype or not _fits(fresh.shape, arr.shape):
            raise Mismatch(path, f"the file has a {arr.dtype} array of shape "
                                 f"{tuple(arr.shape)}, a fresh learner {_describe(fresh)}")
        if not fresh.flags.writeable or fresh.shape != arr.shape:
            return np.array(arr)
        fresh[...] = arr
        return fresh

    def _bytes(self, fresh: Any, node: dict, path: str) -> bytes:
        if not isinstance(fresh, (bytes, type(None))):
            raise Mismatch(path, f"the file has bytes, a fresh learner {_describe(fresh)}")
        return self.take(node, path).tobytes()

    def _npscalar(self, fresh: Any, node: dict, path: str) -> Any:
        dtype, v = node.get("dtype"), node.get("v")
        try:
            kind = np.dtype(dtype).kind if isinstance(dtype, str) else ""
        except TypeError:
            kind = ""
        if kind not in NUMERIC or not isinstance(v, (bool, int, float, complex)):
            raise Mismatch(path, f"a numpy scalar of dtype {dtype!r} and value {v!r}")
        if not (fresh is None or isinstance(fresh, (bool, int, float, np.generic))):
            raise Mismatch(path, f"the file has a number, a fresh learner {_describe(fresh)}")
        try:
            return np.dtype(dtype).type(v)
        except (OverflowError, ValueError, TypeError) as exc:
            raise Mismatch(path, f"{v!r} is not a {dtype} ({exc})") from None

    def _tensor(self, fresh: Any, node: dict, path: str) -> Any:
        import torch

        arr = self.take(node, path)
        if fresh is None:
            out = torch.from_numpy(np.array(arr))
            return out.requires_grad_(True) if node.get("grad") is True \
                and out.is_floating_point() else out
        if not isinstance(fresh, torch.Tensor) or tuple(fresh.shape) != arr.shape \
                or torch.from_numpy(arr[:0].reshape(-1)).dtype != fresh.dtype:
            raise Mismatch(path, f"the file has a {arr.dtype} tensor of shape "
                                 f"{tuple(arr.shape)}, a fresh learner {_describe(fresh)}")
        with torch.no_grad():
            fresh.copy_(torch.from_numpy(np.array(arr)))
        return fresh

    def _const(self, fresh: Any, node: dict, path: str) -> Any:
        if const_name(fresh) != node.get("what"):
            raise Mismatch(path, f"the file has {node.get('what')}, a fresh learner "
                                 f"{_describe(fresh)}")
        return fresh

    def _ref(self, fresh: Any, node: dict, path: str) -> Any:
        first = node.get("path")
        if first not in self.loaded or self.loaded[first] is not fresh:
            raise Mismatch(path, f"the file shares this object with {first}, a fresh learner "
                                 "does not")
        return fresh

    def _items(self, fresh: Any, node: dict, path: str) -> list:
        items = node.get("items")
        if not isinstance(items, list):
            raise Mismatch(path, "a container without items")
        old = list(fresh) if isinstance(fresh, (list, tuple, deque)) else []
        return [self.value(old[i] if i < len(old) else None, n, f"{path}[{i}]")
                for i, n in enumerate(items)]

    def _list(self, fresh: Any, node: dict, path: str) -> list:
        self._expect(fresh, node, path)
        items = self._items(fresh, node, path)
        if fresh is None:
            return items
        fresh[:] = items
        return fresh

    def _tuple(self, fresh: Any, node: dict, path: str) -> tuple:
        self._expect(fresh, node, path)
        items = self._items(fresh, node, path)
        return tuple(items) if type(fresh) in (tuple, type(None)) else type(fresh)(*items)

    def _deque(self, fresh: Any, node: dict, path: str) -> deque:
        self._expect(fresh, node, path)
        items = self._items(fresh, node, path)
        if fresh is None:
            return deque(items)
        fresh.clear()
        fresh.extend(items)
        return fresh

    def _set(self, fresh: Any, node: dict, path: str) -> set:
        self._expect(fresh, node, path)
        try:
            return set(self._items(None, node, path))
        except TypeError as exc:
            raise Mismatch(path, f"a set of unhashable items ({exc})") from None

    def _frozenset(self, fresh: Any, node: dict, path: str) -> frozenset:
        return frozenset(self._set(None if fresh is None else set(fresh),
                                   {**node, "cls": class_name(set())}, path))

    def _dict(self, fresh: Any, node: dict, path: str) -> dict:
        self._expect(fresh, node, path)
        pairs = node.get("items")
        if not isinstance(pairs, list) or not all(isinstance(p, list) and len(p) == 2
                                                  for p in pairs):
            raise Mismatch(path, "a dict without [key, value] pairs")
        out = {}
        for knode, vnode in pairs:
            key = self.value(None, knode, f"{path} key")
            try:
                old = fresh.get(key) if fresh is not None else None
            except TypeError:
                raise Mismatch(path, f"an unhashable dict key {key!r}") from None
            out[key] = self.value(old, vnode, f"{path}[{key!r}]")
        if fresh is None:
            return _plain_dict(node, out, path)
        fresh.clear()
        fresh.update(out)
        return fresh

    def _obj(self, fresh: Any, node: dict, path: str) -> Any:
        self._expect(fresh, node, path, allow_none=False)
        self.loaded[path] = fresh
        attrs = node.get("attrs")
        if not isinstance(attrs, dict):
            raise Mismatch(path, "an object without attributes")
        missing = next((k for k in vars(fresh) if k not in attrs), None)
        if missing is not None:
            raise Mismatch(path, f"the file lacks attribute {missing!r}")
        for k, sub in attrs.items():     # one set after construction is data (or refused)
            object.__setattr__(fresh, k, self.value(vars(fresh).get(k), sub, f"{path}.{k}"))
        return fresh

    def _torchobj(self, fresh: Any, node: dict, path: str) -> Any:
        import torch

        self._expect(fresh, node, path, allow_none=False)
        self.loaded[path] = fresh
        if isinstance(fresh, torch.nn.Module):
            self._module(fresh, node.get("state"), f"{path}.state_dict()")
        else:
            state = self.value(None, node.get("state"), f"{path}.state_dict()")
            try:
                fresh.load_state_dict(state)
            except (KeyError, ValueError, TypeError, IndexError, RuntimeError) as exc:
                raise Mismatch(path, f"the optimiser refused its state: {exc}") from None
        attrs = node.get("attrs")
        if not isinstance(attrs, dict):
            raise Mismatch(path, "a torch object without attributes")
        for k, sub in attrs.items():
            if k.startswith("_") or k not in vars(fresh):
                raise Mismatch(path, f"the file has attribute {k!r}, a fresh learner does not")
            value = self.value(vars(fresh)[k], sub, f"{path}.{k}")
            if k == "training" and isinstance(fresh, torch.nn.Module):
                fresh.train(bool(value))
            else:
                setattr(fresh, k, value)
        return fresh

    def _module(self, fresh: Any, node: Any, path: str) -> None:
        """A module's parameters and buffers, copied into the fresh module's own tensors."""
        own = fresh.state_dict()
        pairs = node.get("items") if isinstance(node, dict) else None
        if not isinstance(pairs, list) or not all(isinstance(p, list) and len(p) == 2
                                                  for p in pairs):
            raise Mismatch(path, "a module without its state")
        names = [p[0] for p in pairs]
        if names != list(own):
            first = next((a for a, b in zip(names, own) if a != b), None) or \
                (names[len(own)] if len(names) > len(own) else list(own)[len(names)])
            raise Mismatch(path, f"the file's parameters differ from a fresh learner's "
                                 f"(first: {first!r})")
        for name, sub in pairs:
            self.value(own[name], sub, f"{path}[{name!r}]")

    def _rng(self, fresh: Any, node: dict, path: str, cls: type, setter: str,
             is_tuple: bool = False) -> Any:
        if not isinstance(fresh, cls):
            raise Mismatch(path, f"the file has a {cls.__name__}, a fresh learner "
                                 f"{_describe(fresh)}")
        self.loaded[path] = fresh
        state = self.value(None, node.get("state"), f"{path}.state")
        try:
            if setter == "bit_generator":
                fresh.bit_generator.state = state
            else:
                getattr(fresh, setter)(state)
        except (KeyError, ValueError, TypeError, IndexError, RuntimeError) as exc:
            raise Mismatch(path, f"not a state of a {cls.__name__}: {exc}") from None
        return fresh

    def _npgen(self, fresh: Any, node: dict, path: str) -> Any:
        return self._rng(fresh, node, path, np.random.Generator, "bit_generator")

    def _nprs(self, fresh: Any, node: dict, path: str) -> Any:
        return self._rng(fresh, node, path, np.random.RandomState, "set_state")

    def _pyrandom(self, fresh: Any, node: dict, path: str) -> Any:
        import random

        return self._rng(fresh, node, path, random.Random, "setstate")

    def _torchgen(self, fresh: Any, node: dict, path: str) -> Any:
        import torch

        return self._rng(fresh, node, path, torch.Generator, "set_state")


def load_into(fresh: Any, skeleton: Any, arrays: Any, path: str = "") -> Any:
    """``fresh`` with the saved values of ``skeleton``/``arrays`` (or ``Mismatch``)."""
    return _Loader(arrays).value(fresh, skeleton, path)
