"""Semiring matmul kernels: numba vs the chunked numpy reference vs naive oracles written here.

The oracles build the full candidate array (numpy broadcast-and-reduce for max-plus)
or enumerate candidates one by one in Python (k-best, signed), on small shapes drawn
by Hypothesis: broadcast batch dims, r/j/k of 1, all −inf rows, ties (small integer
values), zeros in w. Every comparison is exact (values and arg indices).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as hst

from semitorch import kernels
from semitorch.kernels import numba_cpu, reference

NEG = -np.inf
DTYPES = [np.float32, np.float64]


# ---- oracles ------------------------------------------------------------------------------


def oracle_maxplus(a: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Full (..., r, k, j) candidates, then max / first argmax."""
    c = a[..., :, None, :] + w[..., None, :, :]
    if c.shape[-1] == 0:
        return np.full(c.shape[:-1], NEG, c.dtype), np.zeros(c.shape[:-1], np.int64)
    val = c.max(axis=-1)
    arg = np.where(val == NEG, 0, c.argmax(axis=-1))
    return val, arg


def _cells(a: np.ndarray, w: np.ndarray, a_core: int):
    """Yield (out index, a cell (j, ...), w row (k, j)) per output batch entry and row r."""
    batch = np.broadcast_shapes(a.shape[: a.ndim - a_core], w.shape[:-2])
    ab = np.broadcast_to(a, batch + a.shape[a.ndim - a_core :])
    wb = np.broadcast_to(w, batch + w.shape[-2:])
    for bi in np.ndindex(*batch):
        for r in range(ab.shape[len(batch)]):
            yield batch, bi + (r,), ab[bi + (r,)], wb[bi]


