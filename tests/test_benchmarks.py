"""The semiring-overhead benchmark's replay helpers: they record what a pass computes and restore the library."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import semitorch as st
from semitorch import kernels

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("semiring_overhead", ROOT / "benchmarks" / "semiring_overhead.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_entropy_floor_replays_the_pass_and_restores_the_library():
    """The replay sees every Linear contraction of a Real pass (Real's gradient unchanged by the recording) and the
    row Jacobians of an Entropy pass, prints its decomposition, and puts Real.vecmat and kernels.affine_entropy_sum
    back."""
    bench = _bench()
    out, emb = bench.build(1, 24, 2, 48, 5)
    vecmat, affine = st.semirings.Real.vecmat, kernels.affine_entropy_sum
    want = st.grad(out, [emb])[0]
    calls = bench.record_contractions(out, emb)
    assert len(calls) == 10  # 1 layer: q, k, v, QKᵀ (2 sides), AV (2 sides), attention output, FFN in, FFN out
    rows = bench.record_affine_entropy(out, emb)
    assert {np.array_equal(u, -v) for _, _, u, v, _, _ in rows} == {True, False}  # layer_norm (symmetric) and softmax
    lines = bench.entropy_floor(out, emb, rounds=1)
    assert st.semirings.Real.vecmat is vecmat and kernels.affine_entropy_sum is affine
    np.testing.assert_array_equal(st.grad(out, [emb])[0], want)
    assert lines[0].startswith("Entropy's cost, replayed: the pass's 10 Linear contractions and")
    assert any("a floor: dual-number products" in x for x in lines)
    assert any("Log's pass" in x for x in lines)
    assert lines[-1].lstrip().startswith("left under the 2.5x target for all the rest")


def test_time_kept_reports_the_passes_that_keep_backpointers():
    """The keep=True timing names both selective semirings, their ratio to Real and the memory their records take."""
    bench = _bench()
    out, emb = bench.build(1, 24, 2, 48, 5)
    lines = bench.time_kept(out, emb, rounds=1)
    assert "keep=True" in lines[0]
    assert [ln.split()[0] for ln in lines[1:]] == ["MaxProduct", "KBest(5)"]
    assert all("MB of records kept per pass" in ln for ln in lines[1:])


def test_profile_names_are_checked_before_the_timing(capsys):
    bench = _bench()
    assert bench.semiring_named("entropy")[0] == "Entropy"
    assert bench.semiring_named("kbest")[0] == "KBest(5)"
    assert bench.semiring_named("KBest(5)")[0] == "KBest(5)"
    with pytest.raises(SystemExit) as e:
        bench.main(["--quick", "--profile", "nope"])
    assert e.value.code == 2
    err = capsys.readouterr()
    assert "no semiring called 'nope'" in err.err and "Entropy" in err.err
    assert "load average" not in err.out  # nothing was timed


def test_row_jacobian_logs_counts_the_band_of_series_rows():
    """On long layer_norm rows the replay counts the logs the series kernel takes (its band of pairs and 3n more),
    fewer than the one per pair j ≤ k of the dense kernel it counts on shorter rows."""
    from semitorch.kernels import numba_cpu

    bench = _bench()
    rng = np.random.default_rng(0)
    R, n = 2, numba_cpu.SERIES_MIN_N
    x = rng.standard_normal((R, n))
    v = ((x - x.mean(-1, keepdims=True)) / x.std(-1, keepdims=True)).astype(np.float32)
    g, p = np.ones((R, n), np.float32), np.full(R, -1, np.float32)
    want = 3 * R * n
    rho = numba_cpu._PSI_RHO
    for r in range(R):
        w = np.abs(v[r].astype(np.float64))
        want += sum(rho <= w[j] * w[k] <= 1 / rho for k in range(n) for j in range(k + 1, n))
    assert bench.row_jacobian_logs(g, -v, v, p) == want < R * n * (n + 1) // 2
    assert bench.row_jacobian_logs(g[:, :-1], -v[:, :-1], v[:, :-1], p) == R * (n - 1) * n // 2  # shorter: dense
