"""Structured row Jacobians (layer_norm, softmax, log_softmax) and prepared weights.

The kernels that contract |c_j (D δ_jk + p + u_j v_k)| over j without building the
(R, n, n) Jacobian are checked against an oracle written here (a Python loop over
j and k); the semirings' fast ``affine_vecmat`` against the dense default that
builds J; and whole backward passes through the real ops against the same passes
with the structured kernels switched off. Prepared (lifted) weights are made once
per forward and reused.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hst

import semitorch as st
from semitorch import kernels
from semitorch.kernels import numba_cpu, reference
from semitorch.paths import read_path
from semitorch.semirings import Count, Entropy, KBest, Log, LogCount, MaxProduct, SignedMax
from semitorch.semirings.base import Semiring


class _NumbaParallel:
    """numba_cpu forced onto its prange drivers (every call split over threads, however small)."""

    __name__ = "numba_parallel"

    def __getattr__(self, name):
        fn = getattr(numba_cpu, name)

        def call(*args):
            saved = numba_cpu.PARALLEL_MIN_WORK
            numba_cpu.PARALLEL_MIN_WORK = 0
            try:
                return fn(*args)
            finally:
                numba_cpu.PARALLEL_MIN_WORK = saved

        return call


MODULES = [reference, numba_cpu, _NumbaParallel(), kernels]


def oracle(g, u, v, p, D):
    """Sum, (max, first arg-max) and Σ g|q| log|q| by a loop over every (r, k, j), in float64."""
    R, n = g.shape
    S = np.zeros((R, n))
    V = np.zeros((R, n))
    A = np.zeros((R, n), np.int64)
    T = np.zeros((R, n))
    for r in range(R):
        for k in range(n):
            for j in range(n):
                q = abs(float(p[r]) + float(u[r, j]) * float(v[r, k]) + (float(D[r]) if j == k else 0.0))
                y = float(g[r, j]) * q
                S[r, k] += y
                T[r, k] += y * math.log(q) if q > 0 else 0.0
                if y > V[r, k]:
                    V[r, k], A[r, k] = y, j
    return S, V, A, T


@hst.composite
def rows(draw, dtype=np.float64):
    R = draw(hst.integers(1, 4))
    n = draw(hst.integers(1, 9))
    small = draw(hst.booleans())  # small integers: exact ties and exact zeros of q
    el = hst.integers(-3, 3).map(float) if small else hst.floats(-3, 3, allow_nan=False, width=32)

    def arr(shape, e=el):
        return np.array(draw(hst.lists(e, min_size=math.prod(shape), max_size=math.prod(shape))), dtype).reshape(shape)

    g = np.abs(arr((R, n)))
    g[g < 0.5] = 0  # rows without a value
    u, v = arr((R, n)), arr((R, n))
    if draw(hst.booleans()):  # u = −v, as layer_norm's: the kernels' symmetric paths
        u = -v
    return g, u, v, arr((R,)), arr((R,))


def _plain_float32(g, u, v, p, D):
    """affine_sum and affine_max as one plain float32 loop over j (outer) and k, in numpy float32 scalars."""
    f = np.float32
    R, n = g.shape
    S = np.zeros((R, n), f)
    V = np.zeros((R, n), f)
    A = np.zeros((R, n), np.int64)
    for r in range(R):
        for j in range(n):
            if g[r, j] == 0:
                continue
            for k in range(n):
                y = g[r, j] * abs((p[r] + (D[r] if k == j else f(0))) + u[r, j] * v[r, k])
                S[r, k] = S[r, k] + y
                if y > V[r, k]:
                    V[r, k], A[r, k] = y, j
    return S, V, A


@pytest.mark.parametrize("mod", [numba_cpu, _NumbaParallel()], ids=["numba", "numba-parallel"])
@given(case=rows(np.float32))
@settings(max_examples=40, deadline=None)
def test_affine_sum_and_max_bitwise_equal_plain_loop(mod, case):
    """The sum kernel adds each S[k] in j order (two j's per pass), and the max kernel breaks ties
    by the lowest j whatever order it visits them in: the same floats as a plain loop, bit for bit
    (ties included), in float32."""
    S, V, A = _plain_float32(*case)
    np.testing.assert_array_equal(mod.affine_sum(*case), S)
    val, arg = mod.affine_max(*case)
    np.testing.assert_array_equal(val, V)
    np.testing.assert_array_equal(arg, A)


@pytest.mark.parametrize("mod", MODULES, ids=lambda m: m.__name__.split(".")[-1])
@given(case=rows())
@settings(max_examples=60, deadline=None)
def test_affine_kernels_equal_oracle(mod, case):
    g, u, v, p, D = case
    S, V, A, T = oracle(g, u, v, p, D)
    np.testing.assert_allclose(mod.affine_sum(g, u, v, p, D), S, rtol=1e-12, atol=1e-12)
    val, arg = mod.affine_max(g, u, v, p, D)
    np.testing.assert_allclose(val, V, rtol=1e-12, atol=0)
    np.testing.assert_array_equal(arg, A)  # ties: the lowest j, as the oracle
    S2, T2 = mod.affine_entropy(g, u, v, p, D)
    np.testing.assert_allclose(S2, S, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(T2, T, rtol=1e-10, atol=1e-10)


def oracle_count(g, u, v, p, D):
    """Σ_j g[r, j]·[q ≠ 0] by a loop over every (r, k, j), q formed in the parts' own dtype."""
    R, n = g.shape
    S = np.zeros((R, n))
    for r in range(R):
        for k in range(n):
            for j in range(n):
                q = (p[r] + D[r] if j == k else p[r]) + u[r, j] * v[r, k]  # numpy scalars: the parts' rounding
                S[r, k] += float(g[r, j]) * (q != 0)
    return S


@pytest.mark.parametrize("mod", MODULES, ids=lambda m: m.__name__.split(".")[-1])
@given(case=rows(), parts32=hst.booleans())
@settings(max_examples=60, deadline=None)
def test_affine_count_equals_oracle(mod, case, parts32):
    """Counts in float64 (exact: integer sums); q = 0 exactly where the small-integer draws cancel."""
    g, u, v, p, D = case
    g = np.round(g)
    if parts32:
        u, v, p, D = (x.astype(np.float32) for x in (u, v, p, D))
    got = mod.affine_count(g, u, v, p, D)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, oracle_count(g, u, v, p, D))


