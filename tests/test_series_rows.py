"""The sorted-series kernel for long layer_norm rows in the entropy semiring (``kernels.affine_entropy_sum``).

On a symmetric row (u = −v, p ≠ 0) of float32 entries, n ≥ ``numba_cpu.SERIES_MIN_N``, the
kernel sorts the entries by |v|, takes |q| log|q| from a polynomial in v_j·v_k (or its
inverse) away from q = 0 and from a log per pair only in the band near it, and S = Σ g|q|,
T₁ = Σ h|q| from exact prefix and suffix sums. The references here are float64 sums over
the dense (R, n, n) Jacobian and ``numpy.log1p``.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hst
from numpy.polynomial import polynomial

import semitorch as st
from semitorch import kernels
from semitorch.kernels import numba_cpu, reference
from semitorch.semirings import Entropy

TOL = 1e-6  # float32 results; measured worst 2e-7 (S / Σ|g q log q| / Σ|h||q|) over 200 random rows
N0 = numba_cpu.SERIES_MIN_N


def dense64(g, h, v, p, D):
    """S, T, Σ g|q log q|, T₁, Σ |h||q| in float64 over the dense Jacobian q = p − v_j v_k + D·[j = k]."""
    g, h, v, p, D = (np.asarray(z, np.float64) for z in (g, h, v, p, D))
    n = g.shape[1]
    q = np.abs(p[:, None, None] - v[:, :, None] * v[:, None, :] + D[:, None, None] * np.eye(n))
    with np.errstate(divide="ignore", invalid="ignore"):
        lq = np.where(q > 0, q * np.log(q), 0)
    S = np.einsum("rj,rjk->rk", g, q)
    T = np.einsum("rj,rjk->rk", g, lq)
    Ta = np.einsum("rj,rjk->rk", g, np.abs(lq))
    U = np.einsum("rj,rjk->rk", h, q)
    Ua = np.einsum("rj,rjk->rk", np.abs(h), q)
    return S, T, Ta, U, Ua


def check(g, h, v, p, D, tol=TOL):
    """The numba result against the float64 dense sums, each error relative to its sum of absolute terms."""
    S, T, U = numba_cpu.affine_entropy_sum(g, h, -v, v, p, D)
    assert S.dtype == T.dtype == U.dtype == np.float32
    S64, T64, Ta, U64, Ua = dense64(g, h, v, p, D)
    np.testing.assert_array_less(np.abs(S - S64), tol * S64 + 1e-30)
    np.testing.assert_array_less(np.abs(T - T64), tol * Ta + 1e-30)
    np.testing.assert_array_less(np.abs(U - U64), tol * Ua + 1e-30)


def layer_norm_row(x, p):
    """float32 v = x̂·√|p| (x̂ = x standardised along the last axis), so that v_j v_k / |p| = x̂_j x̂_k."""
    xh = (x - x.mean(-1, keepdims=True)) / np.maximum(x.std(-1, keepdims=True), 1e-12)
    return (xh * np.sqrt(np.abs(p))[:, None]).astype(np.float32)


def test_psi_polynomial_matches_log1p():
    """The kernel's polynomial for (1 + t) log(1 + t) on [−ρ, ρ] is within 2e-9 of it (relative to 1 + t)."""
    rho = numba_cpu._PSI_RHO
    t = np.linspace(-rho, rho, 200_001)
    exact = (1 + t) * np.log1p(t)
    err = np.abs(polynomial.polyval(t, numba_cpu._psi()) - exact) / (1 + t)
    assert err.max() < 2e-9
    assert numba_cpu._psi()[0] == 0  # ψ(0) = 0 exactly: an entry with v = 0 gets no series term
    np.testing.assert_array_equal(numba_cpu._psi(), numba_cpu.psi_coefficients())  # deterministic


