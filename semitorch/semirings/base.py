"""The Semiring base class and the semiring registry. No semiring knows any op.

A semiring value array has a structural shape (one entry per tensor element)
followed by the semiring's ``vshape`` (``()`` for scalar semirings, ``(2,)`` for
pairs, ``(k,)`` for k-best lists). Backprop talks to a semiring only through
the methods below: ``edge`` (⊗ by a lifted real edge weight), ``accumulate``
(⊕ of two contributions), ``reduce`` (⊕ over axes), ``scatter`` (⊕ into
positions), ``vecmat`` (the Linear/RowJacobian contraction) and ``readout``.

Each backprop method takes and returns a pair ``(values, src)``. For
*selective* semirings (⊕ picks operands: max, k-best) ``src`` is an int64
array of the values' shape holding, for every value entry, the flat index of
the entry of the consumer's values it was taken from: the backpointers. For
the others ``src`` is always ``None``.
"""

from __future__ import annotations

from typing import Any, ClassVar

Array = Any

SEMIRINGS: dict[str, type[Semiring]] = {}
"""Every registered semiring class, by its ``name``."""


def register_semiring(cls: type[Semiring]) -> type[Semiring]:
    """Class decorator: add ``cls`` to :data:`SEMIRINGS` under ``cls.name``."""
    SEMIRINGS[cls.name] = cls
    return cls


