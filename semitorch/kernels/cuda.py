"""CUDA kernels (CuPy RawModule) for the semiring vecmats: max-plus, k-best and signed max/min.

Same interface, results and tie-breaking as :mod:`semitorch.kernels.reference` (the spec):
:func:`maxplus_vecmat`, :func:`kbest_vecmat` and :func:`signed_vecmat` take cupy arrays
whose batch dims broadcast and return ``(val, arg)`` cupy arrays, ``arg`` int64, ties to
the LOWEST candidate index. The CUDA C++ source is the module-level string :data:`SOURCE`
(``extern "C"`` entry points around templates, instantiated for float and double);
:data:`KERNELS` names every entry point. It is compiled once per process by NVRTC through
``cupy.RawModule`` (cupy caches the binary on disk); ``tests/test_cuda_compile.py``
compiles the same string with ``nvcc`` and also runs it on the CPU under a small
thread-level emulation, so neither a syntax error nor a wrong index waits for a GPU.

Kernel design. Each output tile is owned by one thread block; the contraction axis j
is walked in tiles of ``TJ`` = 16 that are staged in shared memory (the operands'
element strides are passed in, so transposed and batch-broadcast operands are read in
place, coalesced along whichever axis is contiguous). Candidates are visited in
increasing index order and replace the incumbent only when strictly better, which gives
the lowest index on ties; IEEE add/multiply are exact, so values match the numpy
reference bit for bit. Nothing of size rows × j × k is ever materialised.

- ``maxplus``: register tiles of TM×TN outputs per thread; "big" tiles of 64×64 outputs
  (256 threads), or "skinny" 1×128 tiles when there are fewer than 16 rows (the
  per-row Jacobians of softmax/layer_norm: one row per batch entry).
- ``signed``: the same tiling (32×32 or 1×128) tracking (max, min, argmax, argmin).
- ``kbest``: one output list per thread (16×16 per block), the list kept sorted in
  registers/local memory; a candidate list of length ``K`` ≤ :data:`KBEST_MAX` (longer
  lists use the reference, still on the device). Relies on ``a`` being sorted
  descending along its last axis, as the semiring guarantees (it stops early on it).

Inputs are assumed NaN-free and ``logw`` free of +inf (as the numba backend).
Each wrapper takes an optional ``launch`` callable (``launch(name, grid, block, args)``)
and ``max_grid``; the defaults launch on the GPU through cupy, the tests pass a CPU
emulator and a small grid to exercise the grid-stride loops.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..backend import _try_cupy, xp_of
from . import reference
from .reference import prepare

Array = Any
Launch = Callable[[str, tuple[int, int, int], tuple[int, int, int], tuple[Any, ...]], None]

KBEST_MAX = 32
"""Longest k-best list the CUDA k-best kernel handles (longer lists use the device reference)."""

TJ = 16
"""Contraction tile (j values staged in shared memory per step)."""

# Tile configurations: (threads along rows TY, threads along cols TX, rows per thread TM, cols per thread TN).
_MAXPLUS_TILES = {"big": (16, 16, 4, 4), "skinny": (1, 128, 1, 1)}
_SIGNED_TILES = {"big": (16, 16, 2, 2), "skinny": (1, 128, 1, 1)}
_KBEST_TILE = (16, 16)  # rows, cols per block; one output list per thread
_SKINNY_ROWS = 16  # fewer rows than this: the skinny tiles
_MAX_GRID = 65535

SOURCE = r"""
// semitorch semiring vecmat kernels: max-plus, k-best, signed max/min (ties to the lowest index).
// No headers: compiles under NVRTC (cupy.RawModule) and nvcc alike.
typedef long long i64;

#define TJ 16
#define KBEST_MAX 32
#define KB_SMEM 4096

template <typename T> struct Lim;
template <> struct Lim<float> {
    static __device__ __forceinline__ float inf() { return __int_as_float(0x7f800000); }
};
template <> struct Lim<double> {
    static __device__ __forceinline__ double inf() { return __longlong_as_double(0x7ff0000000000000LL); }
};

template <typename T> __device__ __forceinline__ bool is_finite(T x) { return x - x == T(0); }

