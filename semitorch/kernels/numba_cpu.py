"""Numba CPU kernels for the semiring matmuls: parallel over (batch × rows), k innermost and contiguous.

Each kernel has a serial row-range worker (``_*_rows``, compiled once and cached on
disk) and a ``prange`` driver that splits the flat (batch × rows) index over
threads; small problems call the worker directly and skip the thread launch.
``w`` is transposed once per call to a (batch, j, k) layout, so the innermost loop
runs over contiguous k. Ties go to the lowest index, exactly as in
:mod:`semitorch.kernels.reference`: the max-plus, signed and sum kernels visit candidates
in increasing index order and replace the incumbent only when strictly better; the k-best
and structured max kernels visit them in an order chosen for speed and compare indices
explicitly on equal values. Their bounds (which outputs a group of j's can still reach)
only ever skip candidates that cannot enter. No fastmath: comparisons are exact.

Inputs are assumed NaN-free and ``logw`` free of +inf; ``kbest_vecmat`` relies on
``a`` being sorted descending along its last axis (it stops early on it).
"""

from __future__ import annotations

import functools
import os
from typing import Any

# numba's OpenMP workers busy-wait after each parallel region by default; between kernels
# that wait starves the calling thread and BLAS (measured here: a backward pass 2.5x slower).
# Passive waiting, unless the user chose a policy; it only affects OpenMP runtimes loaded later.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numba  # noqa: E402
import numpy as np  # noqa: E402
from numba import njit, prange  # noqa: E402
from numba.extending import intrinsic  # noqa: E402

from .reference import prepare

Array = Any

PARALLEL_MIN_WORK = 1 << 22
"""Below this many candidate evaluations (about 0.6 ms of max-plus work) a call runs on the calling thread only.

Set it to 0 to make every call parallel, to a huge value to make every call serial (the
tests use both). Two things decide whether splitting a call over numba's threads pays on
the 2-core machine this was measured on (benchmarks/semiring_overhead.py):

- After a BLAS call, OpenBLAS's own threads spin on the other cores for about 0.1 s, and
  a parallel region in that window ran no faster than the serial loop (a layer_norm
  entropy block: 3.1 ms either way, 1.6 ms on idle cores; a MaxProduct pass right after
  a BLAS-bound one: 46-48 ms against 45 ms serial, 33 ms after a KBest pass).
- A pass that calls BLAS itself (Log, Entropy) or is shorter than that window (MaxProduct,
  whose passes follow a forward's matmuls) is always in it. Their kernels (``affine_sum``,
  ``affine_entropy``, ``affine_max``, ``maxplus_vecmat``) therefore need 16 times this much
  work (``contended``); the k-best and signed kernels, whose passes run for hundreds of ms,
  split at this size: a KBest(5) pass took 286 instead of 365 ms and a SignedMax pass 133
  instead of 193 ms (2²⁶ for every kernel before; MaxProduct 44 ms, Log and Entropy unchanged).
"""

_CONTENDED = 4  # log2 of the factor for kernels that run while BLAS threads spin (see above)


def blas_spins_from_env(env: Any = None) -> bool:
    """Whether idle OpenBLAS threads busy-wait after each BLAS call, as the environment sets them up.

    OpenBLAS reads this when it loads: its worker threads spin for 2^t cycles after
    each call, t = ``OPENBLAS_THREAD_TIMEOUT`` (default 28, about 0.1 s; clamped to
    4..30), and there are none when its thread count (``OPENBLAS_NUM_THREADS``, else
    ``GOTO_NUM_THREADS``, else ``OMP_NUM_THREADS``) is 1. Spinning for at most 2^16
    cycles (tens of µs) counts as not spinning. Unparsable values count as unset.
    """
    env = os.environ if env is None else env

    def number(*names: str) -> int | None:
        for name in names:
            try:
                v = int(str(env.get(name, "")).strip().split(",")[0])
            except ValueError:
                continue
            if v > 0:
                return v
        return None

    if number("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS") == 1:
        return False
    timeout = number("OPENBLAS_THREAD_TIMEOUT")
    return timeout is None or timeout > 16


BLAS_SPINS = blas_spins_from_env()
"""Whether idle BLAS threads are taken to spin on the other cores (see :func:`blas_spins_from_env`).

While they do, the kernels of the passes that run in their wake (``contended``) split
only at 16 times :data:`PARALLEL_MIN_WORK`; when they don't (``OPENBLAS_THREAD_TIMEOUT=10``
or one BLAS thread, set before numpy is imported), at :data:`PARALLEL_MIN_WORK` like the
rest. Measured on the benchmark's encoder, alternating processes, default against
``OPENBLAS_THREAD_TIMEOUT=10``: MaxProduct 43-44 → 32-37 ms, Entropy 74-81 → 62-70 ms,
Real 13-15 ms either way. Read from the environment when these kernels first load, while OpenBLAS read it when
numpy loaded it: set the variables before Python starts (a change made from Python after
``import numpy`` would fool the guess and not OpenBLAS). Set ``BLAS_SPINS`` itself to
override the guess (e.g. for a BLAS other than OpenBLAS, or one limited by threadpoolctl).
"""

_NEG = -np.inf
_POS = np.inf


# ---- max-plus -----------------------------------------------------------------------------
#
# Register blocking: four rows (_maxplus_rows4; a leftover pair or single row in
# _maxplus_rows) share each load of w, and four j's are folded into one
# read-modify-write of the running (max, arg) per k. The running value is updated
# through a chain of selects; a single ``if y > v[k]: v[k] = y`` would be turned by
# LLVM into masked stores, which are microcoded (very slow) on AMD CPUs. ``a`` is
# padded with −inf to a multiple of 4 columns, so the padding never wins.

_KT = 512  # k-tile: the running (max, arg) buffers of a row group stay in L1


@njit(cache=True, nogil=True, inline="always")
def _wrows4(w, j0, j, k0, n):
    """Rows j0, …, j0 + 3 of w (past the last row: the last row, against −inf padding of a),
    columns k0 to k0 + n, and the four j's as int32."""
    w0 = w[j0, k0 : k0 + n]
    w1 = w[min(j0 + 1, j - 1), k0 : k0 + n]
    w2 = w[min(j0 + 2, j - 1), k0 : k0 + n]
    w3 = w[min(j0 + 3, j - 1), k0 : k0 + n]
    return w0, w1, w2, w3, np.int32(j0), np.int32(j0 + 1), np.int32(j0 + 2), np.int32(j0 + 3)


@njit(cache=True, nogil=True, inline="always")
def _maxplus_fold4(o, p, x0, x1, x2, x3, c0, c1, c2, c3, q0, q1, q2, q3):
    """The running (max, arg) of one k after the candidates x_i + c_i of four j's, in j order."""
    y = x0 + c0
    if y > o:
        o = y
        p = q0
    y = x1 + c1
    if y > o:
        o = y
        p = q1
    y = x2 + c2
    if y > o:
        o = y
        p = q2
    y = x3 + c3
    if y > o:
        o = y
        p = q3
    return o, p


@njit(cache=True, nogil=True)
def _maxplus_rows(a, wT, ia, iw, val, arg, t0, t1, neg):
    r = a.shape[1]
    jp = a.shape[2]
    j = wT.shape[1]
    k = wT.shape[2]
    kt = min(k, _KT)
    v = np.empty(kt, dtype=a.dtype)
    u = np.empty(kt, dtype=a.dtype)
    g = np.empty(kt, dtype=np.int32)
    h = np.empty(kt, dtype=np.int32)
    t = t0
    while t < t1:  # one batch entry at a time: rows [t, te) share w
        b = t // r
        te = min(t1, (b + 1) * r)
        ab = a[ia[b]]
        w = wT[iw[b]]
        for k0 in range(0, k, kt):
            n = min(kt, k - k0)
            for tt in range(t, te, 2):
                r0 = tt - b * r
                r1 = r0 + 1 if tt + 1 < te else r0
                ar = ab[r0]
                br = ab[r1]
                for kk in range(n):
                    v[kk] = neg
                    u[kk] = neg
                    g[kk] = 0
                    h[kk] = 0
                for j0 in range(0, jp, 4):
                    x0 = ar[j0]
                    x1 = ar[j0 + 1]
                    x2 = ar[j0 + 2]
                    x3 = ar[j0 + 3]
                    z0 = br[j0]
                    z1 = br[j0 + 1]
                    z2 = br[j0 + 2]
                    z3 = br[j0 + 3]
                    if max(x0, x1, x2, x3, z0, z1, z2, z3) == neg:
                        continue
                    w0, w1, w2, w3, q0, q1, q2, q3 = _wrows4(w, j0, j, k0, n)
                    for kk in range(n):
                        c0 = w0[kk]
                        c1 = w1[kk]
                        c2 = w2[kk]
                        c3 = w3[kk]
                        v[kk], g[kk] = _maxplus_fold4(v[kk], g[kk], x0, x1, x2, x3, c0, c1, c2, c3, q0, q1, q2, q3)
                        u[kk], h[kk] = _maxplus_fold4(u[kk], h[kk], z0, z1, z2, z3, c0, c1, c2, c3, q0, q1, q2, q3)
                vo = val[b, r0]
                go = arg[b, r0]
                for kk in range(n):
                    vo[k0 + kk] = v[kk]
                    go[k0 + kk] = g[kk]
                if r1 != r0:
                    vo = val[b, r1]
                    go = arg[b, r1]
                    for kk in range(n):
                        vo[k0 + kk] = u[kk]
                        go[k0 + kk] = h[kk]
        t = te


@njit(cache=True, nogil=True)
def _maxplus_rows4(a, wT, ia, iw, val, arg, t0, t1, neg):
    # As _maxplus_rows with four rows sharing each load of w (a captured MaxProduct pass of
    # the 6-layer benchmark: 25 against 31 ms); the rows left over in each batch entry
    # (fewer than four) go to _maxplus_rows.
    r = a.shape[1]
    jp = a.shape[2]
    j = wT.shape[1]
    k = wT.shape[2]
    kt = min(k, _KT)
    V = np.empty((4, kt), dtype=a.dtype)
    G = np.empty((4, kt), dtype=np.int32)
    t = t0
    while t < t1:  # one batch entry at a time: rows [t, te) share w
        b = t // r
        te = min(t1, (b + 1) * r)
        t4 = t + (te - t) // 4 * 4
        ab = a[ia[b]]
        w = wT[iw[b]]
        for k0 in range(0, k, kt):
            n = min(kt, k - k0)
            for tt in range(t, t4, 4):
                r0 = tt - b * r
                ar = ab[r0]
                br = ab[r0 + 1]
                cr = ab[r0 + 2]
                dr = ab[r0 + 3]
                v0 = V[0]
                v1 = V[1]
                v2 = V[2]
                v3 = V[3]
                g0 = G[0]
                g1 = G[1]
                g2 = G[2]
                g3 = G[3]
                for kk in range(n):
                    v0[kk] = neg
                    v1[kk] = neg
                    v2[kk] = neg
                    v3[kk] = neg
                    g0[kk] = 0
                    g1[kk] = 0
                    g2[kk] = 0
                    g3[kk] = 0
                for j0 in range(0, jp, 4):
                    a0, a1, a2, a3 = ar[j0], ar[j0 + 1], ar[j0 + 2], ar[j0 + 3]
                    b0, b1, b2, b3 = br[j0], br[j0 + 1], br[j0 + 2], br[j0 + 3]
                    c0, c1, c2, c3 = cr[j0], cr[j0 + 1], cr[j0 + 2], cr[j0 + 3]
                    d0, d1, d2, d3 = dr[j0], dr[j0 + 1], dr[j0 + 2], dr[j0 + 3]
                    if max(a0, a1, a2, a3, b0, b1, b2, b3) == neg and max(c0, c1, c2, c3, d0, d1, d2, d3) == neg:
                        continue
                    w0, w1, w2, w3, q0, q1, q2, q3 = _wrows4(w, j0, j, k0, n)
                    for kk in range(n):
                        e0 = w0[kk]
                        e1 = w1[kk]
                        e2 = w2[kk]
                        e3 = w3[kk]
                        v0[kk], g0[kk] = _maxplus_fold4(v0[kk], g0[kk], a0, a1, a2, a3, e0, e1, e2, e3, q0, q1, q2, q3)
                        v1[kk], g1[kk] = _maxplus_fold4(v1[kk], g1[kk], b0, b1, b2, b3, e0, e1, e2, e3, q0, q1, q2, q3)
                        v2[kk], g2[kk] = _maxplus_fold4(v2[kk], g2[kk], c0, c1, c2, c3, e0, e1, e2, e3, q0, q1, q2, q3)
                        v3[kk], g3[kk] = _maxplus_fold4(v3[kk], g3[kk], d0, d1, d2, d3, e0, e1, e2, e3, q0, q1, q2, q3)
                for i in range(4):
                    vo = val[b, r0 + i]
                    go = arg[b, r0 + i]
                    for kk in range(n):
                        vo[k0 + kk] = V[i, kk]
                        go[k0 + kk] = G[i, kk]
        if t4 < te:
            _maxplus_rows(a, wT, ia, iw, val, arg, t4, te, neg)
        t = te


