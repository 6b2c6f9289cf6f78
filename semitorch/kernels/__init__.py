"""Semiring matmul kernels and their dispatch: numba on CPU when available, else the chunked numpy reference.

Every kernel takes backend arrays whose batch dims broadcast, returns ``(val, arg)``
with ``arg`` int64 of ``val``'s shape, breaks ties to the LOWEST index, and never
materialises the full rows × j × k candidate array.

- :func:`maxplus_vecmat` ``(a (..., r, j), logw (..., k, j))`` → max-plus product (..., r, k).
- :func:`kbest_vecmat` ``(a (..., r, j, K), logw (..., k, j))`` → K best (..., r, k, K), arg j·K + q.
- :func:`signed_vecmat` ``(a (..., r, j, 2), w (..., k, j))`` → (most positive, most negative)
  signed products (..., r, k, 2), arg j·2 + c.
- :func:`affine_sum`, :func:`affine_max`, :func:`affine_entropy` ``(g, u, v (R, n), p, D (R,))``:
  contractions of non-negative row weights ``g`` with the structured row Jacobians of
  layer_norm / softmax / log_softmax, |q[r, j, k]| = |D[r]·[j = k] + p[r] + u[r, j]·v[r, k]|,
  over j, without storing the (R, n, n) Jacobian (sum; max and arg-max; sum and Σ|q| log|q|);
  :func:`affine_kbest` takes ``g (R, n, K)`` and keeps the K best over (j, rank);
  :func:`affine_count` sums ``g`` over the j's with q ≠ 0 (path counting);
  :func:`affine_signed` is :func:`signed_vecmat` on the signed c·q;
  :func:`affine_entropy_sum` is :func:`affine_entropy` and :func:`affine_sum` of a second
  weight in one call (the entropy semiring's three sums; on long layer_norm rows in float32
  by sorting and series, without a log per pair).

:data:`BACKEND` is ``"numba"`` when numba is importable and ``"numpy"`` otherwise; the
environment variable ``SEMITORCH_KERNELS=numpy`` forces the reference. cupy arrays of
float32/float64 use the CUDA kernels of :mod:`semitorch.kernels.cuda`; other arrays and
dtypes use the reference.
The numba kernels compile on first use (cached on disk); :func:`warmup` does it up front.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy as np

from ..backend import is_cupy_array
from . import reference

Array = Any

__all__ = [
    "BACKEND",
    "affine_count",
    "affine_entropy",
    "affine_entropy_sum",
    "affine_kbest",
    "affine_max",
    "affine_signed",
    "affine_sum",
    "exp_shift",
    "gather_last",
    "kbest_merge",
    "log_shift",
    "log_shift_low",
    "pair_exp_rows",
    "pair_log_rows",
    "pair_plus",
    "logaddexp",
    "kbest_vecmat",
    "maxplus_vecmat",
    "signed_vecmat",
    "warmup",
]


def _choose_backend() -> str:
    forced = os.environ.get("SEMITORCH_KERNELS", "").strip().lower()
    if forced in ("numpy", "reference"):
        return "numpy"
    if forced not in ("", "numba", "auto"):
        raise ValueError(f"SEMITORCH_KERNELS={forced!r}: expected 'numpy' or 'numba'")
    return "numba" if importlib.util.find_spec("numba") is not None else "numpy"


BACKEND: str = _choose_backend()
"""Which implementation serves numpy float32/float64 arrays: ``"numba"`` or ``"numpy"``."""

_fast: ModuleType | None = None


def _numba() -> ModuleType | None:
    """The numba backend module (imported on first use), or None when BACKEND is numpy."""
    global _fast, BACKEND
    if BACKEND != "numba":
        return None
    if _fast is None:
        try:
            from . import numba_cpu
        except ImportError:  # numba present but broken (e.g. incompatible numpy): use the reference
            BACKEND = "numpy"
            return None
        _fast = numba_cpu
    return _fast


def _use_fast(a: Array, w: Array) -> ModuleType | None:
    if not (isinstance(a, np.ndarray) and isinstance(w, np.ndarray)):
        if is_cupy_array(a) and is_cupy_array(w) and np.result_type(a.dtype, w.dtype) in (np.float32, np.float64):
            from . import cuda  # the CUDA kernels (CuPy RawModule)

            return cuda
        return None
    if np.result_type(a.dtype, w.dtype) not in (np.float32, np.float64):
        return None
    return _numba()


def maxplus_vecmat(a: Array, logw: Array) -> tuple[Array, Array]:
    """Max-plus vecmat: val[..., r, k] = max_j a[..., r, j] + logw[..., k, j].

    ``a`` holds log-magnitudes (−inf = no path), ``logw`` log edge weights (−inf = no
    edge). ``arg`` is the lowest j attaining the max (0 where val is −inf).
    """
    fast = _use_fast(a, logw)
    if fast is not None:
        return fast.maxplus_vecmat(a, logw)
    return reference.maxplus_vecmat(a, logw)


def kbest_vecmat(a: Array, logw: Array) -> tuple[Array, Array]:
    """K-best max-plus vecmat: for each (r, k) the K largest a[..., r, j, q] + logw[..., k, j] over (j, q).

    ``a`` (..., r, j, K) is sorted descending along its last axis (−inf padding);
    val (..., r, k, K) is sorted descending; ``arg`` = j·K + q (lowest on ties, 0 for −inf).
    """
    fast = _use_fast(a, logw)
    if fast is not None:
        return fast.kbest_vecmat(a, logw)
    return reference.kbest_vecmat(a, logw)


def signed_vecmat(a: Array, w: Array) -> tuple[Array, Array]:
    """Signed max/min vecmat over candidates w[..., k, j]·a[..., r, j, c] with w ≠ 0 and a finite.

    ``a`` (..., r, j, 2) holds (most positive, most negative) path products, (−inf, +inf)
    meaning no path; val (..., r, k, 2) likewise; ``arg`` = j·2 + c of the first
    candidate attaining each (0 when there is none).
    """
    fast = _use_fast(a, w)
    if fast is not None:
        return fast.signed_vecmat(a, w)
    return reference.signed_vecmat(a, w)


DEVICE_CHUNK_ELEMS = 1 << 26
"""Elements of the dense (rows, n, n) Jacobian block the reference builds at a time for GPU arrays.