@pytest.mark.parametrize("mod", MODULES, ids=lambda m: m.__name__.split(".")[-1])
def test_affine_count_forms_q_in_the_parts_dtype(mod):
    """u·v = −(1 + 2⁻²⁴ − 2⁻⁴⁷) rounds to −1 in float32, so q = 1 + u·v is 0 there (no edge, as the
    float32 sum and max kernels see it) though not in float64; the count follows the parts' dtype."""
    f = np.float32
    u = np.array([[1 + 2.0**-23, 1.0]], f)
    v = np.array([[-(1 - 2.0**-24), 1.0]], f)
    p, D = np.ones(1, f), np.zeros(1, f)
    g = np.ones((1, 2))  # float64 counts
    q32 = p[0] + u[0, 0] * v[0, 0]
    assert q32 == 0 and float(p[0]) + float(u[0, 0]) * float(v[0, 0]) != 0
    got = mod.affine_count(g, u, v, p, D)
    np.testing.assert_array_equal(got, [[1.0, 2.0]])  # k = 0: only j = 1 (q = 1 + 1·(−(1 − 2⁻²⁴)) ≠ 0)
    assert mod.affine_sum(g.astype(f), u, v, p, D)[0, 0] == f(2.0**-24)  # the sum and max kernels: j = 1 only
    assert mod.affine_max(g.astype(f), u, v, p, D)[1][0, 0] == 1


def oracle_signed(a, c, u, v, p, D):
    """(max, min) of w·a[j, t] over (j, t) with w = c_j·q_jk ≠ 0 (rounded as the dense form) and a finite,
    the first index j·2 + t on ties, by a loop in Python; (−inf, +inf) and index 0 with no candidate."""
    R, n = c.shape
    V = np.empty((R, n, 2), a.dtype)
    A = np.zeros((R, n, 2), np.int64)
    for r, k in np.ndindex(R, n):
        cands = []
        for j in range(n):
            w = ((p[r] + D[r] if j == k else p[r]) + u[r, j] * v[r, k]) * c[r, j]  # the parts' rounding
            with np.errstate(over="ignore"):  # products beyond the float range are candidates too (±inf)
                cands += [(w * a[r, j, t], 2 * j + t) for t in range(2) if w != 0 and np.isfinite(a[r, j, t])]
        hi = max(cands, key=lambda z: (z[0], -z[1]), default=(-np.inf, 0))
        lo = min(cands, key=lambda z: (z[0], z[1]), default=(np.inf, 0))
        V[r, k] = hi[0], lo[0]
        A[r, k] = hi[1], lo[1]
    return V, A


@pytest.mark.parametrize("mod", MODULES, ids=lambda m: m.__name__.split(".")[-1])
@given(case=rows(), dtype=hst.sampled_from([np.float32, np.float64]), big=hst.booleans())
@settings(max_examples=60, deadline=None)
def test_affine_signed_equals_oracle(mod, case, dtype, big):
    """Signed structured rows: ties, exact zeros of q and c, rows without a path and (``big``) products
    that overflow to ±inf, where the kernel falls back to the exact rule."""
    g, u, v, p, D = case
    c = (u + v).astype(dtype)  # signed, with zeros
    a = np.stack([g, -g[:, ::-1]], axis=-1).astype(dtype)  # (max, min) pairs
    a[g == 0] = (-np.inf, np.inf)  # no path
    if big:
        a *= np.finfo(dtype).max / 4
    u, v, p, D = (x.astype(dtype) for x in (u, v, p, D))
    val, arg = mod.affine_signed(a, c, u, v, p, D)
    V, A = oracle_signed(a, c, u, v, p, D)
    np.testing.assert_array_equal(val, V)
    np.testing.assert_array_equal(arg, A)


@pytest.mark.parametrize("mod", MODULES, ids=lambda m: m.__name__.split(".")[-1])
@pytest.mark.parametrize("R,n", [(0, 3), (2, 0), (0, 0)])
def test_affine_kernels_on_empty_rows(mod, R, n):
    """No rows or no columns: every structured kernel returns empty results of the right shape and dtype."""
    g = np.ones((R, n), np.float32)
    p = np.ones(R, np.float32)
    assert mod.affine_sum(g, g, g, p, p).shape == (R, n)
    assert [x.shape for x in mod.affine_max(g, g, g, p, p)] == [(R, n)] * 2
    assert [x.shape for x in mod.affine_entropy(g, g, g, p, p)] == [(R, n)] * 2
    assert [x.shape for x in mod.affine_kbest(np.ones((R, n, 3), np.float32), g, g, p, p)] == [(R, n, 3)] * 2
    count = mod.affine_count(g.astype(np.float64), g, g, p, p)
    assert count.shape == (R, n) and count.dtype == np.float64
    val, arg = mod.affine_signed(np.ones((R, n, 2), np.float32), g, g, g, p, p)
    assert val.shape == arg.shape == (R, n, 2) and val.dtype == np.float32 and arg.dtype == np.int64


def oracle_kbest(g, u, v, p, D):
    """The K best g[r, j, q]·|q| over (j, q) by sorting every candidate in Python (value desc, index asc)."""
    R, n, K = g.shape
    V = np.zeros((R, n, K))
    A = np.zeros((R, n, K), np.int64)
    for r in range(R):
        for k in range(n):
            cands = []
            for j in range(n):
                q = abs(float(p[r]) + float(u[r, j]) * float(v[r, k]) + (float(D[r]) if j == k else 0.0))
                cands += [(float(g[r, j, t]) * q, j * K + t) for t in range(K)]
            cands = sorted((c for c in cands if c[0] > 0), key=lambda c: (-c[0], c[1]))[:K]
            for i, (y, idx) in enumerate(cands):
                V[r, k, i], A[r, k, i] = y, idx
    return V, A