// Stage X[o, j] for o in [o0, o0 + BO), j in [j0, j0 + TJ) into S[jj * LD + oo]; outside the array: fill.
// Consecutive threads walk the axis whose stride is 1, so global reads are coalesced either way.
template <typename T, int NT, int BO, int LD>
__device__ __forceinline__ void load_tile(T* S, const T* X, i64 so, i64 sj, int n_o, int n_j, int o0, int j0,
                                          T fill, int tid) {
    const bool j_fast = (sj == 1);
    for (int e = tid; e < BO * TJ; e += NT) {
        int oo, jj;
        if (j_fast) { jj = e % TJ; oo = e / TJ; } else { oo = e % BO; jj = e / BO; }
        const int o = o0 + oo, j = j0 + jj;
        T v = fill;
        if (o < n_o && j < n_j) v = X[(i64)o * so + (i64)j * sj];
        S[jj * LD + oo] = v;
    }
}

// ---- max-plus: val[b, r, k] = max_j a[ia[b], r, j] + w[iw[b], k, j]; arg = lowest j (0 if -inf) ----------
template <typename T, int TY, int TX, int TM, int TN>
__device__ __forceinline__ void maxplus_body(const T* __restrict__ a, const T* __restrict__ w,
                                             const i64* __restrict__ ia, const i64* __restrict__ iw,
                                             T* __restrict__ val, i64* __restrict__ arg,
                                             int nb, int R, int K, int J,
                                             i64 sab, i64 sar, i64 saj, i64 swb, i64 swk, i64 swj) {
    constexpr int NT = TY * TX, BR = TY * TM, BK = TX * TN, LA = BR + 1, LW = BK + 1;
    __shared__ T As[TJ * LA];
    __shared__ T Ws[TJ * LW];
    const int tid = threadIdx.x, tx = tid % TX, ty = tid / TX;
    const T ninf = -Lim<T>::inf();
    const int nrt = (R + BR - 1) / BR;
    const int k0 = blockIdx.x * BK;
    for (int b = blockIdx.z; b < nb; b += gridDim.z) {
        const T* ab = a + ia[b] * sab;
        const T* wb = w + iw[b] * swb;
        for (int rt = blockIdx.y; rt < nrt; rt += gridDim.y) {
            const int r0 = rt * BR;
            T best[TM][TN];
            int barg[TM][TN];
#pragma unroll
            for (int i = 0; i < TM; ++i)
#pragma unroll
                for (int c = 0; c < TN; ++c) { best[i][c] = ninf; barg[i][c] = 0; }
            for (int j0 = 0; j0 < J; j0 += TJ) {
                load_tile<T, NT, BR, LA>(As, ab, sar, saj, R, J, r0, j0, ninf, tid);
                load_tile<T, NT, BK, LW>(Ws, wb, swk, swj, K, J, k0, j0, ninf, tid);
                __syncthreads();
                for (int jj = 0; jj < TJ; ++jj) {
                    T av[TM], wv[TN];
#pragma unroll
                    for (int i = 0; i < TM; ++i) av[i] = As[jj * LA + ty + TY * i];
#pragma unroll
                    for (int c = 0; c < TN; ++c) wv[c] = Ws[jj * LW + tx + TX * c];
#pragma unroll
                    for (int i = 0; i < TM; ++i)
#pragma unroll
                        for (int c = 0; c < TN; ++c) {
                            const T x = av[i] + wv[c];
                            if (x > best[i][c]) { best[i][c] = x; barg[i][c] = j0 + jj; }
                        }
                }
                __syncthreads();
            }
#pragma unroll
            for (int i = 0; i < TM; ++i)
#pragma unroll
                for (int c = 0; c < TN; ++c) {
                    const int r = r0 + ty + TY * i, k = k0 + tx + TX * c;
                    if (r < R && k < K) {
                        const i64 o = ((i64)b * R + r) * K + k;
                        val[o] = best[i][c];
                        arg[o] = barg[i][c];
                    }
                }
        }
    }
}

