"""Chunked array-API reference implementations of the semiring matmul kernels (exact; the fallback).

Each kernel contracts ``a (..., r, j[, K|2])`` with edge weights ``w (..., k, j)`` and
returns ``(val, arg)``: the ⊕-selected value per ``(..., r, k)`` and the int64 index
of the candidate that attained it (ties to the LOWEST index). The full
``rows × k × j`` candidate array is never built: the work is cut into blocks of
(batch, rows, columns) whose candidate array has at most ``chunk_elems`` entries.
Only array-namespace functions that numpy and cupy share are used.

The helpers here (:func:`prepare`, :func:`blocks`) are shared with the numba backend.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..backend import xp_of

Array = Any

CHUNK_ELEMS = 1 << 18
"""Largest candidate block (entries): 2 MB in float64, a few such temporaries per block."""


# ---- shared argument handling -------------------------------------------------------------


def _unbroadcast(x: Array, nbatch: int) -> Array:
    """Collapse zero-stride (broadcast) batch axes to length 1, so nothing broadcast is ever copied."""
    for i in range(nbatch):
        if x.shape[i] > 1 and x.strides[i] == 0:
            x = x[(slice(None),) * i + (slice(0, 1),)]
    return x


def prepare(name: str, a: Array, w: Array, a_core: int) -> tuple[Array, Array, Array, Array, tuple[int, ...]]:
    """Check shapes and dtypes; flatten the batch dims of both operands.

    ``a_core`` is the number of non-batch axes of ``a`` (2 for (r, j), 3 for (r, j, K)
    or (r, j, 2)). Returns ``(a_flat (Ba,) + core, w_flat (Bw, k, j), ia, iw, batch)``
    where ``ia``/``iw`` (int64, length prod(batch)) map each flat output batch index to
    the operands' flat batch index, and ``batch`` is the broadcast batch shape.
    """
    xp = xp_of(a, w)
    a = xp.asarray(a)
    w = xp.asarray(w)
    if a.ndim < a_core or w.ndim < 2:
        raise ValueError(
            f"{name}: a must have at least {a_core} dims and w at least 2, got a {tuple(a.shape)} "
            f"and w {tuple(w.shape)}"
        )
    j = a.shape[a.ndim - a_core + 1]
    if w.shape[-1] != j:
        raise ValueError(
            f"{name}: contraction sizes differ: a {tuple(a.shape)} has j={j} but w {tuple(w.shape)} "
            f"(..., k, j) has j={w.shape[-1]}"
        )
    if name == "signed_vecmat" and a.shape[-1] != 2:
        raise ValueError(f"signed_vecmat: a must be (..., r, j, 2) (max, min) pairs, got {tuple(a.shape)}")
    ba, bw = tuple(a.shape[: a.ndim - a_core]), tuple(w.shape[:-2])
    try:
        batch = tuple(np.broadcast_shapes(ba, bw))
    except ValueError:
        raise ValueError(
            f"{name}: batch dims do not broadcast: a {tuple(a.shape)} (batch {ba}) and w {tuple(w.shape)} (batch {bw})"
        ) from None
    dt = np.result_type(a.dtype, w.dtype)
    if not np.issubdtype(dt, np.floating):
        dt = np.dtype(np.float64)
    a = a.astype(dt, copy=False)
    w = w.astype(dt, copy=False)
    nb = len(batch)
    a = _unbroadcast(a.reshape((1,) * (nb - len(ba)) + tuple(a.shape)), nb)
    w = _unbroadcast(w.reshape((1,) * (nb - len(bw)) + tuple(w.shape)), nb)
    pa, pw = tuple(a.shape[:nb]), tuple(w.shape[:nb])
    ia, iw = (
        xp.arange(math.prod(pb), dtype=xp.int64)
        if pb == batch  # nothing broadcast along the batch: the identity map
        else xp.broadcast_to(xp.arange(math.prod(pb), dtype=xp.int64).reshape(pb), batch).reshape(-1)
        for pb in (pa, pw)
    )
    a_flat = a.reshape((math.prod(pa),) + tuple(a.shape[nb:]))
    w_flat = w.reshape((math.prod(pw),) + tuple(w.shape[nb:]))
    return a_flat, w_flat, ia, iw, batch


def blocks(nbatch: int, r: int, k: int, per: int, chunk_elems: int) -> Iterator[tuple[slice, slice, slice]]:
    """Blocks ``(batch slice, row slice, column slice)`` whose candidate count ``B·R·K·per`` ≤ ``chunk_elems``.

    ``per`` is the number of candidates per output entry (j, j·K or 2·j). Whole
    problems (all rows and columns) are grouped over the batch when they fit; else
    one batch entry at a time with row and column tiles (a single (1, 1) entry
    larger than the budget still forms one block).
    """
    per = max(per, 1)
    whole = r * k * per
    if whole <= chunk_elems:
        g = max(1, chunk_elems // max(whole, 1))
        for b0 in range(0, nbatch, g):
            yield slice(b0, min(b0 + g, nbatch)), slice(0, r), slice(0, k)
        return
    kc = min(k, max(1, chunk_elems // per))
    rc = min(r, max(1, chunk_elems // (kc * per)))
    for b in range(nbatch):
        for r0 in range(0, r, rc):
            for k0 in range(0, k, kc):
                yield slice(b, b + 1), slice(r0, min(r0 + rc, r)), slice(k0, min(k0 + kc, k))


def _first_true(mask: Array, xp: Any) -> Array:
    """Index of the first True along the last axis (0 where there is none)."""
    return xp.argmax(mask, axis=-1)


# ---- the kernels --------------------------------------------------------------------------


def maxplus_vecmat(a: Array, logw: Array, chunk_elems: int = CHUNK_ELEMS) -> tuple[Array, Array]:
    """val[..., r, k] = max_j a[..., r, j] + logw[..., k, j]; arg = the lowest j attaining it (0 if val = −inf)."""
    xp = xp_of(a, logw)
    af, wf, ia, iw, batch = prepare("maxplus_vecmat", a, logw, 2)
    r, j = af.shape[-2:]
    k = wf.shape[-2]
    nbt = ia.shape[0]
    val = xp.full((nbt, r, k), -xp.inf, dtype=af.dtype)
    arg = xp.zeros((nbt, r, k), dtype=xp.int64)
    if j > 0:
        for bs, rs, ks in blocks(nbt, r, k, j, chunk_elems):
            ab = af[ia[bs]][:, rs]  # (B, R, j)
            wb = wf[iw[bs]][:, ks]  # (B, K, j)
            cand = ab[:, :, None, :] + wb[:, None, :, :]  # (B, R, K, j)
            i = xp.argmax(cand, axis=-1)
            val[bs, rs, ks] = xp.take_along_axis(cand, i[..., None], axis=-1)[..., 0]
            arg[bs, rs, ks] = i
    arg[val == -xp.inf] = 0
    return val.reshape(batch + (r, k)), arg.reshape(batch + (r, k))


def kbest_vecmat(a: Array, logw: Array, chunk_elems: int = CHUNK_ELEMS) -> tuple[Array, Array]:
    """For each (r, k): the K largest a[..., r, j, q] + logw[..., k, j] over (j, q), descending; arg = j·K + q.

    ``a`` is (..., r, j, K) sorted descending along its last axis (−inf padding).
    Ties go to the lowest j·K + q; −inf entries have arg 0.
    """
    xp = xp_of(a, logw)
    af, wf, ia, iw, batch = prepare("kbest_vecmat", a, logw, 3)
    r, j, K = af.shape[-3:]
    k = wf.shape[-2]
    nbt = ia.shape[0]
    val = xp.full((nbt, r, k, K), -xp.inf, dtype=af.dtype)
    arg = xp.zeros((nbt, r, k, K), dtype=xp.int64)
    if j > 0 and K > 0:
        for bs, rs, ks in blocks(nbt, r, k, j * K, chunk_elems):
            ab = af[ia[bs]][:, rs]  # (B, R, j, K)
            wb = wf[iw[bs]][:, ks]  # (B, C, j)
            cand = ab[:, :, None, :, :] + wb[:, None, :, :, None]  # (B, R, C, j, K)
            cand = cand.reshape(cand.shape[:3] + (j * K,))
            order = xp.argsort(-cand, axis=-1, kind="stable")[..., :K]
            val[bs, rs, ks] = xp.take_along_axis(cand, order, axis=-1)
            arg[bs, rs, ks] = order
    arg[val == -xp.inf] = 0
    return val.reshape(batch + (r, k, K)), arg.reshape(batch + (r, k, K))


def signed_vecmat(a: Array, w: Array, chunk_elems: int = CHUNK_ELEMS) -> tuple[Array, Array]:
    """Most positive / most negative of w[..., k, j]·a[..., r, j, c] over (j, c) with w ≠ 0 and a finite.

    ``a`` is (..., r, j, 2) (max, min) pairs in linear scale, (−inf, +inf) = no path.
    val (..., r, k, 2) is (max, min) of the candidates, (−inf, +inf) with none; arg =
    j·2 + c of the first (lowest-index) candidate attaining each, 0 with none.
    """
    xp = xp_of(a, w)
    af, wf, ia, iw, batch = prepare("signed_vecmat", a, w, 3)
    r, j = af.shape[-3:-1]
    k = wf.shape[-2]
    nbt = ia.shape[0]
    val = xp.empty((nbt, r, k, 2), dtype=af.dtype)
    val[..., 0] = -xp.inf
    val[..., 1] = xp.inf
    arg = xp.zeros((nbt, r, k, 2), dtype=xp.int64)
    if j > 0:
        for bs, rs, ks in blocks(nbt, r, k, 2 * j, chunk_elems):
            ab = af[ia[bs]][:, rs]  # (B, R, j, 2)
            wb = wf[iw[bs]][:, ks]  # (B, C, j)
            with np.errstate(invalid="ignore", over="ignore"):  # inf·0 and overflow: masked/kept as the kernel does
                cand = ab[:, :, None, :, :] * wb[:, None, :, :, None]  # (B, R, C, j, 2)
            ok = xp.isfinite(ab)[:, :, None, :, :] & (wb != 0)[:, None, :, :, None]
            shp = cand.shape[:3] + (2 * j,)
            cand, ok = cand.reshape(shp), ok.reshape(shp)
            hi = xp.where(ok, cand, -xp.inf).max(axis=-1)
            lo = xp.where(ok, cand, xp.inf).min(axis=-1)
            found = ok.any(axis=-1)
            ahi = _first_true(ok & (cand == hi[..., None]), xp)
            alo = _first_true(ok & (cand == lo[..., None]), xp)
            val[bs, rs, ks, 0] = xp.where(found, hi, -xp.inf)
            val[bs, rs, ks, 1] = xp.where(found, lo, xp.inf)
            arg[bs, rs, ks, 0] = xp.where(found, ahi, 0)
            arg[bs, rs, ks, 1] = xp.where(found, alo, 0)
    return val.reshape(batch + (r, k, 2)), arg.reshape(batch + (r, k, 2))


# ---- structured row Jacobians: q[r, j, k] = D[r]·[j = k] + p[r] + u[r, j]·v[r, k] ------------------
#
# The row Jacobians of layer_norm, softmax and log_softmax are c[r, j]·q[r, j, k]: a diagonal
# plus a rank-1 term plus a constant. A semiring folds |c| and its adjoint into the
# non-negative linear-scale weights ``g`` (R, n); the kernels below contract ``g`` with
# |q| over j without ever storing the (R, n, n) Jacobian. ``p`` and ``D`` are (R,).


def affine_q_signed(u: Array, v: Array, p: Array, D: Array) -> Array:
    """The dense (R, n, n) q of a block of rows, with the same rounding as the kernels.

    Off the diagonal q = p + u_j·v_k; on it q = (D + p) + u_j·v_j.
    """
    xp = xp_of(u)
    q = p[:, None, None] + u[:, :, None] * v[:, None, :]
    n = u.shape[1]
    i = xp.arange(n)
    q[:, i, i] = (p + D)[:, None] + u * v
    return q


def affine_q(u: Array, v: Array, p: Array, D: Array) -> Array:
    """|q| of :func:`affine_q_signed`."""
    return xp_of(u).abs(affine_q_signed(u, v, p, D))


def _affine_blocks(R: int, n: int, chunk_elems: int, per: int = 1) -> Iterator[slice]:
    step = max(1, chunk_elems // max(n * n * per, 1))
    for r0 in range(0, R, step):
        yield slice(r0, min(r0 + step, R))


def affine_sum(g: Array, u: Array, v: Array, p: Array, D: Array, chunk_elems: int = CHUNK_ELEMS) -> Array:
    """S[r, k] = Σ_j g[r, j]·|q[r, j, k]| (``g`` may be signed)."""
    xp = xp_of(g)
    S = xp.zeros(g.shape, dtype=g.dtype)
    for rs in _affine_blocks(g.shape[0], g.shape[1], chunk_elems):
        S[rs] = xp.einsum("rj,rjk->rk", g[rs], affine_q(u[rs], v[rs], p[rs], D[rs]))
    return S


def affine_count(g: Array, u: Array, v: Array, p: Array, D: Array, chunk_elems: int = CHUNK_ELEMS) -> Array:
    """S[r, k] = Σ_j g[r, j]·[q[r, j, k] ≠ 0]: q in the dtype of the parts (u, v, p, D), the sum in g's."""
    xp = xp_of(g)
    S = xp.zeros(g.shape, dtype=g.dtype)
    for rs in _affine_blocks(g.shape[0], g.shape[1], chunk_elems):
        S[rs] = xp.einsum("rj,rjk->rk", g[rs], (affine_q(u[rs], v[rs], p[rs], D[rs]) != 0).astype(g.dtype))
    return S