def oracle_kbest(a: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Enumerate every (j, q) candidate in Python; sort by (value descending, index ascending)."""
    K = a.shape[-1]
    batch = np.broadcast_shapes(a.shape[:-3], w.shape[:-2])
    shape = batch + (a.shape[-3], w.shape[-2], K)
    val = np.full(shape, NEG, np.result_type(a, w))
    arg = np.zeros(shape, np.int64)
    for _, idx, cell, wm in _cells(a, w, 3):  # cell (j, K), wm (k, j)
        for k in range(wm.shape[0]):
            cands = [(cell[j, q] + wm[k, j], j * K + q) for j in range(cell.shape[0]) for q in range(K)]
            cands.sort(key=lambda t: (-t[0], t[1]))
            for p, (v, i) in enumerate(cands[:K]):
                val[idx + (k, p)] = v
                arg[idx + (k, p)] = i if v > NEG else 0
    return val, arg


def oracle_signed(a: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Enumerate the candidates w·a (w ≠ 0, a finite) in index order; first strict max / min wins."""
    batch = np.broadcast_shapes(a.shape[:-3], w.shape[:-2])
    shape = batch + (a.shape[-3], w.shape[-2], 2)
    dt = np.result_type(a, w)
    val = np.empty(shape, dt)
    val[..., 0], val[..., 1] = NEG, np.inf
    arg = np.zeros(shape, np.int64)
    for _, idx, cell, wm in _cells(a, w, 3):  # cell (j, 2), wm (k, j)
        for k in range(wm.shape[0]):
            cands = [
                (dt.type(wm[k, j] * cell[j, c]), 2 * j + c)
                for j in range(cell.shape[0])
                for c in range(2)
                if wm[k, j] != 0 and np.isfinite(cell[j, c])
            ]
            if cands:
                hi = max(cands, key=lambda t: (t[0], -t[1]))
                lo = min(cands, key=lambda t: (t[0], t[1]))
                val[idx + (k, 0)], arg[idx + (k, 0)] = hi
                val[idx + (k, 1)], arg[idx + (k, 1)] = lo
    return val, arg


# ---- strategies ---------------------------------------------------------------------------


@hst.composite
def batch_shapes(draw: hst.DrawFn) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Two batch shapes that broadcast: a common shape with dims dropped (leading) or set to 1."""
    full = draw(hst.lists(hst.integers(1, 3), min_size=0, max_size=2))

    def operand() -> tuple[int, ...]:
        lead = draw(hst.integers(0, len(full)))
        return tuple(1 if draw(hst.booleans()) else n for n in full[lead:])

    return operand(), operand()


def _values(draw: hst.DrawFn, shape: tuple[int, ...], dtype: type, p_neg: float) -> np.ndarray:
    """Small integers (many ties) with some −inf; sometimes whole −inf rows along the last-but-one axis."""
    n = int(np.prod(shape))
    ints = draw(hst.lists(hst.integers(-3, 3), min_size=n, max_size=n))
    x = np.array(ints, dtype=dtype).reshape(shape) / 2
    seed = draw(hst.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    x[rng.random(shape) < p_neg] = NEG
    if len(shape) >= 2 and draw(hst.booleans()):
        x[..., rng.integers(shape[-2]), :] = NEG  # one all −inf row
    return x


dims = hst.integers(1, 5)


@hst.composite
def maxplus_case(draw: hst.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """(a (..., r, j), logw (..., k, j))."""
    (ba, bw), dt = draw(batch_shapes()), draw(hst.sampled_from(DTYPES))
    r, j, k = draw(dims), draw(dims), draw(dims)
    return _values(draw, ba + (r, j), dt, 0.2), _values(draw, bw + (k, j), dt, 0.2)


@hst.composite
def kbest_case(draw: hst.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """(a (..., r, j, K) sorted descending, logw (..., k, j))."""
    (ba, bw), dt = draw(batch_shapes()), draw(hst.sampled_from(DTYPES))
    r, j, k, K = draw(dims), draw(dims), draw(dims), draw(hst.integers(1, 4))
    a = -np.sort(-_values(draw, ba + (r, j, K), dt, 0.25), axis=-1)
    return a, _values(draw, bw + (k, j), dt, 0.2)


@hst.composite
def signed_case(draw: hst.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """(a (..., r, j, 2) (max, min) pairs with (−inf, +inf) for no path, w (..., k, j) with zeros)."""
    (ba, bw), dt = draw(batch_shapes()), draw(hst.sampled_from(DTYPES))
    r, j, k = draw(dims), draw(dims), draw(dims)
    x = _values(draw, ba + (r, j, 2), dt, 0.0)
    a = np.stack([x.max(axis=-1), x.min(axis=-1)], axis=-1)
    none = _values(draw, ba + (r, j), dt, 0.25) == NEG
    a[none] = (NEG, np.inf)
    wv = np.array(draw(hst.lists(hst.sampled_from([-2.0, -1.0, -0.5, 0.0, 0.0, 0.5, 1.0, 2.0]), min_size=1)))
    w = np.resize(wv, bw + (k, j)).astype(dt)
    return a, w


MODES = ["serial", "parallel"]


@contextlib.contextmanager
def forced(mode: str):
    """The numba backend module, forced onto its serial worker or its prange driver."""
    saved = numba_cpu.PARALLEL_MIN_WORK
    numba_cpu.PARALLEL_MIN_WORK = 1 << 62 if mode == "serial" else 0
    try:
        yield numba_cpu
    finally:
        numba_cpu.PARALLEL_MIN_WORK = saved


def _same(got: tuple[np.ndarray, np.ndarray], want: tuple[np.ndarray, np.ndarray], dtype: np.dtype) -> None:
    v, i = got
    assert v.dtype == dtype and i.dtype == np.int64
    assert v.shape == want[0].shape and i.shape == want[1].shape
    np.testing.assert_array_equal(v, want[0])
    np.testing.assert_array_equal(i, want[1])


# ---- the three kernels, three ways --------------------------------------------------------


@given(case=maxplus_case(), chunk=hst.sampled_from([1, 7, 64, reference.CHUNK_ELEMS]))
@pytest.mark.parametrize("mode", MODES)
def test_maxplus(mode, case, chunk):
    a, w = case
    want = oracle_maxplus(a, w)
    _same(reference.maxplus_vecmat(a, w, chunk_elems=chunk), want, a.dtype)
    with forced(mode) as fast:
        _same(fast.maxplus_vecmat(a, w), want, a.dtype)


@given(case=kbest_case(), chunk=hst.sampled_from([1, 7, 64, reference.CHUNK_ELEMS]))
@pytest.mark.parametrize("mode", MODES)
def test_kbest(mode, case, chunk):
    a, w = case
    want = oracle_kbest(a, w)
    _same(reference.kbest_vecmat(a, w, chunk_elems=chunk), want, a.dtype)
    with forced(mode) as fast:
        _same(fast.kbest_vecmat(a, w), want, a.dtype)


@given(case=signed_case(), chunk=hst.sampled_from([1, 7, 64, reference.CHUNK_ELEMS]))
@pytest.mark.parametrize("mode", MODES)
def test_signed(mode, case, chunk):
    a, w = case
    want = oracle_signed(a, w)
    _same(reference.signed_vecmat(a, w, chunk_elems=chunk), want, a.dtype)
    with forced(mode) as fast:
        _same(fast.signed_vecmat(a, w), want, a.dtype)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("seed", range(4))
def test_kbest_floor_with_dense_ties(mode, seed):
    """Many j's whose candidates crowd and tie at the top, around the floor the numba kernel starts from
    (the K-th entry of the best rank-0 j's list): the K best still equal the enumerating reference."""
    rng = np.random.default_rng(seed)
    K = int(rng.integers(2, 6))
    a = -np.sort(-rng.integers(-3, 1, size=(6, 40, K)).astype(np.float64), axis=-1)
    a[0, :, 1:] = a[0, :, :1]  # every list flat: the floor equals the best candidate of its j
    a[1, 5:, :] = NEG
    w = rng.integers(-2, 1, size=(30, 40)).astype(np.float64)
    w[:, ::7] = NEG
    with forced(mode) as fast:
        _same(fast.kbest_vecmat(a, w), reference.kbest_vecmat(a, w), np.dtype(np.float64))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_kbest_short_lists_keep_index_zero(mode, dtype):
    """Fewer than K candidates in all: the numba kernel starts each list from the best j's K entries
    (−inf padding included), and every entry left at −inf must still carry index 0, as in the oracle."""
    rng = np.random.default_rng(1)
    K = 5
    a = np.full((4, 9, K), NEG, dtype=dtype)
    a[0, :, :2] = -np.sort(-rng.integers(-3, 1, size=(9, 2)), axis=-1)  # two entries per j
    a[1, 3, 0] = 1.0  # a single candidate in the whole row
    a[2, ::4, :1] = 0.0  # three j's with one entry each, tied
    # a[3]: no path at all
    w = rng.integers(-2, 1, size=(6, 9)).astype(dtype)
    w[1, :] = NEG  # an output with no edge
    w[:, 3] = NEG  # the single candidate of row 1 is cut off for every k
    w[0, 3] = 0.0  # ... except k = 0
    with forced(mode) as fast:
        got = fast.kbest_vecmat(a, w)
    _same(got, oracle_kbest(a, w), np.dtype(dtype))
    assert (got[1][got[0] == NEG] == 0).all()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_kbest_many_j_prune_live_outputs(mode, dtype):
    """Hundreds of j's, so the numba kernel's bucket order and its dropping of settled outputs run
    many times: rows of equal best entries (one bucket), of a span that overflows, of integer ties,
    with three finite j's, and an output with no edge; the K best equal the reference's."""
    rng = np.random.default_rng(3)
    R, n, k, K = 6, 300, 200, 4
    a = -np.sort(-rng.normal(size=(R, n, K)) * 3, axis=-1)
    a[1] = np.minimum(a[1], 0.5)
    a[1, :, 0] = 0.5  # every j's best entry equal: a single bucket
    big = np.finfo(dtype).max / 2
    a[2, :150, 0] = big  # hi − lo overflows to inf
    a[2, 150:, 0] = -big
    a[2] = -np.sort(-a[2], axis=-1)
    a[3] = -np.sort(-rng.integers(-3, 3, size=(n, K)), axis=-1)  # ties everywhere
    a[4, 3:] = NEG  # three finite j's
    a[5, ::2, 1:] = NEG  # short lists
    w = rng.normal(size=(k, n))
    w[7] = NEG  # an output with no edge
    w[rng.random(w.shape) < 0.1] = NEG
    w[50:60] = np.round(w[50:60])  # ties across j
    a, w = a.astype(dtype), w.astype(dtype)
    with forced(mode) as fast:
        _same(fast.kbest_vecmat(a, w), reference.kbest_vecmat(a, w), np.dtype(dtype))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_larger_shapes_match_reference(mode, dtype):
    """Shapes past the k-tile (512), 7 rows (a group of four, a pair, one), j not a multiple of 4, a batch of 3."""
    rng = np.random.default_rng(0)
    r, j, k = 7, 37, 1100
    a = np.round(rng.normal(size=(3, r, j)) * 2).astype(dtype)
    a[0, 2] = NEG
    a[1, :, 5:] = NEG
    w = np.round(rng.normal(size=(k, j)) * 2).astype(dtype)
    w[:, 3] = NEG
    with forced(mode) as fast:
        _same(fast.maxplus_vecmat(a, w), oracle_maxplus(a, w), dtype)
    ak = -np.sort(-np.round(rng.normal(size=(3, r, j, 3)) * 2), axis=-1).astype(dtype)
    ak[1, 1, :, 1:] = NEG
    with forced(mode) as fast:
        _same(fast.kbest_vecmat(ak, w), reference.kbest_vecmat(ak, w), dtype)
    a2 = np.sort(np.round(rng.normal(size=(3, r, j, 2)) * 2), axis=-1)[..., ::-1].astype(dtype)
    a2[2, 3, :4] = (NEG, np.inf)
    ws = np.round(rng.normal(size=(k, j))).astype(dtype)
    with forced(mode) as fast:
        _same(fast.signed_vecmat(a2, ws), reference.signed_vecmat(a2, ws), dtype)


@pytest.mark.parametrize("mode", MODES)
def test_signed_overflowing_products(mode):
    """Products that overflow to ±inf are still candidates: the first one sets both max and min."""
    big = np.float32(3e38)
    a = np.array([[[big, -big], [1.0, -1.0], [big, big]]], dtype=np.float32)  # (r=1, j=3, 2)
    w = np.array([[10.0, 0.0, 0.0], [-10.0, 2.0, 0.0], [0.0, 0.0, -10.0], [0.0, 0.0, 0.0]], dtype=np.float32)
    with np.errstate(over="ignore"):
        want = oracle_signed(a, w)
    assert np.isinf(want[0][0, :3]).any()  # the case is exercised
    with forced(mode) as fast:
        _same(fast.signed_vecmat(a, w), want, np.dtype(np.float32))
    _same(reference.signed_vecmat(a, w), want, np.dtype(np.float32))


@pytest.mark.parametrize("mode", MODES)
def test_strided_and_broadcast_views(mode):
    """Transposed, sliced and np.broadcast_to operands give the same as contiguous copies."""
    rng = np.random.default_rng(1)
    a = rng.normal(size=(6, 5)).T[:, ::2]  # (5, 3), non-contiguous
    w = np.broadcast_to(rng.normal(size=(4, 3)), (2, 4, 3))  # zero stride over the batch
    want = oracle_maxplus(np.ascontiguousarray(a), np.ascontiguousarray(w))
    with forced(mode) as fast:
        _same(fast.maxplus_vecmat(a, w), want, np.dtype(np.float64))
    _same(reference.maxplus_vecmat(a, w), want, np.dtype(np.float64))


def test_empty_contraction_and_sizes():
    """j = 0: no candidate (−inf / (−inf, +inf), arg 0); r = 0 or k = 0: empty outputs."""
    for mod in (reference, numba_cpu):
        v, i = mod.maxplus_vecmat(np.zeros((2, 0)), np.zeros((3, 0)))
        assert v.shape == (2, 3) and np.all(v == NEG) and np.all(i == 0)
        v, i = mod.signed_vecmat(np.zeros((2, 0, 2)), np.zeros((3, 0)))
        assert np.all(v[..., 0] == NEG) and np.all(v[..., 1] == np.inf) and np.all(i == 0)
        v, i = mod.kbest_vecmat(np.zeros((0, 4, 2)), np.zeros((3, 4)))
        assert v.shape == (0, 3, 2) and i.shape == (0, 3, 2)
        v, i = mod.maxplus_vecmat(np.zeros((2, 4)), np.zeros((0, 4)))
        assert v.shape == (2, 0)


def test_integer_inputs_promote_to_float64():
    a = np.array([[1, 2]])
    w = np.array([[3, 0], [0, 5]])
    v, i = kernels.maxplus_vecmat(a, w)
    assert v.dtype == np.float64
    np.testing.assert_array_equal(v, [[4.0, 7.0]])
    np.testing.assert_array_equal(i, [[0, 1]])


# ---- memory bound of the reference --------------------------------------------------------


@given(
    nb=hst.integers(1, 4),
    r=hst.integers(1, 9),
    k=hst.integers(1, 9),
    per=hst.integers(1, 12),
    chunk=hst.integers(1, 200),
)
def test_blocks_cover_once_within_budget(nb, r, k, per, chunk):
    """Blocks tile (batch, rows, columns) exactly once, each within the budget unless it is a single entry."""
    seen = np.zeros((nb, r, k), dtype=int)
    for bs, rs, ks in reference.blocks(nb, r, k, per, chunk):
        seen[bs, rs, ks] += 1
        size = (bs.stop - bs.start) * (rs.stop - rs.start) * (ks.stop - ks.start)
        assert size * per <= chunk or size == 1
    assert np.all(seen == 1)


# ---- dispatch and errors ------------------------------------------------------------------


def test_backend_is_numba_here_and_dispatches():
    """numba is a test dependency: the dispatch serves numpy float arrays with it."""
    assert kernels.BACKEND == "numba"
    a = np.zeros((2, 3), np.float32)
    assert kernels._use_fast(a, a) is numba_cpu
    assert kernels._use_fast(a.astype(np.float16), a.astype(np.float16)) is None  # reference for float16
    assert kernels.warmup() == "numba"


def test_env_var_forces_reference():
    code = (
        "import numpy as np, semitorch.kernels as K; "
        "v, i = K.maxplus_vecmat(np.zeros((2, 3)), np.ones((4, 3))); "
        "print(K.BACKEND, K._use_fast(v, v), v.shape)"
    )
    env = dict(os.environ, SEMITORCH_KERNELS="numpy")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["numpy", "None", "(2,", "4)"]
    env["SEMITORCH_KERNELS"] = "fortran"
    bad = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert bad.returncode != 0 and "SEMITORCH_KERNELS='fortran'" in bad.stderr


@pytest.mark.parametrize("mod", [reference, numba_cpu, kernels], ids=["reference", "numba", "dispatch"])
def test_bad_shapes_name_the_kernel_and_shapes(mod):
    with pytest.raises(ValueError, match=r"maxplus_vecmat: contraction sizes differ: a \(2, 3\).*w \(4, 5\)"):
        mod.maxplus_vecmat(np.zeros((2, 3)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match=r"kbest_vecmat: batch dims do not broadcast: a \(2, 1, 3, 2\).*w \(3, 4, 3\)"):
        mod.kbest_vecmat(np.zeros((2, 1, 3, 2)), np.zeros((3, 4, 3)))
    with pytest.raises(ValueError, match=r"signed_vecmat: a must be \(\.\.\., r, j, 2\).*\(2, 3, 3\)"):
        mod.signed_vecmat(np.zeros((2, 3, 3)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"maxplus_vecmat: a must have at least 2 dims.*a \(3,\)"):
        mod.maxplus_vecmat(np.zeros(3), np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"kbest_vecmat: a must have at least 3 dims.*a \(2, 3\)"):
        mod.kbest_vecmat(np.zeros((2, 3)), np.zeros((4, 3)))


@pytest.mark.parametrize(
    ("env", "spins"),
    [
        ({}, True),  # OpenBLAS's default: 2^28 cycles
        ({"OPENBLAS_THREAD_TIMEOUT": "10"}, False),
        ({"OPENBLAS_THREAD_TIMEOUT": "16"}, False),
        ({"OPENBLAS_THREAD_TIMEOUT": "17"}, True),
        ({"OPENBLAS_THREAD_TIMEOUT": "soon"}, True),  # unparsable: as if unset
        ({"OPENBLAS_NUM_THREADS": "1"}, False),
        ({"OPENBLAS_NUM_THREADS": "2"}, True),
        ({"OMP_NUM_THREADS": "1"}, False),
        ({"OMP_NUM_THREADS": "1,1"}, False),  # the nested form: the outer level counts
        ({"OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "1"}, True),  # OpenBLAS's own variable wins
        ({"GOTO_NUM_THREADS": "1", "OMP_NUM_THREADS": "4"}, False),
    ],
)
def test_blas_spins_from_env_reads_openblas_settings(env, spins):
    assert numba_cpu.blas_spins_from_env(env) is spins


def test_contended_kernels_split_at_the_plain_threshold_when_blas_does_not_spin(monkeypatch):
    work = numba_cpu.PARALLEL_MIN_WORK * 2  # above the plain threshold, below the contended one
    monkeypatch.setattr(numba_cpu, "BLAS_SPINS", True)
    assert numba_cpu._nchunks(64, work, contended=True) == 0
    assert numba_cpu._nchunks(64, work) > 0
    monkeypatch.setattr(numba_cpu, "BLAS_SPINS", False)
    assert numba_cpu._nchunks(64, work, contended=True) > 0
    assert numba_cpu._nchunks(1, work, contended=True) == 0  # one row: nothing to split


def test_one_thread_holds_this_threads_kernels_to_one_thread_and_restores():
    import threading

    import numba

    before = numba.get_num_threads()
    seen = {}
    with kernels.one_thread():
        seen["inside"] = numba.get_num_threads()
        t = threading.Thread(target=lambda: seen.__setitem__("other", numba.get_num_threads()))
        t.start()
        t.join()
        np.testing.assert_array_equal(kernels.maxplus_vecmat(np.zeros((3, 4)), np.zeros((2, 4)))[1], 0)
        big = numba_cpu.PARALLEL_MIN_WORK << 8  # split over threads anywhere else
        seen["chunks"] = numba_cpu._nchunks(64, big)
    seen["chunks_after"] = numba_cpu._nchunks(64, big)
    if kernels.BACKEND == "numba":
        assert seen["chunks"] == 0  # one thread: the serial worker, no parallel launch
        if before > 1:
            assert seen["chunks_after"] > 0  # outside, the same call splits
        del seen["chunks"], seen["chunks_after"]
        assert seen == {"inside": 1, "other": numba.config.NUMBA_NUM_THREADS}  # per thread: others keep theirs
    else:  # the numpy backend has no kernel threads: a no-op
        assert seen["inside"] == before
    assert numba.get_num_threads() == before


@pytest.mark.parametrize("name", ["affine_sum", "affine_count", "affine_max", "affine_entropy", "affine_kbest"])
def test_structured_kernels_on_a_gpu_build_the_jacobian_in_large_blocks(name, monkeypatch):
    """GPU arrays take the reference with DEVICE_CHUNK_ELEMS (one row of BERT-base's layer_norm per block was ~3 s a
    pass on an H100); host arrays of other dtypes take it with the host's block."""
    seen = []

    def recording(*args, chunk_elems):
        seen.append(chunk_elems)
        return "result"

    monkeypatch.setattr(reference, name, recording)
    FakeCupy = type("ndarray", (), {"__module__": "cupy", "dtype": np.dtype(np.float32)})
    parts = (np.ones(3), np.ones(3), np.ones(1), np.ones(1))
    assert getattr(kernels, name)(FakeCupy(), *parts) == "result"
    assert getattr(kernels, name)(np.ones((1, 3), np.float16), *parts) == "result"
    assert seen == [kernels.DEVICE_CHUNK_ELEMS, reference.CHUNK_ELEMS]
    assert kernels.DEVICE_CHUNK_ELEMS >= 1 << 26 > reference.CHUNK_ELEMS


def test_affine_entropy_sum_on_a_gpu_takes_the_reference_in_large_blocks(monkeypatch):
    """The entropy semiring's three sums dispatch as the other structured kernels: cupy arrays (and host dtypes
    numba does not take) to the reference, with the device's block size."""
    seen = []

    def recording(*args, chunk_elems):
        seen.append(chunk_elems)
        return "result"

    monkeypatch.setattr(reference, "affine_entropy_sum", recording)
    FakeCupy = type("ndarray", (), {"__module__": "cupy", "dtype": np.dtype(np.float32), "shape": (1, 3)})
    parts = (np.ones(3), np.ones(3), np.ones(1), np.ones(1))
    assert kernels.affine_entropy_sum(FakeCupy(), np.ones((1, 3)), *parts) == "result"
    assert kernels.affine_entropy_sum(np.ones((1, 3), np.float16), np.ones((1, 3)), *parts) == "result"
    assert seen == [kernels.DEVICE_CHUNK_ELEMS, reference.CHUNK_ELEMS]


@pytest.mark.parametrize("K", [1, 3, 7])
def test_reference_affine_kbest_is_the_stable_top_k_with_ties_and_zeros(K):
    """The reference's K rounds of argmax equal a stable argsort of every candidate (ties: lowest j·K + q)."""
    rng = np.random.default_rng(K)
    R, n = 3, 5
    g = -np.sort(-rng.integers(0, 3, (R, n, K)).astype(np.float64), axis=-1)  # many ties, many zeros
    g[0, 1:] = 0  # a row with fewer than K nonzero candidates for some outputs
    u, v = rng.integers(-1, 2, (R, n)).astype(np.float64), rng.integers(-1, 2, (R, n)).astype(np.float64)
    p, D = rng.integers(-1, 2, R).astype(np.float64), np.full(R, 2.0)
    V, A = reference.affine_kbest(g, u, v, p, D)
    q = reference.affine_q(u, v, p, D)  # (R, j, k)
    cand = np.moveaxis(g[:, :, None, :] * q[:, :, :, None], 2, 1).reshape(R, n, n * K)  # (R, k, j·K + q)
    order = np.argsort(-cand, axis=-1, kind="stable")[..., :K]
    want_v = np.take_along_axis(cand, order, axis=-1)
    np.testing.assert_array_equal(V, want_v)
    np.testing.assert_array_equal(A, np.where(want_v == 0, 0, order))
    assert (V == 0).any() and len(np.unique(cand)) < cand.size / 4  # the draw did exercise zeros and ties
