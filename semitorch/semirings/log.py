"""The log semiring: the log of the path mass log Σ_paths Π|w|, and the log-space helpers other semirings share."""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from .. import kernels
from .base import Array, Semiring, _xp, register_semiring


def log_abs(w: Array, dtype: Any = None, like: Array | None = None) -> Array:
    """log|w| with −inf (no warning) where w is exactly 0: an edge of weight 0 is no edge.

    ``w`` may be a Python scalar; ``like`` (an array) then picks the array namespace.
    """
    xp = _xp(w if like is None else like)
    w = xp.asarray(w) if dtype is None else xp.asarray(w, dtype=dtype)
    out = xp.abs(w)
    with _Quiet(xp):
        if getattr(out, "ndim", 0) and out.dtype.kind == "f":
            return xp.log(out, out=out)  # in place: one temporary for large Jacobians
        return xp.log(out)


def finite_or_zero(m: Array) -> Array:
    """``m`` with non-finite entries (rows holding no path) replaced by 0: a safe rescaling shift."""
    xp = _xp(m)
    return xp.where(xp.isfinite(m), m, 0).astype(m.dtype, copy=False)


def move_last(a: Array, axes: tuple[int, ...], nv: int) -> tuple[Array, tuple[int, ...]]:
    """Move the structural ``axes`` of ``a`` to just before its ``nv`` value axes and flatten them into one.

    Returns the array of shape kept + (n,) + vshape and the kept structural shape.
    """
    nd = a.ndim - nv
    keep = [i for i in range(nd) if i not in axes]
    perm = keep + list(axes) + list(range(nd, a.ndim))
    kept = tuple(a.shape[i] for i in keep)
    vsh = tuple(a.shape[nd:])
    n = 1
    for i in axes:
        n *= a.shape[i]
    return a.transpose(perm).reshape(kept + (n,) + vsh), kept


def keep_shape(shape: tuple[int, ...], axes: tuple[int, ...], keepdims: bool) -> tuple[int, ...]:
    """The structural shape after reducing ``axes`` of ``shape`` (size-1 axes kept when ``keepdims``)."""
    if keepdims:
        return tuple(1 if i in axes else n for i, n in enumerate(shape))
    return tuple(n for i, n in enumerate(shape) if i not in axes)


def logsumexp(a: Array, axis: Any, keepdims: bool = False) -> Array:
    """Stable log Σ exp(a) over ``axis``; −inf (no warning) where every term is −inf."""
    xp = _xp(a)
    m = a.max(axis=axis, keepdims=True)
    m = finite_or_zero(m)
    with _Quiet(xp):
        out = xp.log(xp.exp(a - m).sum(axis=axis, keepdims=True)) + m
    if not keepdims:
        out = out.squeeze(axis=axis)
    return out


def scatter_logsumexp(a: Array, index: Array, size: int) -> tuple[Array, Array]:
    """log Σ exp over groups: rows ``a`` (n,) into (size,) at ``index``; also returns the shift used per slot."""
    xp = _xp(a)
    m = xp.full((size,), -xp.inf, dtype=a.dtype)
    xp.maximum.at(m, index, a)
    m = finite_or_zero(m)
    s = xp.zeros((size,), dtype=a.dtype)
    xp.add.at(s, index, xp.exp(a - m[index]))
    with _Quiet(xp):
        return xp.log(s) + m, m


@functools.cache
def recheck_limit(dtype: Any) -> float:
    """How far (nats) below its row's max a rescaled sum may fall before it is recomputed exactly.

    Half the exponent range (float32: 43.7, float64: 354): terms that underflow after
    the shift are below e^-87 (float32) of the row max, so above this limit they change
    a result by less than J·e^-43 relative; below it :func:`flagged_rows` recomputes.
    """

    return -math.log(float(np.finfo(dtype).tiny)) / 2


def shifted_exp(a: Array) -> tuple[Array, Array]:
    """(exp(a − m), m) with m the max of each row (last axis; 0 for rows without a finite entry); no subnormals.

    See :func:`semitorch.kernels.exp_shift` (fused in numba for float32).
    """
    return kernels.exp_shift(a)


def flagged_rows(a: Array, W: Array, flag: Array, nv: int = 0) -> tuple[tuple[Array, ...], Array, Array]:
    """For the flagged outputs ``flag`` (..., r, k) of a vecmat of ``a`` (..., r, j, + nv value axes), W (..., k, j):

    their index tuple and, per flagged output, its row of ``a`` (n, j, ...) and of ``W`` (n, j).
    ``a`` and ``W`` may carry fewer batch axes than ``flag`` (they broadcast).
    """
    xp = _xp(a)
    idx = xp.nonzero(flag)
    batch = flag.shape[:-2]
    ab = xp.broadcast_to(a, batch + a.shape[a.ndim - nv - 2 :])
    wb = xp.broadcast_to(W, batch + W.shape[-2:])
    return idx, ab[idx[:-1]], wb[idx[:-2] + (idx[-1],)]


