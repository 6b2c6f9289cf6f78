"""The k-best semiring: the k highest |path products| (log space) and, through backpointers, their paths."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from .. import kernels
from .base import Array, Semiring, _xp, register_semiring
from .log import _Quiet, dense_recheck, keep_shape, live_columns, live_rows, log_abs, move_last
from .maxproduct import exp64, gather_src, logabs_t


def _top(cand: Array, k: int, src: Array | None = None) -> tuple[Array, Array | None]:
    """The k largest entries of ``cand`` along its last axis, descending (stable: ties keep the lower index)."""
    xp = _xp(cand)
    order = xp.argsort(-cand, axis=-1, kind="stable")[..., :k]
    val = xp.take_along_axis(cand, order, axis=-1)
    if src is None:
        return val, None
    return val, xp.take_along_axis(xp.broadcast_to(src, cand.shape), order, axis=-1)


@register_semiring
class KBest(Semiring):
    """The k-best semiring over |w| in log space: values are descending lists of the k best log path weights.

    (⊕, ⊗, 0̄, 1̄) = (merge and keep the top k, all pairwise sums and keep the top k,
    [−∞, …, −∞], [0, −∞, …, −∞]); value shape (k,), −∞ padding where fewer than k
    paths exist. Lift: an edge w becomes [log|w|, −∞, …] (w = 0: no edge). A backward
    pass gives, for every input element, the k highest |path products| to the output
    (paths are distinct edge sequences, so parallel edges count separately).
    Readout: those weights (float64, last axis k, 0 padding), or their logs with
    ``log=True``. Selective: each of the k entries keeps its own backpointer (to an
    entry, i.e. an element and a rank, of its consumer), so every one of the k paths
    can be read out. ``vecmat`` takes the top k over (j, rank) with the k-best kernel.
    Reference: Huang & Chiang, "Better k-best Parsing", IWPT 2005; Mohri, "Semiring
    Frameworks and Algorithms for Shortest-Distance Problems", 2002.
    """

    name = "kbest"
    selective = True
    prep_key = "logabs"
    fast_affine = True

    def __init__(self, k: int, log: bool = False) -> None:
        if isinstance(k, bool) or not isinstance(k, numbers.Integral):
            raise ValueError(f"KBest: k must be a positive int, got {k!r} ({type(k).__name__})")
        if k < 1:
            raise ValueError(f"KBest: k must be a positive int (the number of best paths kept), got {k}")
        self.k = int(k)
        self.vshape = (self.k,)
        self.log = bool(log)

    def __repr__(self) -> str:
        return f"KBest(k={self.k}, log={self.log})"

    def nonzero_rows(self, a: Array) -> Array:
        """Rows holding a path: a list whose best (first) entry is above −∞ (:func:`~.log.live_rows`)."""
        return live_rows(a[..., 0])

    def nonzero_columns(self, a: Array) -> Array:
        """Columns holding a path: a list whose best (first) entry is above −∞ (:func:`~.log.live_columns`)."""
        return live_columns(a[..., 0])

    def zeros(self, xp: Any, shape: tuple[int, ...], dtype: Any) -> Array:
        """[−∞, …, −∞] (no path)."""
        return xp.full(tuple(shape) + self.vshape, -xp.inf, dtype=dtype)

    def ones(self, xp: Any, shape: tuple[int, ...], dtype: Any) -> Array:
        """[0, −∞, …, −∞]: one empty path of weight 1."""
        out = self.zeros(xp, shape, dtype)
        out[..., 0] = 0
        return out

    def lift(self, w: Array) -> Array:
        """[log|w|, −∞, …]."""
        xp = _xp(w)
        lw = log_abs(w)
        out = xp.full(lw.shape + self.vshape, -xp.inf, dtype=lw.dtype)
        out[..., 0] = lw
        return out

    def plus(self, a: Array, b: Array) -> Array:
        """The top k of the union of the two lists."""
        xp = _xp(a)
        a, b = xp.broadcast_arrays(a, b)
        return _top(xp.concatenate([a, b], axis=-1), self.k)[0]

    def times(self, a: Array, b: Array) -> Array:
        """The top k of all pairwise sums a[i] + b[j]."""
        c = a[..., :, None] + b[..., None, :]
        return _top(c.reshape(c.shape[:-2] + (c.shape[-2] * c.shape[-1],)), self.k)[0]

    def sum(self, a: Array, axes: tuple[int, ...], keepdims: bool = False) -> Array:
        """The top k over every list along ``axes``."""
        return self.reduce(a, None, axes, keepdims)[0]

    def readout(self, a: Array) -> Array:
        """The k best |path products| (float64, descending, 0 padding), or their logs with ``log=True``."""
        return a if self.log else exp64(a)

    # ---- backprop, with one backpointer per rank --------------------------------------
    def edge(self, a: Array, src: Array | None, w: Array | None) -> tuple[Array, Array | None]:
        """Add log|w| to every rank (order is kept, so are the srcs)."""
        return (a, src) if w is None else self.edge_prepared(a, src, log_abs(w, a.dtype, a))

    edge_key = "logabs"

    def prepare_edge(self, w: Array) -> Array:
        """log|w| (shared with the log-space semirings)."""
        return log_abs(w)

    def edge_prepared(self, a: Array, src: Array | None, P: Array) -> tuple[Array, Array | None]:
        """Add P = log|w| to every rank."""
        out = a + P.astype(a.dtype, copy=False)[..., None]
        if src is not None and src.shape != out.shape:
            src = _xp(a).broadcast_to(src, out.shape)
        return out, src

    def accumulate(self, a: Array, sa: Array | None, b: Array, sb: Array | None) -> tuple[Array, Array | None]:
        """Merge two lists (ties: ``a``'s entries first) by :func:`semitorch.kernels.kbest_merge`."""
        return kernels.kbest_merge(a, sa, b, sb)

    def reduce(self, a: Array, src: Array | None, axes: tuple[int, ...], keepdims: bool) -> tuple[Array, Array | None]:
        """Top k over (element along ``axes``, rank); ties: lowest element, then rank."""
        if not axes:
            return a, src
        xp = _xp(a)
        m, kept = move_last(a, axes, 1)
        cand = m.reshape(kept + (m.shape[-2] * m.shape[-1],))
        s = None if src is None else move_last(xp.broadcast_to(src, a.shape), axes, 1)[0].reshape(cand.shape)
        val, vs = _top(cand, self.k, s)
        shape = keep_shape(a.shape[:-1], axes, keepdims) + self.vshape
        return val.reshape(shape), None if vs is None else vs.reshape(shape)

    def scatter(self, a: Array, src: Array | None, index: Array, size: int) -> tuple[Array, Array | None]:
        """Per target position, the top k over (row, rank) of the rows scattered there."""
        xp = _xp(a)
        k = self.k
        out = xp.full((size, k), -xp.inf, dtype=a.dtype)
        osrc = None if src is None else xp.full((size, k), -1, dtype=xp.int64)
        if index.size == 0:
            return out, osrc
        vals = a.reshape(-1)
        g = xp.repeat(index, k)
        by_val = xp.argsort(-vals, kind="stable")  # two stable sorts = lexsort((-vals, g)) (cupy: no tuple keys)
        order = by_val[xp.argsort(g[by_val], kind="stable")]  # by target, then descending value; stable
        gs = g[order]
        n = gs.size
        pos = xp.arange(n)
        first = xp.searchsorted(gs, gs)  # start of each target's run (cupy has no maximum.accumulate)
        rank = pos - first
        keep = rank < k
        out[gs[keep], rank[keep]] = vals[order][keep]
        if src is not None:
            osrc[gs[keep], rank[keep]] = src.reshape(-1)[order][keep]
        return out, osrc

    def vecmat(self, a: Array, src: Array | None, W: Array) -> tuple[Array, Array | None]:
        """Top k over (j, rank) of a[..., r, j, q] + log|W[..., k, j]| by :func:`semitorch.kernels.kbest_vecmat`."""
        val, arg = kernels.kbest_vecmat(a, log_abs(W, a.dtype, a))
        return val, gather_src(src, arg, self.k)

    def prepare(self, W: Array) -> Array:
        """log|W|, laid out for the kernels (shared with :class:`MaxProduct`)."""
        return logabs_t(W)

    def vecmat_prepared(self, a: Array, src: Array | None, P: Array) -> tuple[Array, Array | None]:
        """The k-best kernel with P = log|W|."""
        val, arg = kernels.kbest_vecmat(a, P.astype(a.dtype, copy=False))
        return val, gather_src(src, arg, self.k)

    def affine_vecmat(
        self, a: Array, src: Array | None, c: Array, D: Array, p: Array, u: Array, v: Array, logc: Array | None = None
    ) -> tuple[Array, Array | None]:
        """The k best over (j, rank) of a[j, q] + log|c_j q_jk| by :func:`semitorch.kernels.affine_kbest`.

        Linear-scale weights g = e^{a + log|c| − M} per row; rows whose results fall far
        below M are recomputed with the dense Jacobian.
        """
        xp = _xp(a)
        R = a.shape[0]
        lc = log_abs(c, a.dtype, a) if logc is None else logc.astype(a.dtype, copy=False)
        alpha = a + lc[..., None]  # (R, n, K), still sorted along K
        g, M = kernels.exp_shift(alpha.reshape(R, -1))
        V, arg = kernels.affine_kbest(g.reshape(alpha.shape), u, v, p, D)
        M = M[:, :, None]
        with _Quiet(xp):
            out = xp.log(V) + M
        return dense_recheck(self, out, gather_src(src, arg, self.k), M, a, src, c, D, p, u, v)

    # ---- reading paths (used by semitorch.paths) ----------------------------------------
    def has_path(self, v: float) -> bool:
        """Whether a value entry (one rank) stands for a path."""
        return bool(v > -np.inf)

    def path_weight(self, v: float) -> float:
        """The |path product| of a value entry."""
        return float(np.exp(np.float64(v)))

    def step_weight(self, v_from: float, v_to: float) -> float:
        """|edge weight| between an entry and the consumer entry it points to (ratio of the adjoints)."""
        return float(np.exp(np.float64(v_from) - np.float64(v_to)))