class Semiring:
    """A commutative semiring (K, ⊕, ⊗, 0̄, 1̄) with a lift of real edge weights into K.

    Subclasses define the algebra on backend arrays. The defaults below build
    the backprop methods from ``plus``, ``times``, ``lift``, ``sum`` and
    ``zeros``; fast subclasses override ``vecmat`` (and friends).
    """

    name: ClassVar[str] = "semiring"
    vshape: tuple[int, ...] = ()
    selective: ClassVar[bool] = False
    use_vjp: ClassVar[bool] = False  # Real: use closed-form VJPs of RowJacobian ops
    prep_key: ClassVar[str | None] = None  # semirings sharing a lifted form of W share this key
    fast_affine: ClassVar[bool] = False  # affine_vecmat has a structured kernel (else backprop uses dense J)
    edge_key: ClassVar[str | None] = None  # semirings sharing a lifted form of elementwise weights share this key

    # ---- the algebra (also what the law tests check) -----------------------------------
    def zeros(self, xp: Any, shape: tuple[int, ...], dtype: Any) -> Array:
        """Arrays of 0̄ with structural ``shape``."""
        raise NotImplementedError(f"{type(self).__name__}.zeros")

    def ones(self, xp: Any, shape: tuple[int, ...], dtype: Any) -> Array:
        """Arrays of 1̄ with structural ``shape``."""
        raise NotImplementedError(f"{type(self).__name__}.ones")

    def lift(self, w: Array) -> Array:
        """Real edge weights ``w`` as semiring values (shape ``w.shape + vshape``)."""
        raise NotImplementedError(f"{type(self).__name__}.lift")

    def plus(self, a: Array, b: Array) -> Array:
        """a ⊕ b, elementwise."""
        raise NotImplementedError(f"{type(self).__name__}.plus")

    def times(self, a: Array, b: Array) -> Array:
        """a ⊗ b, elementwise."""
        raise NotImplementedError(f"{type(self).__name__}.times")

    def sum(self, a: Array, axes: tuple[int, ...], keepdims: bool = False) -> Array:
        """⊕ over the structural ``axes`` (non-negative)."""
        raise NotImplementedError(f"{type(self).__name__}.sum")

    def readout(self, a: Array) -> Array:
        """What a user reads from internal values (gradient, best path weight, entropy, ...)."""
        return a

    def value_dtype(self, dtype: Any) -> Any:
        """The dtype of value arrays for tensors of ``dtype``."""
        return dtype

    def nonzero_rows(self, a: Array) -> Array:
        """For values ``a`` of shape (R, ...) + vshape: which rows hold any value other than 0̄."""
        z = self.zeros(_xp(a), (), a.dtype)
        return (a != z).reshape(a.shape[0], -1).any(axis=1)

    def nonzero_columns(self, a: Array) -> Array:
        """For values ``a`` of shape (R, j) + vshape: which columns j hold any value other than 0̄."""
        z = self.zeros(_xp(a), (), a.dtype)
        return (a != z).reshape(a.shape[0], a.shape[1], -1).any(axis=(0, 2))

    # ---- backprop methods ---------------------------------------------------------------
    def seed(self, xp: Any, shape: tuple[int, ...], dtype: Any, grad_output: Array | None) -> Array:
        """The output's adjoint: 1̄ everywhere, or ``lift(grad_output)`` (edges into a super-sink)."""
        if grad_output is None:
            return self.ones(xp, shape, self.value_dtype(dtype))
        return self.lift(xp.broadcast_to(xp.asarray(grad_output, dtype=dtype), shape))

    def edge(self, a: Array, src: Array | None, w: Array | None) -> tuple[Array, Array | None]:
        """a ⊗ lift(w), broadcasting ``w`` against a's structural shape (``w=None``: weight 1)."""
        if w is None:
            return a, src
        lw = self.lift(w if hasattr(w, "shape") else _xp(a).asarray(w, dtype=a.dtype))
        out = self.times(a, lw.astype(a.dtype, copy=False) if hasattr(lw, "astype") else lw)
        if src is not None and src.shape != out.shape:
            src = _xp(a).broadcast_to(src, out.shape)
        return out, src

    def prepare_edge(self, w: Array) -> Any:
        """Elementwise weights ``w`` in the form :meth:`edge_prepared` takes (default: w itself); kept per
        Elementwise structure under ``edge_key`` like :meth:`prepare`."""
        return w

    def edge_prepared(self, a: Array, src: Array | None, P: Any) -> tuple[Array, Array | None]:
        """:meth:`edge` with the weights already passed through :meth:`prepare_edge`."""
        return self.edge(a, src, P)

    def accumulate(self, a: Array, sa: Array | None, b: Array, sb: Array | None) -> tuple[Array, Array | None]:
        """a ⊕ b of two contributions to the same tensor."""
        return self.plus(a, b), None

    def reduce(self, a: Array, src: Array | None, axes: tuple[int, ...], keepdims: bool) -> tuple[Array, Array | None]:
        """⊕ over structural ``axes``."""
        return self.sum(a, axes, keepdims), None

    def scatter(self, a: Array, src: Array | None, index: Array, size: int) -> tuple[Array, Array | None]:
        """⊕-scatter rows ``a`` (n,)+vshape into (size,)+vshape at ``index`` (n,)."""
        xp = _xp(a)
        order = xp.argsort(index, kind="stable")
        idx = index[order]
        vals = a[order]
        out = self.zeros(xp, (size,), a.dtype)
        if idx.size == 0:
            return out, None
        starts = xp.flatnonzero(xp.concatenate([xp.ones(1, dtype=bool), idx[1:] != idx[:-1]]))
        # ⊕ within each group of equal indices, one position at a time (groups are short)
        counts = xp.diff(xp.concatenate([starts, xp.asarray([idx.size])]))
        acc = vals[starts]
        for r in range(1, int(counts.max())):
            has = counts > r
            pos = starts[has] + r
            acc[has] = self.plus(acc[has], vals[pos])
        out[idx[starts]] = acc
        return out, None

    def prepare(self, W: Array) -> Any:
        """W (..., k, j) in the form :meth:`vecmat_prepared` takes (default: W itself).

        Backprop keeps the result per Linear edge set and semiring kind (``prep_key``),
        so that later passes over the same forward skip lifting the weights again.
        """
        return W

    def vecmat_prepared(self, a: Array, src: Array | None, P: Any) -> tuple[Array, Array | None]:
        """:meth:`vecmat` with W already passed through :meth:`prepare`."""
        return self.vecmat(a, src, P)

    def take_columns(self, P: Any, cols: Array) -> Any:
        """A prepared W restricted to the contraction columns ``cols`` (its last axis, j)."""
        return P[..., cols]

    def affine_vecmat(
        self, a: Array, src: Array | None, c: Array, D: Array, p: Array, u: Array, v: Array, logc: Array | None = None
    ) -> tuple[Array, Array | None]:
        """out[r, k] = ⊕_j a[r, j] ⊗ lift(J[r, j, k]) for the structured rows J = c_j (D δ_jk + p + u_j v_k).

        ``a`` is (R, n) + vshape; c, u, v are (R, n) and D, p (R,) (see
        :class:`semitorch.ops.structures.RowJacobian`). This default builds the dense J
        and calls :meth:`vecmat`; semirings with ``fast_affine`` override it with a
        kernel that never stores J. ``logc``: log|c| when the caller has it (log-space
        semirings reuse it; it never changes a result).
        """
        xp = _xp(a)
        n = a.shape[1]
        J = p[:, None, None] + u[:, :, None] * v[:, None, :]
        i = xp.arange(n)
        J[:, i, i] = (p + D)[:, None] + u * v
        J *= c[:, :, None]
        tail = a.shape[2:]
        a3 = a.reshape((a.shape[0], 1, n) + tail)
        r, rs = self.vecmat(a3, None if src is None else src.reshape(a3.shape), xp.swapaxes(J, -1, -2))
        return r.reshape(a.shape), None if rs is None else rs.reshape(a.shape)

    def vecmat(self, a: Array, src: Array | None, W: Array) -> tuple[Array, Array | None]:
        """out[..., r, k] = ⊕_j a[..., r, j] ⊗ lift(W[..., k, j]) (batch dims broadcast).

        Generic (broadcast then reduce, in chunks of rows); subclasses override with
        BLAS or dedicated kernels.
        """
        nv = len(self.vshape)
        lw = self.lift(W)  # (..., k, j) + v
        tail = (slice(None),) * nv
        a_ = a[(Ellipsis, None, slice(None)) + tail]  # (..., r, 1, j) + v
        lw_ = lw[(Ellipsis, None, slice(None), slice(None)) + tail]  # (..., 1, k, j) + v
        prod = self.times(a_, lw_.astype(a.dtype, copy=False))
        jax = prod.ndim - nv - 1
        return self.sum(prod, (jax,), False), None


def _xp(a: Any) -> Any:
    from ..backend import xp_of  # noqa: PLC0415

    return xp_of(a)