def rescaled_matmul(a: Array, absW: Array) -> Array:
    """log((exp a) @ absWᵀ) over the last axis of ``a`` (..., r, j) and ``absW`` (..., k, j), by one BLAS call.

    Each row of ``a`` is shifted by its max before exponentiating, so nothing overflows;
    outputs far below their row's max, where underflowed terms could matter, are
    recomputed exactly (:func:`recheck_limit`). −inf rows give −inf.
    """
    xp = _xp(a)
    if a.shape[-1] == 0:  # an empty contraction: no path (the matmul gives zeros of the right shape)
        with _Quiet(xp):
            return xp.log(xp.matmul(a, xp.swapaxes(absW, -1, -2)))
    p, m = kernels.exp_shift(a)
    limit = recheck_limit(np.dtype(a.dtype))
    out, low = kernels.log_shift_low(xp.matmul(p, xp.swapaxes(absW, -1, -2)), m, limit)
    if not low:  # nothing fell far below its row's max: no recheck (the common case)
        return out
    live = p.max(axis=-1, keepdims=True) > 0  # rows holding a path (their max entry is exactly 1)
    with _Quiet(xp):
        flag = (out < m - limit) & live
        if bool(flag.any()):
            idx, ar, wr = flagged_rows(a, absW, flag)
            out[idx] = logsumexp(ar + xp.log(wr), -1)
    return out


def affine_weights(a: Array, c: Array, logc: Array | None = None) -> tuple[Array, Array]:
    """Linear-scale weights g = exp(a + log|c| − M) ≥ 0 of log adjoints ``a`` (R, n), and the shift M (R, 1).

    ``logc`` is log|c| when already known."""
    lc = log_abs(c, a.dtype, a) if logc is None else logc.astype(a.dtype, copy=False)
    return kernels.exp_shift(a + lc)


def dense_recheck(
    sr: Semiring,
    out: Array,
    osrc: Array | None,
    M: Array,
    a: Array,
    src: Array | None,
    *parts: Array,
    pairs: bool = False,
    low: bool | None = None,
) -> tuple[Array, Array | None]:
    """``out`` (R, n) + vshape and its backpointers ``osrc`` with the rows that fell far below their shift M
    (where underflowed terms could matter) recomputed through the dense Jacobian of ``parts`` = (c, D, p, u, v).

    The log values checked are ``out`` itself (scalar semirings and k-best lists) or, with
    ``pairs``, its first component (entropy pairs); a row holding no path is never recomputed.
    ``low=False`` (from :func:`semitorch.kernels.log_shift_low`) says no value fell that far.
    """
    xp = _xp(out)
    R = out.shape[0]
    if low is False:  # the caller's kernel saw nothing far below the shift
        return out, osrc
    lo = (out[..., 0] if pairs else out).reshape(R, -1)
    alo = (a[..., 0] if pairs else a).reshape(R, -1)
    flag = (lo < M.reshape(R, 1) - recheck_limit(out.dtype)).any(axis=-1) & (alo > -xp.inf).any(axis=-1)
    if bool(flag.any()):
        rows = xp.nonzero(flag)[0]
        rv, rs = Semiring.affine_vecmat(sr, a[rows], None if src is None else src[rows], *(x[rows] for x in parts))
        out = out.copy()
        out[rows] = rv
        if osrc is not None and rs is not None:
            osrc = osrc.copy()
            osrc[rows] = rs
    return out, osrc


def live_rows(L: Array) -> Array:
    """Which rows of log-space values ``L`` (R, ...) hold an entry above −∞ (NaN counts as held).

    A float max per row: much cheaper than ``(L != −∞).any`` over a boolean temporary.
    """
    xp = _xp(L)
    R = L.shape[0]
    if L.size == 0:
        return xp.zeros((R,), dtype=bool)
    return L.reshape(R, -1).max(axis=1) != -xp.inf


def live_columns(L: Array) -> Array:
    """Which columns j of log-space values ``L`` (R, j) hold an entry above −∞ (NaN counts as held).

    A float max per column: on an entropy or k-best adjoint the generic ``!= 0̄`` test over
    (R, j) + vshape cost 1.2 ms against 0.03 ms for this, on its first component.
    """
    xp = _xp(L)
    if L.size == 0:
        return xp.zeros((L.shape[1],), dtype=bool)
    return L.max(axis=0) != -xp.inf


class _Quiet:
    """Context manager silencing numpy's divide/invalid warnings for log(0) = −inf (cupy: nothing to do)."""

    def __init__(self, xp: Any) -> None:
        self._ctx = xp.errstate(divide="ignore", invalid="ignore", over="ignore") if hasattr(xp, "errstate") else None

    def __enter__(self) -> None:
        if self._ctx is not None:
            self._ctx.__enter__()

    def __exit__(self, *exc: Any) -> None:
        if self._ctx is not None:
            self._ctx.__exit__(*exc)


