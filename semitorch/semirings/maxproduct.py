"""The max-product semiring (in log space: max-plus): the highest |path product|, with backpointers.

Also the selection helpers the other selective semirings share: pick one entry along
flattened axes or within scatter groups and carry its backpointer (``src``) along.
"""

from __future__ import annotations

import numpy as np

from .. import kernels
from .base import Array, _xp, register_semiring
from .log import LogDomain, affine_weights, dense_recheck, keep_shape, log_abs, move_last, recheck_limit


def logabs_t(W: Array) -> Array:
    """log|W| (..., k, j) as a view of a C-contiguous (..., j, k) array: the layout the CPU kernels read."""
    xp = _xp(W)
    return xp.swapaxes(xp.ascontiguousarray(xp.swapaxes(log_abs(W), -1, -2)), -1, -2)


def take_last(a: Array, idx: Array) -> Array:
    """``a[..., idx[...]]`` along the last axis (``idx`` has a's shape minus the last axis; batch dims broadcast)."""
    xp = _xp(a)
    return xp.take_along_axis(a, idx[..., None], axis=-1)[..., 0]


def select_reduce(
    a: Array, src: Array | None, axes: tuple[int, ...], keepdims: bool, lowest: bool = False
) -> tuple[Array, Array | None]:
    """The max (or, with ``lowest``, the min) of a scalar-valued ``a`` over structural ``axes``, and its src.

    Ties go to the lowest flat index over the reduced axes (C order).
    """
    xp = _xp(a)
    if not axes:
        return a, src
    m, _ = move_last(a, axes, 0)
    i = xp.argmin(m, axis=-1) if lowest else xp.argmax(m, axis=-1)
    shape = keep_shape(a.shape, axes, keepdims)
    val = take_last(m, i).reshape(shape)
    if src is None:
        return val, None
    s, _ = move_last(src if src.shape == a.shape else xp.broadcast_to(src, a.shape), axes, 0)
    return val, take_last(s, i).reshape(shape)


def group_first(key: Array, index: Array) -> Array:
    """Positions (into ``key``/``index``) of the smallest ``key`` in each group of equal ``index``.

    Ties within a group go to the lowest position.
    """
    xp = _xp(key)
    by_key = xp.argsort(key, kind="stable")  # two stable sorts = lexsort((key, index)) (cupy: no tuple keys)
    order = by_key[xp.argsort(index[by_key], kind="stable")]  # primary: index; then key; stable
    gi = index[order]
    first = xp.concatenate([xp.ones(1, dtype=bool), gi[1:] != gi[:-1]]) if gi.size else xp.zeros(0, dtype=bool)
    return order[first]


def select_scatter(
    a: Array, src: Array | None, index: Array, size: int, fill: float, lowest: bool = False
) -> tuple[Array, Array | None]:
    """Scatter scalar rows ``a`` (n,) into (size,) keeping the max (min with ``lowest``) per target, with its src."""
    xp = _xp(a)
    out = xp.full((size,), fill, dtype=a.dtype)
    osrc = None if src is None else xp.full((size,), -1, dtype=xp.int64)
    if index.size == 0:
        return out, osrc
    sel = group_first(a if lowest else -a, index)
    out[index[sel]] = a[sel]
    if src is not None:
        osrc[index[sel]] = src[sel]
    return out, osrc


def gather_src(src: Array | None, arg: Array, per: int) -> Array | None:
    """Backpointers of a kernel's picks: ``src`` (..., r, j[, per]) at ``arg`` (..., r, k[, per]) = j·per + q."""
    if src is None:
        return None
    xp = _xp(arg)
    if src.shape[-2 if per else -1] == 0:  # an empty contraction: nothing was picked
        return xp.full(arg.shape, -1, dtype=xp.int64)
    if per == 0:
        return kernels.gather_last(src, arg)
    sf = src.reshape(src.shape[:-2] + (src.shape[-2] * per,))
    af = arg.reshape(arg.shape[:-2] + (arg.shape[-2] * per,))
    return kernels.gather_last(sf, af).reshape(arg.shape)


def exp64(a: Array) -> Array:
    """exp of log values, computed in float64 (so that 24-layer products neither under- nor overflow)."""
    xp = _xp(a)
    return xp.exp(a.astype(xp.float64))