def affine_signed(
    a: Array, c: Array, u: Array, v: Array, p: Array, D: Array, chunk_elems: int = CHUNK_ELEMS
) -> tuple[Array, Array]:
    """:func:`signed_vecmat` of ``a`` (R, n, 2) with the signed row Jacobians J[r, j, k] = c[r, j]·q[r, j, k].

    The edges are formed as the dense form rounds them (q, then q·c); built a block of rows at a time.
    """
    xp = xp_of(a)
    R, n = a.shape[:2]
    val = xp.empty((R, n, 2), dtype=a.dtype)
    arg = xp.zeros((R, n, 2), dtype=xp.int64)
    shapes = [(R, n)] * 3 + [(R,)] * 2
    parts = zip((c, u, v, p, D), shapes, strict=True)
    c, u, v, p, D = (xp.broadcast_to(xp.asarray(x, dtype=a.dtype), s) for x, s in parts)
    for rs in _affine_blocks(R, n, chunk_elems, 2):
        J = affine_q_signed(u[rs], v[rs], p[rs], D[rs]) * c[rs][:, :, None]  # (R, j, k)
        vb, ab = signed_vecmat(a[rs][:, None], xp.swapaxes(J, -1, -2), chunk_elems)
        val[rs], arg[rs] = vb[:, 0], ab[:, 0]
    return val, arg