The structured row-Jacobian kernels run on the GPU as the array-API reference, which builds
the dense Jacobian a block of rows at a time. The host's block (``reference.CHUNK_ELEMS``,
2¹⁸) is one row of a BERT-base layer_norm, so a pass launched ~4,400 blocks of small kernels
and took ~3 s on an H100 (MaxProduct 123× Real); 2²⁶ (256 MB of float32 per temporary)
makes each call one block or a few.
"""


def _affine_fast(g: Array) -> ModuleType | None:
    if isinstance(g, np.ndarray) and g.dtype in (np.float32, np.float64):
        return _numba()
    return None  # cupy and other dtypes: the array-API reference


def _affine(name: str, first: Array, *args: Array) -> Any:
    """The numba kernel ``name`` for host float arrays, else the reference (in larger blocks on a GPU)."""
    fast = _affine_fast(first)
    if fast is not None:
        return getattr(fast, name)(first, *args)
    chunk = DEVICE_CHUNK_ELEMS if is_cupy_array(first) else reference.CHUNK_ELEMS
    return getattr(reference, name)(first, *args, chunk_elems=chunk)


def affine_sum(g: Array, u: Array, v: Array, p: Array, D: Array) -> Array:
    """S[r, k] = Σ_j g[r, j]·|q[r, j, k]| with q = D[r]·[j = k] + p[r] + u[r, j]·v[r, k].

    ``g``, ``u``, ``v`` are (R, n) (u and v may broadcast), ``p`` and ``D`` are (R,).
    ``g`` may be signed (the sum is linear in it).
    """
    return _affine("affine_sum", g, u, v, p, D)


def affine_count(g: Array, u: Array, v: Array, p: Array, D: Array) -> Array:
    """S[r, k] = Σ_j g[r, j]·[q[r, j, k] ≠ 0]: the counting form of :func:`affine_sum`.

    q is formed in the dtype of ``u``, ``v``, ``p``, ``D`` (the op's, so that an edge exists
    exactly where the other structured kernels see |q| > 0); the sum is in ``g``'s (float64 counts).
    """
    return _affine("affine_count", g, u, v, p, D)


def affine_signed(a: Array, c: Array, u: Array, v: Array, p: Array, D: Array) -> tuple[Array, Array]:
    """:func:`signed_vecmat` of ``a`` (R, n, 2) with the signed structured rows J[r, j, k] = c[r, j]·q[r, j, k].

    ``c``, ``u``, ``v`` are (R, n), ``p``, ``D`` (R,); the edges are formed as the dense form rounds
    them (q, then q·c; 0 = no edge), so the result equals the dense contraction exactly.
    """
    return _affine("affine_signed", a, c, u, v, p, D)


def affine_max(g: Array, u: Array, v: Array, p: Array, D: Array) -> tuple[Array, Array]:
    """V[r, k] = max_j g[r, j]·|q[r, j, k]| for ``g`` ≥ 0, and the lowest j attaining it (0 where V = 0)."""
    return _affine("affine_max", g, u, v, p, D)


def affine_entropy(g: Array, u: Array, v: Array, p: Array, D: Array) -> tuple[Array, Array]:
    """(Σ_j g[r, j]·|q|, Σ_j g[r, j]·|q|·log|q|) over j for each (r, k), with 0·log 0 = 0."""
    return _affine("affine_entropy", g, u, v, p, D)


def affine_entropy_sum(g: Array, h: Array, u: Array, v: Array, p: Array, D: Array) -> tuple[Array, Array, Array]:
    """(S, T, T₁) = (Σ_j g·|q|, Σ_j g·|q|·log|q|, Σ_j h·|q|) over j for each (r, k): :func:`affine_entropy`
    of ``g`` and :func:`affine_sum` of ``h`` (same shape as ``g``, may be signed) in one call.

    The numba backend computes long symmetric float32 rows (layer_norm's, n ≥
    ``numba_cpu.SERIES_MIN_N``) from the row's entries sorted by |v|: |q| log|q| is a
    polynomial in v_j·v_k (or its inverse) away from q = 0, so only a band of pairs near
    q = 0 needs a log each; S and T₁ are exact sums (float64 inside, float32 results).
    """
    if tuple(h.shape) != tuple(g.shape):
        raise ValueError(f"affine_entropy_sum: h has shape {tuple(h.shape)}, g has shape {tuple(g.shape)} (must match)")
    return _affine("affine_entropy_sum", g, h, u, v, p, D)


def affine_kbest(g: Array, u: Array, v: Array, p: Array, D: Array) -> tuple[Array, Array]:
    """For each (r, k) the K largest g[r, j, q]·|q[r, j, k]| over (j, q), for ``g`` (R, n, K) ≥ 0 sorted
    descending along its last axis; arg = j·K + q (lowest on ties, 0 where the value is 0)."""
    return _affine("affine_kbest", g, u, v, p, D)


def _f32(*xs: Array) -> ModuleType | None:
    if all(isinstance(x, np.ndarray) and x.dtype == np.float32 for x in xs):
        return _numba()
    return None


def exp_shift(a: Array) -> tuple[Array, Array]:
    """(exp(a − m), m): each row of ``a`` (last axis) shifted by its max (0 where no entry is finite).

    Results below the smallest normal float are 0. numba fuses the passes for float32
    (≤ 2 ulp); other arrays use numpy/cupy.
    """
    if a.ndim == 0 or a.shape[-1] == 0 or a.size == 0:
        return reference.exp_shift(a)
    fast = _f32(a)
    return (fast or reference).exp_shift(a)


def gather_last(src: Array, arg: Array) -> Array:
    """``src[..., arg[..., i]]`` along the last axis: a kernel's picks looked up in its backpointers.

    ``arg`` is int64 with indices into ``src``'s last axis; ``src``'s leading axes broadcast
    to ``arg``'s. numba for numpy int64 arrays (no index arrays built), else take_along_axis.
    """
    if (
        isinstance(src, np.ndarray)
        and isinstance(arg, np.ndarray)
        and src.dtype == np.int64
        and arg.dtype == np.int64
        and src.ndim == arg.ndim
        and arg.size
    ):
        fast = _numba()
        if fast is not None:
            return fast.gather_last(src, arg)
    return reference.gather_last(src, arg)


def kbest_merge(a: Array, sa: Array | None, b: Array, sb: Array | None) -> tuple[Array, Array | None]:
    """The K best of two descending K-lists (last axis), ties to ``a``: the k-best semiring's ⊕ with backpointers.

    numba for numpy float32/float64 of one shape (a linear merge), else concatenate and a stable sort.
    """
    if (
        isinstance(a, np.ndarray)
        and isinstance(b, np.ndarray)
        and a.shape == b.shape
        and a.dtype == b.dtype
        and a.dtype in (np.float32, np.float64)
        and a.ndim
        and a.size
    ):
        fast = _numba()
        if fast is not None:
            return fast.kbest_merge(a, sa, b, sb)
    return reference.kbest_merge(a, sa, b, sb)


def log_shift(s: Array, m: Array) -> Array:
    """log(s) + m for ``s`` ≥ 0 (−inf where s = 0); ``m`` (..., 1) is one shift per row of ``s``."""
    if s.ndim == 0 or s.size == 0 or m.shape != s.shape[:-1] + (1,):
        return reference.log_shift(s, m)
    fast = _f32(s, m)
    return (fast or reference).log_shift(s, m)


def log_shift_low(s: Array, m: Array, limit: float) -> tuple[Array, bool]:
    """(log(s) + m, any result more than ``limit`` below its row's shift): one pass for float32 in numba.

    Callers use the flag to skip their exact rechecks in the common case where nothing fell that far.
    """
    if s.ndim == 0 or s.size == 0 or m.shape != s.shape[:-1] + (1,):
        return reference.log_shift_low(s, m, limit)
    fast = _f32(s, m)
    return (fast or reference).log_shift_low(s, m, limit)


def logaddexp(a: Array, b: Array) -> Array:
    """log(e^a + e^b) elementwise (−inf where both are −inf); numba for float32 arrays of one shape."""
    if getattr(a, "shape", None) != getattr(b, "shape", None) or a.size == 0:
        return reference.logaddexp(a, b)
    fast = _f32(a, b)
    return (fast or reference).logaddexp(a, b)


def pair_plus(a: Array, b: Array) -> Array:
    """The expectation (entropy) semiring's ⊕ on (L, E) pairs along the last axis (size 2):
    ⟨logaddexp(L₁, L₂), p₁E₁ + p₂E₂⟩ with pᵢ = e^{Lᵢ − L}, E = 0 where L = −∞.

    One fused pass in numba for float32 arrays of one shape; numpy/cupy otherwise.
    """
    if getattr(a, "shape", None) != getattr(b, "shape", None) or a.size == 0 or a.shape[-1] != 2:
        return reference.pair_plus(a, b)
    fast = _f32(a, b)
    return (fast or reference).pair_plus(a, b)


def pair_exp_rows(a: Array) -> tuple[Array, Array]:
    """The expectation semiring's vecmat input from ⟨L, E⟩ pairs ``a`` (..., r, j, 2): (X (..., 2r, j), m (..., r, 1)).

    X stacks P = exp(L − m) (rows shifted by their max m, as :func:`exp_shift`) over P∘E,
    so that one BLAS call against |W|ᵀ yields Σ P|w| and Σ P·E|w|. One fused pass in
    numba for float32; numpy/cupy otherwise.
    """
    if a.ndim < 3 or a.shape[-1] != 2:
        raise ValueError(f"pair_exp_rows: expected ⟨L, E⟩ pairs of shape (..., r, j, 2), got shape {tuple(a.shape)}")
    if a.size == 0:
        return reference.pair_exp_rows(a)
    fast = _f32(a)
    return (fast or reference).pair_exp_rows(a)


def pair_log_rows(Y: Array, T2: Array, m: Array, limit: float) -> tuple[Array, bool]:
    """The expectation semiring's vecmat output: ⟨L, E⟩ (..., r, k, 2) from Y = [S; T₁] (..., 2r, k) and T₂ (..., r, k).

    L = m + log S (−∞ where S = 0), E = (T₁ − T₂)/S (0 where L = −∞), and whether any L
    fell more than ``limit`` below its row's shift (as :func:`log_shift_low`). One fused
    pass in numba for float32; numpy/cupy otherwise.
    """
    if T2.ndim < 2 or Y.ndim != T2.ndim or Y.shape[-2:] != (2 * T2.shape[-2], T2.shape[-1]):
        raise ValueError(
            f"pair_log_rows: Y must stack S over T1 (..., 2r, k) for T2 (..., r, k), "
            f"got Y {tuple(Y.shape)} and T2 {tuple(T2.shape)}"
        )
    if T2.size == 0 or Y.shape[:-2] != T2.shape[:-2] or m.shape != T2.shape[:-1] + (1,):
        return reference.pair_log_rows(Y, T2, m, limit)  # broadcasting shapes: numpy/cupy
    fast = _f32(Y, T2, m)
    return (fast or reference).pair_log_rows(Y, T2, m, limit)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run the calling thread's kernels on that thread only (numba's thread count is per thread).

    For passes that already run side by side in threads of their own (as
    :func:`semitorch.explain.paths_and_entropy` does): their kernels would otherwise
    split over threads too and oversubscribe the cores. A no-op with the numpy backend.
    """
    fast = _numba()
    if fast is None:
        yield
        return
    import numba  # noqa: PLC0415

    saved = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(saved)


def warmup() -> str:
    """Compile (or load from the on-disk cache) every numba kernel for float32 and float64.

    Returns the backend in use. A no-op with the numpy backend.
    """
    fast = _numba()
    if fast is not None:
        fast.warmup()
    return BACKEND