// ---- signed: (max, min) over (j, c) of w[k, j] * a[r, j, c] with w != 0 and a finite; arg = 2 j + c ----------
template <typename T, int TY, int TX, int TM, int TN>
__device__ __forceinline__ void signed_body(const T* __restrict__ a, const T* __restrict__ w,
                                            const i64* __restrict__ ia, const i64* __restrict__ iw,
                                            T* __restrict__ val, i64* __restrict__ arg,
                                            int nb, int R, int K, int J,
                                            i64 sab, i64 sar, i64 saj, i64 sac, i64 swb, i64 swk, i64 swj) {
    constexpr int NT = TY * TX, BR = TY * TM, BK = TX * TN, LA = BR + 1, LW = BK + 1;
    __shared__ T A0[TJ * LA];
    __shared__ T A1[TJ * LA];
    __shared__ T Ws[TJ * LW];
    const int tid = threadIdx.x, tx = tid % TX, ty = tid / TX;
    const T inf = Lim<T>::inf();
    const int nrt = (R + BR - 1) / BR;
    const int k0 = blockIdx.x * BK;
    for (int b = blockIdx.z; b < nb; b += gridDim.z) {
        const T* ab = a + ia[b] * sab;
        const T* wb = w + iw[b] * swb;
        for (int rt = blockIdx.y; rt < nrt; rt += gridDim.y) {
            const int r0 = rt * BR;
            T hi[TM][TN], lo[TM][TN];
            int ahi[TM][TN], alo[TM][TN];  // -1: no candidate yet
#pragma unroll
            for (int i = 0; i < TM; ++i)
#pragma unroll
                for (int c = 0; c < TN; ++c) { hi[i][c] = -inf; lo[i][c] = inf; ahi[i][c] = -1; alo[i][c] = -1; }
            for (int j0 = 0; j0 < J; j0 += TJ) {
                // padding: a = inf (not finite) and w = 0 (no edge), so it is never a candidate
                load_tile<T, NT, BR, LA>(A0, ab, sar, saj, R, J, r0, j0, inf, tid);
                load_tile<T, NT, BR, LA>(A1, ab + sac, sar, saj, R, J, r0, j0, inf, tid);
                load_tile<T, NT, BK, LW>(Ws, wb, swk, swj, K, J, k0, j0, T(0), tid);
                __syncthreads();
                for (int jj = 0; jj < TJ; ++jj) {
                    T wv[TN];
#pragma unroll
                    for (int c = 0; c < TN; ++c) wv[c] = Ws[jj * LW + tx + TX * c];
#pragma unroll
                    for (int comp = 0; comp < 2; ++comp) {
                        const T* As = comp == 0 ? A0 : A1;
                        const int idx = 2 * (j0 + jj) + comp;
#pragma unroll
                        for (int i = 0; i < TM; ++i) {
                            const T av = As[jj * LA + ty + TY * i];
                            if (!is_finite(av)) continue;
#pragma unroll
                            for (int c = 0; c < TN; ++c) {
                                if (wv[c] == T(0)) continue;
                                const T x = wv[c] * av;
                                if (ahi[i][c] < 0 || x > hi[i][c]) { hi[i][c] = x; ahi[i][c] = idx; }
                                if (alo[i][c] < 0 || x < lo[i][c]) { lo[i][c] = x; alo[i][c] = idx; }
                            }
                        }
                    }
                }
                __syncthreads();
            }
#pragma unroll
            for (int i = 0; i < TM; ++i)
#pragma unroll
                for (int c = 0; c < TN; ++c) {
                    const int r = r0 + ty + TY * i, k = k0 + tx + TX * c;
                    if (r < R && k < K) {
                        const i64 o = (((i64)b * R + r) * K + k) * 2;
                        const bool found = ahi[i][c] >= 0;
                        val[o] = found ? hi[i][c] : -inf;
                        val[o + 1] = found ? lo[i][c] : inf;
                        arg[o] = found ? ahi[i][c] : 0;
                        arg[o + 1] = found ? alo[i][c] : 0;
                    }
                }
        }
    }
}