@pytest.mark.parametrize("mod", MODULES, ids=lambda m: m.__name__.split(".")[-1])
@given(case=rows(), K=hst.integers(1, 4), cut=hst.integers(0, 4))
@settings(max_examples=60, deadline=None)
def test_affine_kbest_equals_oracle(mod, case, K, cut):
    g, u, v, p, D = case
    rng = np.random.default_rng(K + cut)
    gk = -np.sort(-np.round(g[..., None] * rng.integers(1, 3, (1, 1, K)), 0), axis=-1)  # ties across ranks
    gk[..., min(cut, K) :] *= cut % 2  # rows with fewer than K entries
    gk = -np.sort(-gk, axis=-1)
    V, A = oracle_kbest(gk, u, v, p, D)
    val, arg = mod.affine_kbest(gk, u, v, p, D)
    np.testing.assert_allclose(val, V, rtol=1e-12, atol=0)
    np.testing.assert_array_equal(arg, A)


@pytest.mark.parametrize("mod", [numba_cpu, _NumbaParallel()], ids=["numba", "numba-parallel"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["layer_norm", "softmax", "general", "ties"])
@pytest.mark.parametrize("n", [50, 200])
def test_affine_kbest_many_columns_equal_reference(mod, dtype, kind, n):
    """Rows of 50 (j's in index order) and 200 columns (by decreasing g), so the numba max and k-best
    kernels' per-block bound drops outputs many times:
    layer_norm-like rows (p = −1, D = n, u = −v, the diagonal on top), softmax-like ones (p = 0,
    D = 1), general ones (D = 0: no diagonal advantage, signs mixed) and small-integer ones full of
    ties and exact zeros of q; K = 5 with short lists. Values and indices equal the reference's."""
    rng = np.random.default_rng(["layer_norm", "softmax", "general", "ties"].index(kind))
    R, K = 5, 5
    g = rng.random((R, n, K)) * np.exp(rng.normal(size=(R, n, 1)) * 3)
    g[0, ::3] = 0  # no path through these j's
    g[1, :, 2:] = 0  # two entries per j
    g[2, 5:] = 0  # five j's with a value
    v = rng.standard_normal((R, n)) * np.where(rng.random((R, n)) < 0.05, 20, 1)  # a few outliers
    if kind == "layer_norm":
        u, p, D = -v, np.full(R, -1.0), np.full(R, float(n))
    elif kind == "softmax":
        s = rng.dirichlet(np.ones(n), size=R)
        u, v, p, D = -s, np.ones((R, n)), np.zeros(R), np.ones(R)
    elif kind == "general":
        u, p, D = rng.standard_normal((R, n)), rng.standard_normal(R), np.zeros(R)
    else:
        g = np.round(g * 2) / 2
        u, v = rng.integers(-2, 3, (2, R, n)).astype(float)
        p, D = np.array([-1.0, 0.0, 2.0, -4.0, 1.0]), np.array([0.0, 1.0, 3.0, 0.0, -1.0])
    g = -np.sort(-g, axis=-1)
    args = [x.astype(dtype) for x in (g, u, v, p, D)]
    want = reference.affine_kbest(*args)
    got = mod.affine_kbest(*args)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    g0 = np.ascontiguousarray(args[0][..., 0])  # the structured max kernel: the same bound, K = 1
    want = reference.affine_max(g0, *args[1:])
    got = mod.affine_max(g0, *args[1:])
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_affine_kbest_bound_allows_for_rounding():
    """float32 rows of thirds and sevenths, where a candidate rounds a little above the numba
    kernels' per-block bound computed without its rounding allowance: the search below finds such
    rows (the k-best and max kernels run with ``slack = 0`` disagree with the reference on them),
    and with the allowance both kernels equal the reference on every one."""
    rng = np.random.default_rng(0)
    f = np.float32
    R, n, K = 1, 80, 2  # over 64 columns: the kernels visit j's by decreasing g
    sharp = {"kbest": 0, "max": 0}
    for _ in range(800):
        g0 = rng.choice([1.0, 0.7, 0.3, 1 / 3, 0.1], size=(R, n)).astype(f)
        g = np.stack([g0, g0 * f(0.5)], -1)
        v = (rng.integers(-5, 6, (R, n)) / 3).astype(f)
        u = (rng.integers(-5, 6, (R, n)) / 7).astype(f)
        p = np.array([rng.choice([-1 / 3, 0.1, 1 / 7])], f)
        D = np.array([rng.choice([0.0, 1.0])], f)
        for name, x, shape in (("kbest", g, (R, n, K)), ("max", g0, (R, n))):
            want = getattr(reference, "affine_" + name)(x, u, v, p, D)
            V, A = np.zeros(shape, f), np.zeros(shape, np.int64)
            getattr(numba_cpu, f"_affine_{name}_rows")(x, u, v, p, D, V, A, 0, R, f(0))
            if np.array_equal(V, want[0]) and np.array_equal(A, want[1]):
                continue
            sharp[name] += 1
            got = getattr(numba_cpu, "affine_" + name)(x, u, v, p, D)
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[1], want[1])
    assert sharp["kbest"] >= 2 and sharp["max"] >= 1, sharp  # the search found rows where the allowance matters


