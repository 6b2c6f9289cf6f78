"""The entropy semiring, renormalised: the Shannon entropy of the distribution over paths in one backward pass."""

from __future__ import annotations

from typing import Any

from .. import kernels
from .base import Array, Semiring, _xp, register_semiring
from .log import (
    _Quiet,
    affine_weights,
    dense_recheck,
    finite_or_zero,
    flagged_rows,
    keep_shape,
    live_columns,
    live_rows,
    log_abs,
    logsumexp,
    move_last,
    recheck_limit,
    scatter_logsumexp,
)


def _pair(xp: Any, L: Array, E: Array) -> Array:
    return xp.stack([L, E], axis=-1)


def _clean(xp: Any, L: Array, E: Array) -> Array:
    """⟨L, E⟩ with E set to 0 where L = −∞ (the canonical 0̄, also hiding 0·∞ = nan)."""
    return _pair(xp, L, xp.where(L == -xp.inf, 0, E).astype(L.dtype, copy=False))


@register_semiring
class Entropy(Semiring):
    """The expectation (entropy) semiring of Du et al. over |w|, kept in a numerically stable form.

    For a set of paths with weights Π|w|, a value is the pair ⟨L, E⟩ with
    L = log Z (Z = Σ Π|w|, the path mass) and E = −Σ p log Π|w| (p = Π|w| / Z); the
    paper's ⟨Z, −Σ Π|w| log Π|w|⟩ is ⟨e^L, e^L·E⟩. Value shape (2,).
    (⊕, ⊗, 0̄, 1̄) = (⟨logaddexp(L₁, L₂), p₁E₁ + p₂E₂⟩ with pᵢ = e^{Lᵢ−L},
    ⟨L₁ + L₂, E₁ + E₂⟩, ⟨−∞, 0⟩, ⟨0, 0⟩). Lift: an edge w becomes ⟨log|w|, −log|w|⟩
    (w = 0: 0̄, so 0·log 0 = 0 and zero edges are no edges).
    Readout: the entropy H = L + E = −Σ p log p in nats of p(path) = Π|w| / Z over
    all paths from the element to the output (0 where there is no path);
    ``Entropy(readout="log_mass")`` reads log Z instead, and :meth:`log_mass` /
    :meth:`entropy` read either from the values of a :func:`semitorch.backward` pass.
    ``vecmat`` is three rescaled BLAS matrix products in two calls.
    Reference: Eisner, "Parameter Estimation for Probabilistic Finite-State
    Transducers", ACL 2002 (expectation semiring); Li & Eisner, EMNLP 2009;
    Du et al., ACL 2023, §3.
    """

    name = "entropy"
    vshape = (2,)
    prep_key = "entropy"
    fast_affine = True

    def __init__(self, readout: str = "entropy") -> None:
        if readout not in ("entropy", "log_mass"):
            raise ValueError(f"Entropy: readout must be 'entropy' or 'log_mass', got {readout!r}")
        self.read = readout

    def __repr__(self) -> str:
        return f"Entropy(readout={self.read!r})"

    def nonzero_rows(self, a: Array) -> Array:
        """Rows holding a path: L = log Z above −∞ (:func:`~.log.live_rows`)."""
        return live_rows(a[..., 0])

    def nonzero_columns(self, a: Array) -> Array:
        """Columns holding a path: L = log Z above −∞ (:func:`~.log.live_columns`)."""
        return live_columns(a[..., 0])

    def zeros(self, xp: Any, shape: tuple[int, ...], dtype: Any) -> Array:
        """⟨−∞, 0⟩: no path."""
        out = xp.zeros(tuple(shape) + (2,), dtype=dtype)
        out[..., 0] = -xp.inf
        return out

    def ones(self, xp: Any, shape: tuple[int, ...], dtype: Any) -> Array:
        """⟨0, 0⟩: the empty path (weight 1, entropy 0)."""
        return xp.zeros(tuple(shape) + (2,), dtype=dtype)

    def lift(self, w: Array) -> Array:
        """⟨log|w|, −log|w|⟩ (⟨−∞, 0⟩ for w = 0)."""
        xp = _xp(w)
        lw = log_abs(w)
        return _clean(xp, lw, -lw)

    def plus(self, a: Array, b: Array) -> Array:
        """⟨logaddexp, probability-weighted mean of E⟩ (:func:`semitorch.kernels.pair_plus`: fused for float32)."""
        return kernels.pair_plus(a, b)

    def times(self, a: Array, b: Array) -> Array:
        """⟨L₁ + L₂, E₁ + E₂⟩."""
        xp = _xp(a)
        return _clean(xp, a[..., 0] + b[..., 0], a[..., 1] + b[..., 1])

    def sum(self, a: Array, axes: tuple[int, ...], keepdims: bool = False) -> Array:
        """⊕ over ``axes``: logsumexp of L, the p-weighted mean of E."""
        if not axes:
            return a
        xp = _xp(a)
        m, kept = move_last(a, tuple(axes), 1)  # kept + (n, 2)
        L = m[..., 0]
        mx = finite_or_zero(L.max(axis=-1, keepdims=True))
        p = xp.exp(L - mx)
        s = p.sum(axis=-1)
        with _Quiet(xp):
            Lo = xp.log(s) + mx[..., 0]
            Eo = (p * m[..., 1]).sum(axis=-1) / s
        shape = keep_shape(a.shape[:-1], tuple(axes), keepdims)
        return _clean(xp, Lo, Eo).reshape(shape + (2,))

    def readout(self, a: Array) -> Array:
        """The path entropy in nats (0 where no path), or log Z with ``readout="log_mass"``."""
        return self.log_mass(a) if self.read == "log_mass" else self.entropy(a)

    @staticmethod
    def entropy(values: Array) -> Array:
        """H = L + E from ⟨L, E⟩ values: the entropy of the path distribution in nats (0 where no path)."""
        xp = _xp(values)
        L, E = values[..., 0], values[..., 1]
        return xp.where(L == -xp.inf, 0, L + E).astype(values.dtype, copy=False)

    @staticmethod
    def log_mass(values: Array) -> Array:
        """log Z = log Σ_paths Π|w| from ⟨L, E⟩ values (−∞ where no path): the same as the :class:`Log` semiring."""
        return values[..., 0]

    # ---- backprop ---------------------------------------------------------------------------
    def edge(self, a: Array, src: Array | None, w: Array | None) -> tuple[Array, None]:
        """⟨L + log|w|, E − log|w|⟩ (w = 0: no edge)."""
        return (a, None) if w is None else self.edge_prepared(a, src, log_abs(w, a.dtype, a))

    edge_key = "logabs"

    def prepare_edge(self, w: Array) -> Array:
        """log|w| (shared with the log-space semirings)."""
        return log_abs(w)

    def edge_prepared(self, a: Array, src: Array | None, P: Array) -> tuple[Array, None]:
        """⟨L + P, E − P⟩ with P = log|w|."""
        xp = _xp(a)
        lw = P.astype(a.dtype, copy=False)
        return _clean(xp, a[..., 0] + lw, a[..., 1] - lw), None

    def accumulate(self, a: Array, sa: Array | None, b: Array, sb: Array | None) -> tuple[Array, None]:
        """a ⊕ b."""
        return self.plus(a, b), None

    def reduce(self, a: Array, src: Array | None, axes: tuple[int, ...], keepdims: bool) -> tuple[Array, None]:
        """⊕ over ``axes``."""
        return self.sum(a, axes, keepdims), None

    def scatter(self, a: Array, src: Array | None, index: Array, size: int) -> tuple[Array, None]:
        """Grouped ⊕ (vectorised with ufunc.at)."""
        xp = _xp(a)
        L, E = a[:, 0], a[:, 1]
        Lo, _ = scatter_logsumexp(L, index, size)
        Ls = finite_or_zero(Lo)
        num = xp.zeros((size,), dtype=a.dtype)
        with _Quiet(xp):
            xp.add.at(num, index, xp.exp(L - Ls[index]) * E)
        return _clean(xp, Lo, num), None

    def vecmat(self, a: Array, src: Array | None, W: Array) -> tuple[Array, None]:
        """Rescaled BLAS matmuls: [S; T₁] = [P; P∘E]|W|ᵀ and T₂ = P(|W| log|W|)ᵀ with P = e^{L − max}.

        L_out = max + log S, E_out = (T₁ − T₂) / S.
        """
        return self.vecmat_prepared(a, src, self.prepare(_xp(a).asarray(W, dtype=a.dtype)))

    def prepare(self, W: Array) -> tuple[Array, Array]:
        """(Aᵀ, (A log A)ᵀ) with A = |W| (..., k, j), both C-contiguous (..., j, k), and 0·log 0 = 0.

        The expectation semiring's ⊗ on pairs is a dual-number product: three matrix
        products per contraction (S, T₁ and T₂), which no bilinear scheme does in fewer.
        """
        xp = _xp(W)
        AT = xp.ascontiguousarray(xp.swapaxes(xp.abs(W), -1, -2))
        with _Quiet(xp):
            BT = xp.log(AT)
            BT *= AT
        BT[AT == 0] = 0
        return AT, BT

    def take_columns(self, P: tuple[Array, Array], cols: Array) -> tuple[Array, Array]:
        """Both prepared arrays restricted to the contraction indices ``cols`` (their rows)."""
        return P[0][..., cols, :], P[1][..., cols, :]

    def vecmat_prepared(self, a: Array, src: Array | None, P: tuple[Array, Array]) -> tuple[Array, None]:
        """:meth:`vecmat` with ``P`` from :meth:`prepare`: two BLAS calls, [P; P∘E]·Aᵀ and P·Bᵀ.

        The rows P and P∘E are stacked so that S and T₁ come from one call (taller
        operands run BLAS faster on the benchmark's 32-row adjoints), and the pre- and
        post-processing passes are :func:`semitorch.kernels.pair_exp_rows` and
        :func:`semitorch.kernels.pair_log_rows` (fused in numba for float32).
        """
        xp = _xp(a)
        AT, BT = (x.astype(a.dtype, copy=False) for x in P)
        if a.ndim == 2:  # one vector (j, 2): a single row, dropped again after any batch of W
            r, s = self.vecmat_prepared(a[None], src, P)
            return r[..., 0, :, :], s
        if a.shape[-2] == 0:  # an empty contraction: no path
            S = xp.matmul(a[..., 0], AT)
            return _clean(xp, S - xp.inf, S), None
        r = a.shape[-3]
        X, m = kernels.pair_exp_rows(a)
        Y = xp.matmul(X, AT)
        T2 = xp.matmul(X[..., :r, :], BT)
        limit = recheck_limit(a.dtype)
        out, low = kernels.pair_log_rows(Y, T2, m, limit)
        if not low:  # nothing fell far below its row's max: no recheck (the common case)
            return out, None
        Lo, Eo = out[..., 0], out[..., 1]
        with _Quiet(xp):
            flag = (Lo < m - limit) & xp.isfinite(a[..., 0].max(axis=-1, keepdims=True))
            if bool(flag.any()):  # every term far below the row max: recompute these outputs exactly
                idx, ar, wr = flagged_rows(a, xp.swapaxes(AT, -1, -2), flag, nv=1)
                lw = xp.log(wr)
                t = ar[..., 0] + lw
                Lo[idx] = logsumexp(t, -1)
                p = xp.exp(t - finite_or_zero(Lo[idx])[..., None])
                Eo[idx] = xp.where(p > 0, p * (ar[..., 1] - lw), 0).sum(axis=-1)
        return _clean(xp, Lo, Eo), None

    def affine_vecmat(
        self, a: Array, src: Array | None, c: Array, D: Array, p: Array, u: Array, v: Array, logc: Array | None = None
    ) -> tuple[Array, None]:
        """The entropy ⊕ over structured rows: S = Σ g|q|, T₁ = Σ g(E − log|c|)|q|, T₂ = Σ g|q| log|q|.

        With g = e^{L + log|c| − M}: L_out = M + log S, E_out = (T₁ − T₂) / S, all three sums by
        :func:`semitorch.kernels.affine_entropy_sum`, the pairs by :func:`semitorch.kernels.pair_log_rows`
        (as :meth:`vecmat_prepared` forms them).
        """
        xp = _xp(a)
        L, E = a[..., 0], a[..., 1]
        lc = log_abs(c, a.dtype, a) if logc is None else logc.astype(a.dtype, copy=False)
        g, M = affine_weights(L, c, lc)
        with _Quiet(xp):
            h = xp.where(g > 0, g * (E - lc), 0).astype(a.dtype, copy=False)
        S, T2, T1 = kernels.affine_entropy_sum(g, h, u, v, p, D)
        out, low = kernels.pair_log_rows(xp.concatenate([S, T1], axis=-2), T2, M, recheck_limit(a.dtype))
        return dense_recheck(self, out, None, M, a, None, c, D, p, u, v, pairs=True, low=low)[0], None