@register_semiring
class MaxProduct(LogDomain):
    """The max-product semiring over |w|, kept in log space: (⊕, ⊗, 0̄, 1̄) = (max, +, −∞, 0) on ℝ ∪ {−∞}.

    Lift: an edge w becomes log|w| (−∞ for w = 0: no edge). A backward pass gives,
    for every input element x, max_{paths x→y} log Π|w|: the weight of the best
    (highest |product|) path. Readout: that weight, exp of the log value computed in
    float64 (``MaxProduct(log=True)``: the log value itself); 0 where no path.
    Selective: every value entry carries a backpointer to the consumer entry it came
    from, so :func:`semitorch.top_paths` reads the arg-max path without search (ties:
    lowest index). ``vecmat`` is the max-plus kernel of :mod:`semitorch.kernels`.
    Reference: the Viterbi semiring (Goodman, "Semiring Parsing", 1999); Du et al.,
    ACL 2023, §4 (top gradient path).
    """

    name = "maxproduct"
    selective = True
    prep_key = "logabs"
    fast_affine = True

    def __init__(self, log: bool = False) -> None:
        self.log = bool(log)

    def __repr__(self) -> str:
        return f"MaxProduct(log={self.log})"

    def plus(self, a: Array, b: Array) -> Array:
        """max(a, b)."""
        return _xp(a).maximum(a, b)

    def sum(self, a: Array, axes: tuple[int, ...], keepdims: bool = False) -> Array:
        """max over ``axes``."""
        return a.max(axis=tuple(axes), keepdims=keepdims) if axes else a

    def readout(self, a: Array) -> Array:
        """The best |path product| (float64), or its log with ``log=True``."""
        return a if self.log else exp64(a)

    # ---- backprop, with backpointers ----------------------------------------------------
    def accumulate(self, a: Array, sa: Array | None, b: Array, sb: Array | None) -> tuple[Array, Array | None]:
        """max of the two; ties keep the first (``a``)."""
        xp = _xp(a)
        take = b > a
        return xp.where(take, b, a), (None if sa is None or sb is None else xp.where(take, sb, sa))

    def reduce(self, a: Array, src: Array | None, axes: tuple[int, ...], keepdims: bool) -> tuple[Array, Array | None]:
        """max over ``axes`` with the src of the (lowest-index) arg-max."""
        return select_reduce(a, src, axes, keepdims)

    def scatter(self, a: Array, src: Array | None, index: Array, size: int) -> tuple[Array, Array | None]:
        """Per target position, the max row (lowest row on ties) and its src."""
        return select_scatter(a, src, index, size, -np.inf)

    def vecmat(self, a: Array, src: Array | None, W: Array) -> tuple[Array, Array | None]:
        """max_j a[..., r, j] + log|W[..., k, j]| by :func:`semitorch.kernels.maxplus_vecmat`."""
        val, arg = kernels.maxplus_vecmat(a, log_abs(W, a.dtype, a))
        return val, gather_src(src, arg, 0)

    def prepare(self, W: Array) -> Array:
        """log|W|, laid out for the kernels (see :func:`logabs_t`)."""
        return logabs_t(W)

    def vecmat_prepared(self, a: Array, src: Array | None, P: Array) -> tuple[Array, Array | None]:
        """The max-plus kernel with P = log|W|."""
        val, arg = kernels.maxplus_vecmat(a, P.astype(a.dtype, copy=False))
        return val, gather_src(src, arg, 0)

    def affine_vecmat(
        self, a: Array, src: Array | None, c: Array, D: Array, p: Array, u: Array, v: Array, logc: Array | None = None
    ) -> tuple[Array, Array | None]:
        """max_j a_j + log|c_j q_jk| and its arg-max by :func:`semitorch.kernels.affine_max` on rescaled weights.

        Rows whose results fall far below their shift are recomputed with the dense Jacobian.
        """
        g, M = affine_weights(a, c, logc)
        V, arg = kernels.affine_max(g, u, v, p, D)
        out, low = kernels.log_shift_low(V, M, recheck_limit(np.dtype(a.dtype)))
        return dense_recheck(self, out, gather_src(src, arg, 0), M, a, src, c, D, p, u, v, low=low)

    # ---- reading paths (used by semitorch.paths) ----------------------------------------
    def has_path(self, v: float) -> bool:
        """Whether a value entry stands for at least one path."""
        return bool(v > -np.inf)

    def path_weight(self, v: float) -> float:
        """The |path product| of a value entry."""
        return float(np.exp(np.float64(v)))

    def step_weight(self, v_from: float, v_to: float) -> float:
        """|edge weight| between an entry and the consumer entry it points to (ratio of the adjoints)."""
        return float(np.exp(np.float64(v_from) - np.float64(v_to)))