@pytest.mark.parametrize("mod", [numba_cpu, _NumbaParallel()], ids=["numba", "numba-parallel"])
@given(case=rows(), mixed=hst.booleans())
@settings(max_examples=60, deadline=None)
def test_affine_entropy_rows_with_p_zero_equal_oracle(mod, case, mixed):
    """Rows with p = 0 (softmax's and log_softmax's) take the O(n) factored sums, not the n² loop:
    the same S and T as the oracle, alone or mixed with rows of p ≠ 0, zeros of u and v included."""
    g, u, v, p, D = case
    p = p.copy()
    p[:: 2 if mixed else 1] = 0
    S, _, _, T = oracle(g, u, v, p, D)
    S2, T2 = mod.affine_entropy(g, u, v, p, D)
    np.testing.assert_allclose(S2, S, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(T2, T, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", ["softmax", "random"])
def test_affine_entropy_p_zero_float32_close_to_float64(kind):
    """float32 rows with p = 0 (summed in float64 by the factored path) against the float64 reference."""
    rng = np.random.default_rng(7)
    R, n = 48, 32
    g = rng.random((R, n))
    g[0, ::3] = 0
    if kind == "softmax":
        u, v, D = -np.ones((R, n)), rng.dirichlet(np.ones(n), size=R), np.ones(R)
    else:
        u, v = rng.standard_normal((2, R, n)) * 3
        D = rng.standard_normal(R)
        u[1, 3] = v[2, 5] = 0
    f32 = [x.astype(np.float32) for x in (g, u, v, np.zeros(R), D)]
    S64, T64 = reference.affine_entropy(*(x.astype(np.float64) for x in f32))
    for mod in (numba_cpu, _NumbaParallel(), kernels):
        S, T = mod.affine_entropy(*f32)
        assert S.dtype == T.dtype == np.float32
        np.testing.assert_allclose(S, S64, rtol=2e-6)
        np.testing.assert_allclose(T, T64, rtol=2e-5, atol=2e-6 * np.abs(T64).max())


@pytest.mark.parametrize("sym", [False, True], ids=["general", "symmetric"])
@pytest.mark.parametrize("n", [5, 64, 384])
def test_float32_kernels_close_to_float64_oracle(n, sym):
    """float32 inputs (the numba kernel's inline vectorised log included) against the float64 reference."""
    rng = np.random.default_rng(n)
    R = 6
    g = rng.random((R, n)).astype(np.float32)
    g[0, ::3] = 0
    u, v = rng.standard_normal((2, R, n)).astype(np.float32)
    if sym:  # layer_norm's u = −x̂, v = x̂
        u = -v
    p = np.full(R, -1, np.float32)
    D = np.full(R, n, np.float32)
    ref64 = [x.astype(np.float64) for x in (g, u, v, p, D)]
    for mod in (numba_cpu, kernels):
        np.testing.assert_allclose(mod.affine_sum(g, u, v, p, D), reference.affine_sum(*ref64), rtol=2e-6)
        S, T = mod.affine_entropy(g, u, v, p, D)
        S64, T64 = reference.affine_entropy(*ref64)
        np.testing.assert_allclose(S, S64, rtol=2e-6)
        np.testing.assert_allclose(T, T64, rtol=2e-5, atol=2e-6 * np.abs(T64).max())
        V, A = mod.affine_max(g, u, v, p, D)
        V32, A32 = reference.affine_max(g, u, v, p, D)  # the same float32 products: exact
        np.testing.assert_array_equal(V, V32)
        np.testing.assert_array_equal(A, A32)


def _parts(rng, R, n, dtype, kind):
    if kind == "layer_norm":
        x = rng.standard_normal((R, n))
        xh = (x - x.mean(-1, keepdims=True)) / x.std(-1, keepdims=True)
        c = rng.standard_normal((R, n)) / n
        return [z.astype(dtype) for z in (c, np.full(R, n), np.full(R, -1.0), -xh, xh)]
    s = rng.dirichlet(np.ones(n), size=R)
    return [z.astype(dtype) for z in (s, np.ones(R), np.zeros(R), -np.ones((R, n)), s)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["layer_norm", "softmax"])
@pytest.mark.parametrize("sr", [Log(), Entropy(), MaxProduct(), KBest(3), Count(), LogCount(), SignedMax()], ids=repr)
def test_fast_affine_equals_dense_default(sr, kind, dtype):
    rng = np.random.default_rng(3)
    R, n = 7, 12
    c, D, p, u, v = _parts(rng, R, n, dtype, kind)
    c[0, 3] = 0  # a zero edge row
    a = rng.standard_normal((R, n) + sr.vshape).astype(dtype) * 5
    if isinstance(sr, Entropy):
        a[..., 1] = np.abs(a[..., 1])
    if isinstance(sr, KBest):  # sorted k-lists, some padded with −inf
        a = -np.sort(-a, axis=-1)
        a[1, :4, 1:] = -np.inf
    a[2] = sr.zeros(np, (n,), dtype)  # a row without any path
    a[4, :5] = sr.zeros(np, (5,), dtype)
    src = np.arange(a.size, dtype=np.int64).reshape(a.shape) if sr.selective else None
    got, gsrc = sr.affine_vecmat(a, src, c, D, p, u, v)
    want, wsrc = Semiring.affine_vecmat(sr, a, src, c, D, p, u, v)
    tol = 2e-5 if dtype == np.float32 else 1e-12
    fin = np.isfinite(want)
    np.testing.assert_array_equal(np.isfinite(got), fin)
    np.testing.assert_allclose(got[fin], want[fin], rtol=tol, atol=tol)
    if src is not None:
        np.testing.assert_array_equal(gsrc, wsrc)


@pytest.mark.parametrize("sr", [Log(), Entropy(), MaxProduct(), KBest(1)], ids=repr)
def test_underflowed_rows_are_recomputed_exactly(sr):
    """The best-scaled term of each output has q = 0, the rest sit e^-100 below it: float32 rescaling
    underflows them, so the row is recomputed with the dense Jacobian (log 2 − 100, not −inf)."""
    f = np.float32
    a = np.array([[0, -100, -100]], f)
    if isinstance(sr, Entropy):
        a = np.stack([a, np.zeros_like(a)], axis=-1)
    if isinstance(sr, KBest):
        a = a[..., None]
    parts = (np.ones((1, 3), f), np.zeros(1, f), np.full(1, -1, f), np.array([[1, 2, 2]], f), np.ones((1, 3), f))
    got = sr.affine_vecmat(a, None, *parts)[0]
    lo = got.reshape(1, 3)[..., :3] if not isinstance(sr, Entropy) else got[..., 0]
    want = -100 + (0 if sr.selective else math.log(2))
    np.testing.assert_allclose(lo, np.full((1, 3), want), rtol=1e-6)


def test_logcount_underflowed_rows_are_recomputed_exactly():
    """LogCount (float64): the best-scaled term has q = 0, the two others sit e^-800 below it, beyond
    float64's exp range after the shift; the recheck through the dense Jacobian gives log 2 − 800."""
    f = np.float32
    a = np.array([[0, -800, -800]], np.float64)
    parts = (np.ones((1, 3), f), np.zeros(1, f), np.full(1, -1, f), np.array([[1, 2, 2]], f), np.ones((1, 3), f))
    got = LogCount().affine_vecmat(a, None, *parts)[0]
    np.testing.assert_allclose(got, np.full((1, 3), math.log(2) - 800), rtol=1e-12)


class _Dense:
    """Mixin: the same semiring with the structured kernels and the weight memo switched off."""

    fast_affine = False
    prep_key = None


class DenseLog(_Dense, Log):
    """Log through dense Jacobians."""


class DenseEntropy(_Dense, Entropy):
    """Entropy through dense Jacobians."""


class DenseMax(_Dense, MaxProduct):
    """MaxProduct through dense Jacobians."""


class DenseKBest(_Dense, KBest):
    """KBest without the weight memo."""


class DenseCount(_Dense, Count):
    """Count through dense Jacobians."""


class DenseSigned(_Dense, SignedMax):
    """SignedMax through dense Jacobians."""


class DenseLogCount(_Dense, LogCount):
    """LogCount through dense Jacobians."""


def _encoder(dtype):
    from semitorch.nn.bert import BertConfig, BertEncoder

    cfg = BertConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32)
    rng = np.random.default_rng(0)
    enc = BertEncoder(cfg).eval()
    emb = st.tensor(rng.standard_normal((1, 5, 16)).astype(dtype), requires_grad=True)
    h, _, _ = enc(emb)
    out = (st.log_softmax(h[0, 0], axis=-1) * st.tensor(rng.random(16).astype(dtype))).sum()
    return out, emb


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "fast,dense",
    [
        (Log(), DenseLog()),
        (Entropy(), DenseEntropy()),
        (MaxProduct(), DenseMax()),
        (KBest(3), DenseKBest(3)),
        (Count(), DenseCount()),
        (SignedMax(), DenseSigned()),
        (LogCount(), DenseLogCount()),
    ],
)
def test_encoder_backward_same_with_and_without_structure(fast, dense, dtype):
    """layer_norm, softmax and log_softmax through the kernels = through dense J; paths identical."""
    out, emb = _encoder(dtype)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    for _ in range(2):  # the second pass reads the prepared weights from the memo
        got = st.grad(out, [emb], semiring=fast)[0]
        want = st.grad(out, [emb], semiring=dense)[0]
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    if fast.selective:  # the best path of every input element, read from the backpointers
        paths = []
        for sr in (fast, dense):
            res = st.backward(out, [emb], sr, keep=True)
            paths.append(
                [
                    [(s.op, s.flat_index) for s in read_path(res, emb, e).steps]
                    for e in range(0, emb.size * getattr(sr, "k", 1), 7)
                ]
            )
        assert paths[0] == paths[1]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_count_and_logcount_see_the_same_edges(dtype):
    """Through layer_norm, softmax and log_softmax: log(Count) = LogCount (both count with affine_count)."""
    out, emb = _encoder(dtype)
    count = st.grad(out, [emb], semiring=Count())[0]
    logcount = st.grad(out, [emb], semiring=LogCount())[0]
    assert count.min() > 0
    np.testing.assert_allclose(np.log(count), logcount, rtol=1e-12, atol=1e-12)


