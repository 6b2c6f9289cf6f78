"""The signed max/min semiring: the most positive and the most negative signed path product, with backpointers."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import kernels
from .base import Array, Semiring, _xp, register_semiring
from .log import _Quiet
from .maxproduct import gather_src, select_reduce, select_scatter


def _pair(xp: Any, hi: Array, lo: Array) -> Array:
    return xp.stack([hi, lo], axis=-1)


@register_semiring
class SignedMax(Semiring):
    """Signed path products, tracked as a (max, min) pair: the original brunoflow "top gradient path".

    Values (linear scale, value shape (2,)): [..., 0] the most positive and [..., 1]
    the most negative signed path product; "no path" is (−∞, +∞).
    (⊕, ⊗, 0̄, 1̄) = ((max a₀ b₀, min a₁ b₁), (max, min) of the four corner products
    a_c·b_d, (−∞, +∞), (1, 1)); a product involving "no path" is "no path". Lift: an
    edge w becomes (w, w), signs kept (w = 0: no edge). Readout: the pair itself,
    (max, min) over paths of Π w ((−∞, +∞) where no path reaches the output).
    Selective: each component keeps its own backpointer; a negative edge swaps the
    roles (the max comes from the consumer's min). Linear scale, so very deep products
    may under/overflow: use :class:`MaxProduct` for magnitudes. ``vecmat`` is the
    signed kernel of :mod:`semitorch.kernels`; structured row Jacobians (layer_norm,
    softmax, log_softmax) go through :func:`semitorch.kernels.affine_signed`.
    Reference: Du et al., ACL 2023, §4 and their released code (brunoflow's max-product
    semiring on signed values).
    """

    name = "signedmax"

    def __repr__(self) -> str:
        return "SignedMax()"

    selective = True
    prep_key = "signed"
    vshape = (2,)
    fast_affine = True

    def zeros(self, xp: Any, shape: tuple[int, ...], dtype: Any) -> Array:
        """(−∞, +∞): no path."""
        out = xp.empty(tuple(shape) + (2,), dtype=dtype)
        out[..., 0] = -xp.inf
        out[..., 1] = xp.inf
        return out

    def ones(self, xp: Any, shape: tuple[int, ...], dtype: Any) -> Array:
        """(1, 1): the empty path."""
        return xp.ones(tuple(shape) + (2,), dtype=dtype)

    def lift(self, w: Array) -> Array:
        """(w, w), or (−∞, +∞) for w = 0."""
        xp = _xp(w)
        w = xp.asarray(w)
        z = w == 0
        return _pair(xp, xp.where(z, -xp.inf, w), xp.where(z, xp.inf, w)).astype(w.dtype, copy=False)

    def plus(self, a: Array, b: Array) -> Array:
        """(max of the maxima, min of the minima)."""
        xp = _xp(a)
        return _pair(xp, xp.maximum(a[..., 0], b[..., 0]), xp.minimum(a[..., 1], b[..., 1]))

    def times(self, a: Array, b: Array) -> Array:
        """(max, min) of the four corner products; "no path" if either is."""
        xp = _xp(a)
        with _Quiet(xp):
            c = a[..., :, None] * b[..., None, :]
        c = c.reshape(c.shape[:-2] + (4,))
        none = ~(xp.isfinite(a[..., 0]) & xp.isfinite(b[..., 0]))
        return _pair(xp, xp.where(none, -xp.inf, c.max(axis=-1)), xp.where(none, xp.inf, c.min(axis=-1)))

    def sum(self, a: Array, axes: tuple[int, ...], keepdims: bool = False) -> Array:
        """(max of the maxima, min of the minima) over ``axes``."""
        if not axes:
            return a
        xp = _xp(a)
        ax = tuple(axes)
        return _pair(xp, a[..., 0].max(axis=ax, keepdims=keepdims), a[..., 1].min(axis=ax, keepdims=keepdims))

    # ---- backprop, with one backpointer per component -------------------------------------
    def edge(self, a: Array, src: Array | None, w: Array | None) -> tuple[Array, Array | None]:
        """Multiply by w; a negative w swaps max and min (and their srcs); w = 0 gives no path."""
        if w is None:
            return a, src
        xp = _xp(a)
        w = xp.asarray(w, dtype=a.dtype)
        pos, zero = w > 0, w == 0
        with _Quiet(xp):
            hi = xp.where(pos, a[..., 0] * w, a[..., 1] * w)
            lo = xp.where(pos, a[..., 1] * w, a[..., 0] * w)
        hi = xp.where(zero, -xp.inf, hi)
        lo = xp.where(zero, xp.inf, lo)
        out = _pair(xp, hi, lo)
        if src is None:
            return out, None
        s0 = xp.where(pos, src[..., 0], src[..., 1])
        s1 = xp.where(pos, src[..., 1], src[..., 0])
        return out, xp.broadcast_to(_pair(xp, s0, s1), out.shape)

    def accumulate(self, a: Array, sa: Array | None, b: Array, sb: Array | None) -> tuple[Array, Array | None]:
        """Componentwise max / min; ties keep ``a``."""
        xp = _xp(a)
        t0 = b[..., 0] > a[..., 0]
        t1 = b[..., 1] < a[..., 1]
        out = _pair(xp, xp.where(t0, b[..., 0], a[..., 0]), xp.where(t1, b[..., 1], a[..., 1]))
        if sa is None or sb is None:
            return out, None
        return out, _pair(xp, xp.where(t0, sb[..., 0], sa[..., 0]), xp.where(t1, sb[..., 1], sa[..., 1]))

    def reduce(self, a: Array, src: Array | None, axes: tuple[int, ...], keepdims: bool) -> tuple[Array, Array | None]:
        """Arg-max of the maxima and arg-min of the minima over ``axes`` (lowest index on ties)."""
        if not axes:
            return a, src
        xp = _xp(a)
        s = None if src is None else xp.broadcast_to(src, a.shape)
        hi, shi = select_reduce(a[..., 0], None if s is None else s[..., 0], axes, keepdims)
        lo, slo = select_reduce(a[..., 1], None if s is None else s[..., 1], axes, keepdims, lowest=True)
        return _pair(xp, hi, lo), (None if s is None else _pair(xp, shi, slo))

    def scatter(self, a: Array, src: Array | None, index: Array, size: int) -> tuple[Array, Array | None]:
        """Per target position, the max of the maxima and the min of the minima, with their srcs."""
        xp = _xp(a)
        hi, shi = select_scatter(a[:, 0], None if src is None else src[:, 0], index, size, -np.inf)
        lo, slo = select_scatter(a[:, 1], None if src is None else src[:, 1], index, size, np.inf, lowest=True)
        return _pair(xp, hi, lo), (None if src is None else _pair(xp, shi, slo))

    def vecmat(self, a: Array, src: Array | None, W: Array) -> tuple[Array, Array | None]:
        """(max, min) over (j, component) of W[..., k, j]·a[..., r, j, c] by :func:`semitorch.kernels.signed_vecmat`."""
        xp = _xp(a)
        val, arg = kernels.signed_vecmat(a, xp.asarray(W, dtype=a.dtype))
        return val, gather_src(src, arg, 2)

    def prepare(self, W: Array) -> Array:
        """W as a view of a C-contiguous (..., j, k) array: the layout the CPU kernel reads."""
        xp = _xp(W)
        return xp.swapaxes(xp.ascontiguousarray(xp.swapaxes(W, -1, -2)), -1, -2)

    def vecmat_prepared(self, a: Array, src: Array | None, P: Array) -> tuple[Array, Array | None]:
        """The signed kernel with the prepared W."""
        val, arg = kernels.signed_vecmat(a, P.astype(a.dtype, copy=False))
        return val, gather_src(src, arg, 2)

    def affine_vecmat(
        self, a: Array, src: Array | None, c: Array, D: Array, p: Array, u: Array, v: Array, logc: Array | None = None
    ) -> tuple[Array, Array | None]:
        """The signed kernel on the structured rows J = c_j q_jk (:func:`semitorch.kernels.affine_signed`).

        The edges are rounded as the dense J would be, so values and backpointers equal the dense path's.
        """
        val, arg = kernels.affine_signed(a, c, u, v, p, D)
        return val, gather_src(src, arg, 2)

    # ---- reading paths (used by semitorch.paths) ----------------------------------------
    def has_path(self, v: float) -> bool:
        """Whether a value entry stands for a path (finite)."""
        return bool(np.isfinite(v))

    def path_weight(self, v: float) -> float:
        """The signed path product of a value entry."""
        return float(v)

    def step_weight(self, v_from: float, v_to: float) -> float:
        """The signed edge weight between an entry and the consumer entry it points to (ratio of the adjoints)."""
        return float(np.float64(v_from) / np.float64(v_to))
