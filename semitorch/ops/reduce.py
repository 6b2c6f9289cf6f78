"""Reductions.

| op | edges |
|---|---|
| sum | weight 1 from every element to its sum (fan-in) |
| mean | weight 1/n |
| max | weight 1 to the arg-max element only (ties: lowest index, in C order over the reduced axes) |
| logsumexp | weight softmax(x) to every element (one fused primitive) |
"""

from __future__ import annotations

from typing import Any

from ..tensor import Tensor
from ._core import keepdims_shape, norm_axes, record, register, xp
from .structures import Elementwise, Take


def _expand_back(in_shape: tuple[int, ...], axes: tuple[int, ...], keepdims: bool) -> Any:
    """Gather function for reductions: broadcast the output adjoint back over ``axes``."""
    kshape = keepdims_shape(in_shape, axes)
    nd_out = len(in_shape) if keepdims else len(in_shape) - len(axes)

    def fn(a: Any) -> Any:
        extra = a.shape[nd_out:]
        m = xp("sum", a)
        return m.broadcast_to(a.reshape(kshape + extra), in_shape + extra)

    return fn


@register
def sum(x: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    """Sum over ``axis`` (None: all). Edges: weight 1 from each element to its sum."""
    axes = norm_axes(axis, x.ndim, "sum")
    out = x.data.sum(axis=axes, keepdims=keepdims)
    return record("sum", out, [x], lambda: [Take(_expand_back(x.shape, axes, keepdims))])


@register
def mean(x: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:
    """Mean over ``axis`` (None: all). Edges: weight 1/n from each element to its mean."""
    axes = norm_axes(axis, x.ndim, "mean")
    n = 1
    for a in axes:
        n *= x.shape[a]
    if n == 0:
        raise ValueError(f"mean: reducing axes {axes} of an empty tensor of shape {x.shape}")
    out = x.data.mean(axis=axes, keepdims=keepdims)
    return record("mean", out, [x], lambda: [Elementwise(1.0 / n, x.shape, keepdims_shape(x.shape, axes))])


def _argmax_onehot(x: Any, axes: tuple[int, ...]) -> Any:
    """One-hot (x's dtype) of the first arg-max over ``axes`` (C order), per remaining index."""
    m = xp("max", x)
    rest = [i for i in range(x.ndim) if i not in axes]
    moved = m.transpose(x, rest + list(axes))
    flat = moved.reshape(tuple(x.shape[i] for i in rest) + (-1,))
    idx = m.argmax(flat, axis=-1)
    onehot = m.zeros(flat.shape, dtype=x.dtype)
    m.put_along_axis(onehot, idx[..., None], 1.0, axis=-1)
    onehot = onehot.reshape(moved.shape)
    inv = [0] * x.ndim
    for i, p in enumerate(rest + list(axes)):
        inv[p] = i
    return m.transpose(onehot, inv)


@register
def max(x: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    """Max over ``axis``. Edge weight 1 to the arg-max element only (ties: lowest index).

    (torch's full reduction ``x.max()`` splits the gradient among ties; semitorch
    keeps one edge so that the element-level graph stays a set of paths.)
    """
    axes = norm_axes(axis, x.ndim, "max")
    if x.size == 0:
        raise ValueError(f"max: reducing an empty tensor of shape {x.shape}")
    out = x.data.max(axis=axes, keepdims=keepdims)
    return record(
        "max", out, [x], lambda: [Elementwise(_argmax_onehot(x.data, axes), x.shape, keepdims_shape(x.shape, axes))]
    )


@register
def logsumexp(x: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:
    """log Σ exp(x) over ``axis``, computed stably. One primitive: edge weight softmax(x)."""
    m = xp("logsumexp", x)
    axes = norm_axes(axis, x.ndim, "logsumexp")
    if any(x.shape[a] == 0 for a in axes):
        raise ValueError(f"logsumexp: reducing an empty axis of a tensor of shape {x.shape}")
    mx = x.data.max(axis=axes, keepdims=True)
    mx = m.where(m.isfinite(mx), mx, 0.0)
    e = m.exp(x.data - mx)
    s = e.sum(axis=axes, keepdims=True)
    out_k = m.log(s) + mx
    out = out_k if keepdims else out_k.reshape(tuple(d for i, d in enumerate(x.shape) if i not in axes))
    return record("logsumexp", out, [x], lambda: [Elementwise(e / s, x.shape, keepdims_shape(x.shape, axes))])