@njit(cache=True, parallel=True)
def _maxplus_par(a, wT, ia, iw, val, arg, nchunks, neg):
    n = ia.shape[0] * a.shape[1]
    for c in prange(nchunks):
        _maxplus_rows4(a, wT, ia, iw, val, arg, c * n // nchunks, (c + 1) * n // nchunks, neg)


# ---- k-best -------------------------------------------------------------------------------
#
# Per row, the j's are visited by decreasing a[j, 0] (their best entry), in buckets: a
# counting sort of each row's j into n buckets of equal width in a[j, 0] (j's whose
# entries are all −inf hold no candidate and are dropped), with the largest a[j, 0] of
# each bucket and of all later ones kept as an exact bound (a numpy argsort before the
# call cost more than the kernel's loss from the coarser order). Ties are broken
# explicitly by index (value descending, then j·K + q ascending), which makes the result
# independent of the visiting order. Each output's list starts as the K candidates of the
# j with the best rank-0 candidate (found by the max-plus kernel; that j is then
# skipped), so "worst" starts at their K-th rather than at −inf. For each j a vectorised
# pass flags the k's whose best candidate a[j, 0] + w[j, k] can still enter (≥ worst);
# only flagged k's run the insertion. Every 32 j's the outputs that no later j can reach
# (bound + max_j w[j, k] < worst) are dropped, and the later j's test only the outputs
# still live. The lists are kept locally (int32 indices) and written out at the end.
# The 60 calls of a captured KBest pass, serial: 225 → 164 ms ((1536 → 384): 36.5 → 13.5 ms,
# where a row's outputs are all settled after ~160 of its 1536 j's; (384 → 384): 72.9 →
# 49.4; (384 → 1536): 104 → 88, where half the outputs stay live and the insertions, ~60
# cycles per flagged (j, k), dominate).


@njit(cache=True, nogil=True, inline="always")
def _ranks_above(y, i, ov, oa):
    """Whether the candidate (value y, index i) ranks above (ov, oa): larger value, or equal and lower index."""
    return y > ov or (y == ov and i < oa)


@njit(cache=True, nogil=True, inline="always")
def _list_insert(vk, gk, y, idx, K):
    """Put (y, idx), which ranks above the K-th entry, into the sorted K-list (vk, gk); the K-th drops out."""
    p = K - 1
    while p > 0 and _ranks_above(y, idx, vk[p - 1], gk[p - 1]):
        vk[p] = vk[p - 1]
        gk[p] = gk[p - 1]
        p -= 1
    vk[p] = y
    gk[p] = idx


@njit(cache=True, nogil=True)
def _bucket_order(x, od, bk, cnt, bmax):
    """The j's with x[j] > −inf by decreasing x[j] in ``len(bmax)`` equal-width buckets (j ascending within one).

    Fills ``od`` (returns how many), ``bk`` (each j's bucket, −1 if dropped) and ``bmax``: the
    largest x over a bucket and all later ones, an upper bound on every j not yet visited
    (exact, whatever the rounding of the bucket index).
    """
    n = x.shape[0]
    nb = bmax.shape[0]
    neg = x.dtype.type(-np.inf)
    hi = neg
    lo = -neg
    for jj in range(n):
        xj = x[jj]
        if xj > neg:
            hi = max(hi, xj)
            lo = min(lo, xj)
    if hi == neg:
        return 0
    width = (hi - lo) / nb
    inv = x.dtype.type(0) if not width > 0 else 1 / width  # one value (or a span that overflowed): one bucket
    for i in range(nb + 1):
        cnt[i] = 0
    for i in range(nb):
        bmax[i] = neg
    for jj in range(n):
        xj = x[jj]
        if xj > neg:
            d = (hi - xj) * inv
            bi = nb - 1 if not d < nb - 1 else int(d)
            bk[jj] = bi
            cnt[bi + 1] += 1
            bmax[bi] = max(bmax[bi], xj)
        else:
            bk[jj] = -1
    for i in range(nb):
        cnt[i + 1] += cnt[i]
    for jj in range(n):
        bi = bk[jj]
        if bi >= 0:
            od[cnt[bi]] = jj
            cnt[bi] += 1
    for i in range(nb - 2, -1, -1):
        bmax[i] = max(bmax[i], bmax[i + 1])
    return cnt[nb - 1]


_KB_LIVE_EVERY = 32  # j's between two prunings of the live outputs


@njit(cache=True, nogil=True)
def _kbest_rows(a, wT, wmax, jstar, ia, iw, val, arg, t0, t1, neg):
    r = a.shape[1]
    n = a.shape[2]
    K = a.shape[3]
    k = wT.shape[2]
    worst = np.empty(k, dtype=a.dtype)
    hit = np.empty(k, dtype=np.bool_)
    lst = np.empty(k, dtype=np.int32)
    live = np.empty(k, dtype=np.int32)
    v = np.empty((k, K), dtype=a.dtype)
    g = np.empty((k, K), dtype=np.int32)
    x0 = np.empty(n, dtype=a.dtype)
    od = np.empty(n, dtype=np.int32)
    bk = np.empty(n, dtype=np.int32)
    nb = max(1, n)
    cnt = np.empty(nb + 1, dtype=np.int64)
    bmax = np.empty(nb, dtype=a.dtype)
    for t in range(t0, t1):
        b = t // r
        row = t - b * r
        ar = a[ia[b], row]
        w = wT[iw[b]]
        wm = wmax[iw[b]]  # max_j w[j, k], for the live test
        js = jstar[b, row]
        for jj in range(n):
            x0[jj] = ar[jj, 0]
        nf = _bucket_order(x0, od, bk, cnt, bmax)
        ov = val[b, row]
        og = arg[b, row]
        if nf == 0:  # no candidate in the row (common in attention rows of one output position)
            for kk in range(k):
                for q in range(K):
                    ov[kk, q] = neg
                    og[kk, q] = 0
            continue
        for kk in range(k):  # start from the list of j* = js[kk]: already sorted, indices ascending on ties
            jb = js[kk]
            wv = w[jb, kk]
            for q in range(K):
                v[kk, q] = ar[jb, q] + wv
                g[kk, q] = jb * K + q
            worst[kk] = v[kk, K - 1]
        nlive = k
        dense = True  # every output live: test them all, contiguously
        for d in range(nf):
            jj = od[d]
            xj = x0[jj]
            if d > 0 and d % _KB_LIVE_EVERY == 0:  # drop the outputs no later j can reach
                bound = bmax[bk[jj]]
                m = 0
                if dense:
                    for kk in range(k):
                        live[m] = kk
                        m += not bound + wm[kk] < worst[kk]  # NaN (∞ − ∞) stays live
                else:
                    for i in range(nlive):
                        kk = live[i]
                        live[m] = kk
                        m += not bound + wm[kk] < worst[kk]  # NaN (∞ − ∞) stays live
                nlive = m
                dense = 2 * m > k  # over half still live: the contiguous test of all k is cheaper
                if nlive == 0:
                    break
            wr = w[jj]
            m = 0
            if dense:
                c = 0
                for kk in range(k):
                    h = xj + wr[kk] >= worst[kk]
                    hit[kk] = h
                    c += h
                if c == 0:
                    continue
                for kk in range(k):  # the flagged k's, without a branch per k
                    lst[m] = kk
                    m += hit[kk]
            else:
                for i in range(nlive):
                    kk = live[i]
                    lst[m] = kk
                    m += xj + wr[kk] >= worst[kk]
            for i in range(m):
                kk = lst[i]
                if js[kk] == jj:  # j* is in the list already
                    continue
                wv = wr[kk]
                vk = v[kk]
                gk = g[kk]
                for q in range(K):
                    y = ar[jj, q] + wv
                    idx = jj * K + q
                    if not (y > vk[K - 1] or (y == vk[K - 1] and idx < gk[K - 1] and y > neg)):
                        break  # a[jj, :] is descending: no later q can enter either
                    _list_insert(vk, gk, y, idx, K)
                worst[kk] = vk[K - 1]
        for kk in range(k):  # entries still −inf (fewer than K candidates) carry index 0
            for q in range(K):
                ov[kk, q] = v[kk, q]
                og[kk, q] = 0 if v[kk, q] == neg else g[kk, q]


@njit(cache=True, parallel=True)
def _kbest_par(a, wT, wmax, jstar, ia, iw, val, arg, nchunks, neg):
    n = ia.shape[0] * a.shape[1]
    for c in prange(nchunks):
        _kbest_rows(a, wT, wmax, jstar, ia, iw, val, arg, c * n // nchunks, (c + 1) * n // nchunks, neg)


# ---- signed max / min ---------------------------------------------------------------------
#
# Invalid candidates become NaN, which never compares greater or less: a w = 0 entry
# is replaced by NaN as it is loaded, and so is a non-finite a component. The update
# is then a plain chain of selects (no masked stores), vectorised over k. This equals
# the reference as long as every candidate is finite; a product that overflowed to
# ±inf shows up as max = +inf or min = −inf, and those (row, k) are redone by the
# exact scalar rule (the first candidate sets both max and min).


@njit(cache=True, nogil=True)
def _signed_exact(ar, wk, nan):
    """(max, min, argmax, argmin) over the candidates of one (row, k): ``wk`` is w[:, k] (0 = no edge)."""
    hi = -np.inf
    lo = np.inf
    ghi = 0
    glo = 0
    found = False
    for jj in range(ar.shape[0]):
        wv = wk[jj]
        if wv == 0:
            continue
        for c in range(2):
            x = ar[jj, c]
            if not np.isfinite(x):
                continue
            y = wv * x
            if not found or y > hi:
                hi = y
                ghi = 2 * jj + c
            if not found or y < lo:
                lo = y
                glo = 2 * jj + c
            found = True
    return hi, lo, ghi, glo


@njit(cache=True, nogil=True, inline="always")
def _signed_step(wv, a0, a1, q0, q1, mx, mn, gx, gn):
    """The candidates wv·a0 (index q0), then wv·a1 (q1), against the running (max, min, arg-max, arg-min)."""
    y = wv * a0
    if y > mx:
        mx = y
        gx = q0
    if y < mn:
        mn = y
        gn = q0
    y = wv * a1
    if y > mx:
        mx = y
        gx = q1
    if y < mn:
        mn = y
        gn = q1
    return mx, mn, gx, gn


@njit(cache=True, nogil=True)
def _signed_rows(a, wT, ia, iw, val, arg, t0, t1, neg, pos):
    r = a.shape[1]
    j = a.shape[2]
    k = wT.shape[2]
    nan = neg - neg
    hi = np.empty(k, dtype=a.dtype)
    lo = np.empty(k, dtype=a.dtype)
    ghi = np.empty(k, dtype=np.int32)
    glo = np.empty(k, dtype=np.int32)
    for t in range(t0, t1):
        b = t // r
        row = t - b * r
        ar = a[ia[b], row]
        w = wT[iw[b]]
        for kk in range(k):
            hi[kk] = neg
            lo[kk] = pos
            ghi[kk] = 0
            glo[kk] = 0
        for jj in range(j):
            a0 = ar[jj, 0]
            a1 = ar[jj, 1]
            f0 = np.isfinite(a0)
            f1 = np.isfinite(a1)
            if not (f0 or f1):
                continue
            if not f0:
                a0 = nan
            if not f1:
                a1 = nan
            wr = w[jj]
            q0 = np.int32(2 * jj)
            q1 = np.int32(2 * jj + 1)
            for kk in range(k):
                wv = wr[kk]
                if wv == 0:
                    wv = nan  # no edge: never selected
                hi[kk], lo[kk], ghi[kk], glo[kk] = _signed_step(wv, a0, a1, q0, q1, hi[kk], lo[kk], ghi[kk], glo[kk])
        vo = val[b, row]
        go = arg[b, row]
        for kk in range(k):
            if hi[kk] == pos or lo[kk] == neg:  # an infinite candidate: redo by the exact rule
                vo[kk, 0], vo[kk, 1], go[kk, 0], go[kk, 1] = _signed_exact(ar, w[:, kk], nan)
            else:
                vo[kk, 0] = hi[kk]
                vo[kk, 1] = lo[kk]
                go[kk, 0] = ghi[kk]
                go[kk, 1] = glo[kk]


@njit(cache=True, parallel=True)
def _signed_par(a, wT, ia, iw, val, arg, nchunks, neg, pos):
    n = ia.shape[0] * a.shape[1]
    for c in prange(nchunks):
        _signed_rows(a, wT, ia, iw, val, arg, c * n // nchunks, (c + 1) * n // nchunks, neg, pos)


# ---- structured row Jacobians ---------------------------------------------------------------
#
# q[r, j, k] = D[r]·[j = k] + p[r] + u[r, j]·v[r, k] (see reference.affine_q). For each row
# the j loop is outer and the k loop inner and contiguous, so that every inner loop is
# a vectorisable elementwise update of the running (sum) or (max, arg) per k. The sum
# kernel takes two j's per pass and redoes the diagonal entries after it; the max and
# k-best kernels start each k from its diagonal entry, skip j = k afterwards, and leave out
# the blocks of j's that a bound says cannot reach an output (_block_live).


@njit(cache=True, nogil=True)
def _affine_sum_rows(g, u, v, p, D, S, r0, r1):
    # Two j's per pass over s where both have g ≠ 0 (one load and store of s[k] for two terms,
    # added in j order). The loop uses the off-diagonal q for every k; the diagonal entries
    # are then redone from the sums saved before the loop, so every S[k] is the same
    # left-to-right sum over j as a plain loop would form, bit for bit.
    n = g.shape[1]
    for r in range(r0, r1):
        s = S[r]
        vr = v[r]
        pr = p[r]
        pd = pr + D[r]
        for k in range(n):
            s[k] = 0
        j = 0
        while j < n:
            gj = g[r, j]
            if gj == 0:
                j += 1
                continue
            uj = u[r, j]
            if j + 1 < n and g[r, j + 1] != 0:
                j1 = j + 1
                gi = g[r, j1]
                ui = u[r, j1]
                sj = s[j]
                si = s[j1]
                for k in range(n):
                    s[k] = (s[k] + gj * abs(pr + uj * vr[k])) + gi * abs(pr + ui * vr[k])
                s[j] = (sj + gj * abs(pd + uj * vr[j])) + gi * abs(pr + ui * vr[j])
                s[j1] = (si + gj * abs(pr + uj * vr[j1])) + gi * abs(pd + ui * vr[j1])
                j += 2
            else:
                sj = s[j]
                for k in range(n):
                    s[k] += gj * abs(pr + uj * vr[k])
                s[j] = sj + gj * abs(pd + uj * vr[j])
                j += 1


@njit(cache=True, parallel=True)
def _affine_sum_par(g, u, v, p, D, S, nchunks):
    R = g.shape[0]
    for c in prange(nchunks):
        _affine_sum_rows(g, u, v, p, D, S, c * R // nchunks, (c + 1) * R // nchunks)


@njit(cache=True, nogil=True)
def _affine_count_rows(g, u, v, p, D, S, r0, r1):
    # S[r, k] = Σ_j g[r, j]·[q_jk ≠ 0]: g in its own dtype (float64 counts), q in the parts' dtype
    # (the same rounding as the other structured kernels). The loop uses the off-diagonal q for
    # every k; the diagonal entry is redone from the sum saved before it.
    n = g.shape[1]
    for r in range(r0, r1):
        s = S[r]
        vr = v[r]
        pr = p[r]
        pd = pr + D[r]
        for k in range(n):
            s[k] = 0
        for j in range(n):
            gj = g[r, j]
            if gj == 0:
                continue
            uj = u[r, j]
            sj = s[j]
            for k in range(n):
                s[k] += gj if pr + uj * vr[k] != 0 else 0
            s[j] = sj + (gj if pd + uj * vr[j] != 0 else 0)


@njit(cache=True, parallel=True)
def _affine_count_par(g, u, v, p, D, S, nchunks):
    R = g.shape[0]
    for c in prange(nchunks):
        _affine_count_rows(g, u, v, p, D, S, c * R // nchunks, (c + 1) * R // nchunks)


@njit(cache=True, nogil=True)
def _affine_signed_rows(a, c, u, v, p, D, val, arg, r0, r1):
    # The signed kernel's loop (see _signed_rows: invalid candidates are NaN, an infinite one
    # sends the output to the exact rule) on the edges w_jk = c_j·q_jk, formed with the dense
    # form's rounding: q = (p + D·[j = k]) + u_j·v_k, then q·c_j.
    n = a.shape[1]
    neg = a.dtype.type(-np.inf)
    pos = a.dtype.type(np.inf)
    nan = neg - neg
    hi = np.empty(n, dtype=a.dtype)
    lo = np.empty(n, dtype=a.dtype)
    ghi = np.empty(n, dtype=np.int32)
    glo = np.empty(n, dtype=np.int32)
    dk = np.zeros(n, dtype=a.dtype)  # D at k = j, 0 elsewhere: the diagonal inside the vector loop
    wk = np.empty(n, dtype=a.dtype)
    for r in range(r0, r1):
        ar = a[r]
        vr = v[r]
        pr = p[r]
        for kk in range(n):
            hi[kk] = neg
            lo[kk] = pos
            ghi[kk] = 0
            glo[kk] = 0
        for jj in range(n):
            a0 = ar[jj, 0]
            a1 = ar[jj, 1]
            f0 = np.isfinite(a0)
            f1 = np.isfinite(a1)
            cj = c[r, jj]
            if not (f0 or f1) or cj == 0:
                continue
            if not f0:
                a0 = nan
            if not f1:
                a1 = nan
            uj = u[r, jj]
            q0 = np.int32(2 * jj)
            q1 = np.int32(2 * jj + 1)
            dk[jj] = D[r]
            for kk in range(n):
                wv = ((pr + dk[kk]) + uj * vr[kk]) * cj
                if wv == 0:
                    wv = nan  # no edge: never selected
                hi[kk], lo[kk], ghi[kk], glo[kk] = _signed_step(wv, a0, a1, q0, q1, hi[kk], lo[kk], ghi[kk], glo[kk])
            dk[jj] = 0
        vo = val[r]
        go = arg[r]
        for kk in range(n):
            if hi[kk] == pos or lo[kk] == neg:  # an infinite candidate: redo by the exact rule
                dk[kk] = D[r]  # (a literal 0 here would make the sum float64: other rounding)
                for jj in range(n):
                    wk[jj] = ((pr + dk[jj]) + u[r, jj] * vr[kk]) * c[r, jj]
                dk[kk] = 0
                vo[kk, 0], vo[kk, 1], go[kk, 0], go[kk, 1] = _signed_exact(ar, wk, nan)
            else:
                vo[kk, 0] = hi[kk]
                vo[kk, 1] = lo[kk]
                go[kk, 0] = ghi[kk]
                go[kk, 1] = glo[kk]


@njit(cache=True, parallel=True)
def _affine_signed_par(a, c, u, v, p, D, val, arg, nchunks):
    R = a.shape[0]
    for i in prange(nchunks):
        _affine_signed_rows(a, c, u, v, p, D, val, arg, i * R // nchunks, (i + 1) * R // nchunks)


_AKB_BLOCK = 16  # j's per block of the structured max and k-best kernels' bound


@njit(cache=True, nogil=True, inline="always")
def _block_live(g0, ur, vr, pr, od, b0, b1, slack, worst, ub, live):
    """The outputs k that the block of j's od[b0:b1] can still reach: ub_k ≥ worst[k], into ``live``; returns how many.

    Off the diagonal, g0_j·(p + u_j v_k) ≤ max_j g0_j·p + max_j (g0_j u_j)·v_k (the min for
    v_k < 0), and −g0_j·(p + u_j v_k) likewise; ub_k adds ``slack``·(|g0 p| + |g0 u|·|v_k|)
    for the rounding of the candidates as the kernels compute them. NaN stays live.
    """
    zero = g0.dtype.type(0)
    pp = zero  # upper bounds of g0·p, −g0·p, g0·u and of −g0·u over the block
    pm = zero
    cmax = zero
    cmin = zero
    for t in range(b0, b1):
        j = od[t]
        a = g0[j] * pr
        c = g0[j] * ur[j]
        pp = max(pp, a)
        pm = max(pm, -a)
        cmax = max(cmax, c)
        cmin = min(cmin, c)
    pa = max(pp, pm) * slack
    ca = max(cmax, -cmin) * slack
    n = vr.shape[0]
    c = 0
    for k in range(n):
        vk = vr[k]
        e = max(pp + max(cmax * vk, cmin * vk), pm - min(cmax * vk, cmin * vk)) + (pa + ca * abs(vk))
        ub[k] = e
        c += not e < worst[k]
    if c == 0:  # the common case on layer_norm's rows: no list to build
        return 0
    m = 0
    for k in range(n):
        live[m] = k
        m += not ub[k] < worst[k]
    return m


@njit(cache=True, nogil=True)
def _block_buffers(n, like):
    """Scratch for _block_live and _positive_order on rows of n: (ub, live, x, od, bk, cnt, bmax)."""
    m = max(1, n)
    return (
        np.empty(n, dtype=like.dtype),
        np.empty(n, dtype=np.int32),
        np.empty(n, dtype=like.dtype),
        np.empty(n, dtype=np.int32),
        np.empty(n, dtype=np.int32),
        np.empty(m + 1, dtype=np.int64),
        np.empty(m, dtype=like.dtype),
    )


@njit(cache=True, nogil=True, inline="always")
def _positive_order(g0, x, od, bk, cnt, bmax):
    """The j's with g0_j > 0 into ``od`` (returns how many): by decreasing g0 (_bucket_order) on rows
    of over 64, in index order on shorter ones, where sorting cost more than it saved."""
    n = g0.shape[0]
    neg = g0.dtype.type(-np.inf)
    if n <= 64:
        m = 0
        for j in range(n):
            od[m] = j
            m += g0[j] > 0
        return m
    for j in range(n):
        x[j] = g0[j] if g0[j] > 0 else neg
    return _bucket_order(x, od, bk, cnt, bmax)


@njit(cache=True, nogil=True)
def _affine_max_rows(g, u, v, p, D, V, A, r0, r1, slack):
    # The structured k-best kernel's scheme with K = 1 (see _affine_kbest_rows): each k starts
    # from its diagonal candidate, the j's with g_j > 0 go in _positive_order's order in blocks
    # of _AKB_BLOCK, and only the outputs whose bound over a block reaches their incumbent meet
    # its candidates. A candidate replaces the incumbent when greater, or equal with a lower
    # j, so ties keep the lowest j whatever the visiting order. The 18 calls of a captured
    # MaxProduct pass: 5.9 → 2.7 ms against a pass over every (j, k) (two j's at a time).
    n = g.shape[1]
    arg = np.empty(n, dtype=np.int32)  # int32, so that the selects below vectorise with the values
    ub, live, x, od, bk, cnt, bmax = _block_buffers(n, g)
    for r in range(r0, r1):
        val = V[r]
        ur = u[r]
        vr = v[r]
        pr = p[r]
        gr = g[r]
        for k in range(n):
            val[k] = gr[k] * abs((pr + D[r]) + ur[k] * vr[k])
            arg[k] = k
        nf = _positive_order(gr, x, od, bk, cnt, bmax)
        for b0 in range(0, nf, _AKB_BLOCK):
            b1 = min(nf, b0 + _AKB_BLOCK)
            m = _block_live(gr, ur, vr, pr, od, b0, b1, slack, val, ub, live)
            if m == 0:
                continue
            for t in range(b0, b1):
                j = od[t]
                gj = gr[j]
                uj = ur[j]
                q = np.int32(j)
                if 2 * m > n:  # most outputs live: a vectorised pass of selects over all k
                    for k in range(n):
                        y = gj * abs(pr + uj * vr[k])
                        o = val[k]
                        a = arg[k]
                        c = ((y > o) | ((y == o) & (q < a))) & (k != j)  # the diagonal is in already
                        val[k] = y if c else o
                        arg[k] = q if c else a
                else:
                    for ii in range(m):
                        k = live[ii]
                        y = gj * abs(pr + uj * vr[k])
                        if (y > val[k] or (y == val[k] and q < arg[k])) and k != j:
                            val[k] = y
                            arg[k] = q
        for k in range(n):
            A[r, k] = arg[k] if val[k] != 0 else 0


@njit(cache=True, parallel=True)
def _affine_max_par(g, u, v, p, D, V, A, nchunks, slack):
    R = g.shape[0]
    for c in prange(nchunks):
        _affine_max_rows(g, u, v, p, D, V, A, c * R // nchunks, (c + 1) * R // nchunks, slack)


_F1 = np.float32(1.0)
_F2 = np.float32(2.0)
_FHALF = np.float32(0.5)
_FSQRT2 = np.float32(1.4142135)
_FLN2 = np.float32(0.6931472)
_FC3 = np.float32(1.0 / 3.0)
_FC5 = np.float32(1.0 / 5.0)
_FC7 = np.float32(1.0 / 7.0)
_FC9 = np.float32(1.0 / 9.0)


@njit(cache=True, nogil=True)
def _entropy_rank1_row(g, u, v, D, S, T, r, lg, acc):
    # A row with p = 0 (softmax, log_softmax): off the diagonal q_jk = u_j·v_k, so
    # |q|·log|q| = |u_j||v_k|(log|u_j| + log|v_k|) and the sums over j ≠ k factor:
    # S_k = |v_k|·A_k and T_k = |v_k|·B_k + |v_k| log|v_k|·A_k with A_k = Σ_{j≠k} g_j|u_j| and
    # B_k = Σ_{j≠k} g_j|u_j| log|u_j|, each a prefix plus a suffix sum in float64 (no
    # subtraction); the diagonal q = D + u_k·v_k (rounded as the reference rounds it) is added
    # as itself. O(n) instead of n² logs. ``lg`` holds log|u|, log|v| and log of the diagonal's
    # |q| (any finite value where the argument is 0: it is then multiplied by 0).
    n = g.shape[1]
    a = 0.0
    b = 0.0
    for j in range(n):  # acc[0, j], acc[1, j]: the sums over j' < j
        acc[0, j] = a
        acc[1, j] = b
        w = np.float64(g[r, j]) * abs(np.float64(u[r, j]))
        a += w
        b += w * np.float64(lg[0, j])
    a = 0.0
    b = 0.0
    for k in range(n - 1, -1, -1):
        vk = abs(np.float64(v[r, k]))
        ak = acc[0, k] + a
        bk = acc[1, k] + b
        gq = np.float64(g[r, k]) * abs(np.float64(D[r] + u[r, k] * v[r, k]))
        S[r, k] = vk * ak + gq
        T[r, k] = vk * (bk + np.float64(lg[1, k]) * ak) + gq * np.float64(lg[2, k])
        w = np.float64(g[r, k]) * abs(np.float64(u[r, k]))
        a += w
        b += w * np.float64(lg[0, k])


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def _rank1_logs32(u, v, D, r, lg):
    # log|u|, log|v| and log|D + u·v| of row r by the inline float32 log (vectorised)
    n = u.shape[1]
    for k in range(n):
        x = abs(u[r, k])
        b = _f32_bits(x)
        lg[0, k] = _log_poly(_bits_f32((b & 0x007FFFFF) | 0x3F800000), np.float32((b >> 23) - 127))
        x = abs(v[r, k])
        b = _f32_bits(x)
        lg[1, k] = _log_poly(_bits_f32((b & 0x007FFFFF) | 0x3F800000), np.float32((b >> 23) - 127))
        x = abs(D[r] + u[r, k] * v[r, k])
        b = _f32_bits(x)
        lg[2, k] = _log_poly(_bits_f32((b & 0x007FFFFF) | 0x3F800000), np.float32((b >> 23) - 127))


@njit(cache=True, nogil=True)
def _rank1_logs64(u, v, D, r, lg):
    n = u.shape[1]
    for k in range(n):
        x = abs(u[r, k])
        lg[0, k] = np.log(x) if x > 0 else 0.0
        x = abs(v[r, k])
        lg[1, k] = np.log(x) if x > 0 else 0.0
        x = abs(D[r] + u[r, k] * v[r, k])
        lg[2, k] = np.log(x) if x > 0 else 0.0


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def _affine_entropy_rows32(g, u, v, p, D, S, T, r0, r1):
    # numpy's error model: no zero-division branch, so the loops vectorise; contract: FMAs in the log.
    # float32 only: log|q| is computed inline so that the k loop vectorises (no libm call):
    # |q| = m·2^e with m in [√½, √2) read from the bits, log m = 2·atanh(s) with
    # s = (m − 1)/(m + 1), |s| ≤ 0.172, by its series to s⁹ (truncation < 1e-9 relative).
    n = g.shape[1]
    buf = np.empty(n, dtype=np.float32)
    bits = buf.view(np.int32)
    mbits = np.empty(n, dtype=np.int32)
    mant = mbits.view(np.float32)
    ex = np.empty(n, dtype=np.float32)
    acc = np.empty((2, n), dtype=np.float64)
    lgs = np.empty((3, n), dtype=np.float32)
    for r in range(r0, r1):
        if p[r] == 0:  # rank one off the diagonal: O(n)
            _rank1_logs32(u, v, D, r, lgs)
            _entropy_rank1_row(g, u, v, D, S, T, r, lgs, acc)
            continue
        s = S[r]
        t = T[r]
        vr = v[r]
        pr = p[r]
        for k in range(n):
            s[k] = 0
            t[k] = 0
        for j in range(n):
            gj = g[r, j]
            if gj == 0:
                continue
            uj = u[r, j]
            for k in range(n):
                buf[k] = abs(pr + uj * vr[k])
            buf[j] = abs((pr + D[r]) + uj * vr[j])
            for k in range(n):
                b = bits[k]
                mbits[k] = (b & 0x007FFFFF) | 0x3F800000
                ex[k] = np.float32((b >> 23) - 127)
            for k in range(n):
                lg = _log_poly(mant[k], ex[k])  # log|q| (see the float32 exp/log section below)
                w = gj * buf[k]
                s[k] += w
                t[k] += w * lg  # |q| = 0: w = 0 and lg finite, so 0·log 0 = 0


@njit(cache=True, nogil=True)
def _affine_entropy_rows64(g, u, v, p, D, S, T, r0, r1):
    n = g.shape[1]
    acc = np.empty((2, n), dtype=np.float64)
    lgs = np.empty((3, n), dtype=np.float64)
    for r in range(r0, r1):
        if p[r] == 0:  # rank one off the diagonal: O(n)
            _rank1_logs64(u, v, D, r, lgs)
            _entropy_rank1_row(g, u, v, D, S, T, r, lgs, acc)
            continue
        s = S[r]
        t = T[r]
        vr = v[r]
        pr = p[r]
        for k in range(n):
            s[k] = 0
            t[k] = 0
        for j in range(n):
            gj = g[r, j]
            if gj == 0:
                continue
            uj = u[r, j]
            for k in range(n):
                q = abs(pr + uj * vr[k]) if k != j else abs((pr + D[r]) + uj * vr[j])
                if q > 0:
                    w = gj * q
                    s[k] += w
                    t[k] += w * np.log(q)


# When u = −v (layer_norm: u = −x̂, v = x̂) the off-diagonal q_jk = p − v_j·v_k is symmetric,
# with the same rounding either way round, so each pair j < k needs one log: its |q| and
# φ = |q|·log|q| go to S[k], T[k] with weight g_j and to S[j], T[j] with weight g_k.


@njit(cache=True, nogil=True, fastmath={"reassoc"})
def _dot_tail(a, b, lo, n):
    # Σ_{k ≥ lo} a[k]·b[k]: reassociation lets LLVM vectorise the reduction
    acc = a.dtype.type(0)
    for k in range(lo, n):
        acc += a[k] * b[k]
    return acc


@intrinsic
def _f32_bits(typingctx, x):  # noqa: ARG001 (numba's intrinsic signature)
    """The bits of a float32 as an int32 (an LLVM bitcast: no memory round trip, so loops stay fused)."""

    def codegen(context, builder, signature, args):  # noqa: ARG001
        return builder.bitcast(args[0], context.get_value_type(numba.types.int32))

    return numba.types.int32(numba.types.float32), codegen


@intrinsic
def _bits_f32(typingctx, x):  # noqa: ARG001
    """The float32 whose bits are the int32 ``x`` (an LLVM bitcast)."""

    def codegen(context, builder, signature, args):  # noqa: ARG001
        return builder.bitcast(args[0], context.get_value_type(numba.types.float32))

    return numba.types.float32(numba.types.int32), codegen


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})  # FMAs in the log
def _sym_front32(pr, uj, vs, buf, phi, m, off):
    # One j of the symmetric kernel on a slice that starts at a multiple of 32 at or below j
    # (vectorised loops from 0 with no scalar remainder: a loop starting at j ran 2x slower):
    # buf = |q_k|, phi = |q_k|·log|q_k| in one loop (the exponent and mantissa read by bitcasts),
    # 0 at the positions below ``off`` (k ≤ j).
    for k in range(m):
        q = abs(pr + uj * vs[k])
        b = _f32_bits(q)
        lg = _log_poly(_bits_f32((b & 0x007FFFFF) | 0x3F800000), np.float32((b >> 23) - 127))
        buf[k] = q
        phi[k] = q * lg  # |q| = 0: 0·(finite) = 0
    for k in range(off):
        phi[k] = 0
        buf[k] = 0


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def _sym_diag32(c, vs, dq, dphi, n):
    # The diagonal of a symmetric row, all k at once: dq = |c − v_k·v_k| (c = p + D) and
    # dphi = dq·log dq, vectorised (a scalar libm log per j cost ~10% of the kernel)
    for k in range(n):
        q = abs(c + (-vs[k]) * vs[k])
        b = _f32_bits(q)
        lg = _log_poly(_bits_f32((b & 0x007FFFFF) | 0x3F800000), np.float32((b >> 23) - 127))
        dq[k] = q
        dphi[k] = q * lg if q > 0 else np.float32(0)


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})
def _sym_update32(gj, gs, ss, ts, buf, phi, m):
    # Adds g_j·|q_k| to ss and g_j·φ_k to ts and returns (Σ_k g_k·|q_k|, Σ_k g_k·φ_k), in one loop
    # (reassociation lets LLVM vectorise the two sums; one pass instead of three: ~12% faster)
    a1 = gs.dtype.type(0)
    a2 = gs.dtype.type(0)
    for k in range(m):
        bk = buf[k]
        pk = phi[k]
        ss[k] += gj * bk
        ts[k] += gj * pk
        a1 += gs[k] * bk
        a2 += gs[k] * pk
    return a1, a2


@njit(cache=True, nogil=True, error_model="numpy")
def _affine_entropy_sym32(g, v, p, D, S, T, r0, r1):
    n = g.shape[1]
    npad = (n + 31) // 32 * 32  # rows copied into zero-padded buffers (g = 0 there: no weight)
    buf = np.zeros(npad, dtype=np.float32)
    phi = np.empty(npad, dtype=np.float32)
    vp = np.zeros(npad, dtype=np.float32)
    gp = np.zeros(npad, dtype=np.float32)
    sp = np.zeros(npad, dtype=np.float32)
    tp = np.zeros(npad, dtype=np.float32)
    dq = np.empty(n, dtype=np.float32)
    dphi = np.empty(n, dtype=np.float32)
    for r in range(r0, r1):
        pr = p[r]
        for k in range(n):
            vp[k] = v[r, k]
            gp[k] = g[r, k]
        for k in range(npad):
            sp[k] = 0
            tp[k] = 0
        _sym_diag32(pr + D[r], vp, dq, dphi, n)
        for j in range(n):
            j0 = j & ~31
            uj = -vp[j]
            gj = gp[j]
            m = npad - j0
            _sym_front32(pr, uj, vp[j0:], buf, phi, m, j + 1 - j0)
            ds, dt = _sym_update32(gj, gp[j0:], sp[j0:], tp[j0:], buf, phi, m)
            sp[j] += ds + gj * dq[j]
            tp[j] += dt + gj * dphi[j]
        for k in range(n):
            S[r, k] = sp[k]
            T[r, k] = tp[k]


@njit(cache=True, nogil=True)
def _affine_entropy_sym64(g, v, p, D, S, T, r0, r1):
    n = g.shape[1]
    qa = np.empty(n, dtype=np.float64)
    phi = np.empty(n, dtype=np.float64)
    for r in range(r0, r1):
        s = S[r]
        t = T[r]
        vr = v[r]
        gr = g[r]
        pr = p[r]
        for k in range(n):
            s[k] = 0
            t[k] = 0
        for j in range(n):
            gj = gr[j]
            uj = -vr[j]
            for k in range(j, n):
                q = abs(pr + uj * vr[k]) if k != j else abs((pr + D[r]) + uj * vr[j])
                qa[k] = q
                phi[k] = q * np.log(q) if q > 0 else 0.0
            for k in range(j + 1, n):
                s[k] += gj * qa[k]
                t[k] += gj * phi[k]
            s[j] += gj * qa[j] + _dot_tail(gr, qa, j + 1, n)
            t[j] += gj * phi[j] + _dot_tail(gr, phi, j + 1, n)


@njit(cache=True, parallel=True)
def _affine_entropy_sym_par32(g, v, p, D, S, T, nchunks):
    R = g.shape[0]
    for c in prange(nchunks):
        _affine_entropy_sym32(g, v, p, D, S, T, c * R // nchunks, (c + 1) * R // nchunks)


@njit(cache=True, parallel=True)
def _affine_entropy_sym_par64(g, v, p, D, S, T, nchunks):
    R = g.shape[0]
    for c in prange(nchunks):
        _affine_entropy_sym64(g, v, p, D, S, T, c * R // nchunks, (c + 1) * R // nchunks)


@njit(cache=True, parallel=True)
def _affine_entropy_par32(g, u, v, p, D, S, T, nchunks):
    R = g.shape[0]
    for c in prange(nchunks):
        _affine_entropy_rows32(g, u, v, p, D, S, T, c * R // nchunks, (c + 1) * R // nchunks)


@njit(cache=True, parallel=True)
def _affine_entropy_par64(g, u, v, p, D, S, T, nchunks):
    R = g.shape[0]
    for c in prange(nchunks):
        _affine_entropy_rows64(g, u, v, p, D, S, T, c * R // nchunks, (c + 1) * R // nchunks)


# ---- layer_norm entropy rows by sorting and series (float32, n ≥ SERIES_MIN_N) --------------------
#
# On a symmetric row (u = −v, p ≠ 0) the off-diagonal q_jk = p − v_j·v_k = p·(1 + t) with
# t = s·w_j·w_k, w = v/√|p| and s = −sign(p), so |q| = |p|·|1 + t| and
# |q| log|q| = |p|·(|1 + t| log|p| + ψ(t)) with ψ(t) = |1 + t| log|1 + t|. With the row's
# entries sorted by |w| (a radix sort of the float32 bits), each k splits the j's into three
# contiguous ranges by |t| = |w_j|·|w_k|:
#
# - inner, |t| < ρ: ψ(t) = (1 + t) log(1 + t) is a polynomial in t to 1.7e-9 (a Chebyshev fit of
#   degree 20 on [−ρ, ρ], ρ = 0.75, in monomials), so Σ_j g_j ψ(t) = Σ_m a_m s^m w_k^m Σ_j g_j w_j^m
#   is a dot product with prefix sums of the powers g_j·w_j^m (a table over the sorted j's);
# - outer, |t| > 1/ρ: |1 + t| = |t|·(1 + 1/t), so ψ(t) = (|t| + sign t)(log|w_j| + log|w_k|)
#   + |t|·ψ(1/t), the same polynomial in 1/t, from suffix sums of g_j·|w_j|·w_j^−m;
# - near, ρ ≤ |t| ≤ 1/ρ (where q can be 0): |q| log|q| directly, q exact in float64 and rounded
#   once to float32 (so q = 0 only where it is exactly 0, FMA or not), the inline float32 log of
#   the dense kernel, once per pair j < k (the classification is by the float64 product
#   |w_j|·|w_k|, the same either way round).
#
# S = Σ_j g_j |q| and T₁ = Σ_j h_j |q| need no log: |1 + t| = (1 + t) except where t < −1 (j of
# the opposite effective sign with |t| > 1, a suffix of each sign class), so both are exact sums
# in float64 from prefix and suffix sums. The j = k entry goes into the sums with the
# off-diagonal formula and is taken out again in float64 (its series term by Horner, its outer
# log terms from the same float32 logs); the diagonal q = p + D − v_k² is added as itself. The
# polynomial parts are float64, the near part float32 as in the dense kernel. Where S or
# Σ|h||1 + t| is below 2⁻²⁶ of its terms' Σ (1 + |t|) (rounding t could decide it; or every edge
# is exactly 0), that output is a loop over j (_series_column32).
#
# Work per row: O(n log n + n·M) plus the near pairs (a band around |t| = 1: about 15% of the
# pairs j < k on the benchmark's rows) instead of n²/2 logs. Measured on 32 rows (serial, 2026-11-24,
# S, T and T₁ together against the dense kernel plus affine_sum, min of 25): n = 384 2.2–2.4
# against 2.8–2.9 ms, n = 768 5.4 against 9.6 ms, n = 512 with a few large features (as BERT's
# hidden states have) 2.6 against 4.7 ms; n = 256 about even (1.1 against 1.5 ms with large
# features), below it the dense kernel wins.

SERIES_MIN_N = 256
"""Symmetric float32 rows at least this long take the sorted-series kernel in :func:`affine_entropy_sum`."""

_PSI_RHO = 0.75
_PSI_DEG = 20
_SERIES_MAX_W = 1e6  # rows with a larger |v|/√|p| take the dense kernel (w^±M must stay finite)


def psi_coefficients(rho: float = _PSI_RHO, deg: int = _PSI_DEG) -> np.ndarray:
    """Monomial coefficients a_m (m = 0..deg) of the Chebyshev interpolant of (1 + t) log(1 + t) on [−rho, rho].

    float64, with a_0 = 0 exactly; for the defaults the fit is within 1.7e-9 of (1 + t) log(1 + t)
    relative to 1 + t (the tests check it against ``numpy.log1p`` on a fine grid).
    """
    from numpy.polynomial import chebyshev, polynomial

    fit = chebyshev.Chebyshev.interpolate(lambda t: (1 + t) * np.log1p(t), deg, domain=[-rho, rho])
    a = np.ascontiguousarray(fit.convert(kind=polynomial.Polynomial, domain=[-1, 1], window=[-1, 1]).coef)
    a[0] = 0.0  # ψ(0) = 0 exactly (the fit's constant is rounding, ~1e-16): a k with v_k = 0 gets no series term
    return a


@functools.cache
def _psi() -> np.ndarray:
    """:func:`psi_coefficients` with the defaults, made on first use (not at import)."""
    return psi_coefficients()


@njit(cache=True, nogil=True)
def _radix_order(v, k0, k1, i0, i1, cnt):
    # The permutation that sorts |v| (float32) ascending: an LSD radix sort of the 31 magnitude
    # bits (their order is the order of |v|), three passes of 11 bits. Returns i0 or i1.
    n = v.shape[0]
    vb = v.view(np.uint32)
    for i in range(n):
        k0[i] = vb[i] & np.uint32(0x7FFFFFFF)
        i0[i] = i
    for sh in (0, 11, 22):
        for b in range(2049):
            cnt[b] = 0
        for i in range(n):
            cnt[((k0[i] >> sh) & 2047) + 1] += 1
        for b in range(2048):
            cnt[b + 1] += cnt[b]
        for i in range(n):
            b = (k0[i] >> sh) & 2047
            d = cnt[b]
            cnt[b] = d + 1
            k1[d] = k0[i]
            i1[d] = i0[i]
        k0, k1 = k1, k0
        i0, i1 = i1, i0
    return i0


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def _logs32(x, out, n):
    # out = log|x| by the inline float32 log (vectorised; any finite value where x = 0)
    for i in range(n):
        b = _f32_bits(abs(x[i]))
        out[i] = _log_poly(_bits_f32((b & 0x007FFFFF) | 0x3F800000), np.float32((b >> 23) - 127))


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def _series_tables(ws, iw, gs, cs, Pt, Rt, Pin, Q, n, M1):
    # Pt[m, i] = w_i^m and Rt[m, i] = |w_i|·w_i^−m (vectorised over i); Pin[m, i] = Σ_{j<i} g_j·cs_m·Pt[m, j]
    # and Q[m, i] = Σ_{j≥i} g_j·cs_m·Rt[m, j] (the m's are independent chains)
    for i in range(n):
        Pt[0, i] = 1.0
        Rt[0, i] = abs(ws[i])
    for m in range(1, M1):
        a = Pt[m - 1]
        b = Pt[m]
        for i in range(n):
            b[i] = a[i] * ws[i]
    for m in range(1, M1):
        a = Rt[m - 1]
        b = Rt[m]
        for i in range(n):
            b[i] = a[i] * iw[i]
    for m in range(M1):
        Pin[m, 0] = 0.0
        Q[m, n] = 0.0
    for i in range(n):
        gi = gs[i]
        for m in range(M1):
            Pin[m, i + 1] = Pin[m, i] + (gi * cs[m]) * Pt[m, i]
    for i in range(n - 1, -1, -1):
        gi = gs[i]
        for m in range(M1):
            Q[m, i] = Q[m, i + 1] + (gi * cs[m]) * Rt[m, i]


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def _series_queries(Pt, Pin, i1, Rt, Q, i2, out, n, M1):
    # out[k] = Σ_m Pt[m, k]·Pin[m, i1[k]] + Rt[m, k]·Q[m, i2[k]]: the inner and outer series of each k
    for k in range(n):
        out[k] = 0.0
    for m in range(M1):
        a = Pt[m]
        b = Pin[m]
        c = Rt[m]
        d = Q[m]
        for k in range(n):
            out[k] += a[k] * b[i1[k]] + c[k] * d[i2[k]]


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def _series_own(cs, z, f, out, n, M1):
    # out[k] = f[k]·Σ_m cs_m z_k^m (Horner, vectorised over k): the series term that the j = k entry put
    # into its own inner (z = w_k², f = g_k) or outer range (z = w_k⁻², f = g_k w_k²), to take out again
    for k in range(n):
        out[k] = cs[M1 - 1]
    for m in range(M1 - 2, -1, -1):
        c = cs[m]
        for k in range(n):
            out[k] = out[k] * z[k] + c
    for k in range(n):
        out[k] *= f[k]


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})
def _near_pairs32(pr, vs, gs, tp, i1, i2, n):  # pr: float64
    # tp[k] += Σ_{j near k, j ≠ k} g_j·|q|·log|q| over the sorted entries, each pair j > k once:
    # its φ goes to tp[j] with weight g_k and to tp[k] with weight g_j (float32, as the dense kernel)
    for k in range(n):
        lo = max(i1[k], k + 1)
        hi = i2[k]
        if lo >= hi:
            continue
        uk = np.float64(-vs[k])
        gk = gs[k]
        acc = np.float32(0)
        for j in range(np.uint64(lo), np.uint64(hi)):
            q = abs(np.float32(pr + uk * np.float64(vs[j])))  # exact in float64, rounded once
            b = _f32_bits(q)
            lg = _log_poly(_bits_f32((b & 0x007FFFFF) | 0x3F800000), np.float32((b >> 23) - 127))
            ph = q * lg  # |q| = 0: 0·(finite) = 0
            tp[j] += gk * ph
            acc += gs[j] * ph
        tp[k] += acc


@njit(cache=True, nogil=True, error_model="numpy")
def _series_bounds(aw, rho, i1, i2, i3, n):
    # For each sorted k: i1 = #{j : |w_j|·|w_k| < ρ}, i2 = #{j : |w_j|·|w_k| ≤ 1/ρ}, i3 = #{j : |w_j|·|w_k| ≤ 1}
    # (three pointers that only move down as |w_k| grows)
    a = n
    b = n
    e = n
    irho = 1.0 / rho
    for k in range(n):
        x = aw[k]
        while a > 0 and aw[a - 1] * x >= rho:
            a -= 1
        while b > 0 and aw[b - 1] * x > irho:
            b -= 1
        while e > 0 and aw[e - 1] * x > 1.0:
            e -= 1
        i1[k] = a
        i2[k] = b
        i3[k] = e


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def _series_column32(pr, c, vs, gs, hs, k, n):
    # (Σ_j g|q|, Σ_j g|q| log|q|, Σ_j h|q|) of one k by a loop over j, q rounded to float32 as the band
    # rounds it (so q = 0 is no edge), sums in float64
    s = 0.0
    t = 0.0
    u = 0.0
    uk = -vs[k]
    for j in range(n):
        gj = np.float64(gs[j])
        hj = hs[j]
        if gj == 0 and hj == 0:
            continue
        if j == k:  # the diagonal as the dense kernels form it
            q = abs(c + uk * vs[j])
        else:  # as the band does: exact in float64, rounded once
            q = abs(np.float32(np.float64(pr) + np.float64(uk) * np.float64(vs[j])))
        if q > 0:
            qd = np.float64(q)
            s += gj * qd
            u += hj * qd
            if gj != 0:
                t += gj * qd * np.log(qd)
    return s, t, u


_SERIES_FLOOR = 2.0**-26  # S or Σ|h||q| below this fraction of its terms' Σ (1 + |t|): _series_column32


@njit(cache=True, nogil=True, error_model="numpy")
def _affine_entropy_series32(g, h, v, p, D, S, T, U, r0, r1, rho, A):
    # Rows r0..r1 of S = Σ_j g|q|, T = Σ_j g|q| log|q|, U = Σ_j h|q| for u = −v, p ≠ 0 (see above).
    n = g.shape[1]
    M1 = A.shape[0]
    ld = n + 9  # table rows padded: a power-of-two stride maps every m to one cache set
    vs = np.zeros(n, np.float32)
    gp = np.zeros(n, np.float32)
    tp = np.zeros(n, np.float32)
    dq = np.empty(n, np.float32)
    dphi = np.empty(n, np.float32)
    lw = np.empty(n, np.float32)
    fin = np.empty(n)
    fout = np.empty(n)
    own = np.empty(n)
    aw = np.empty(n)
    ws = np.empty(n)
    iw = np.empty(n)
    gs = np.empty(n)
    hs = np.empty(n)
    i1 = np.empty(n, np.int64)
    i2 = np.empty(n, np.int64)
    i3 = np.empty(n, np.int64)
    Pt = np.empty((M1, ld))
    Rt = np.empty((M1, ld))
    Pin = np.empty((M1, ld))
    Q = np.empty((M1, ld))
    Y = np.empty(n)
    G0 = np.empty(n + 1)  # prefix sums of g and g·w (the inner range)
    G1 = np.empty(n + 1)
    A0 = np.empty(n + 1)  # suffix sums of g|w|, g|w| log|w|, g·sign w, g·sign w·log|w| (the outer range)
    A1 = np.empty(n + 1)
    B0 = np.empty(n + 1)
    B1 = np.empty(n + 1)
    F = np.empty((2, 6, n + 1))  # suffix sums of g, g·w, h, h·w, |h|, |h|·w over the j with w < 0 ([0]), w > 0 ([1])
    k0 = np.empty(n, np.uint32)
    k1 = np.empty(n, np.uint32)
    o0 = np.empty(n, np.int64)
    o1 = np.empty(n, np.int64)
    cnt = np.empty(2049, np.int64)
    cs = np.empty(M1)
    for r in range(r0, r1):
        pr = p[r]
        ap = abs(np.float64(pr))
        lp = np.log(ap)
        sq = np.sqrt(ap)
        sg = -1.0 if pr > 0 else 1.0  # t = sg·w_j·w_k
        order = _radix_order(v[r], k0, k1, o0, o1, cnt)
        for i in range(n):
            o = order[i]
            vs[i] = v[r, o]
            gp[i] = g[r, o]
            hs[i] = np.float64(h[r, o])
        for i in range(n):
            w = np.float64(vs[i]) / sq
            ws[i] = w
            aw[i] = abs(w)
            gs[i] = np.float64(gp[i])
            iw[i] = 1.0 / w if abs(w) > 1e-12 else 0.0  # such a k has no outer range (|w_j| ≤ 1e6)
        _logs32(vs, lw, n)  # log|v|; log|w| = log|v| − log|p|/2
        _series_bounds(aw, rho, i1, i2, i3, n)
        for k in range(n):  # the j = k entry's place: inner (its series in Pin), outer (in Q) or near
            w2 = ws[k] * ws[k]
            inner = k < i1[k]
            outer = k >= i2[k]
            fin[k] = w2 if inner else (1.0 / w2 if outer else 0.0)
            fout[k] = gs[k] if inner else (gs[k] * w2 if outer else 0.0)
        s_ = 1.0
        for m in range(M1):
            cs[m] = A[m] * s_  # a_m·sg^m
            s_ *= sg
        _series_tables(ws, iw, gs, cs, Pt, Rt, Pin, Q, n, M1)
        _series_queries(Pt, Pin, i1, Rt, Q, i2, Y, n, M1)
        _series_own(cs, fin, fout, own, n, M1)
        G0[0] = 0.0
        G1[0] = 0.0
        for i in range(n):
            G0[i + 1] = G0[i] + gs[i]
            G1[i + 1] = G1[i] + gs[i] * ws[i]
        A0[n] = 0.0
        A1[n] = 0.0
        B0[n] = 0.0
        B1[n] = 0.0
        for c in range(2):
            for j in range(6):
                F[c, j, n] = 0.0
        for i in range(n - 1, -1, -1):
            la = np.float64(lw[i]) - 0.5 * lp
            pos = ws[i] > 0
            sgn = 1.0 if pos else -1.0
            gi = gs[i]
            A0[i] = A0[i + 1] + gi * aw[i]
            A1[i] = A1[i + 1] + gi * aw[i] * la
            B0[i] = B0[i + 1] + gi * sgn
            B1[i] = B1[i + 1] + gi * sgn * la
            for c in range(2):
                for j in range(6):
                    F[c, j, i] = F[c, j, i + 1]
            c = 1 if pos else 0
            F[c, 0, i] += gi
            F[c, 1, i] += gi * ws[i]
            F[c, 2, i] += hs[i]
            F[c, 3, i] += hs[i] * ws[i]
            F[c, 4, i] += abs(hs[i])
            F[c, 5, i] += abs(hs[i]) * ws[i]
        for i in range(n):
            tp[i] = 0
        _near_pairs32(np.float64(pr), vs, gp, tp, i1, i2, n)
        _sym_diag32(pr + D[r], vs, dq, dphi, n)
        g0 = F[0, 0, 0] + F[1, 0, 0]
        g1 = F[0, 1, 0] + F[1, 1, 0]
        ha0 = F[0, 4, 0] + F[1, 4, 0]
        ha1 = F[0, 5, 0] + F[1, 5, 0]
        ga = A0[0]  # Σ_j g|w_j|
        haw = 0.0  # Σ_j |h||w_j|
        for i in range(n):
            haw += abs(hs[i]) * aw[i]
        h0 = F[0, 2, 0] + F[1, 2, 0]
        h1 = F[0, 3, 0] + F[1, 3, 0]
        for k in range(n):
            w = ws[k]
            ia = i1[k]
            ib = i2[k]
            ic = i3[k]
            x = aw[k]
            st = sg * w  # t = st·w_j
            sk = sg if w > 0 else -sg  # sign of t for w_j > 0
            f = 1 if sk < 0 else 0  # the sign class whose j have t < −1 when |t| > 1
            lk = np.float64(lw[k]) - 0.5 * lp
            # Σ_j g|1 + t| and Σ_j h|1 + t| over all j: Σ (1 + t) less twice the part where 1 + t < 0
            s_all = (g0 + st * g1) - 2.0 * (F[f, 0, ic] + st * F[f, 1, ic])
            u_all = (h0 + st * h1) - 2.0 * (F[f, 2, ic] + st * F[f, 3, ic])
            ua = (ha0 + st * ha1) - 2.0 * (F[f, 4, ic] + st * F[f, 5, ic])  # Σ_j |h||1 + t|
            # Σ g|1 + t| and Σ g ψ(t) over the inner and outer ranges
            s_io = G0[ia] + st * G1[ia] + x * A0[ib] + sk * B0[ib]
            p_io = Y[k] + x * (A1[ib] + lk * A0[ib]) + sk * (B1[ib] + lk * B0[ib])
            aq = abs(1.0 + st * w)  # the j = k entry with the off-diagonal formula: taken out
            s_all -= gs[k] * aq
            u_all -= hs[k] * aq
            ua -= abs(hs[k]) * aq
            o = order[k]
            if s_all < _SERIES_FLOOR * (g0 + x * ga) or ua < _SERIES_FLOOR * (ha0 + x * haw):
                # Σ g|1 + t| or Σ |h||1 + t| so small against its terms (Σ g(1 + |t|), Σ |h|(1 + |t|)) that
                # the float64 rounding of t could decide it, or 0 (every edge with weight exactly 0):
                # a loop over j, so that q = 0 stays no edge
                s_, t_, u_ = _series_column32(pr, pr + D[r], vs, gp, hs, k, n)
                S[r, o] = s_
                T[r, o] = t_
                U[r, o] = u_
                continue
            if k < ia:  # its inner series term
                s_io -= gs[k] * aq
                p_io -= own[k]
            elif k >= ib:  # its outer terms, as they went in: (|t| + sign t)(2 log|w_k|) and the series
                s_io -= gs[k] * aq
                p_io -= gs[k] * (x * x + sg) * (2.0 * lk) + own[k]
            S[r, o] = ap * s_all + gp[k] * dq[k]
            T[r, o] = ap * (p_io + lp * s_io) + tp[k] + gp[k] * dphi[k]
            U[r, o] = ap * u_all + np.float32(hs[k]) * dq[k]


@njit(cache=True, parallel=True)
def _affine_entropy_series_par32(g, h, v, p, D, S, T, U, rho, A, nchunks):
    R = g.shape[0]
    for c in prange(nchunks):
        _affine_entropy_series32(g, h, v, p, D, S, T, U, c * R // nchunks, (c + 1) * R // nchunks, rho, A)


@njit(cache=True, nogil=True, inline="always")
def _enter_ranks(gj, qk, j, vk, ak, K):
    """j's candidates gj[i]·qk (descending in i) into the sorted K-list (vk, ak) while they rank above its K-th.

    Zero candidates never enter. Returns the list's new K-th value.
    """
    for i in range(K):
        y = gj[i] * qk
        idx = j * K + i
        if y == 0 or not _ranks_above(y, idx, vk[K - 1], ak[K - 1]):
            break  # the rest of j's list ranks lower still
        _list_insert(vk, ak, y, idx, K)
    return vk[K - 1]


@njit(cache=True, nogil=True)
def _affine_kbest_rows(g, u, v, p, D, V, A, r0, r1, slack):
    # The k-best kernel's scheme (see _kbest_rows) on the structured rows. Per row, each k's
    # list starts as the K candidates of the diagonal j = k (then skipped): on the rows of
    # layer_norm (p = −1, D = n) and softmax (p = 0, D = 1) these are usually the K best
    # already. The j's with g0_j > 0 are visited in _positive_order's order (by decreasing
    # g0_j on long rows), in blocks of _AKB_BLOCK, and only the outputs that _block_live's bound says the block can
    # reach take part: each j of the block tests them (a vectorised pass over all k when
    # over half do) and runs the insertion where g0_j·|q_jk| can still enter. On the
    # benchmark's layer_norm rows ~98% of (block, output) pairs drop out. Zero candidates
    # never enter: an empty slot is (0, n·K), below every real candidate, and ends as
    # (0, 0). The 18 calls of a captured KBest(5) pass: 32 → 14 ms with the block bound
    # (still starting from the structured max kernel's j*), 4 ms starting from the diagonal.
    n = g.shape[1]
    K = g.shape[2]
    none = n * K
    qa = np.empty(n, dtype=g.dtype)
    worst = np.empty(n, dtype=g.dtype)
    hit = np.empty(n, dtype=np.bool_)
    ub, live, x, od, bk, cnt, bmax = _block_buffers(n, g)
    for r in range(r0, r1):
        ur = u[r]
        vr = v[r]
        pr = p[r]
        ov = V[r]
        oa = A[r]
        g0 = g[r, :, 0]
        for k in range(n):
            qk = abs((pr + D[r]) + ur[k] * vr[k])
            for i in range(K):
                y = g[r, k, i] * qk
                ov[k, i] = y
                oa[k, i] = k * K + i if y != 0 else none
            worst[k] = ov[k, K - 1]
        nf = _positive_order(g0, x, od, bk, cnt, bmax)
        for b0 in range(0, nf, _AKB_BLOCK):
            b1 = min(nf, b0 + _AKB_BLOCK)
            m = _block_live(g0, ur, vr, pr, od, b0, b1, slack, worst, ub, live)
            if m == 0:
                continue
            for t in range(b0, b1):
                j = od[t]
                gj = g0[j]
                uj = ur[j]
                if 2 * m > n:  # most outputs live: the vectorised pass over all k
                    c = 0
                    for k in range(n):
                        q = abs(pr + uj * vr[k])
                        qa[k] = q
                        h = gj * q >= worst[k]
                        hit[k] = h
                        c += h
                    if c == 0:
                        continue
                    for k in range(n):
                        if not hit[k] or k == j:  # the diagonal is in the list already
                            continue
                        worst[k] = _enter_ranks(g[r, j], qa[k], j, ov[k], oa[k], K)
                else:
                    for ii in range(m):
                        k = live[ii]
                        qk = abs(pr + uj * vr[k])
                        if gj * qk < worst[k] or k == j:
                            continue
                        worst[k] = _enter_ranks(g[r, j], qk, j, ov[k], oa[k], K)
        for k in range(n):
            for i in range(K):
                if ov[k, i] == 0:
                    oa[k, i] = 0


@njit(cache=True, parallel=True)
def _affine_kbest_par(g, u, v, p, D, V, A, nchunks, slack):
    R = g.shape[0]
    for c in prange(nchunks):
        _affine_kbest_rows(g, u, v, p, D, V, A, c * R // nchunks, (c + 1) * R // nchunks, slack)


def affine_kbest(g: Array, u: Array, v: Array, p: Array, D: Array) -> tuple[Array, Array]:
    """Numba twin of :func:`semitorch.kernels.reference.affine_kbest`."""
    R, n, K = g.shape
    g3 = np.ascontiguousarray(g)
    _, u, v, p, D = _affine_args(g3[:, :, 0] if K else np.zeros((R, n), g.dtype), u, v, p, D)
    V = np.zeros((R, n, K), dtype=g.dtype)
    A = np.zeros((R, n, K), dtype=np.int64)
    if K == 0 or n == 0:
        return V, A
    # the bound's allowance for rounding: a candidate g·|p + u·v| is within a few ulps of its
    # terms' magnitudes; 16 eps of them covers the few roundings on either side
    slack = g.dtype.type(16 * np.finfo(g.dtype).eps)
    nch = _nchunks(R, R * n * n)
    if nch:
        _affine_kbest_par(g3, u, v, p, D, V, A, nch, slack)
    else:
        _affine_kbest_rows(g3, u, v, p, D, V, A, 0, R, slack)
    return V, A


# ---- float32 exp / log for the log-space semirings ---------------------------------------------
#
# numpy's float32 exp and log cost 2-3 ns an element here and each is a separate pass;
# these fused, vectorisable loops read the exponent from the bits (through int32 views of
# small buffers for log; by LLVM bitcasts, _f32_bits / _bits_f32, in exp and the layer_norm
# entropy kernel, which keeps each in one loop) and evaluate short polynomials (FMAs where
# ``contract`` is on): exp by Cody-Waite reduction and its
# Taylor series to r⁷ (|r| ≤ ln2/2: truncation < 1e-8), log by 2·atanh(s) to s⁹.
# Measured against float64: ≤ 2 ulp. Results below the smallest normal float are 0
# (subnormals slow every later BLAS call and kernel down).

_FLOG2E = np.float32(1.4426950408889634)
_FLN2HI = np.float32(0.693359375)  # ln 2 = _FLN2HI + _FLN2LO, the first with 9 bits (n·_FLN2HI exact)
_FLN2LO = np.float32(-2.1219444005469057e-4)
_FEXP_LO = np.float32(-87.33654)  # log of the smallest normal float32
_FEXP_CLAMP = np.float32(-88.0)
_FE = (
    np.float32(1 / 2),
    np.float32(1 / 6),
    np.float32(1 / 24),
    np.float32(1 / 120),
    np.float32(1 / 720),
    np.float32(1 / 5040),
)
_FE2, _FE3, _FE4, _FE5, _FE6, _FE7 = _FE
_FTINY = np.float32(np.finfo(np.float32).tiny)
_F2P24 = np.float32(2.0**24)
_F24 = np.float32(24.0)
_FZERO = np.float32(0.0)
_FNEGINF = np.float32(-np.inf)
_CHUNK = 1024


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _exp_poly(r):
    return _F1 + r * (_F1 + r * (_FE2 + r * (_FE3 + r * (_FE4 + r * (_FE5 + r * (_FE6 + r * _FE7))))))


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _log_poly(m, e):
    # log(m·2^e) for m in [1, 2)
    big = m > _FSQRT2
    m = m * _FHALF if big else m
    e = e + _F1 if big else e
    f = m - _F1
    z = f / (_F2 + f)
    z2 = z * z
    return _F2 * z * (_F1 + z2 * (_FC3 + z2 * (_FC5 + z2 * (_FC7 + z2 * _FC9)))) + e * _FLN2


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def _exp_into(x, out):
    # out[:n] = exp(x[:n]) for x ≤ 0 (−inf allowed), flushed below the smallest normal; one
    # vectorised loop (2^n built by a bitcast), FMAs in the reduction and the series
    n = x.shape[0]
    for k in range(n):
        x0 = x[k]
        xc = max(x0, _FEXP_CLAMP)
        nf = np.floor(xc * _FLOG2E + _FHALF)
        sc = _bits_f32((np.int32(nf) + np.int32(127)) << 23)
        r = (xc - nf * _FLN2HI) - nf * _FLN2LO
        v = _exp_poly(r) * sc
        out[k] = v if x0 >= _FEXP_LO else _FZERO


@njit(cache=True, nogil=True, error_model="numpy")
def _exp_shift32_short(a, p, m):
    # as _exp_shift32, for rows of n ≤ _CHUNK: the shifted rows of a chunk of whole rows go
    # into one buffer, so _exp_into runs one long loop instead of a short one per row
    R, n = a.shape
    rpc = _CHUNK // n
    d = np.empty(rpc * n, dtype=np.float32)
    pf = p.reshape(R * n)
    for r0 in range(0, R, rpc):
        r1 = min(R, r0 + rpc)
        for r in range(r0, r1):
            ar = a[r]
            mx = _FNEGINF
            for k in range(n):
                mx = max(mx, ar[k])
            if not np.isfinite(mx):
                mx = _FZERO
            m[r, 0] = mx
            base = (r - r0) * n
            for k in range(n):
                d[base + k] = ar[k] - mx
        w = (r1 - r0) * n
        _exp_into(d[:w], pf[r0 * n : r0 * n + w])


@njit(cache=True, nogil=True, error_model="numpy")
def _exp_shift32(a, p, m):
    R, n = a.shape
    if 0 < n <= _CHUNK // 2:  # short rows (attention heads): whole rows per chunk, long vector loops
        _exp_shift32_short(a, p, m)
        return
    d = np.empty(min(n, _CHUNK), dtype=np.float32)
    for r in range(R):
        ar = a[r]
        mx = _FNEGINF
        for k in range(n):
            mx = max(mx, ar[k])
        if not np.isfinite(mx):
            mx = _FZERO
        m[r, 0] = mx
        for c0 in range(0, n, _CHUNK):
            c1 = min(n, c0 + _CHUNK)
            for k in range(c1 - c0):
                d[k] = ar[c0 + k] - mx
            _exp_into(d[: c1 - c0], p[r, c0:c1])


@njit(cache=True, nogil=True, error_model="numpy")
def _log_into(x, mr, out, buf, mb, ex):
    # out[:n] = log(x[:n]) + mr for x ≥ 0 (0: −inf); subnormal x rescaled by 2^24 first
    n = x.shape[0]
    bits = buf.view(np.int32)
    mant = mb.view(np.float32)
    for k in range(n):
        v = x[k]
        buf[k] = v * _F2P24 if v < _FTINY else v
    for k in range(n):
        b = bits[k]
        mb[k] = (b & 0x007FFFFF) | 0x3F800000
        ex[k] = np.float32((b >> 23) - 127)
    for k in range(n):
        v = x[k]
        e = ex[k] - _F24 if v < _FTINY else ex[k]
        y = _log_poly(mant[k], e) + mr
        out[k] = y if v > _FZERO else _FNEGINF


@njit(cache=True, nogil=True, error_model="numpy")
def _log_shift32_short(s, m, out, limit):
    # as _log_shift32, for rows of n ≤ _CHUNK: logs of a chunk of whole rows in one long
    # loop (shift 0), then each row's shift added (the same two roundings as _log_into's)
    R, n = s.shape
    rpc = _CHUNK // n
    w = rpc * n
    buf = np.empty(w, dtype=np.float32)
    mb = np.empty(w, dtype=np.int32)
    ex = np.empty(w, dtype=np.float32)
    sf = s.reshape(R * n)
    of = out.reshape(R * n)
    low = False
    for r0 in range(0, R, rpc):
        r1 = min(R, r0 + rpc)
        c0 = r0 * n
        c1 = r1 * n
        _log_into(sf[c0:c1], _FZERO, of[c0:c1], buf, mb, ex)
        for r in range(r0, r1):
            mr = m[r, 0]
            floor = mr - limit
            o = out[r]
            for k in range(n):
                y = o[k] + mr
                o[k] = y
                low |= y < floor
    return low


@njit(cache=True, nogil=True, error_model="numpy")
def _log_shift32(s, m, out, limit):
    # also returns whether any result fell more than ``limit`` below its row's shift
    R, n = s.shape
    if 0 < n <= _CHUNK // 2:  # short rows (attention heads)
        return _log_shift32_short(s, m, out, limit)
    w = min(n, _CHUNK)
    buf = np.empty(w, dtype=np.float32)
    mb = np.empty(w, dtype=np.int32)
    ex = np.empty(w, dtype=np.float32)
    low = False
    for r in range(R):
        floor = m[r, 0] - limit
        for c0 in range(0, n, _CHUNK):
            c1 = min(n, c0 + _CHUNK)
            o = out[r, c0:c1]
            _log_into(s[r, c0:c1], m[r, 0], o, buf, mb, ex)
            for k in range(c1 - c0):
                low |= o[k] < floor
    return low


@njit(cache=True, nogil=True, error_model="numpy")
def _logaddexp32(a, b, out):
    # In chunks: d = L_lo − L_hi (−∞ where both are −∞), t = e^d, then L_hi + log1p(t). The max
    # and min are selects on one comparison and the loops index views with uint64: numba's
    # max() and its wraparound test on a signed index kept LLVM from vectorising (2.5-3x slower)
    n = a.shape[0]
    d = np.empty(min(n, _CHUNK), dtype=np.float32)
    y = np.empty_like(d)
    hi = np.empty_like(d)
    for c0 in range(0, n, _CHUNK):
        c1 = min(n, c0 + _CHUNK)
        w = c1 - c0
        av = a[c0:c1]
        bv = b[c0:c1]
        ov = out[c0:c1]
        for k in range(np.uint64(w)):
            x0 = av[k]
            x1 = bv[k]
            big = x0 >= x1
            mx = x0 if big else x1
            lo = x1 if big else x0
            hi[k] = mx
            d[k] = lo - mx if mx > _FNEGINF else _FNEGINF
        _exp_into(d[:w], y)
        for k in range(np.uint64(w)):
            t = y[k]
            u = _F1 + t  # log1p(t) = log(u)·t/(u − 1), exact where u = 1
            lu = _log_poly(u, _FZERO)
            l1 = lu * (t / (u - _F1)) if u != _F1 else t
            ov[k] = hi[k] + l1


@njit(cache=True, nogil=True, error_model="numpy")
def _pair_plus32(a, b, out):
    # The expectation semiring's ⊕ on (L, E) pairs, flat (2n,): L = logaddexp (as _logaddexp32)
    # and E = (E_hi + t·E_lo) / (1 + t) with t = e^{L_lo − L_hi}, the p-weighted mean; E = 0
    # where L = −∞. The pairs are split into contiguous chunk buffers first, so loops vectorise;
    # the pair loops index with uint64 (numba's wraparound test on a signed index kept LLVM
    # from vectorising their stride-2 loads and stores: 2.2x slower on the whole kernel).
    n = a.shape[0] // 2
    m = min(n, _CHUNK)
    hi = np.empty(m, dtype=np.float32)
    d = np.empty(m, dtype=np.float32)
    eh = np.empty(m, dtype=np.float32)
    el = np.empty(m, dtype=np.float32)
    y = np.empty(m, dtype=np.float32)
    two = np.uint64(2)
    one = np.uint64(1)
    for c0 in range(0, n, _CHUNK):
        w = min(n, c0 + _CHUNK) - c0
        base = np.uint64(c0)
        for k in range(np.uint64(w)):
            i = two * (base + k)
            x0 = a[i]
            x1 = b[i]
            e0 = a[i + one]
            e1 = b[i + one]
            big = x0 >= x1
            mx = x0 if big else x1
            lo = x1 if big else x0
            hi[k] = mx
            d[k] = lo - mx if mx > _FNEGINF else _FNEGINF
            eh[k] = e0 if big else e1
            el[k] = e1 if big else e0
        _exp_into(d[:w], y)
        for k in range(np.uint64(w)):
            t = y[k]
            u = _F1 + t
            lu = _log_poly(u, _FZERO)
            l1 = lu * (t / (u - _F1)) if u != _F1 else t
            i = two * (base + k)
            mx = hi[k]
            out[i] = mx + l1
            out[i + one] = (eh[k] + t * el[k]) / u if mx > _FNEGINF else _FZERO


@njit(cache=True, nogil=True, error_model="numpy")
def _pair_exp_rows32(a, X, m):
    # a (B, r, j, 2) ⟨L, E⟩ → X (B, 2r, j) = [exp(L − m); exp(L − m)·E] and m (B, r), in groups of
    # whole rows (as many as fit in _CHUNK elements, at least one): L − m and E copied
    # out of the pairs into contiguous buffers, one _exp_into over the group, then the products.
    # The pair loads index a flat row with uint64 (numba's wraparound test on a signed index
    # keeps LLVM from vectorising stride-2 loads). 1.5-3.4x faster than walking chunks of pairs.
    B, r, j = a.shape[0], a.shape[1], a.shape[2]
    rpc = max(1, _CHUNK // max(j, 1))
    L = np.empty(rpc * j, dtype=np.float32)
    Ev = np.empty(rpc * j, dtype=np.float32)
    two = np.uint64(2)
    one = np.uint64(1)
    for b in range(B):
        Xf = X[b].reshape(2 * r * j)
        for i0 in range(0, r, rpc):
            i1 = min(r, i0 + rpc)
            for i in range(i0, i1):
                ai = a[b, i].reshape(2 * j)
                Lr = L[(i - i0) * j : (i - i0 + 1) * j]
                Er = Ev[(i - i0) * j : (i - i0 + 1) * j]
                mx = _FNEGINF
                for c in range(np.uint64(j)):
                    x = ai[two * c]
                    Lr[c] = x
                    Er[c] = ai[two * c + one]
                    mx = x if x > mx else mx
                mi = mx if np.isfinite(mx) else _FZERO
                m[b, i] = mi
                for c in range(j):
                    Lr[c] = Lr[c] - mi
            w = (i1 - i0) * j
            P = Xf[i0 * j : i0 * j + w]
            PE = Xf[(r + i0) * j : (r + i0) * j + w]
            _exp_into(L[:w], P)
            for c in range(w):
                pv = P[c]
                PE[c] = pv * Ev[c] if pv > _FZERO else _FZERO


@njit(cache=True, nogil=True, error_model="numpy")
def _pair_log_rows32(Y, T2, m, out, limit):
    # Y (B, 2r, k) = [S; T₁], T₂ (B, r, k), m (B, r) → out (B, r, k, 2) = ⟨m + log S, (T₁ − T₂)/S⟩,
    # E = 0 where L = −∞; returns whether any L fell more than ``limit`` below its row's m.
    # In groups of rows as _pair_exp_rows32: the logs of the group's S with shift 0 (_log_into),
    # then each row's m added (two roundings), the outputs stored through a flat uint64 index.
    B, r, k = T2.shape[0], T2.shape[1], T2.shape[2]
    rpc = max(1, _CHUNK // max(k, 1))
    size = rpc * k
    lg = np.empty(size, dtype=np.float32)
    buf = np.empty(size, dtype=np.float32)
    mb = np.empty(size, dtype=np.int32)
    ex = np.empty(size, dtype=np.float32)
    two = np.uint64(2)
    one = np.uint64(1)
    low = False
    for b in range(B):
        Sf = Y[b].reshape(2 * r * k)
        for i0 in range(0, r, rpc):
            i1 = min(r, i0 + rpc)
            w = (i1 - i0) * k
            _log_into(Sf[i0 * k : i0 * k + w], _FZERO, lg[:w], buf, mb, ex)
            for i in range(i0, i1):
                s = Y[b, i]
                t1 = Y[b, r + i]
                t2 = T2[b, i]
                lr = lg[(i - i0) * k : (i - i0 + 1) * k]
                mi = m[b, i]
                floor = mi - limit
                ob = out[b, i].reshape(2 * k)
                lw = False
                for c in range(np.uint64(k)):
                    y = lr[c] + mi
                    e = (t1[c] - t2[c]) / s[c]
                    ob[two * c] = y
                    ob[two * c + one] = e if y > _FNEGINF else _FZERO
                    lw |= y < floor
                low |= lw
    return low


def pair_exp_rows(a: Array) -> tuple[Array, Array]:
    """Numba twin of :func:`semitorch.kernels.reference.pair_exp_rows` (float32)."""
    lead, (r, j) = a.shape[:-3], a.shape[-3:-1]
    a2 = np.ascontiguousarray(a.reshape((-1, r, j, 2)))
    X = np.empty((a2.shape[0], 2 * r, j), dtype=np.float32)
    m = np.empty((a2.shape[0], r), dtype=np.float32)
    _pair_exp_rows32(a2, X, m)
    return X.reshape(lead + (2 * r, j)), m.reshape(lead + (r, 1))


def pair_log_rows(Y: Array, T2: Array, m: Array, limit: float) -> tuple[Array, bool]:
    """Numba twin of :func:`semitorch.kernels.reference.pair_log_rows` (float32)."""
    lead, (r, k) = T2.shape[:-2], T2.shape[-2:]
    Y2 = np.ascontiguousarray(Y.reshape((-1, 2 * r, k)))
    T22 = np.ascontiguousarray(T2.reshape((-1, r, k)))
    m2 = np.ascontiguousarray(m.reshape((-1, r)))
    out = np.empty((Y2.shape[0], r, k, 2), dtype=np.float32)
    low = _pair_log_rows32(Y2, T22, m2, out, np.float32(limit))
    return out.reshape(lead + (r, k, 2)), bool(low)


@njit(cache=True, nogil=True)
def _gather_rows(src, arg, out):
    R, k = arg.shape
    for r in range(R):
        sr = src[r]
        for c in range(k):
            out[r, c] = sr[arg[r, c]]


def gather_last(src: Array, arg: Array) -> Array:
    """Numba twin of :func:`semitorch.kernels.reference.gather_last`."""
    lead = arg.shape[:-1]
    s2 = (src if src.shape[:-1] == lead else np.broadcast_to(src, lead + src.shape[-1:])).reshape(-1, src.shape[-1])
    a2 = arg.reshape(-1, arg.shape[-1])
    out = np.empty(a2.shape, dtype=src.dtype)
    _gather_rows(s2, a2, out)
    return out.reshape(arg.shape)


@njit(cache=True, nogil=True)
def _merge_rows(a, sa, b, sb, out, so):
    N, K = a.shape
    for r in range(N):
        i = 0
        j = 0
        for t in range(K):
            if j >= K or (i < K and a[r, i] >= b[r, j]):  # ties: a's entry first
                out[r, t] = a[r, i]
                so[r, t] = sa[r, i]
                i += 1
            else:
                out[r, t] = b[r, j]
                so[r, t] = sb[r, j]
                j += 1


def kbest_merge(a: Array, sa: Array | None, b: Array, sb: Array | None) -> tuple[Array, Array | None]:
    """Numba twin of :func:`semitorch.kernels.reference.kbest_merge`."""
    shape = np.broadcast_shapes(a.shape, b.shape)
    K = shape[-1]
    a2 = np.ascontiguousarray(np.broadcast_to(a, shape)).reshape(-1, K)
    b2 = np.ascontiguousarray(np.broadcast_to(b, shape)).reshape(-1, K)
    keep = sa is not None and sb is not None
    zero = np.zeros(a2.shape, dtype=np.int64)
    s_a = np.ascontiguousarray(np.broadcast_to(sa, shape)).reshape(-1, K) if keep else zero
    s_b = np.ascontiguousarray(np.broadcast_to(sb, shape)).reshape(-1, K) if keep else zero
    out = np.empty_like(a2)
    so = np.empty(a2.shape, dtype=np.int64)
    _merge_rows(a2, s_a, b2, s_b, out, so)
    return out.reshape(shape), (so.reshape(shape) if keep else None)


def exp_shift(a: Array) -> tuple[Array, Array]:
    """Numba twin of :func:`semitorch.kernels.reference.exp_shift` (float32)."""
    a2 = np.ascontiguousarray(a.reshape(-1, a.shape[-1]))
    p = np.empty_like(a2)
    m = np.empty((a2.shape[0], 1), dtype=a2.dtype)
    _exp_shift32(a2, p, m)
    return p.reshape(a.shape), m.reshape(a.shape[:-1] + (1,))


def log_shift(s: Array, m: Array) -> Array:
    """Numba twin of :func:`semitorch.kernels.reference.log_shift` (float32)."""
    return log_shift_low(s, m, np.inf)[0]


def log_shift_low(s: Array, m: Array, limit: float) -> tuple[Array, bool]:
    """Numba twin of :func:`semitorch.kernels.reference.log_shift_low` (float32)."""
    s2 = np.ascontiguousarray(s.reshape(-1, s.shape[-1]))
    mshape = s.shape[:-1] + (1,)
    m2 = np.ascontiguousarray((m if m.shape == mshape else np.broadcast_to(m, mshape)).reshape(-1, 1))
    out = np.empty_like(s2)
    low = _log_shift32(s2, m2, out, np.float32(limit))
    return out.reshape(s.shape), bool(low)


def logaddexp(a: Array, b: Array) -> Array:
    """Numba twin of :func:`semitorch.kernels.reference.logaddexp` (float32, same shapes)."""
    a1 = np.ascontiguousarray(a).reshape(-1)
    b1 = np.ascontiguousarray(b).reshape(-1)
    out = np.empty_like(a1)
    _logaddexp32(a1, b1, out)
    return out.reshape(a.shape)


def pair_plus(a: Array, b: Array) -> Array:
    """Numba twin of :func:`semitorch.kernels.reference.pair_plus` (float32, same shapes)."""
    a1 = np.ascontiguousarray(a).reshape(-1)
    b1 = np.ascontiguousarray(b).reshape(-1)
    out = np.empty_like(a1)
    _pair_plus32(a1, b1, out)
    return out.reshape(a.shape)


def _affine_parts(R: int, n: int, dtype: Any, *xs: Array) -> tuple[Array, ...]:
    """``xs`` as C-contiguous arrays of ``dtype``: the last two (p, D) broadcast to (R,), the others to (R, n)."""
    out = []
    for i, x in enumerate(xs):
        x = np.asarray(x, dtype=dtype)
        shp = (R,) if i >= len(xs) - 2 else (R, n)
        out.append(np.ascontiguousarray(x if x.shape == shp else np.broadcast_to(x, shp)))  # skip a no-op broadcast
    return tuple(out)


def _affine_args(g: Array, u: Array, v: Array, p: Array, D: Array) -> tuple[Array, ...]:
    """g, u, v (R, n) and p, D (R,) as C-contiguous arrays of g's dtype."""
    return _affine_parts(g.shape[0], g.shape[1], g.dtype, g, u, v, p, D)


def affine_sum(g: Array, u: Array, v: Array, p: Array, D: Array) -> Array:
    """Numba twin of :func:`semitorch.kernels.reference.affine_sum`."""
    g, u, v, p, D = _affine_args(g, u, v, p, D)
    S = np.empty_like(g)
    nch = _nchunks(g.shape[0], g.size * g.shape[1], contended=True)
    if nch:
        _affine_sum_par(g, u, v, p, D, S, nch)
    else:
        _affine_sum_rows(g, u, v, p, D, S, 0, g.shape[0])
    return S


def affine_count(g: Array, u: Array, v: Array, p: Array, D: Array) -> Array:
    """Numba twin of :func:`semitorch.kernels.reference.affine_count` (q in the parts' dtype, sums in g's)."""
    gc = np.ascontiguousarray(g)
    u, v, p, D = _affine_parts(gc.shape[0], gc.shape[1], np.result_type(u, v, p, D), u, v, p, D)
    S = np.empty_like(gc)
    nch = _nchunks(gc.shape[0], gc.size * gc.shape[1], contended=True)
    if nch:
        _affine_count_par(gc, u, v, p, D, S, nch)
    else:
        _affine_count_rows(gc, u, v, p, D, S, 0, gc.shape[0])
    return S


def affine_signed(a: Array, c: Array, u: Array, v: Array, p: Array, D: Array) -> tuple[Array, Array]:
    """Numba twin of :func:`semitorch.kernels.reference.affine_signed`."""
    R, n = a.shape[:2]
    af = np.ascontiguousarray(a)
    c, u, v, p, D = _affine_parts(R, n, af.dtype, c, u, v, p, D)
    val = np.empty((R, n, 2), dtype=af.dtype)
    arg = np.empty((R, n, 2), dtype=np.int64)
    nch = _nchunks(R, R * n * n * 2)
    if nch:
        _affine_signed_par(af, c, u, v, p, D, val, arg, nch)
    else:
        _affine_signed_rows(af, c, u, v, p, D, val, arg, 0, R)
    return val, arg


def affine_max(g: Array, u: Array, v: Array, p: Array, D: Array) -> tuple[Array, Array]:
    """Numba twin of :func:`semitorch.kernels.reference.affine_max`."""
    g, u, v, p, D = _affine_args(g, u, v, p, D)
    V = np.empty_like(g)
    A = np.empty(g.shape, dtype=np.int64)
    nch = _nchunks(g.shape[0], g.size * g.shape[1], contended=True)
    slack = g.dtype.type(16 * np.finfo(g.dtype).eps)  # see affine_kbest
    if nch:
        _affine_max_par(g, u, v, p, D, V, A, nch, slack)
    else:
        _affine_max_rows(g, u, v, p, D, V, A, 0, g.shape[0], slack)
    return V, A


def affine_entropy(g: Array, u: Array, v: Array, p: Array, D: Array) -> tuple[Array, Array]:
    """Numba twin of :func:`semitorch.kernels.reference.affine_entropy` (float32: an inline vectorised log).

    Rows with p = 0 (softmax, log_softmax) are rank one off the diagonal, so their sums factor
    into O(n) prefix and suffix sums (``_entropy_rank1_row``); other rows loop over every pair,
    once per pair j < k where u = −v (layer_norm).
    """
    g, u, v, p, D = _affine_args(g, u, v, p, D)
    S = np.empty_like(g)
    T = np.empty_like(g)
    f32 = g.dtype == np.float32
    sym = bool(np.array_equal(u, -v))  # symmetric q (layer_norm): one log per pair j < k
    nch = _nchunks(g.shape[0], g.size * g.shape[1] * (2 if sym else 4), contended=True)
    if sym:
        if nch:
            (_affine_entropy_sym_par32 if f32 else _affine_entropy_sym_par64)(g, v, p, D, S, T, nch)
        else:
            (_affine_entropy_sym32 if f32 else _affine_entropy_sym64)(g, v, p, D, S, T, 0, g.shape[0])
        return S, T
    if nch:
        (_affine_entropy_par32 if f32 else _affine_entropy_par64)(g, u, v, p, D, S, T, nch)
    else:
        (_affine_entropy_rows32 if f32 else _affine_entropy_rows64)(g, u, v, p, D, S, T, 0, g.shape[0])
    return S, T


def _series_rows_apply(g: Array, u: Array, v: Array, p: Array) -> bool:
    """Whether :func:`affine_entropy_sum` takes the sorted-series kernel: float32, symmetric, long, p ≠ 0, w bounded."""
    R, n = g.shape
    if g.dtype != np.float32 or n < SERIES_MIN_N or R == 0 or not np.array_equal(u, -v):
        return False
    ap = np.abs(p.astype(np.float64))
    if not (np.all(np.isfinite(ap)) and np.all(ap >= np.finfo(np.float32).tiny)):
        return False  # p = 0 (rank one) or unusable: the dense kernel
    return bool(np.all(np.abs(v).max(axis=1) <= _SERIES_MAX_W * np.sqrt(ap)))


def affine_entropy_sum(g: Array, h: Array, u: Array, v: Array, p: Array, D: Array) -> tuple[Array, Array, Array]:
    """Numba twin of :func:`semitorch.kernels.reference.affine_entropy_sum`: (Σ g|q|, Σ g|q| log|q|, Σ h|q|).

    Symmetric float32 rows (layer_norm: u = −v, p ≠ 0) of at least :data:`SERIES_MIN_N` entries
    go through the sorted-series kernel (O(n log n + n·M) plus a band of pairs near q = 0,
    instead of n²/2 logs; see the section comment), the others through :func:`affine_entropy`
    and :func:`affine_sum`.
    """
    g, u, v, p, D = _affine_args(g, u, v, p, D)
    h = np.ascontiguousarray(np.broadcast_to(np.asarray(h, dtype=g.dtype), g.shape))
    if not (_series_rows_apply(g, u, v, p) and np.isfinite(g).all() and np.isfinite(h).all()):  # inf: dense sums
        S, T = affine_entropy(g, u, v, p, D)
        return S, T, affine_sum(h, u, v, p, D)
    S = np.empty_like(g)
    T = np.empty_like(g)
    U = np.empty_like(g)
    R = g.shape[0]
    nch = _nchunks(R, g.size * g.shape[1], contended=True)
    if nch:
        _affine_entropy_series_par32(g, h, v, p, D, S, T, U, _PSI_RHO, _psi(), nch)
    else:
        _affine_entropy_series32(g, h, v, p, D, S, T, U, 0, R, _PSI_RHO, _psi())
    return S, T, U


# ---- drivers ------------------------------------------------------------------------------


def _nchunks_threshold(contended: bool) -> int:
    """The work (candidate evaluations) from which a call splits over threads."""
    return PARALLEL_MIN_WORK << _CONTENDED if contended and BLAS_SPINS else PARALLEL_MIN_WORK


def _nchunks(rows: int, work: int, contended: bool = False) -> int:
    """How many pieces to split ``rows`` into: 0 means run serially on this thread.

    ``contended``: the kernel's passes run while BLAS threads spin, if they do (see
    :data:`PARALLEL_MIN_WORK` and :data:`BLAS_SPINS`).
    """
    if work < _nchunks_threshold(contended) or rows < 2 or numba.get_num_threads() == 1:
        return 0  # (one thread, as under kernels.one_thread(): the serial worker, no parallel launch)
    return min(rows, 4 * numba.get_num_threads())


def _setup(name: str, a: Array, w: Array, a_core: int) -> tuple[Array, Array, Array, Array, tuple[int, ...]]:
    af, wf, ia, iw, batch = prepare(name, a, w, a_core)
    af = np.ascontiguousarray(af)
    wT = np.ascontiguousarray(wf.transpose(0, 2, 1))  # (Bw, j, k): k innermost
    return af, wT, np.ascontiguousarray(ia), np.ascontiguousarray(iw), batch


def _maxplus_flat(af: Array, wT: Array, ia: Array, iw: Array, contended: bool = True) -> tuple[Array, Array]:
    """The max-plus kernel on :func:`_setup`'s flat operands: (val, arg), each (batch, r, k).

    ``contended`` as in :func:`_nchunks`: true for MaxProduct's passes, false for k-best's floor.
    """
    nb, r, j = ia.shape[0], af.shape[1], af.shape[2]
    k = wT.shape[2]
    val = np.empty((nb, r, k), dtype=af.dtype)
    arg = np.empty((nb, r, k), dtype=np.int64)
    rows = nb * r
    if j == 0 or rows == 0 or k == 0:
        val.fill(-np.inf)
        arg.fill(0)
        return val, arg
    jp = -(-j // 4) * 4
    if jp != j:  # pad to whole groups of 4 columns with −inf (never a winner)
        af = np.concatenate([af, np.full(af.shape[:2] + (jp - j,), -np.inf, dtype=af.dtype)], axis=2)
    neg = af.dtype.type(-np.inf)
    nch = _nchunks(rows, rows * k * j, contended)
    if nch:
        _maxplus_par(af, wT, ia, iw, val, arg, nch, neg)
    else:
        _maxplus_rows4(af, wT, ia, iw, val, arg, 0, rows, neg)
    return val, arg


def maxplus_vecmat(a: Array, logw: Array) -> tuple[Array, Array]:
    """Numba max-plus vecmat; same contract as :func:`semitorch.kernels.reference.maxplus_vecmat`."""
    af, wT, ia, iw, batch = _setup("maxplus_vecmat", a, logw, 2)
    val, arg = _maxplus_flat(af, wT, ia, iw)
    shape = batch + val.shape[1:]
    return val.reshape(shape), arg.reshape(shape)


def _best_rank0(af: Array, wT: Array, ia: Array, iw: Array) -> Array:
    """Per (batch, row, k): the j of the best rank-0 candidate a[j, 0] + w[j, k] (the max-plus kernel).

    Its K-list gives the k-best kernel a floor: its K candidates a[j, q] + w[j, k] all rank
    at or above its K-th, so no candidate below that can be among the K best.
    """
    return _maxplus_flat(np.ascontiguousarray(af[..., 0]), wT, ia, iw, contended=False)[1]


def kbest_vecmat(a: Array, logw: Array) -> tuple[Array, Array]:
    """Numba k-best vecmat; same contract as :func:`semitorch.kernels.reference.kbest_vecmat`."""
    af, wT, ia, iw, batch = _setup("kbest_vecmat", a, logw, 3)
    nb, r, j, K = ia.shape[0], af.shape[1], af.shape[2], af.shape[3]
    k = wT.shape[2]
    val = np.empty((nb, r, k, K), dtype=af.dtype)
    arg = np.empty((nb, r, k, K), dtype=np.int64)
    rows = nb * r
    if K == 0:
        return val.reshape(batch + (r, k, K)), arg.reshape(batch + (r, k, K))
    neg = af.dtype.type(-np.inf)
    if rows == 0 or k == 0 or j == 0:
        val.fill(neg)
        arg.fill(0)
        return val.reshape(batch + (r, k, K)), arg.reshape(batch + (r, k, K))
    jstar = _best_rank0(af, wT, ia, iw)
    wmax = wT.max(axis=1)  # (Bw, k): once here, not in every chunk of rows
    # up to K insertions per candidate, each several times a max-add: counted 4×, so that the
    # attention-sized calls of the benchmark ((12·32 rows, 32 × 32), K = 5) run on both threads
    nch = _nchunks(rows, 4 * rows * k * j * K)
    if nch:
        _kbest_par(af, wT, wmax, jstar, ia, iw, val, arg, nch, neg)
    else:
        _kbest_rows(af, wT, wmax, jstar, ia, iw, val, arg, 0, rows, neg)
    return val.reshape(batch + (r, k, K)), arg.reshape(batch + (r, k, K))


def signed_vecmat(a: Array, w: Array) -> tuple[Array, Array]:
    """Numba signed max/min vecmat; same contract as :func:`semitorch.kernels.reference.signed_vecmat`."""
    af, wT, ia, iw, batch = _setup("signed_vecmat", a, w, 3)
    nb, r, j = ia.shape[0], af.shape[1], af.shape[2]
    k = wT.shape[2]
    val = np.empty((nb, r, k, 2), dtype=af.dtype)
    arg = np.empty((nb, r, k, 2), dtype=np.int64)
    rows = nb * r
    neg, pos = af.dtype.type(-np.inf), af.dtype.type(np.inf)
    nch = _nchunks(rows, rows * k * j * 2)
    if nch:
        _signed_par(af, wT, ia, iw, val, arg, nch, neg, pos)
    elif rows and k:
        _signed_rows(af, wT, ia, iw, val, arg, 0, rows, neg, pos)
    return val.reshape(batch + (r, k, 2)), arg.reshape(batch + (r, k, 2))


def warmup() -> None:
    """Compile (or load from cache) the serial and parallel kernels for float32 and float64."""
    saved = globals()["PARALLEL_MIN_WORK"]
    try:
        for dt in (np.float32, np.float64):
            a = np.zeros((2, 2), dtype=dt)
            ak = np.zeros((2, 2, 2), dtype=dt)
            w = np.ones((2, 2), dtype=dt)
            for thr in (1 << 62, 0):  # serial worker, then the parallel driver
                globals()["PARALLEL_MIN_WORK"] = thr
                maxplus_vecmat(a, w)
                kbest_vecmat(ak, w)
                signed_vecmat(ak, w)
                affine_sum(a, a, a, a[0], a[0])
                affine_max(a, a, a, a[0], a[0])
                affine_count(a.astype(np.float64), a, a, a[0], a[0])
                affine_signed(ak, a, a, a, a[0], a[0])
                affine_entropy(a, a, a, a[0], a[0])
                affine_entropy(a, a + 1, a + 1, a[0], a[0])  # u ≠ −v: the general kernel
                affine_kbest(ak, a, a, a[0], a[0])
                if dt == np.float32:  # the sorted-series kernel, on a row long enough to take it
                    n = SERIES_MIN_N
                    x = np.linspace(-1, 1, 2 * n, dtype=np.float32).reshape(2, n)
                    affine_entropy_sum(x * x, x, -x, x, -np.ones(2, dt), np.full(2, n, dt))
            if dt == np.float32:
                exp_shift(a)
                log_shift(a, a[:, :1])
                logaddexp(a, a)
                pair_plus(ak, ak)
                X, mx = pair_exp_rows(ak[None])
                pair_log_rows(X, X[:, :2], mx, 1.0)
    finally:
        globals()["PARALLEL_MIN_WORK"] = saved
