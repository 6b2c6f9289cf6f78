"""Module and Parameter: the tree of named sub-modules and parameters, state dicts, module paths on the tape.

A module's *path* is its dotted name from the root module that is being called
(the same name as its ``state_dict`` prefix, e.g. ``encoder.layer.3.attention.self.key``;
the root's path is ``""``). ``Module.__call__`` records it with
:func:`semitorch.tape.module_scope`, so every tape node knows which module made it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import numpy as np

from .. import backend
from ..tape import current_module, module_scope
from ..tensor import Tensor


class Parameter(Tensor):
    """A leaf tensor that a :class:`Module` owns and an optimizer updates (requires_grad=True)."""

    __slots__ = ()

    def __init__(self, data: Any, requires_grad: bool = True) -> None:
        if isinstance(data, Tensor):
            data = data.data
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self) -> str:
        return "Parameter(" + super().__repr__() + ")"


class StateDictError(ValueError):
    """A state dict does not fit a module: missing/unexpected keys, a shape or dtype mismatch."""


class LoadResult(NamedTuple):
    """What :meth:`Module.load_state_dict` did not match (empty lists after a strict load)."""

    missing_keys: list[str]
    unexpected_keys: list[str]


_calls = threading.local()


def _call_stack() -> list[tuple[str, dict[int, str]]]:
    if not hasattr(_calls, "stack"):
        _calls.stack = []
    return _calls.stack


class Module:
    """Base class of layers and models: sub-modules and parameters assigned as attributes are registered.

    Subclasses define ``forward``; call the module (``m(x)``), not ``forward``, so
    that its path is recorded on the tape.
    """

    training: bool

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "training", True)

    # ---- registration ------------------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}: call Module.__init__() before assigning {name!r}")
        params, mods = self.__dict__["_parameters"], self.__dict__["_modules"]
        params.pop(name, None)
        mods.pop(name, None)
        if isinstance(value, Parameter):
            params[name] = value
        elif isinstance(value, Module):
            mods[name] = value
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        self.__dict__["_parameters"].pop(name, None)
        self.__dict__["_modules"].pop(name, None)
        object.__delattr__(self, name)

    # ---- calling -----------------------------------------------------------------------
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The computation; subclasses override it."""
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        stack = _call_stack()
        if stack:  # a call inside another module: look the path up in the root's name table
            names = stack[-1][1]
            path = names.get(id(self), current_module())
        else:  # the root of this call: its path is ""
            names = {id(m): n for n, m in self.named_modules()}
            path = ""
        stack.append((path, names))
        try:
            with module_scope(path):
                return self.forward(*args, **kwargs)
        finally:
            stack.pop()

    # ---- the tree ----------------------------------------------------------------------
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """(dotted name, module) for this module (name ``prefix``) and every descendant, each once."""
        seen: set[int] = set()
        todo: list[tuple[str, Module]] = [(prefix, self)]
        while todo:
            name, m = todo.pop()
            if id(m) in seen:
                continue
            seen.add(id(m))
            yield name, m
            kids = [(f"{name}.{k}" if name else k, c) for k, c in m._modules.items()]
            todo.extend(reversed(kids))

    def modules(self) -> Iterator[Module]:
        """This module and every descendant."""
        for _, m in self.named_modules():
            yield m

    def children(self) -> Iterator[Module]:
        """The direct sub-modules."""
        yield from self._modules.values()

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """(dotted name, parameter) for every parameter; a shared (tied) parameter appears once, first name wins."""
        seen: set[int] = set()
        for mname, m in self.named_modules(prefix):
            for pname, p in m._parameters.items():
                if id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{mname}.{pname}" if mname else pname), p

    def parameters(self) -> Iterator[Parameter]:
        """Every parameter once (tied parameters are not repeated)."""
        for _, p in self.named_parameters():
            yield p

    # ---- modes and devices -------------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        """Set training mode (dropout active) on this module and all descendants; returns self."""
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self) -> Module:
        """Evaluation mode (dropout off); returns self."""
        return self.train(False)

    def to(self, device: str) -> Module:
        """Move every parameter's data to ``device`` ('cpu' or 'cuda'); returns self."""
        for p in self.parameters():
            p.data = backend.to_device(p.data, device)
        return self

    def astype(self, dtype: Any) -> Module:
        """Cast every parameter to the float ``dtype`` (e.g. ``np.float64``); returns self."""
        dt = np.dtype(dtype)
        if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise TypeError(f"{type(self).__name__}.astype: parameters must be float32 or float64, got {dt}")
        for p in self.parameters():
            p.data = p.data.astype(dt)
        return self

    def zero_grad(self) -> None:
        """Drop every parameter's ``.grad``."""
        for p in self.parameters():
            p.grad = None

    # ---- state dicts -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Parameter arrays by dotted name (sharing memory with the parameters, as torch does).

        Tied parameters appear once, under their first name.
        """
        return {k: p.data for k, p in self.named_parameters()}

    def load_state_dict(self, state: Mapping[str, Any], strict: bool = True) -> LoadResult:
        """Copy arrays from ``state`` into the parameters of the same names.

        Everything is checked before anything is assigned, so a failed load leaves
        the weights untouched. With ``strict`` missing or unexpected keys are an
        error listing them; otherwise the matching keys load and the rest are
        returned. A shape mismatch is always an error naming the key and both
        shapes. Values are cast to each parameter's dtype.
        """
        if not isinstance(state, Mapping):
            raise TypeError(
                f"{type(self).__name__}.load_state_dict: state must be a mapping of names to arrays, "
                f"got {type(state).__name__}"
            )
        params = dict(self.named_parameters())
        missing = [k for k in params if k not in state]
        unexpected = [k for k in state if k not in params]
        if strict and (missing or unexpected):
            raise StateDictError(_key_report(type(self).__name__, missing, unexpected))
        new: list[tuple[Parameter, Any]] = []
        for k, p in params.items():
            if k not in state:
                continue
            v = state[k]
            v = v.data if isinstance(v, Tensor) else v
            shape = tuple(getattr(v, "shape", ()))
            if shape != p.shape:
                raise StateDictError(
                    f"{type(self).__name__}.load_state_dict: key {k!r} has shape {shape} in the state dict "
                    f"but the model's parameter has shape {p.shape}"
                )
            kind = getattr(getattr(v, "dtype", None), "kind", None)
            if kind not in ("f", "i", "u"):
                raise StateDictError(
                    f"{type(self).__name__}.load_state_dict: key {k!r} has dtype "
                    f"{getattr(v, 'dtype', type(v).__name__)}, expected a numeric array"
                )
            xp = backend.xp_of(p.data)
            new.append((p, xp.array(backend.to_numpy(v) if xp is np else v, dtype=p.dtype)))  # always a copy
        for p, arr in new:
            p.data = arr
        return LoadResult(missing, unexpected)

    # ---- printing ----------------------------------------------------------------------
    def extra_repr(self) -> str:
        """One line of the module's own settings for ``repr``."""
        return ""

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for k, m in self._modules.items():
            sub = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({k}): {sub}")
        if len(lines) == 1:
            return lines[0] + ")"
        return "\n".join(lines) + "\n)"


def _key_report(owner: str, missing: list[str], unexpected: list[str]) -> str:
    """An error message listing missing and unexpected keys."""
    parts = [f"{owner}: the state dict does not match the model"]
    if missing:
        parts.append(f"missing keys ({len(missing)}): {', '.join(missing)}")
    if unexpected:
        parts.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected)}")
    parts.append("(pass strict=False to load the matching keys anyway)")
    return "; ".join(parts)