// ---- k-best: the Q largest a[r, j, q] + w[k, j] over (j, q), descending; arg = j Q + q (0 for -inf) ----------
// One output list per thread (16 x 16 per block). a must be sorted descending along q.
template <typename T>
__device__ __forceinline__ void kbest_body(const T* __restrict__ a, const T* __restrict__ w,
                                           const i64* __restrict__ ia, const i64* __restrict__ iw,
                                           T* __restrict__ val, i64* __restrict__ arg,
                                           int nb, int R, int K, int J, int Q,
                                           i64 sab, i64 sar, i64 saj, i64 saq, i64 swb, i64 swk, i64 swj) {
    constexpr int TR = 16, TC = 16, NT = TR * TC, LW = TC + 1;
    __shared__ T As[KB_SMEM];  // [rr][jj][q], tj j values per step
    __shared__ T Ws[TJ * LW];  // [jj][cc]
    const int tid = threadIdx.x, tx = tid % TC, ty = tid / TC;
    const T ninf = -Lim<T>::inf();
    int tj = KB_SMEM / (TR * Q);
    if (tj > TJ) tj = TJ;
    if (tj < 1) tj = 1;
    const int nrt = (R + TR - 1) / TR;
    const int k = blockIdx.x * TC + tx;
    for (int b = blockIdx.z; b < nb; b += gridDim.z) {
        const T* ab = a + ia[b] * sab;
        const T* wb = w + iw[b] * swb;
        for (int rt = blockIdx.y; rt < nrt; rt += gridDim.y) {
            const int r0 = rt * TR, r = r0 + ty;
            T lv[KBEST_MAX];
            int la[KBEST_MAX];
            for (int q = 0; q < Q; ++q) { lv[q] = ninf; la[q] = 0; }
            for (int j0 = 0; j0 < J; j0 += tj) {
                for (int e = tid; e < TR * tj * Q; e += NT) {
                    const int q = e % Q, rest = e / Q, jj = rest % tj, rr = rest / tj;
                    const int rg = r0 + rr, j = j0 + jj;
                    As[e] = (rg < R && j < J) ? ab[(i64)rg * sar + (i64)j * saj + (i64)q * saq] : ninf;
                }
                for (int e = tid; e < TC * tj; e += NT) {
                    int cc, jj;
                    if (swj == 1) { jj = e % tj; cc = e / tj; } else { cc = e % TC; jj = e / TC; }
                    const int kg = blockIdx.x * TC + cc, j = j0 + jj;
                    Ws[jj * LW + cc] = (kg < K && j < J) ? wb[(i64)kg * swk + (i64)j * swj] : ninf;
                }
                __syncthreads();
                if (r < R && k < K) {
                    for (int jj = 0; jj < tj; ++jj) {
                        const T wv = Ws[jj * LW + tx];
                        const T* ar = As + (ty * tj + jj) * Q;
                        for (int q = 0; q < Q; ++q) {
                            const T x = ar[q] + wv;
                            if (!(x > lv[Q - 1])) break;  // a is sorted: no later q can enter either
                            int p = Q - 1;
                            while (p > 0 && x > lv[p - 1]) { lv[p] = lv[p - 1]; la[p] = la[p - 1]; --p; }
                            lv[p] = x;
                            la[p] = (j0 + jj) * Q + q;
                        }
                    }
                }
                __syncthreads();
            }
            if (r < R && k < K) {
                const i64 o = (((i64)b * R + r) * K + k) * Q;
                for (int q = 0; q < Q; ++q) { val[o + q] = lv[q]; arg[o + q] = la[q]; }
            }
        }
    }
}

// ---- entry points --------------------------------------------------------------------------------------
#define MAXPLUS_ENTRY(NAME, T, TY, TX, TM, TN)                                                                   \
    extern "C" __global__ void NAME(const T* a, const T* w, const i64* ia, const i64* iw, T* val, i64* arg,      \
                                    int nb, int R, int K, int J, i64 sab, i64 sar, i64 saj, i64 swb, i64 swk,    \
                                    i64 swj) {                                                                   \
        maxplus_body<T, TY, TX, TM, TN>(a, w, ia, iw, val, arg, nb, R, K, J, sab, sar, saj, swb, swk, swj);     \
    }
#define SIGNED_ENTRY(NAME, T, TY, TX, TM, TN)                                                                    \
    extern "C" __global__ void NAME(const T* a, const T* w, const i64* ia, const i64* iw, T* val, i64* arg,      \
                                    int nb, int R, int K, int J, i64 sab, i64 sar, i64 saj, i64 sac, i64 swb,    \
                                    i64 swk, i64 swj) {                                                          \
        signed_body<T, TY, TX, TM, TN>(a, w, ia, iw, val, arg, nb, R, K, J, sab, sar, saj, sac, swb, swk, swj); \
    }
#define KBEST_ENTRY(NAME, T)                                                                                     \
    extern "C" __global__ void NAME(const T* a, const T* w, const i64* ia, const i64* iw, T* val, i64* arg,      \
                                    int nb, int R, int K, int J, int Q, i64 sab, i64 sar, i64 saj, i64 saq,      \
                                    i64 swb, i64 swk, i64 swj) {                                                 \
        kbest_body<T>(a, w, ia, iw, val, arg, nb, R, K, J, Q, sab, sar, saj, saq, swb, swk, swj);               \
    }

