"""Elementwise primitives: each output element has one edge to the matching element of each input.

| op | edge weight(s) |
|---|---|
| add / sub | 1 / (1, -1) |
| mul / div | (b, a) / (1/b, -a/b²) |
| neg, pow(x, p), square, sqrt, exp, log | -1, p·x^(p-1), 2x, 1/(2√x), eˣ, 1/x |
| abs, tanh, sigmoid | sign(x), 1-tanh², σ(1-σ) |
| relu, leaky_relu(slope) | [x>0], 1 or slope |
| maximum / minimum | 1 to the larger / smaller operand (½ each on ties, as torch) |
| where(c, a, b), masked_fill(x, m, v) | c / ¬c to a / b; ¬m to x |
| clip(x, lo, hi) | [lo ≤ x ≤ hi] |
| astype | 1 |

``square(x)`` is one edge per element; ``x * x`` is two (one per operand).
Broadcasting is fan-out: a broadcast operand element has one edge per use.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..tensor import Tensor
from ._core import ARG_HINTS, broadcast_shapes, check_operand, data, record, register, xp
from .structures import Elementwise


def _shape(x: Any) -> tuple[int, ...]:
    return tuple(getattr(x, "shape", ()))


def _binary(op: str, a: Any, b: Any, f: Any, da: Any, db: Any) -> Tensor:
    """Record ``f(a, b)`` with edge weights ``da()`` and ``db()`` (thunks, called at backward)."""
    check_operand(op, "a", a)
    check_operand(op, "b", b)
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        raise TypeError(f"{op}: at least one operand must be a Tensor")
    m = xp(op, a, b)
    broadcast_shapes(op, _shape(data(a)), _shape(data(b)))
    out = f(m, data(a), data(b))
    return record(
        op,
        out,
        [a, b],
        lambda: [Elementwise(da(m), _shape(data(a))), Elementwise(db(m), _shape(data(b)))],
    )


def _unary(op: str, x: Tensor, out: Any, d: Any) -> Tensor:
    """Record a unary op whose edge weights are computed by the thunk ``d``."""
    return record(op, out, [x], lambda: [Elementwise(d(), x.shape)])


@register
def add(a: Any, b: Any) -> Tensor:
    """a + b (broadcasting). Edges: weight 1 to each operand."""
    return _binary("add", a, b, lambda m, x, y: x + y, lambda m: None, lambda m: None)


@register
def sub(a: Any, b: Any) -> Tensor:
    """a - b (broadcasting). Edges: 1 to a, -1 to b."""
    return _binary("sub", a, b, lambda m, x, y: x - y, lambda m: None, lambda m: -1.0)


@register
def mul(a: Any, b: Any) -> Tensor:
    """a * b (broadcasting). Edges: b to a, a to b."""
    return _binary("mul", a, b, lambda m, x, y: x * y, lambda m: data(b), lambda m: data(a))


@register
def div(a: Any, b: Any) -> Tensor:
    """a / b (broadcasting). Edges: 1/b to a, -a/b² to b."""
    return _binary(
        "div",
        a,
        b,
        lambda m, x, y: x / y,
        lambda m: 1.0 / data(b),
        lambda m: -data(a) / (data(b) * data(b)),
    )


@register
def maximum(a: Any, b: Any) -> Tensor:
    """Elementwise max of two tensors. Edge 1 to the larger operand; ½ each on ties (as torch)."""

    def w(m: Any, first: bool) -> Any:
        x, y = data(a), data(b)
        gt = (x > y) if first else (y > x)
        return gt + 0.5 * (x == y)

    return _binary("maximum", a, b, lambda m, x, y: m.maximum(x, y), lambda m: w(m, True), lambda m: w(m, False))


@register
def minimum(a: Any, b: Any) -> Tensor:
    """Elementwise min of two tensors. Edge 1 to the smaller operand; ½ each on ties (as torch)."""

    def w(m: Any, first: bool) -> Any:
        x, y = data(a), data(b)
        lt = (x < y) if first else (y < x)
        return lt + 0.5 * (x == y)

    return _binary("minimum", a, b, lambda m, x, y: m.minimum(x, y), lambda m: w(m, True), lambda m: w(m, False))


@register
def neg(x: Tensor) -> Tensor:
    """-x. Edge weight -1."""
    return _unary("neg", x, -x.data, lambda: -1.0)


@register
def pow(x: Tensor, p: float) -> Tensor:  # noqa: A001
    """x ** p for a scalar exponent p. Edge weight p·x^(p-1)."""
    p = float(p)
    return _unary("pow", x, x.data**p, lambda: p * x.data ** (p - 1.0))


ARG_HINTS["pow", "p"] = "the exponent is a scalar: for a Tensor exponent use exp(p * log(x))"


@register
def square(x: Tensor) -> Tensor:
    """x². One edge per element, weight 2x (``x * x`` would be two edges)."""
    return _unary("square", x, x.data * x.data, lambda: 2.0 * x.data)


@register
def sqrt(x: Tensor) -> Tensor:
    """√x. Edge weight 1/(2√x)."""
    out = xp("sqrt", x).sqrt(x.data)
    return _unary("sqrt", x, out, lambda: 0.5 / out)


@register
def exp(x: Tensor) -> Tensor:
    """eˣ. Edge weight eˣ."""
    out = xp("exp", x).exp(x.data)
    return _unary("exp", x, out, lambda: out)


@register
def log(x: Tensor) -> Tensor:
    """Natural log. Edge weight 1/x."""
    return _unary("log", x, xp("log", x).log(x.data), lambda: 1.0 / x.data)


@register
def abs(x: Tensor) -> Tensor:  # noqa: A001
    """|x|. Edge weight sign(x) (0 at 0, so no edge there)."""
    m = xp("abs", x)
    return _unary("abs", x, m.abs(x.data), lambda: m.sign(x.data))


@register
def tanh(x: Tensor) -> Tensor:
    """tanh(x). Edge weight 1 - tanh²(x)."""
    out = xp("tanh", x).tanh(x.data)
    return _unary("tanh", x, out, lambda: 1.0 - out * out)


@register
def sigmoid(x: Tensor) -> Tensor:
    """1 / (1 + e⁻ˣ), computed stably. Edge weight σ(1-σ)."""
    m = xp("sigmoid", x)
    z = m.exp(-m.abs(x.data))
    out = m.where(x.data >= 0, 1.0 / (1.0 + z), z / (1.0 + z)).astype(x.dtype, copy=False)
    return _unary("sigmoid", x, out, lambda: out * (1.0 - out))


@register
def relu(x: Tensor) -> Tensor:
    """max(x, 0). Edge weight 1 where x > 0, else no edge."""
    pos = x.data > 0
    return _unary("relu", x, x.data * pos, lambda: pos.astype(x.dtype))


@register
def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    """x if x > 0 else slope·x. Edge weight 1 or ``negative_slope``."""
    m = xp("leaky_relu", x)
    pos = x.data > 0
    out = m.where(pos, x.data, x.data * negative_slope).astype(x.dtype, copy=False)
    return _unary("leaky_relu", x, out, lambda: m.where(pos, 1.0, negative_slope).astype(x.dtype))


@register
def clip(x: Tensor, lo: float | None = None, hi: float | None = None) -> Tensor:
    """Clamp to [lo, hi]. Edge weight 1 where lo ≤ x ≤ hi (inclusive, as torch.clamp)."""
    m = xp("clip", x)
    out = m.clip(x.data, lo, hi)

    def d() -> Any:
        keep = m.ones(x.shape, dtype=bool)
        if lo is not None:
            keep &= x.data >= lo
        if hi is not None:
            keep &= x.data <= hi
        return keep.astype(x.dtype)

    return _unary("clip", x, out, d)


@register
def where(cond: Any, a: Any, b: Any) -> Tensor:
    """``a`` where ``cond`` else ``b`` (broadcasting). Edges: [cond] to a, [¬cond] to b."""
    for name, v in (("cond", cond), ("a", a), ("b", b)):
        check_operand("where", name, v)
    c = data(cond)
    m = xp("where", c, a, b)
    c = m.asarray(c).astype(bool, copy=False)  # a non-bool condition means != 0 (and ~c must be logical)
    broadcast_shapes("where", _shape(c), _shape(data(a)), _shape(data(b)))
    out = m.where(c, data(a), data(b))
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        out = out.astype(m.result_type(a.dtype, b.dtype), copy=False)
    return record(
        "where",
        out,
        [a, b],
        lambda: [
            Elementwise(c.astype(out.dtype), _shape(data(a))),
            Elementwise((~c).astype(out.dtype), _shape(data(b))),
        ],
    )


@register
def masked_fill(x: Tensor, mask: Any, value: float) -> Tensor:
    """``value`` where ``mask`` is true, else x. Edge weight [¬mask]."""
    check_operand("masked_fill", "mask", mask)
    mk = data(mask)
    m = xp("masked_fill", x, mk)
    mk = m.asarray(mk).astype(bool, copy=False)  # a non-bool mask means != 0 (and ~mk must be logical)
    shp = broadcast_shapes("masked_fill", x.shape, _shape(mk))
    if shp != x.shape:
        raise ValueError(f"masked_fill: mask of shape {_shape(mk)} does not broadcast to the tensor's shape {x.shape}")
    out = m.where(mk, m.asarray(value, dtype=x.dtype), x.data)
    return _unary("masked_fill", x, out, lambda: (~mk).astype(x.dtype))


@register
def astype(x: Tensor, dtype: Any) -> Tensor:
    """Cast to ``dtype``. Edge weight 1."""
    try:
        dt = np.dtype(dtype)
    except TypeError as e:
        raise TypeError(f"astype: {dtype!r} is not a dtype ({e})") from None
    return _unary("astype", x, x.data.astype(dt), lambda: None)