@given(
    n=hst.integers(N0, N0 + 160),
    R=hst.integers(1, 3),
    kind=hst.sampled_from(["normal", "outliers", "ties", "cubed", "zeros"]),
    p_sign=hst.sampled_from([-1.0, 1.0]),
    p_scale=hst.sampled_from([1.0, 1e-3, 0.3, 40.0]),
    seed=hst.integers(0, 2**31 - 1),
)
@settings(max_examples=40, deadline=None)
def test_series_rows_close_to_float64(n, R, kind, p_sign, p_scale, seed):
    """Hypothesis-drawn long symmetric rows (both signs of p, several spreads of x̂, exact zeros and ties)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((R, n))
    if kind == "outliers":  # a few large features, as BERT's hidden states have
        x[:, :3] *= 50
    elif kind == "ties":
        x = np.round(x * 2) / 2
    elif kind == "cubed":
        x = rng.uniform(-1, 1, (R, n)) ** 3
    p = np.full(R, p_sign * p_scale)
    v = layer_norm_row(x, p) * np.float32(rng.uniform(0.5, 2))
    if kind == "zeros":
        v[:, ::7] = 0
    g = rng.random((R, n)).astype(np.float32)
    g[:, rng.random(n) < 0.2] = 0
    h = (rng.standard_normal((R, n)) * g).astype(np.float32)
    D = rng.uniform(0, n, R).astype(np.float32)
    p = p.astype(np.float32)
    assert numba_cpu._series_rows_apply(g, -v, v, p)
    check(g, h, v, p, D)


def test_series_rows_degenerate_cases():
    """|t| = 1 for every pair (all in the band, q = 0 on opposite signs), zero weights, one nonzero weight."""
    n = N0 + 3
    rng = np.random.default_rng(5)
    v = np.where(rng.random((2, n)) < 0.5, -1, 1).astype(np.float32)  # v_j v_k = ±1: q = −1 ∓ 1
    p = np.full(2, -1, np.float32)
    D = np.full(2, n, np.float32)
    g = rng.random((2, n)).astype(np.float32)
    check(g, -g, v, p, D)
    S, T, _ = numba_cpu.affine_entropy_sum(g, g, -v, v, p, D)
    assert np.isfinite(S).all() and np.isfinite(T).all()
    z = np.zeros_like(g)
    S, T, U = numba_cpu.affine_entropy_sum(z, z, -v, v, p, D)
    assert not S.any() and not T.any() and not U.any()
    x = rng.standard_normal((1, n))
    v1 = layer_norm_row(x, np.ones(1))
    g1 = np.zeros((1, n), np.float32)
    g1[0, 17] = 2.5
    check(g1, g1, v1, np.full(1, -1, np.float32), np.full(1, n, np.float32))


@pytest.mark.parametrize("case", ["short", "float64", "p zero", "not symmetric", "huge w"])
def test_rows_the_series_kernel_leaves_to_the_dense_kernels(case):
    """Short, float64, p = 0, u ≠ −v and unbounded |v|/√|p| rows take affine_entropy and affine_sum, bit for bit."""
    rng = np.random.default_rng(1)
    n = N0 - 1 if case == "short" else N0
    dt = np.float64 if case == "float64" else np.float32
    v = layer_norm_row(rng.standard_normal((2, n)), np.ones(2)).astype(dt)
    u = -v
    p = np.full(2, -1, dt)
    if case == "p zero":
        p[1] = 0
    elif case == "not symmetric":
        u = u + dt(0.5)
    elif case == "huge w":
        p[:] = -1e-20
    g = rng.random((2, n)).astype(dt)
    h = (g * rng.standard_normal((2, n))).astype(dt)
    D = np.full(2, n, dt)
    assert not numba_cpu._series_rows_apply(g, u, v, p)
    S, T, U = numba_cpu.affine_entropy_sum(g, h, u, v, p, D)
    S0, T0 = numba_cpu.affine_entropy(g, u, v, p, D)
    np.testing.assert_array_equal(S, S0)
    np.testing.assert_array_equal(T, T0)
    np.testing.assert_array_equal(U, numba_cpu.affine_sum(h, u, v, p, D))


def test_series_parallel_equals_serial(monkeypatch):
    """Rows are independent: the prange driver gives the serial worker's floats."""
    rng = np.random.default_rng(2)
    R, n = 5, N0 + 40
    v = layer_norm_row(rng.standard_normal((R, n)), np.ones(R))
    g = rng.random((R, n)).astype(np.float32)
    args = (g, g * 0.5, -v, v, np.full(R, -1, np.float32), np.full(R, n, np.float32))
    serial = numba_cpu.affine_entropy_sum(*args)
    monkeypatch.setattr(numba_cpu, "PARALLEL_MIN_WORK", 0)
    monkeypatch.setattr(numba_cpu, "BLAS_SPINS", False)
    parallel = numba_cpu.affine_entropy_sum(*args)
    for a, b in zip(serial, parallel, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("mod", [reference, numba_cpu, kernels], ids=lambda m: m.__name__.split(".")[-1])
def test_affine_entropy_sum_is_entropy_and_sum(mod):
    """Every backend's three sums equal affine_entropy of g and affine_sum of h (general and softmax rows)."""
    rng = np.random.default_rng(4)
    R, n = 3, 9
    g = rng.random((R, n))
    h = rng.standard_normal((R, n))
    u, v = rng.standard_normal((2, R, n))
    p = np.array([0.0, -0.5, 2.0])
    D = rng.random(R)
    S, T, U = mod.affine_entropy_sum(g, h, u, v, p, D)
    S0, T0 = reference.affine_entropy(g, u, v, p, D)
    np.testing.assert_allclose(S, S0, rtol=1e-12)
    np.testing.assert_allclose(T, T0, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(U, reference.affine_sum(h, u, v, p, D), rtol=1e-12, atol=1e-12)


def test_affine_entropy_sum_rejects_mismatched_h():
    g = np.ones((2, 4))
    msg = r"affine_entropy_sum: h has shape \(2, 3\), g has shape \(2, 4\) \(must match\)"
    with pytest.raises(ValueError, match=msg):
        kernels.affine_entropy_sum(g, np.ones((2, 3)), g, g, np.ones(2), np.ones(2))


def test_entropy_pass_through_long_layer_norm_matches_float64(monkeypatch):
    """An Entropy backward through layer_norm over 300 features (the series kernel, float32) agrees
    with the same pass in float64 (the dense kernels) to 1e-5 relative, and the series kernel ran."""
    taken = []
    apply = numba_cpu._series_rows_apply

    def spy(*args):
        taken.append(apply(*args))
        return taken[-1]

    monkeypatch.setattr(numba_cpu, "_series_rows_apply", spy)
    rng = np.random.default_rng(7)
    n = 300
    x64 = rng.standard_normal((4, n))
    x64[:, :2] *= 20
    W = rng.standard_normal((n, 3)) / np.sqrt(n)
    gamma = rng.uniform(0.5, 1.5, n)
    out = {}
    for dt in (np.float32, np.float64):
        x = st.tensor(x64.astype(dt), requires_grad=True)
        y = (st.layer_norm(x, st.tensor(gamma.astype(dt))) @ st.tensor(W.astype(dt))).sum()
        vals = st.backward(y, [x], semiring=Entropy()).values[0]
        out[dt] = (Entropy.entropy(vals), Entropy.log_mass(vals))
    assert True in taken
    for a, b in zip(out[np.float32], out[np.float64], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5)


@pytest.mark.parametrize("p0", [-0.7, -1.0, 3.0])
def test_an_output_whose_only_edges_are_exact_zeros_has_no_path(p0):
    """q = p − v_j v_k = 0 exactly (v_j = 0.5, v_k = 2p: float32's 2·fl(p) is exact) is no edge: an output reached
    only through it has S = T = T₁ = 0 exactly, as in the dense kernel, however the float64 sums round."""
    n = N0 + 5
    rng = np.random.default_rng(int(abs(p0) * 10))
    v = rng.standard_normal((1, n)).astype(np.float32)
    j, k = 3, 40
    v[0, j], v[0, k] = 0.5, 2 * np.float32(p0)
    p = np.full(1, p0, np.float32)
    assert p[0] - v[0, j] * v[0, k] == 0
    D = np.full(1, n, np.float32)
    g = np.zeros((1, n), np.float32)
    g[0, j] = 1.5
    S, T, U = numba_cpu.affine_entropy_sum(g, -g, -v, v, p, D)
    assert S[0, k] == T[0, k] == U[0, k] == 0
    S0, T0 = numba_cpu.affine_entropy(g, -v, v, p, D)
    assert S0[0, k] == T0[0, k] == 0
    check(g, -g, v, p, D)


def _crafted(case):
    """Rows a review built against the kernel's cancellations (see the test below)."""
    n = N0
    if case in ("S cancels", "U cancels"):
        v = (np.linspace(-1, 1, n) * 0.3).astype(np.float32)[None]
        j, k, a = 5, 9, 27
        v[0, j] = np.float32(1 + a * 2**-23)
        v[0, k] = np.float32(2 * (1 - a * 2**-23))  # v_j v_k = 2(1 − 729·2⁻⁴⁶): q = 2 − v_j v_k is tiny
        p, D = np.float32([2]), np.float32([5])
        one = np.zeros((1, n), np.float32)
        one[0, j] = 1
        g, h = (one, one) if case == "S cancels" else (np.ones((1, n), np.float32), one)
        return g, h, v, p, D, k
    if case == "U on an exact zero":
        v = np.linspace(-1, 1, n).astype(np.float32)[None]
        j, k = 5, 9
        v[0, j], v[0, k] = 0.5, 6  # q = 3 − 0.5·6 = 0 exactly
        h = np.zeros((1, n), np.float32)
        h[0, j] = 1
        return np.ones((1, n), np.float32), h, v, np.float32([3]), np.float32([5]), k
    # "large own term": the j = k entry, taken out after going in with the off-diagonal formula, is far
    # larger than the output's terms (p + D − v_k² = 1: the true diagonal has |q| log|q| = 0)
    v = np.linspace(-2, 2, n).astype(np.float32)[None]
    v[0, 7] = 1000
    g = np.full((1, n), 1e-3, np.float32)
    g[0, 7] = 1
    return g, g, v, np.float32([4]), np.float32([999997]), 7


@pytest.mark.parametrize("case", ["S cancels", "U cancels", "U on an exact zero", "large own term"])
def test_crafted_cancellations_stay_within_tolerance(case):
    """S (or Σ|h||q|) tiny against its terms goes to the loop over j; the j = k entry leaves the sums in float64, as
    it went in. Without these, the first two were 2e-5 off, the third gave 6.7e-16 for 0, the fourth 1e-4 of T's
    scale."""
    g, h, v, p, D, k = _crafted(case)
    check(g, h, v, p, D)
    if case == "U on an exact zero":
        assert numba_cpu.affine_entropy_sum(g, h, -v, v, p, D)[2][0, k] == 0


def test_infinite_weights_take_the_dense_sums():
    """An infinite g or h (never made by the semirings) gives what the dense kernels give (inf, not inf − inf = NaN)."""
    rng = np.random.default_rng(9)
    n = N0
    v = layer_norm_row(rng.standard_normal((1, n)), np.ones(1))
    g = rng.random((1, n)).astype(np.float32)
    h = g.copy()
    h[0, 3] = np.inf
    args = (-v, v, np.full(1, -1, np.float32), np.full(1, n, np.float32))
    S, T, U = numba_cpu.affine_entropy_sum(g, h, *args)
    np.testing.assert_array_equal(U, numba_cpu.affine_sum(h, *args))
    assert not np.isnan(U).any()