class LogDomain(Semiring):
    """Shared algebra of semirings over log|path products| (Log, MaxProduct): 0̄ = −∞, 1̄ = 0,
    ⊗ = +, lift w ↦ log|w|. Not registered itself; subclasses supply ⊕."""

    def zeros(self, xp: Any, shape: tuple[int, ...], dtype: Any) -> Array:
        """−∞ everywhere (no path)."""
        return xp.full(shape, -xp.inf, dtype=dtype)

    def ones(self, xp: Any, shape: tuple[int, ...], dtype: Any) -> Array:
        """0 everywhere (= log 1)."""
        return xp.zeros(shape, dtype=dtype)

    edge_key = "logabs"

    def lift(self, w: Array) -> Array:
        """log|w| (−∞ for w = 0)."""
        return log_abs(w)

    def prepare_edge(self, w: Array) -> Array:
        """log|w| (−∞ for w = 0), in w's dtype."""
        return log_abs(w)

    def edge(self, a: Array, src: Array | None, w: Array | None) -> tuple[Array, Array | None]:
        """a + log|w|; every entry keeps its src (``w`` may be a Python scalar)."""
        return (a, src) if w is None else self.edge_prepared(a, src, log_abs(w, a.dtype, a))

    def edge_prepared(self, a: Array, src: Array | None, P: Array) -> tuple[Array, Array | None]:
        """a + P with P = log|w|; every entry keeps its src."""
        out = a + P.astype(a.dtype, copy=False)
        if src is not None and src.shape != out.shape:
            src = _xp(a).broadcast_to(src, out.shape)
        return out, src

    def times(self, a: Array, b: Array) -> Array:
        """a + b."""
        return a + b

    def nonzero_rows(self, a: Array) -> Array:
        """Rows holding an entry above −∞ (:func:`live_rows`)."""
        return live_rows(a)

    def nonzero_columns(self, a: Array) -> Array:
        """Columns holding an entry above −∞ (:func:`live_columns`)."""
        return live_columns(a)


@register_semiring
class Log(LogDomain):
    """The log semiring: values are log path masses; (⊕, ⊗, 0̄, 1̄) = (logaddexp, +, −∞, 0) on ℝ ∪ {−∞}.

    Lift: an edge w becomes log|w| (−∞ for w = 0: no edge). A backward pass gives,
    for every input element x, log Σ_{paths x→y} Π|w|, the log of the
    "absolute-value gradient" (the path mass Z of the entropy semiring). Readout:
    that log mass, −∞ where no path reaches the output. ``vecmat`` is one rescaled
    BLAS matmul (per-row max subtraction, exp, matmul with |W|, log).
    Reference: Goodman, "Semiring Parsing", Computational Linguistics 1999;
    Du et al., "Generalizing Backpropagation for Gradient-Based Interpretability", ACL 2023.
    """

    name = "log"
    prep_key = "abs"
    fast_affine = True

    def __repr__(self) -> str:
        return "Log()"

    def plus(self, a: Array, b: Array) -> Array:
        """logaddexp(a, b)."""
        return kernels.logaddexp(a, b)

    def sum(self, a: Array, axes: tuple[int, ...], keepdims: bool = False) -> Array:
        """logsumexp over ``axes``."""
        if not axes:
            return a
        return logsumexp(a, tuple(axes), keepdims)

    def accumulate(self, a: Array, sa: Array | None, b: Array, sb: Array | None) -> tuple[Array, None]:
        """logaddexp of the two contributions."""
        return self.plus(a, b), None

    def scatter(self, a: Array, src: Array | None, index: Array, size: int) -> tuple[Array, None]:
        """Grouped logsumexp (vectorised with ufunc.at)."""
        return scatter_logsumexp(a, index, size)[0], None

    def vecmat(self, a: Array, src: Array | None, W: Array) -> tuple[Array, None]:
        """log(exp(a − max) @ |W|ᵀ) + max, one BLAS matmul."""
        return self.vecmat_prepared(a, src, self.prepare(_xp(a).asarray(W, dtype=a.dtype)))

    def prepare(self, W: Array) -> Array:
        """|W|."""
        return _xp(W).abs(W)

    def vecmat_prepared(self, a: Array, src: Array | None, P: Array) -> tuple[Array, None]:
        """log(exp(a − max) @ Pᵀ) + max with P = |W|."""
        return rescaled_matmul(a, P.astype(a.dtype, copy=False)), None

    def affine_vecmat(
        self, a: Array, src: Array | None, c: Array, D: Array, p: Array, u: Array, v: Array, logc: Array | None = None
    ) -> tuple[Array, None]:
        """logsumexp_j a_j + log|c_j q_jk| by :func:`semitorch.kernels.affine_sum` on rescaled weights.

        Rows whose results fall far below their max (where underflowed terms could
        matter, see :func:`recheck_limit`) are recomputed with the dense Jacobian.
        """
        g, M = affine_weights(a, c, logc)
        out, low = kernels.log_shift_low(kernels.affine_sum(g, u, v, p, D), M, recheck_limit(np.dtype(a.dtype)))
        return dense_recheck(self, out, None, M, a, None, c, D, p, u, v, low=low)[0], None