def test_prepared_weights_made_once_per_forward():
    """A second pass (and another semiring of the same prep_key) reuses the lifted weights."""
    calls = []

    class Counting(MaxProduct):
        def prepare(self, W):
            calls.append(W.shape)
            return super().prepare(W)

    out, emb = _encoder(np.float32)
    st.grad(out, [emb], semiring=Counting())
    first = len(calls)
    assert first > 0
    st.grad(out, [emb], semiring=Counting())
    assert len(calls) == first
    out2, emb2 = _encoder(np.float32)  # a new forward: new structures, new memo
    st.grad(out2, [emb2], semiring=Counting())
    assert len(calls) == 2 * first


# ---- the fused float32 exp / log helpers -----------------------------------------------------


def _ulps(got: np.ndarray, want: np.ndarray) -> float:
    """Largest |got − want| in units of the float32 spacing at |want| (want in float64)."""
    fin = np.isfinite(want)
    assert (got[~fin] == want[~fin]).all()
    sp = np.spacing(np.abs(want[fin]).astype(np.float32)).astype(np.float64)
    return float((np.abs(got[fin] - want[fin]) / sp).max()) if fin.any() else 0.0


# rows longer than the kernels' chunk, and short rows (attention heads) that go through the
# whole-rows-per-chunk path, up to its limit of half a chunk and down to one entry
ROW_SHAPES = [(40, 2100), (300, 32), (50, 512), (3, 513), (37, 7), (9, 1)]


