"""Path counting: the number of paths of nonzero weight (``Count``), and its logarithm (``LogCount``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import kernels
from .base import Array, Semiring, _xp, register_semiring
from .log import Log, dense_recheck, recheck_limit, rescaled_matmul


def _nonzero(w: Array, like: Array) -> Array:
    """[w ≠ 0] as float64 (``w`` may be a Python scalar)."""
    xp = _xp(like)
    return (xp.asarray(w) != 0).astype(xp.float64)


@register_semiring
class Count(Semiring):
    """The counting semiring: (⊕, ⊗, 0̄, 1̄) = (+, ×, 0, 1) on ℕ, in float64.

    Lift: an edge w becomes [w ≠ 0] (an edge of weight exactly 0 is no edge). A
    backward pass gives, for every input element, the number of paths to the output.
    Readout: that count (float64: exact up to 2⁵³; use :class:`LogCount` when counts
    overflow). ``vecmat`` is a BLAS matmul with the 0/1 pattern of W; the structured
    row Jacobians (layer_norm, softmax, log_softmax) are counted by
    :func:`semitorch.kernels.affine_count` without building them.
    Reference: Goodman, "Semiring Parsing", Computational Linguistics 1999 (the
    counting semiring).
    """

    name = "count"
    prep_key = "nonzero"
    fast_affine = True

    def __repr__(self) -> str:
        return "Count()"

    def value_dtype(self, dtype: Any) -> Any:
        """Always float64."""
        return np.dtype(np.float64)

    def zeros(self, xp: Any, shape: tuple[int, ...], dtype: Any) -> Array:
        """0."""
        return xp.zeros(shape, dtype=dtype)

    def ones(self, xp: Any, shape: tuple[int, ...], dtype: Any) -> Array:
        """1."""
        return xp.ones(shape, dtype=dtype)

    def lift(self, w: Array) -> Array:
        """[w ≠ 0]."""
        return _nonzero(w, w)

    def plus(self, a: Array, b: Array) -> Array:
        """a + b."""
        return a + b

    def times(self, a: Array, b: Array) -> Array:
        """a × b."""
        return a * b

    def sum(self, a: Array, axes: tuple[int, ...], keepdims: bool = False) -> Array:
        """Σ over ``axes``."""
        return a.sum(axis=tuple(axes), keepdims=keepdims) if axes else a

    def edge(self, a: Array, src: Array | None, w: Array | None) -> tuple[Array, None]:
        """a × [w ≠ 0]."""
        return (a if w is None else a * _nonzero(w, a)), None

    def accumulate(self, a: Array, sa: Array | None, b: Array, sb: Array | None) -> tuple[Array, None]:
        """a + b."""
        return a + b, None

    def scatter(self, a: Array, src: Array | None, index: Array, size: int) -> tuple[Array, None]:
        """Scatter-add."""
        xp = _xp(a)
        return xp.bincount(index, weights=a, minlength=size).astype(a.dtype, copy=False), None

    def vecmat(self, a: Array, src: Array | None, W: Array) -> tuple[Array, None]:
        """a @ [W ≠ 0]ᵀ (BLAS, float64)."""
        xp = _xp(a)
        return xp.matmul(a, xp.swapaxes(_nonzero(W, a), -1, -2)), None

    def prepare(self, W: Array) -> Array:
        """[W ≠ 0] as float64."""
        return _nonzero(W, W)

    def vecmat_prepared(self, a: Array, src: Array | None, P: Array) -> tuple[Array, None]:
        """a @ Pᵀ with P = [W ≠ 0]."""
        return _xp(a).matmul(a, _xp(a).swapaxes(P, -1, -2)), None

    def affine_vecmat(
        self, a: Array, src: Array | None, c: Array, D: Array, p: Array, u: Array, v: Array, logc: Array | None = None
    ) -> tuple[Array, None]:
        """out[r, k] = Σ_j a[r, j]·[c_j ≠ 0]·[q_jk ≠ 0] for J = c_j q_jk, by :func:`semitorch.kernels.affine_count`.

        q is formed in the op's dtype, as by the other semirings' structured kernels, so a
        Jacobian entry is an edge for Count exactly where it is one for Log or MaxProduct.
        """
        xp = _xp(a)
        g = xp.where(xp.asarray(c) != 0, a, 0).astype(a.dtype, copy=False)
        return kernels.affine_count(g, u, v, p, D), None


@register_semiring
class LogCount(Log):
    """The log of the counting semiring: (⊕, ⊗, 0̄, 1̄) = (logaddexp, +, −∞, 0) on ℝ ∪ {−∞}, in float64.

    Lift: an edge w becomes 0 (= log 1) if w ≠ 0, else −∞ (no edge). A backward pass
    gives log(number of paths) for every input element, which stays finite where
    :class:`Count` overflows. Readout: that log count (−∞ where no path). ``vecmat``
    is one rescaled BLAS matmul with the 0/1 pattern of W; structured row Jacobians go
    through :func:`semitorch.kernels.affine_count` on rescaled weights (the same edges as
    :class:`Count`'s).
    Reference: Goodman, "Semiring Parsing", 1999 (counting semiring, in log space).
    """

    name = "logcount"
    prep_key = "nonzero"
    fast_affine = True
    edge_key = None  # its lift is [w ≠ 0], not log|w|: nothing to share with Log

    def __repr__(self) -> str:
        return "LogCount()"

    def value_dtype(self, dtype: Any) -> Any:
        """Always float64."""
        return np.dtype(np.float64)

    def lift(self, w: Array) -> Array:
        """0 where w ≠ 0, −∞ where w = 0."""
        xp = _xp(w)
        return xp.where(xp.asarray(w) != 0, 0.0, -xp.inf)

    def edge(self, a: Array, src: Array | None, w: Array | None) -> tuple[Array, None]:
        """a where w ≠ 0, −∞ where w = 0."""
        if w is None:
            return a, None
        xp = _xp(a)
        return xp.where(xp.asarray(w) != 0, a, -xp.inf), None

    def vecmat(self, a: Array, src: Array | None, W: Array) -> tuple[Array, None]:
        """log(exp(a − max) @ [W ≠ 0]ᵀ) + max."""
        return rescaled_matmul(a, _nonzero(W, a)), None

    def prepare(self, W: Array) -> Array:
        """[W ≠ 0] as float64."""
        return _nonzero(W, W)

    def vecmat_prepared(self, a: Array, src: Array | None, P: Array) -> tuple[Array, None]:
        """log(exp(a − max) @ Pᵀ) + max with P = [W ≠ 0]."""
        return rescaled_matmul(a, P), None

    def affine_vecmat(
        self, a: Array, src: Array | None, c: Array, D: Array, p: Array, u: Array, v: Array, logc: Array | None = None
    ) -> tuple[Array, None]:
        """log Σ_j e^{a_j}·[c_j ≠ 0]·[q_jk ≠ 0] by :func:`semitorch.kernels.affine_count` on e^{a − max}.

        Rows whose results fall far below their shift (where underflowed terms could matter)
        are recomputed with the dense Jacobian, as for :class:`~semitorch.semirings.Log`.
        """
        xp = _xp(a)
        g, M = kernels.exp_shift(xp.where(xp.asarray(c) != 0, a, -xp.inf))
        out, low = kernels.log_shift_low(kernels.affine_count(g, u, v, p, D), M, recheck_limit(np.dtype(a.dtype)))
        return dense_recheck(self, out, None, M, a, None, c, D, p, u, v, low=low)[0], None
