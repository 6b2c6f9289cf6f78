"""Shape and indexing primitives: every edge has weight 1; the adjoint is moved, gathered or scatter-⊕'d.

| op | structure |
|---|---|
| reshape, expand_dims, squeeze, transpose, swapaxes, concat, stack | Take (each input element: one edge) |
| broadcast_to | Elementwise with weight 1 (fan-out; ⊕-reduced back) |
| getitem (ints, slices, None, Ellipsis, integer arrays, boolean masks) | Scatter (repeated integer indices fan out) |
| split | composed of getitem slices |
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..tensor import Tensor
from ._core import broadcast_shapes, data, int_tuple, norm_axes, record, register, xp
from .structures import Elementwise, Scatter, Take


@register
def reshape(x: Tensor, shape: Any) -> Tensor:
    """Reshape (one -1 allowed). Edges: weight 1, element to element in C order."""
    shape = int_tuple(shape, "reshape", "shape")
    try:
        out = x.data.reshape(shape)
    except ValueError:
        msg = f"reshape: cannot reshape a tensor of shape {x.shape} ({x.size} elements) to {shape}"
        raise ValueError(msg) from None
    in_shape, nd = x.shape, out.ndim
    return record("reshape", out, [x], lambda: [Take(lambda a: a.reshape(in_shape + a.shape[nd:]))])


@register
def expand_dims(x: Tensor, axis: Any) -> Tensor:
    """Insert size-1 axes at ``axis``. Edges: weight 1."""
    m = xp("expand_dims", x)
    try:
        out = m.expand_dims(x.data, axis)
    except Exception as e:
        raise ValueError(f"expand_dims: invalid axis {axis} for a tensor of shape {x.shape}") from e
    in_shape, nd = x.shape, out.ndim
    return record("expand_dims", out, [x], lambda: [Take(lambda a: a.reshape(in_shape + a.shape[nd:]))])


@register
def squeeze(x: Tensor, axis: Any = None) -> Tensor:
    """Remove size-1 axes (all, or those in ``axis``). Edges: weight 1."""
    axes = tuple(i for i, s in enumerate(x.shape) if s == 1) if axis is None else norm_axes(axis, x.ndim, "squeeze")
    for a in axes:
        if x.shape[a] != 1:
            raise ValueError(f"squeeze: axis {a} of shape {x.shape} has size {x.shape[a]}, not 1")
    out = x.data.reshape(tuple(s for i, s in enumerate(x.shape) if i not in axes))
    in_shape, nd = x.shape, out.ndim
    return record("squeeze", out, [x], lambda: [Take(lambda a: a.reshape(in_shape + a.shape[nd:]))])


@register
def transpose(x: Tensor, axes: Any = None) -> Tensor:
    """Permute axes (None: reverse them). Edges: weight 1."""
    nd = x.ndim
    if axes is not None:
        axes = int_tuple(axes, "transpose", "axes")
    if axes is not None and any(not -nd <= int(a) < nd for a in axes):
        raise ValueError(f"transpose: axes {tuple(axes)} are out of range for a tensor of shape {x.shape}")
    perm = tuple(range(nd))[::-1] if axes is None else tuple(int(a) % max(nd, 1) for a in axes)
    if sorted(perm) != list(range(nd)):
        raise ValueError(f"transpose: {axes} is not a permutation of the {nd} axes of shape {x.shape}")
    out = x.data.transpose(perm)
    inv = tuple(int(i) for i in np.argsort(perm))
    return record("transpose", out, [x], lambda: [Take(lambda a: a.transpose(inv + tuple(range(nd, a.ndim))))])


@register
def swapaxes(x: Tensor, axis1: int, axis2: int) -> Tensor:
    """Swap two axes (a transpose). Edges: weight 1."""
    for ax in (axis1, axis2):
        if not -x.ndim <= ax < x.ndim:
            raise ValueError(f"swapaxes: axis {ax} is out of range for a tensor of shape {x.shape}")
    perm = list(range(x.ndim))
    a, b = axis1 % x.ndim, axis2 % x.ndim
    perm[a], perm[b] = perm[b], perm[a]
    return transpose(x, perm)


def permute(x: Tensor, *axes: int) -> Tensor:
    """torch-style alias of :func:`transpose` with explicit axes."""
    return transpose(x, axes)


@register
def broadcast_to(x: Tensor, shape: Sequence[int]) -> Tensor:
    """Broadcast to ``shape``. Edges: weight 1 from each element to each of its copies (fan-out)."""
    shape = int_tuple(shape, "broadcast_to", "shape")
    if broadcast_shapes("broadcast_to", x.shape, shape) != shape:
        raise ValueError(f"broadcast_to: shape {x.shape} cannot be broadcast to {shape}")
    out = xp("broadcast_to", x).broadcast_to(x.data, shape)
    return record("broadcast_to", out, [x], lambda: [Elementwise(None, x.shape)])


def _is_basic(idx: tuple[Any, ...]) -> bool:
    return all(isinstance(i, (int, np.integer, slice)) for i in idx)


@register
def getitem(x: Tensor, idx: Any) -> Tensor:
    """x[idx] with numpy indexing. Edges: weight 1 from the indexed element to each output element."""
    if isinstance(idx, Tensor):
        idx = idx.data
    if isinstance(idx, tuple):
        idx = tuple(i.data if isinstance(i, Tensor) else i for i in idx)
    m = xp("getitem", x)
    try:
        out = x.data[idx]
    except IndexError as e:
        raise IndexError(f"getitem: index {idx!r} is invalid for a tensor of shape {x.shape}: {e}") from None
    if not hasattr(out, "shape"):
        out = m.asarray(out)
    tup = idx if isinstance(idx, tuple) else (idx,)
    if _is_basic(tup) and len(tup) <= x.ndim:
        # each input element feeds at most one output: scatter is a plain assignment
        in_shape = x.shape

        def s() -> list[Any]:
            return [Scatter(None, in_shape, True, tup)]
    else:

        def s() -> list[Any]:
            flat = m.arange(x.size).reshape(x.shape)[idx]
            unique = int(m.unique(flat).size) == int(flat.size)
            return [Scatter(flat, x.shape, unique)]

    return record("getitem", out, [x], s)


@register
def concat(xs: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Concatenate along ``axis``. Edges: weight 1, each element to its place."""
    xs = list(xs)
    if not xs:
        raise ValueError("concat: needs at least one tensor")
    m = xp("concat", *xs)
    nd = xs[0].ndim
    if not -nd <= int(axis) < nd:
        raise ValueError(f"concat: axis {axis} is out of range for tensors of shape {xs[0].shape}")
    ax = int(axis) % max(nd, 1)
    for t in xs:
        if t.ndim != nd or any(t.shape[i] != xs[0].shape[i] for i in range(nd) if i != ax):
            raise ValueError(f"concat: shapes {[t.shape for t in xs]} differ outside axis {axis}")
    out = m.concatenate([data(t) for t in xs], axis=ax)
    bounds = np.cumsum([0] + [t.shape[ax] for t in xs])

    def part(i: int) -> Take:
        sl = (slice(None),) * ax + (slice(int(bounds[i]), int(bounds[i + 1])),)
        return Take(lambda a: a[sl])

    return record("concat", out, xs, lambda: [part(i) for i in range(len(xs))])