def affine_max(g: Array, u: Array, v: Array, p: Array, D: Array, chunk_elems: int = CHUNK_ELEMS) -> tuple[Array, Array]:
    """V[r, k] = max_j g[r, j]·|q[r, j, k]| (``g`` ≥ 0) and the lowest j attaining it; (0, 0) where all are 0."""
    xp = xp_of(g)
    V = xp.zeros(g.shape, dtype=g.dtype)
    A = xp.zeros(g.shape, dtype=xp.int64)
    if g.shape[1] == 0:  # no columns: nothing to take the arg-max of
        return V, A
    for rs in _affine_blocks(g.shape[0], g.shape[1], chunk_elems):
        cand = g[rs][:, :, None] * affine_q(u[rs], v[rs], p[rs], D[rs])  # (R, j, k)
        i = xp.argmax(cand, axis=1)
        V[rs] = xp.take_along_axis(cand, i[:, None, :], axis=1)[:, 0]
        A[rs] = i
    A[V == 0] = 0
    return V, A


def affine_entropy(
    g: Array, u: Array, v: Array, p: Array, D: Array, chunk_elems: int = CHUNK_ELEMS
) -> tuple[Array, Array]:
    """(S, T): S[r, k] = Σ_j g[r, j]·|q| and T[r, k] = Σ_j g[r, j]·|q|·log|q| (0·log 0 = 0)."""
    xp = xp_of(g)
    S = xp.zeros(g.shape, dtype=g.dtype)
    T = xp.zeros(g.shape, dtype=g.dtype)
    for rs in _affine_blocks(g.shape[0], g.shape[1], chunk_elems):
        q = affine_q(u[rs], v[rs], p[rs], D[rs])
        with np.errstate(divide="ignore", invalid="ignore"):
            lq = xp.where(q > 0, q * xp.log(q), 0)
        S[rs] = xp.einsum("rj,rjk->rk", g[rs], q)
        T[rs] = xp.einsum("rj,rjk->rk", g[rs], lq)
    return S, T