@pytest.mark.parametrize("shape", ROW_SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_exp_shift_float32_within_two_ulps_and_flushes(shape):
    rng = np.random.default_rng(0)
    a = (rng.standard_normal(shape) * 30).astype(np.float32)
    a[0, :5] = -np.inf
    a[1] = -np.inf  # a row without any path: shift 0, all zeros
    p, m = numba_cpu.exp_shift(a)
    p0, m0 = reference.exp_shift(a)
    np.testing.assert_array_equal(m, m0)
    want = np.exp((a - m0).astype(np.float64))  # the float32 differences, as numpy forms them
    want[want < np.finfo(np.float32).tiny] = 0  # flushed: no subnormals
    assert _ulps(p.astype(np.float64), want) <= 2
    np.testing.assert_array_equal(p == 0, want == 0)
    assert p[1].max() == 0 and (p[2:].max(axis=-1) == 1).all()


@pytest.mark.parametrize("shape", ROW_SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_log_shift_float32_close_to_float64(shape):
    rng = np.random.default_rng(1)
    s = (np.abs(rng.standard_normal(shape)) * np.exp(rng.uniform(-100, 85, shape))).astype(np.float32)
    s[0, :3] = 0  # no path: −inf
    s[1, :3] = np.float32(1e-42)  # subnormal
    m = (rng.standard_normal((shape[0], 1)) * 10).astype(np.float32)
    got = numba_cpu.log_shift(s, m)
    for limit in (5.0, 200.0):  # the flag: some result more than ``limit`` below its row's shift
        out, low = numba_cpu.log_shift_low(s, m, limit)
        np.testing.assert_array_equal(out, got)
        with np.errstate(divide="ignore"):
            assert low == bool((reference.log_shift(s.astype(np.float64), m) < m - limit).any())
    assert numba_cpu.log_shift_low(np.full(shape, 1.5, np.float32), m, 5.0)[1] is False  # nothing fell that far
    with np.errstate(divide="ignore", invalid="ignore"):  # log 0 = −inf, as wanted
        logs = np.log(s.astype(np.float64))
        want = logs + m
        fin = np.isfinite(want)
        err = np.abs(got - want)[fin]
    assert np.isneginf(got[0, :3]).all()
    # the sum log(s) + m is rounded once in float32; the kernel's log adds at most ~1 ulp of |log s|
    bound = np.spacing(np.abs(logs[fin]).astype(np.float32)) * 2 + np.spacing(np.abs(want[fin]).astype(np.float32))
    assert (err <= bound).all()


def test_logaddexp_float32_close_to_float64():
    rng = np.random.default_rng(2)
    a = (rng.standard_normal(5000) * 20).astype(np.float32)
    b = (rng.standard_normal(5000) * 5).astype(np.float32)
    a[:10] = -np.inf
    b[5:15] = -np.inf
    got = numba_cpu.logaddexp(a, b)
    want = np.logaddexp(a.astype(np.float64), b.astype(np.float64))
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
    # max + log1p(e^-|a-b|) rounds each term once: the error is within 2 ulps of the largest of a, b, result
    # (results near 0 come from cancellation, so "ulps of the result" would be the wrong yardstick)
    fin = np.isfinite(want)
    finite_abs = [np.where(np.isfinite(x), np.abs(x), 0) for x in (a, b)]
    scale = np.maximum(np.maximum(*finite_abs)[fin], np.abs(want[fin])).astype(np.float32)
    assert (np.abs(got[fin] - want[fin]) <= 2 * np.spacing(scale)).all()


def test_pair_plus_float32_close_to_float64():
    """The entropy semiring's fused ⊕ on (L, E) pairs: L within 2 ulps of the largest of L₁, L₂, L
    (as logaddexp), E within 4 ulps of the larger |E₁|, |E₂|; no path (L = −∞) gives ⟨−∞, 0⟩."""
    rng = np.random.default_rng(5)
    n = 5000  # past the kernels' chunk
    a = np.stack([rng.standard_normal(n) * 20, rng.standard_normal(n) * 3], axis=-1).astype(np.float32)
    b = np.stack([rng.standard_normal(n) * 5, rng.standard_normal(n) * 3], axis=-1).astype(np.float32)
    a[:10] = (-np.inf, 0)
    b[5:15] = (-np.inf, 0)
    b[20:30] = a[20:30]  # equal masses: the plain mean of E
    got = numba_cpu.pair_plus(a, b)
    want = reference.pair_plus(a.astype(np.float64), b.astype(np.float64))
    none = np.isneginf(want[:, 0])
    np.testing.assert_array_equal(np.isneginf(got[:, 0]), none)
    np.testing.assert_array_equal(got[none, 1], 0)
    fin = ~none
    scale_l = np.maximum.reduce([np.where(np.isfinite(x[:, 0]), np.abs(x[:, 0]), 0) for x in (a, b, want)])[fin]
    assert (np.abs(got[fin, 0] - want[fin, 0]) <= 2 * np.spacing(scale_l.astype(np.float32))).all()
    scale_e = np.maximum(np.abs(a[:, 1]), np.abs(b[:, 1]))[fin]
    # t = e^{L_lo − L_hi} (≤ 2 ulps), then a product, a sum and a division, each rounded once
    # (measured: 1.7 ulps; numpy's float32 formula, exp(L₁ − L)·E₁ + exp(L₂ − L)·E₂, reaches 14)
    assert (np.abs(got[fin, 1] - want[fin, 1]) <= 4 * np.spacing(scale_e)).all()
    np.testing.assert_allclose(got[20:30, 1], a[20:30, 1], rtol=1e-6)
    backend = numba_cpu if kernels.BACKEND == "numba" else reference  # SEMITORCH_KERNELS=numpy: the reference
    np.testing.assert_array_equal(kernels.pair_plus(a, b), backend.pair_plus(a, b))  # float32 numpy: the backend's


def _pairs(rng, shape):
    """⟨L, E⟩ float32 pairs with −∞ entries (E = 0 there) and, where there are rows, one row with no path."""
    a = np.empty(shape + (2,), np.float32)
    a[..., 0] = rng.standard_normal(shape) * 30
    a[..., 1] = rng.standard_normal(shape)
    a[..., 0][rng.random(shape) < 0.2] = -np.inf
    a[..., 0, :, 0] = -np.inf  # the first row of each matrix: no path
    a[..., 1][a[..., 0] == -np.inf] = 0
    return a


@pytest.mark.parametrize("shape", [(32, 384), (2, 3, 32, 32), (4, 1536), (3, 2500), (7, 600), (1, 1), (2, 5, 3)])
def test_pair_exp_and_log_rows_equal_the_reference(shape):
    """The entropy vecmat's fused passes: X = [P; P∘E] with P = exp(L − m), then ⟨m + log S, (T₁ − T₂)/S⟩ and
    the recheck flag; float32 numba against the float64 reference on the same float32 inputs (short rows,
    long rows past the 1024-element chunk, batches, dead rows, zero sums)."""
    rng = np.random.default_rng(len(shape) * 100 + shape[-1])
    a = _pairs(rng, shape)
    X, m = numba_cpu.pair_exp_rows(a)
    np.testing.assert_array_equal(m, reference.pair_exp_rows(a)[1])  # the row max (0 for a row with no path)
    r, j = shape[-2:]
    P, PE = X[..., :r, :], X[..., r:, :]
    want = np.exp((a[..., 0] - m).astype(np.float64))  # the float32 differences, as numpy forms them
    want[want < np.finfo(np.float32).tiny] = 0  # flushed, as exp_shift: no subnormals
    assert _ulps(P.astype(np.float64), want) <= 2
    np.testing.assert_array_equal(P == 0, want == 0)
    np.testing.assert_array_equal(PE, np.where(P > 0, P * a[..., 1], 0))  # one float32 product each
    A = np.abs(rng.standard_normal(shape[:-2] + (j, j + 3))).astype(np.float32)
    A[..., ::3, :] = 0  # zero weights: outputs whose S is 0 (no path)
    with np.errstate(divide="ignore", invalid="ignore"):  # 0·log 0 = 0
        B = np.where(A > 0, A * np.log(A), 0).astype(np.float32)
    Y, T2 = X @ A, X[..., :r, :] @ B
    for limit in (5.0, 43.7):
        out, low = numba_cpu.pair_log_rows(Y, T2, m, limit)
        want, wlow = reference.pair_log_rows(Y.astype(np.float64), T2.astype(np.float64), m, limit)
        assert low == wlow
        np.testing.assert_array_equal(np.isneginf(out[..., 0]), np.isneginf(want[..., 0]))
        np.testing.assert_array_equal(out[..., 1][np.isneginf(out[..., 0])], 0)  # no path: ⟨−∞, 0⟩
        np.testing.assert_allclose(out, want, rtol=2e-6, atol=1e-6)
    backend = numba_cpu if kernels.BACKEND == "numba" else reference
    np.testing.assert_array_equal(kernels.pair_exp_rows(a)[0], backend.pair_exp_rows(a)[0])
    np.testing.assert_array_equal(kernels.pair_log_rows(Y, T2, m, 5.0)[0], backend.pair_log_rows(Y, T2, m, 5.0)[0])


def test_pair_kernels_reject_wrong_shapes():
    """The entropy vecmat's helpers name themselves and the shapes when given something else."""
    with pytest.raises(ValueError, match=r"pair_exp_rows: expected .* \(\.\.\., r, j, 2\), got shape \(4, 2\)"):
        kernels.pair_exp_rows(np.zeros((4, 2), np.float32))
    with pytest.raises(ValueError, match=r"pair_exp_rows: .* got shape \(3, 4, 3\)"):
        kernels.pair_exp_rows(np.zeros((3, 4, 3), np.float32))
    Y, T2, m = np.ones((6, 5), np.float32), np.ones((2, 5), np.float32), np.zeros((2, 1), np.float32)
    with pytest.raises(ValueError, match=r"pair_log_rows: .* got Y \(6, 5\) and T2 \(2, 5\)"):
        kernels.pair_log_rows(Y, T2, m, 5.0)


def test_entropy_vecmat_shapes_and_empty_contraction():
    """One vector (j, 2), a batch, and an empty contraction (j = 0: no path) through Entropy.vecmat."""
    rng = np.random.default_rng(4)
    W = rng.standard_normal((5, 4)).astype(np.float32)
    a = _pairs(rng, (3, 4))
    full, _ = Entropy().vecmat(a, None, W)
    one, _ = Entropy().vecmat(a[1], None, W)
    np.testing.assert_array_equal(one, full[1])
    batch, _ = Entropy().vecmat(np.stack([a, a]), None, W)
    np.testing.assert_array_equal(batch[1], full)
    empty, _ = Entropy().vecmat(np.zeros((3, 0, 2), np.float32), None, np.zeros((5, 0), np.float32))
    assert empty.shape == (3, 5, 2) and np.isneginf(empty[..., 0]).all() and (empty[..., 1] == 0).all()
    Wb = rng.standard_normal((2, 5, 4)).astype(np.float32)  # a batch of W against one vector or one matrix
    vec, _ = Entropy().vecmat(a[1], None, Wb)
    np.testing.assert_array_equal(vec, np.stack([Entropy().vecmat(a[1], None, w)[0] for w in Wb]))
    assert Entropy().vecmat(np.zeros((0, 2), np.float32), None, np.zeros((2, 5, 0), np.float32))[0].shape == (2, 5, 2)


@pytest.mark.parametrize("sr", [Log(), Entropy()], ids=repr)
def test_underflow_recheck_with_fewer_batch_axes_than_w(sr):
    """The exact recheck of outputs far below their row's max (here e^-200) also works when ``a`` broadcasts
    against a batch of W: the same as with ``a`` broadcast by hand."""
    a = np.array([[0.0, -200.0]], np.float32)
    W = np.array([[[0.0, 1.0], [1e-30, 1.0]]] * 2, np.float32)  # output 0 sees only the e^-200 term
    if isinstance(sr, Entropy):
        a = np.stack([a, np.array([[1.0, 2.0]], np.float32)], axis=-1)
    got, _ = sr.vecmat(a, None, W)
    want, _ = sr.vecmat(np.broadcast_to(a, (2,) + a.shape), None, W)
    np.testing.assert_array_equal(got, want)
    assert np.isfinite(got).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dispatch_of_the_helpers(dtype):
    """float32 numpy arrays go to numba, others to the numpy reference; results agree."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal((3, 7)).astype(dtype)
    p, m = kernels.exp_shift(a)
    p0, m0 = reference.exp_shift(a)
    np.testing.assert_allclose(p, p0, rtol=3e-7)
    np.testing.assert_allclose(kernels.log_shift(p, m), reference.log_shift(p0, m0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(kernels.logaddexp(a, a[::-1]), np.logaddexp(a, a[::-1]), rtol=1e-6)


def test_gather_last_equals_take_along_axis():
    """The backpointer lookup: broadcast leading axes and non-contiguous sources, numba = numpy."""
    rng = np.random.default_rng(4)
    src = rng.integers(0, 1 << 50, (2, 1, 5, 7))
    arg = rng.integers(0, 7, (2, 3, 5, 4))
    want = np.take_along_axis(np.broadcast_to(src, (2, 3, 5, 7)), arg, axis=-1)
    np.testing.assert_array_equal(numba_cpu.gather_last(src, arg), want)
    np.testing.assert_array_equal(kernels.gather_last(src, arg), want)
    src2 = np.arange(60, dtype=np.int64).reshape(3, 4, 5).transpose(1, 0, 2)
    arg2 = rng.integers(0, 5, (4, 3, 6))
    np.testing.assert_array_equal(kernels.gather_last(src2, arg2), np.take_along_axis(src2, arg2, axis=-1))


def test_lifted_elementwise_weights_made_once_per_forward():
    """log|d| of elementwise edges (gelu, scales, ...) is kept for the next pass, shared by the log semirings."""
    calls = []

    class Counting(Log):
        def prepare_edge(self, w):
            calls.append(w.shape)
            return super().prepare_edge(w)

    out, emb = _encoder(np.float32)
    want = st.grad(out, [emb], semiring=Log())[0]  # fills the memo under the shared key
    got = st.grad(out, [emb], semiring=Counting())[0]
    assert calls == []  # reused what Log() lifted
    np.testing.assert_array_equal(got, want)
    out2, emb2 = _encoder(np.float32)
    st.grad(out2, [emb2], semiring=Counting())
    assert len(calls) > 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("K", [1, 3, 5])
def test_kbest_merge_equals_stable_sort(dtype, K):
    """The k-best ⊕: a linear merge of two descending lists = a stable sort of their concatenation."""
    rng = np.random.default_rng(K)
    a = -np.sort(-rng.integers(-3, 3, (40, 6, K)).astype(dtype), axis=-1)  # small integers: many ties
    b = -np.sort(-rng.integers(-3, 3, (40, 6, K)).astype(dtype), axis=-1)
    a[a < -2] = -np.inf
    b[b < -2] = -np.inf
    sa, sb = rng.integers(0, 100, a.shape), rng.integers(0, 100, b.shape)
    cand = np.concatenate([a, b], axis=-1)
    order = np.argsort(-cand, axis=-1, kind="stable")[..., :K]
    for mod in (numba_cpu, kernels, reference):
        val, src = mod.kbest_merge(a, sa, b, sb)
        np.testing.assert_array_equal(val, np.take_along_axis(cand, order, axis=-1))
        np.testing.assert_array_equal(src, np.take_along_axis(np.concatenate([sa, sb], axis=-1), order, axis=-1))
        assert mod.kbest_merge(a, None, b, None)[1] is None


@pytest.mark.parametrize("sr", [Log(), MaxProduct(), KBest(3), Entropy()], ids=repr)
def test_live_rows_agree_with_the_generic_check(sr):
    """The log-space semirings' fast row check (a max per row) equals the generic ``!= 0̄`` test, NaN included."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((6, 4) + sr.vshape).astype(np.float32)
    z = sr.zeros(np, (4,), np.float32)
    a[1] = z  # no path in the row
    a[3, :2] = z[:2]  # some entries without a path
    a[4] = z
    a[4, 2, ...] = np.nan  # a NaN row counts as held, as `!=` says
    want = Semiring.nonzero_rows(sr, a)
    np.testing.assert_array_equal(want, [True, False, True, True, True, True])
    np.testing.assert_array_equal(sr.nonzero_rows(a), want)
    np.testing.assert_array_equal(sr.nonzero_rows(a[:, :0]), np.zeros(6, bool))  # empty rows


@pytest.mark.parametrize("sr", [Log(), MaxProduct(), KBest(3), Entropy()], ids=repr)
def test_live_columns_agree_with_the_generic_check(sr):
    """The log-space semirings' fast column check (a max per column) equals the generic ``!= 0̄`` test."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((5, 6) + sr.vshape).astype(np.float32)
    z = sr.zeros(np, (5,), np.float32)
    a[:, 1] = z  # no path in the column
    a[:, 3] = z
    a[(2, 3) + (0,) * len(sr.vshape)] = -5.0  # ... but one entry: the column holds a path
    a[:, 4] = z
    a[0, 4, ...] = np.nan  # NaN counts as held, as `!=` says
    want = Semiring.nonzero_columns(sr, a)
    np.testing.assert_array_equal(want, [True, False, True, True, True, True])
    np.testing.assert_array_equal(sr.nonzero_columns(a), want)
    np.testing.assert_array_equal(sr.nonzero_columns(a[:0]), np.zeros(6, bool))  # no rows


@pytest.mark.parametrize("sr", [Log(), Entropy(), MaxProduct(), KBest(3), SignedMax(), Count()], ids=repr)
@pytest.mark.parametrize("op", ["softmax", "layer_norm", "empty"])
def test_row_jacobian_with_no_live_row(sr, op):
    """A RowJacobian whose adjoint holds no value in any row (or has no rows at all) gives 0̄ everywhere.

    Found by Hypothesis in the brute-force test: k-best and entropy reshaped a 0-row subset with -1.
    """
    rng = np.random.default_rng(0)
    x = st.tensor(rng.standard_normal((6, 5)), requires_grad=True)
    none = np.array([], dtype=np.int64)
    if op == "empty":
        y = st.softmax(x[none], -1)  # (0, 5): no rows at all
    else:
        y = st.softmax(x, -1) if op == "softmax" else st.layer_norm(x)
    out = y[none].sum() + (x * 0).sum()  # the op's adjoint is 0̄ in every row
    got = st.grad(out, [x], semiring=sr)[0]
    want = st.grad((x * 0).sum(), [x], semiring=sr)[0]  # the same graph without the dead branch
    np.testing.assert_array_equal(got, want)