@register
def stack(xs: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Stack along a new ``axis``. Edges: weight 1."""
    xs = list(xs)
    if not xs:
        raise ValueError("stack: needs at least one tensor")
    m = xp("stack", *xs)
    if len({t.shape for t in xs}) != 1:
        raise ValueError(f"stack: all shapes must be equal, got {[t.shape for t in xs]}")
    if not -xs[0].ndim - 1 <= int(axis) <= xs[0].ndim:
        raise ValueError(f"stack: axis {axis} is out of range for stacking tensors of shape {xs[0].shape}")
    out = m.stack([data(t) for t in xs], axis=axis)
    ax = int(axis) % out.ndim

    def part(i: int) -> Take:
        sl = (slice(None),) * ax + (i,)
        return Take(lambda a: a[sl])

    return record("stack", out, xs, lambda: [part(i) for i in range(len(xs))])


def split(x: Tensor, indices_or_sections: Any, axis: int = 0) -> list[Tensor]:
    """Split like ``numpy.split`` (composed of getitem slices, so each part is one weight-1 Scatter)."""
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"split: axis {axis} is out of range for a tensor of shape {x.shape}")
    n = x.shape[axis]
    ax = axis % x.ndim
    if isinstance(indices_or_sections, (int, np.integer)):
        k = int(indices_or_sections)
        if k <= 0 or n % k:
            raise ValueError(f"split: axis {axis} of size {n} (shape {x.shape}) does not divide into {k} equal parts")
        cuts = [n // k * i for i in range(1, k)]
    else:
        cuts = [int(c) for c in indices_or_sections]
    edges = [0] + cuts + [n]
    pre = (slice(None),) * ax
    return [getitem(x, pre + (slice(edges[i], edges[i + 1]),)) for i in range(len(edges) - 1)]