def affine_entropy_sum(
    g: Array, h: Array, u: Array, v: Array, p: Array, D: Array, chunk_elems: int = CHUNK_ELEMS
) -> tuple[Array, Array, Array]:
    """(S, T, T₁): :func:`affine_entropy` of ``g`` and :func:`affine_sum` of ``h`` (R, n) over the same rows."""
    S, T = affine_entropy(g, u, v, p, D, chunk_elems)
    return S, T, affine_sum(h, u, v, p, D, chunk_elems)


def affine_kbest(
    g: Array, u: Array, v: Array, p: Array, D: Array, chunk_elems: int = CHUNK_ELEMS
) -> tuple[Array, Array]:
    """For each (r, k): the K largest g[r, j, q]·|q[r, j, k]| over (j, q), descending; arg = j·K + q.

    ``g`` (R, n, K) ≥ 0 is sorted descending along its last axis. Ties go to the lowest
    j·K + q; entries with no candidate above 0 are (0, 0).
    """
    xp = xp_of(g)
    R, n, K = g.shape
    V = xp.zeros((R, n, K), dtype=g.dtype)
    A = xp.zeros((R, n, K), dtype=xp.int64)
    if n == 0:  # no columns: no candidate
        return V, A
    for rs in _affine_blocks(R, n, chunk_elems, max(K, 1)):
        q = affine_q(u[rs], v[rs], p[rs], D[rs])  # (B, j, k)
        cand = g[rs][:, :, None, :] * q[:, :, :, None]  # (B, j, k, K)
        cand = xp.ascontiguousarray(xp.moveaxis(cand, 2, 1)).reshape(-1, n * K)  # (B·k, j·K + q), a copy
        rows = xp.arange(cand.shape[0])
        for i in range(K):  # K rounds of argmax (the first, i.e. lowest, index on ties): a stable top K
            best = xp.argmax(cand, axis=-1)
            V[rs, :, i] = cand[rows, best].reshape(-1, n)
            A[rs, :, i] = best.reshape(-1, n)
            cand[rows, best] = -1  # below every candidate (all ≥ 0): never taken again
    A[V == 0] = 0
    return V, A


