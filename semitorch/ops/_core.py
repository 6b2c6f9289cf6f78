"""The op registry and the one helper that records an op's result on the tape."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import backend
from ..tape import Node, is_grad_enabled
from ..tensor import Tensor

OPS: dict[str, Callable[..., Any]] = {}
"""Every public op, by name (the name recorded on tape nodes)."""


def register(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``fn`` to :data:`OPS` under its name (a trailing underscore dropped)."""
    OPS[fn.__name__.rstrip("_")] = fn
    return fn


def data(x: Any) -> Any:
    """The raw array (or scalar) behind ``x``."""
    return x.data if isinstance(x, Tensor) else x


def as_tensor(x: Any) -> Tensor:
    """``x`` if it is a Tensor, else a constant leaf holding it."""
    return x if isinstance(x, Tensor) else Tensor(np.asarray(x))


def xp(op: str, *xs: Any) -> Any:
    """The array namespace of the operands; a cpu/cuda mix is an error naming ``op``."""
    try:
        return backend.xp_of(*(data(x) for x in xs))
    except ValueError as e:
        devs = ", ".join(
            f"{backend.device_of(data(x))} {tuple(getattr(data(x), 'shape', ()))}" for x in xs if x is not None
        )
        raise ValueError(f"{op}: operands are on different devices ({devs}); move them with .to(...)") from e


def broadcast_shapes(op: str, *shapes: tuple[int, ...]) -> tuple[int, ...]:
    """np.broadcast_shapes with an error that names the op and the shapes."""
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        raise ValueError(f"{op}: shapes {' and '.join(str(tuple(s)) for s in shapes)} are not broadcastable") from None


def record(op: str, out: Any, inputs: Sequence[Any], structures: Callable[[], Sequence[Any]]) -> Tensor:
    """Wrap the forward result ``out`` in a Tensor and, if any input needs grad, record a node.

    ``inputs`` may hold non-tensors (Python scalars, constant arrays); ``structures``
    is a thunk returning one structure per entry of ``inputs`` (entries for
    non-tensors are dropped).
    """
    if not is_grad_enabled() or not any(isinstance(x, Tensor) and x.requires_grad for x in inputs):
        return Tensor(out)
    keep = [i for i, x in enumerate(inputs) if isinstance(x, Tensor)]
    tensors = [inputs[i] for i in keep]
    if len(keep) == len(inputs):
        thunk = structures
    else:

        def thunk() -> list[Any]:
            s = structures()
            return [s[i] for i in keep]

    node = Node(op, tensors, thunk, tuple(out.shape), out.dtype)
    return Tensor(out, requires_grad=True, _node=node)


def norm_axes(axis: Any, ndim: int, op: str) -> tuple[int, ...]:
    """Normalise an ``axis`` argument (None, int or tuple) to sorted non-negative ints."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in axes:
        if not -ndim <= a < max(ndim, 1):
            raise ValueError(f"{op}: axis {a} is out of range for a tensor with {ndim} dims")
        out.append(int(a) % max(ndim, 1))
    if len(set(out)) != len(out):
        raise ValueError(f"{op}: repeated axis in {axis}")
    return tuple(sorted(out))


def keepdims_shape(shape: tuple[int, ...], axes: tuple[int, ...]) -> tuple[int, ...]:
    """``shape`` with the reduced ``axes`` kept as size 1."""
    return tuple(1 if i in axes else s for i, s in enumerate(shape))