MAXPLUS_ENTRY(maxplus_f32_big, float, 16, 16, 4, 4)
MAXPLUS_ENTRY(maxplus_f64_big, double, 16, 16, 4, 4)
MAXPLUS_ENTRY(maxplus_f32_skinny, float, 1, 128, 1, 1)
MAXPLUS_ENTRY(maxplus_f64_skinny, double, 1, 128, 1, 1)
SIGNED_ENTRY(signed_f32_big, float, 16, 16, 2, 2)
SIGNED_ENTRY(signed_f64_big, double, 16, 16, 2, 2)
SIGNED_ENTRY(signed_f32_skinny, float, 1, 128, 1, 1)
SIGNED_ENTRY(signed_f64_skinny, double, 1, 128, 1, 1)
KBEST_ENTRY(kbest_f32, float)
KBEST_ENTRY(kbest_f64, double)
"""

KERNELS: tuple[str, ...] = tuple(
    [f"{op}_{t}_{size}" for op in ("maxplus", "signed") for t in ("f32", "f64") for size in ("big", "skinny")]
    + [f"kbest_{t}" for t in ("f32", "f64")]
)
"""Every ``extern "C"`` entry point of :data:`SOURCE`."""

_module: Any = None


def _cupy_module() -> Any:
    """The compiled cupy.RawModule (compiled on first use; cupy caches the binary on disk)."""
    global _module
    if _module is None:
        cupy = _try_cupy()
        if cupy is None:
            raise RuntimeError("semitorch.kernels.cuda: cupy is not installed (pip install 'semitorch[gpu]')")
        _module = cupy.RawModule(code=SOURCE, options=("--std=c++14",))
    return _module


def _cupy_launch(name: str, grid: tuple[int, int, int], block: tuple[int, int, int], args: tuple[Any, ...]) -> None:
    """Launch entry point ``name`` of :data:`SOURCE` on the current cupy device."""
    _cupy_module().get_function(name)(grid, block, args)


def _tag(dtype: Any) -> str | None:
    dt = np.dtype(dtype)
    return {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}.get(dt)


def _estrides(x: Array) -> tuple[int, ...]:
    """Element strides of ``x`` (bytes / itemsize)."""
    isz = x.dtype.itemsize
    return tuple(int(s) // isz for s in x.strides)


def _check_sizes(name: str, *sizes: int) -> None:
    if any(s >= 2**31 for s in sizes):
        raise ValueError(f"{name}: a dimension of {sizes} does not fit the CUDA kernels' 32-bit sizes")


def _grid(x: int, y: int, z: int, max_grid: int) -> tuple[int, int, int]:
    return (max(1, x), max(1, min(y, max_grid)), max(1, min(z, max_grid)))


def _i32(v: int) -> np.int32:
    return np.int32(v)


def _i64(v: int) -> np.int64:
    return np.int64(v)


def maxplus_vecmat(
    a: Array, logw: Array, launch: Launch | None = None, max_grid: int = _MAX_GRID
) -> tuple[Array, Array]:
    """Max-plus vecmat on the GPU: val[..., r, k] = max_j a[..., r, j] + logw[..., k, j].

    ``arg`` is the lowest j attaining the max (0 where val is −inf). Dtypes other
    than float32/float64 use the (device) reference.
    """
    xp = xp_of(a, logw)
    af, wf, ia, iw, batch = prepare("maxplus_vecmat", a, logw, 2)
    ia, iw = xp.ascontiguousarray(ia), xp.ascontiguousarray(iw)
    tag = _tag(af.dtype)
    if tag is None:
        return reference.maxplus_vecmat(a, logw)
    r, j = af.shape[-2:]
    k = wf.shape[-2]
    nbt = int(ia.shape[0])
    _check_sizes("maxplus_vecmat", nbt, r, k, j)
    if not (nbt * r * k and j):
        val = xp.full((nbt, r, k), -np.inf, dtype=af.dtype)
        return val.reshape(batch + (r, k)), xp.zeros(batch + (r, k), dtype=xp.int64)
    val = xp.empty((nbt, r, k), dtype=af.dtype)
    arg = xp.empty((nbt, r, k), dtype=xp.int64)
    size = "skinny" if r < _SKINNY_ROWS else "big"
    ty, tx, tm, tn = _MAXPLUS_TILES[size]
    br, bk = ty * tm, tx * tn
    sa, sw = _estrides(af), _estrides(wf)
    grid = _grid(math.ceil(k / bk), math.ceil(r / br), nbt, max_grid)
    args = (af, wf, ia, iw, val, arg, _i32(nbt), _i32(r), _i32(k), _i32(j))
    args += tuple(_i64(s) for s in sa + sw)
    (launch or _cupy_launch)(f"maxplus_{tag}_{size}", grid, (ty * tx, 1, 1), args)
    return val.reshape(batch + (r, k)), arg.reshape(batch + (r, k))


def signed_vecmat(a: Array, w: Array, launch: Launch | None = None, max_grid: int = _MAX_GRID) -> tuple[Array, Array]:
    """Signed max/min vecmat on the GPU over candidates w[..., k, j]·a[..., r, j, c] (w ≠ 0, a finite).

    val (..., r, k, 2) is (max, min), (−inf, +inf) with no candidate; ``arg`` = j·2 + c of
    the first candidate attaining each (0 with none).
    """
    xp = xp_of(a, w)
    af, wf, ia, iw, batch = prepare("signed_vecmat", a, w, 3)
    ia, iw = xp.ascontiguousarray(ia), xp.ascontiguousarray(iw)
    tag = _tag(af.dtype)
    if tag is None:
        return reference.signed_vecmat(a, w)
    r, j = af.shape[-3:-1]
    k = wf.shape[-2]
    nbt = int(ia.shape[0])
    _check_sizes("signed_vecmat", nbt, r, k, 2 * j)
    val = xp.empty((nbt, r, k, 2), dtype=af.dtype)
    if not (nbt * r * k and j):
        val[..., 0] = -np.inf
        val[..., 1] = np.inf
        return val.reshape(batch + (r, k, 2)), xp.zeros(batch + (r, k, 2), dtype=xp.int64)
    arg = xp.empty((nbt, r, k, 2), dtype=xp.int64)
    size = "skinny" if r < _SKINNY_ROWS else "big"
    ty, tx, tm, tn = _SIGNED_TILES[size]
    br, bk = ty * tm, tx * tn
    sa, sw = _estrides(af), _estrides(wf)
    grid = _grid(math.ceil(k / bk), math.ceil(r / br), nbt, max_grid)
    args = (af, wf, ia, iw, val, arg, _i32(nbt), _i32(r), _i32(k), _i32(j))
    args += tuple(_i64(s) for s in sa + sw)
    (launch or _cupy_launch)(f"signed_{tag}_{size}", grid, (ty * tx, 1, 1), args)
    return val.reshape(batch + (r, k, 2)), arg.reshape(batch + (r, k, 2))


def kbest_vecmat(a: Array, logw: Array, launch: Launch | None = None, max_grid: int = _MAX_GRID) -> tuple[Array, Array]:
    """K-best max-plus vecmat on the GPU: for each (r, k) the K largest a[..., r, j, q] + logw[..., k, j].

    ``a`` (..., r, j, K) sorted descending along its last axis; val (..., r, k, K)
    descending; ``arg`` = j·K + q (lowest on ties, 0 for −inf). K > :data:`KBEST_MAX`
    uses the (device) reference.
    """
    xp = xp_of(a, logw)
    af, wf, ia, iw, batch = prepare("kbest_vecmat", a, logw, 3)
    ia, iw = xp.ascontiguousarray(ia), xp.ascontiguousarray(iw)
    tag = _tag(af.dtype)
    r, j, q = af.shape[-3:]
    if tag is None or q > KBEST_MAX:
        return reference.kbest_vecmat(a, logw)
    k = wf.shape[-2]
    nbt = int(ia.shape[0])
    _check_sizes("kbest_vecmat", nbt, r, k, j * q)
    if not (nbt * r * k * q and j):
        val = xp.full((nbt, r, k, q), -np.inf, dtype=af.dtype)
        return val.reshape(batch + (r, k, q)), xp.zeros(batch + (r, k, q), dtype=xp.int64)
    val = xp.empty((nbt, r, k, q), dtype=af.dtype)
    arg = xp.empty((nbt, r, k, q), dtype=xp.int64)
    tr, tc = _KBEST_TILE
    sa, sw = _estrides(af), _estrides(wf)
    grid = _grid(math.ceil(k / tc), math.ceil(r / tr), nbt, max_grid)
    args = (af, wf, ia, iw, val, arg, _i32(nbt), _i32(r), _i32(k), _i32(j), _i32(q))
    args += tuple(_i64(s) for s in sa + sw)
    (launch or _cupy_launch)(f"kbest_{tag}", grid, (tr * tc, 1, 1), args)
    return val.reshape(batch + (r, k, q)), arg.reshape(batch + (r, k, q))