# ---- the log-space elementwise helpers (the numba backend fuses them for float32) ------------


def exp_shift(a: Array) -> tuple[Array, Array]:
    """(exp(a − m), m) with m (..., 1) the max of each row of ``a`` (last axis; 0 where no entry is finite).

    Results below the smallest normal float are set to 0: subnormals slow BLAS and the
    kernels down, and terms that far below their row's max are rechecked by the callers.
    """
    xp = xp_of(a)
    mx = a.max(axis=-1, keepdims=True)
    m = xp.where(xp.isfinite(mx), mx, 0).astype(a.dtype, copy=False)
    e = xp.exp(a - m)
    if e.dtype.kind == "f":
        e = xp.where(e < xp.finfo(e.dtype).tiny, 0, e).astype(e.dtype, copy=False)
    return e, m


def log_shift(s: Array, m: Array) -> Array:
    """log(s) + m for ``s`` ≥ 0 (−inf where s = 0), ``m`` broadcasting against ``s``."""
    xp = xp_of(s)
    with np.errstate(divide="ignore"):
        out = xp.log(s)
    out += m
    return out


def logaddexp(a: Array, b: Array) -> Array:
    """log(e^a + e^b) elementwise (−inf where both are −inf)."""
    return xp_of(a).logaddexp(a, b)


