"""The real semiring: ordinary gradients."""

from __future__ import annotations

from typing import Any

from .base import Array, Semiring, _xp, register_semiring


@register_semiring
class Real(Semiring):
    """(ℝ, +, ×, 0, 1): the path sum Σ_paths Π w is the gradient.

    Lift: the signed local derivative itself. Readout: d output / d input.
    ``vecmat`` is a BLAS matmul; RowJacobian ops use their closed-form VJPs.
    Reference: backpropagation as path sums (Griewank & Walther, *Evaluating
    Derivatives*, 2008, §3).
    """

    name = "real"
    use_vjp = True

    def zeros(self, xp: Any, shape: tuple[int, ...], dtype: Any) -> Array:
        """Zeros."""
        return xp.zeros(shape, dtype=dtype)

    def ones(self, xp: Any, shape: tuple[int, ...], dtype: Any) -> Array:
        """Ones."""
        return xp.ones(shape, dtype=dtype)

    def lift(self, w: Array) -> Array:
        """The signed weight itself."""
        return w

    def plus(self, a: Array, b: Array) -> Array:
        """a + b."""
        return a + b

    def times(self, a: Array, b: Array) -> Array:
        """a × b."""
        return a * b

    def sum(self, a: Array, axes: tuple[int, ...], keepdims: bool = False) -> Array:
        """Σ over axes."""
        return a.sum(axis=axes, keepdims=keepdims)

    def edge(self, a: Array, src: Array | None, w: Array | None) -> tuple[Array, None]:
        """a × w."""
        return (a if w is None else a * w), None

    def scatter(self, a: Array, src: Array | None, index: Array, size: int) -> tuple[Array, None]:
        """Scatter-add (``ufunc.at``, in the values' dtype: no table-sized float64 temporary)."""
        xp = _xp(a)
        out = xp.zeros((size,) + a.shape[1:], dtype=a.dtype)
        xp.add.at(out, index, a)
        return out, None

    def vecmat(self, a: Array, src: Array | None, W: Array) -> tuple[Array, None]:
        """a @ Wᵀ (BLAS)."""
        xp = _xp(a)
        return xp.matmul(blas_ready(xp, a), blas_ready(xp, xp.swapaxes(W, -1, -2))), None


def blas_ready(xp: Any, x: Array) -> Array:
    """``x`` itself if each of its matrices has a unit stride in one of its last two axes, else a C copy.

    numpy's matmul hands such operands to BLAS; others (e.g. a batch folded into the
    contraction axis by a transpose) would go through a slow non-BLAS loop.
    """
    if x.ndim < 2 or x.flags.c_contiguous or x.flags.f_contiguous:
        return x
    item = x.itemsize
    s1, s2 = x.strides[-2], x.strides[-1]
    if (s2 == item and s1 >= x.shape[-1] * item) or (s1 == item and s2 >= x.shape[-2] * item):
        return x
    return xp.ascontiguousarray(x)