def pair_plus(a: Array, b: Array) -> Array:
    """The expectation semiring's ⊕ on (L, E) pairs (last axis 2): ⟨logaddexp(L₁, L₂), p₁E₁ + p₂E₂⟩
    with pᵢ = e^{Lᵢ − L}, and E = 0 where L = −∞ (no path)."""
    xp = xp_of(a)
    L = xp.logaddexp(a[..., 0], b[..., 0])
    Ls = xp.where(xp.isfinite(L), L, 0).astype(L.dtype, copy=False)  # a safe shift where no path
    with np.errstate(invalid="ignore", over="ignore"):
        E = xp.exp(a[..., 0] - Ls) * a[..., 1] + xp.exp(b[..., 0] - Ls) * b[..., 1]
    E = xp.where(L == -xp.inf, 0, E).astype(L.dtype, copy=False)
    return xp.stack([L, E], axis=-1)


def log_shift_low(s: Array, m: Array, limit: float) -> tuple[Array, bool]:
    """(log(s) + m, whether any result is more than ``limit`` below its row's shift m)."""
    out = log_shift(s, m)
    return out, bool((out < m - limit).any())


def gather_last(src: Array, arg: Array) -> Array:
    """``src[..., arg[..., i]]`` along the last axis (leading axes of ``src`` broadcast to ``arg``'s)."""
    xp = xp_of(arg)
    return xp.take_along_axis(xp.broadcast_to(src, arg.shape[:-1] + src.shape[-1:]), arg, axis=-1)


def kbest_merge(a: Array, sa: Array | None, b: Array, sb: Array | None) -> tuple[Array, Array | None]:
    """The K largest of two descending K-lists (last axis), descending; ties take ``a``'s entries first.

    Backpointers ``sa`` / ``sb`` travel with their values (None: none kept).
    """
    xp = xp_of(a)
    cand = xp.concatenate(xp.broadcast_arrays(a, b), axis=-1)
    K = a.shape[-1]
    order = xp.argsort(-cand, axis=-1, kind="stable")[..., :K]
    val = xp.take_along_axis(cand, order, axis=-1)
    if sa is None or sb is None:
        return val, None
    s = xp.concatenate(xp.broadcast_arrays(sa, sb), axis=-1)
    return val, xp.take_along_axis(xp.broadcast_to(s, cand.shape), order, axis=-1)


def pair_exp_rows(a: Array) -> tuple[Array, Array]:
    """The expectation semiring's vecmat input: (X, m) from ⟨L, E⟩ pairs ``a`` (..., r, j, 2).

    X (..., 2r, j) stacks P = exp(L − m) (:func:`exp_shift`) over P∘E (0 where P = 0), so
    that one BLAS call against |W|ᵀ gives both Σ P|w| and Σ P·E|w|; m is (..., r, 1).
    """
    xp = xp_of(a)
    P, m = exp_shift(a[..., 0])
    with np.errstate(invalid="ignore", over="ignore"):
        PE = xp.where(P > 0, P * a[..., 1], 0).astype(P.dtype, copy=False)
    return xp.concatenate([P, PE], axis=-2), m


def pair_log_rows(Y: Array, T2: Array, m: Array, limit: float) -> tuple[Array, bool]:
    """The expectation semiring's vecmat output: ⟨L, E⟩ pairs (..., r, k, 2) from Y = [S; T₁] (..., 2r, k) and T₂.

    L = m + log S (−∞ where S = 0), E = (T₁ − T₂) / S (0 where L = −∞); the flag says
    whether any L fell more than ``limit`` below its row's shift m (as :func:`log_shift_low`).
    """
    xp = xp_of(Y)
    r = T2.shape[-2]
    S, T1 = Y[..., :r, :], Y[..., r:, :]
    L, low = log_shift_low(S, m, limit)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        E = (T1 - T2) / S
    E = xp.where(L == -xp.inf, 0, E).astype(L.dtype, copy=False)
    return xp.stack([L, E], axis=-1), low
