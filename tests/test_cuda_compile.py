"""The CUDA kernels' source, checked without a GPU.

1. ``nvcc --ptx`` compiles :data:`semitorch.kernels.cuda.SOURCE` (every entry point present),
   and ``nvcc -cubin`` for the H100 (sm_90) passes ptxas (shared memory and registers fit).
   Skipped, with the reason, when nvcc is absent.
2. The same source runs on the CPU: it is compiled by g++ with a small prelude that
   emulates the CUDA thread model (one std::thread per CUDA thread of a block,
   ``__syncthreads`` a barrier, ``__shared__`` block-wide storage, blocks one after the
   other), and the module's own Python wrappers launch it through ctypes (arguments
   passed as in ``cuLaunchKernel``, their sizes checked against the kernel's parameter
   types). Every result must equal the numpy reference exactly: values and arg-max
   indices, ties included. Skipped, with the reason, when g++ is absent.
"""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from semitorch.kernels import cuda, reference

NVCC = shutil.which("nvcc")
GXX = shutil.which("g++")
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc (the CUDA toolkit) is not installed: cannot compile CUDA")
needs_gxx = pytest.mark.skipif(GXX is None, reason="g++ is not installed: cannot build the kernels' CPU emulation")


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=600)


def _entries(ptx: str) -> set[str]:
    return set(re.findall(r"\.entry\s+(\w+)\s*\(", ptx))


@needs_nvcc
def test_nvcc_ptx_compiles_every_entry_point(tmp_path: Path) -> None:
    src = tmp_path / "kernels.cu"
    src.write_text(cuda.SOURCE)
    out = tmp_path / "kernels.ptx"
    cmd = [NVCC, "--ptx", "-arch=compute_75", "-std=c++14", "-Werror", "all-warnings", "-x", "cu", str(src)]
    r = _run([*cmd, "-o", str(out)])
    assert r.returncode == 0, f"nvcc --ptx failed:\n{r.stderr}"
    assert _entries(out.read_text()) == set(cuda.KERNELS)


@needs_nvcc
def test_nvcc_cubin_sm90_passes_ptxas(tmp_path: Path) -> None:
    src = tmp_path / "kernels.cu"
    src.write_text(cuda.SOURCE)
    cmd = [NVCC, "-cubin", "-arch=sm_90", "-std=c++14", "-Werror", "all-warnings", "-Xptxas", "-v", "-x", "cu"]
    r = _run([*cmd, str(src), "-o", str(tmp_path / "k.cubin")])
    assert r.returncode == 0, f"nvcc -cubin (ptxas, sm_90) failed:\n{r.stderr}"
    compiled = set(re.findall(r"Compiling entry function '(\w+)'", r.stderr))
    assert compiled == set(cuda.KERNELS)
    spills = [int(n) for n in re.findall(r"(\d+) bytes spill (?:stores|loads)", r.stderr)]
    assert spills and not any(spills), f"register spills:\n{r.stderr}"


# ---- CPU emulation of the CUDA thread model ----------------------------------------------

_PRELUDE = r"""
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

struct emu_dim3 { unsigned x, y, z; };
thread_local emu_dim3 threadIdx, blockIdx;
static emu_dim3 blockDim, gridDim;

// A reusable barrier for the threads of one block; a wait longer than 10 s (a barrier not
// reached by every thread: a bug) breaks it for good so that the launch returns an error.
struct EmuBarrier {
    std::mutex m;
    std::condition_variable cv;
    int n = 0, waiting = 0;
    long gen = 0;
    bool broken = false;
    void wait() {
        std::unique_lock<std::mutex> lk(m);
        if (broken) return;
        long g = gen;
        if (++waiting == n) { waiting = 0; ++gen; cv.notify_all(); return; }
        if (!cv.wait_for(lk, std::chrono::seconds(10), [&] { return gen != g || broken; })) {
            broken = true;
            cv.notify_all();
        }
    }
};
static EmuBarrier emu_bar;
static inline void __syncthreads() { emu_bar.wait(); }

#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __shared__ static
static inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
static inline double __longlong_as_double(long long i) { double d; std::memcpy(&d, &i, 8); return d; }
"""

_LAUNCHER = r"""
template <typename... A, std::size_t... I>
static void emu_call(void (*k)(A...), void** args, std::index_sequence<I...>) {
    k(*static_cast<A*>(args[I])...);
}

// Launch k on grid g with block b; args as in cuLaunchKernel. Returns 0, or 1 for an argument
// count/size mismatch, or 2 for a broken barrier (deadlock).
template <typename... A>
static int emu_launch(void (*k)(A...), emu_dim3 g, emu_dim3 b, void** args, const int* sizes, int nargs) {
    const int expect[] = {(int)sizeof(A)...};
    if (nargs != (int)sizeof...(A)) return 1;
    for (int i = 0; i < nargs; ++i) if (sizes[i] != expect[i]) return 1;
    gridDim = g;
    blockDim = b;
    const int nt = (int)(b.x * b.y * b.z);
    emu_bar.n = nt;
    emu_bar.waiting = 0;
    emu_bar.broken = false;
    std::vector<std::thread> ts;
    for (int t = 0; t < nt; ++t) {
        ts.emplace_back([=] {
            threadIdx = {t % b.x, (t / b.x) % b.y, t / (b.x * b.y)};
            for (unsigned z = 0; z < g.z; ++z)
                for (unsigned y = 0; y < g.y; ++y)
                    for (unsigned x = 0; x < g.x; ++x) {
                        blockIdx = {x, y, z};
                        emu_call(k, args, std::index_sequence_for<A...>{});
                        emu_bar.wait();  // the block ends: its shared memory is reused by the next
                    }
        });
    }
    for (auto& th : ts) th.join();
    return emu_bar.broken ? 2 : 0;
}
"""


def _shim(name: str) -> str:
    return (
        f'extern "C" int emu_{name}(unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,'
        f" void** args, const int* sizes, int nargs) {{\n"
        f"    return emu_launch({name}, emu_dim3{{gx, gy, gz}}, emu_dim3{{bx, by, bz}}, args, sizes, nargs);\n}}\n"
    )


class Emulator:
    """Runs the kernels of :data:`cuda.SOURCE` on the CPU; usable as the wrappers' ``launch`` argument."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib
        self.launched: list[str] = []

    def __call__(self, name: str, grid: tuple[int, int, int], block: tuple[int, int, int], args: Any) -> None:
        keep: list[Any] = []
        for v in args:
            if isinstance(v, np.ndarray):
                keep.append(ctypes.c_void_p(v.ctypes.data))
            elif isinstance(v, np.int32):
                keep.append(ctypes.c_int32(int(v)))
            elif isinstance(v, np.int64):
                keep.append(ctypes.c_int64(int(v)))
            else:
                raise TypeError(f"emulator: argument of type {type(v).__name__} (pass numpy arrays, int32, int64)")
        ptrs = (ctypes.c_void_p * len(keep))(*[ctypes.cast(ctypes.pointer(o), ctypes.c_void_p) for o in keep])
        sizes = (ctypes.c_int * len(keep))(*[ctypes.sizeof(o) for o in keep])
        rc = getattr(self.lib, f"emu_{name}")(*grid, *block, ptrs, sizes, len(keep))
        assert rc == 0, f"emulated launch of {name} failed: " + ("argument sizes" if rc == 1 else "deadlock")
        self.launched.append(name)


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Emulator:
    if GXX is None:
        pytest.skip("g++ is not installed: cannot build the CPU emulation of the kernels")
    d = tmp_path_factory.mktemp("cuda_emu")
    src = d / "emu.cpp"
    src.write_text(_PRELUDE + cuda.SOURCE + _LAUNCHER + "".join(_shim(n) for n in cuda.KERNELS))
    lib = d / "emu.so"
    cmd = [GXX, "-O1", "-std=c++17", "-pthread", "-fPIC", "-shared", "-ffp-contract=off", "-Wno-unknown-pragmas"]
    r = _run([*cmd, str(src), "-o", str(lib)])
    assert r.returncode == 0, f"g++ could not build the emulation:\n{r.stderr[-4000:]}"
    return Emulator(ctypes.CDLL(str(lib)))


# ---- inputs with ties, missing paths and zero edges ----------------------------------------

rng = np.random.default_rng(1234)


def _ints(shape: tuple[int, ...], lo: int = -3, hi: int = 4) -> np.ndarray:
    """Small integers as floats: many exact ties."""
    return rng.integers(lo, hi, size=shape).astype(np.float64)


def _with_neg_inf(x: np.ndarray, p: float = 0.2) -> np.ndarray:
    x = x.copy()
    x[rng.random(x.shape) < p] = -np.inf
    return x


def _sorted_lists(shape: tuple[int, ...]) -> np.ndarray:
    """(…, K) lists sorted descending, with −inf padding of random length."""
    x = -np.sort(-_ints(shape, -4, 5), axis=-1)
    pad = rng.integers(0, shape[-1] + 1, size=shape[:-1])
    x[np.arange(shape[-1]) >= (shape[-1] - pad)[..., None]] = -np.inf
    return x


def _pairs(shape: tuple[int, ...]) -> np.ndarray:
    """(…, 2) signed (max, min) pairs with max ≥ min, some (−inf, +inf) "no path"."""
    u, v = _ints(shape), _ints(shape)
    out = np.stack([np.maximum(u, v), np.minimum(u, v)], axis=-1)
    none = rng.random(shape) < 0.2
    out[none] = [-np.inf, np.inf]
    return out


def _transposed(w: np.ndarray) -> np.ndarray:
    """The same values as ``w`` (…, k, j), stored with k contiguous (a transposed view)."""
    return np.ascontiguousarray(np.swapaxes(w, -1, -2)).swapaxes(-1, -2)


def _same(got: tuple[np.ndarray, np.ndarray], want: tuple[np.ndarray, np.ndarray]) -> None:
    assert got[0].shape == want[0].shape and got[0].dtype == want[0].dtype
    np.testing.assert_array_equal(got[0], want[0])
    assert got[1].dtype == np.int64
    np.testing.assert_array_equal(got[1], want[1])


# (a batch, r, j), (w batch, k): big tiles (r ≥ 16), skinny (r < 16), partial tiles, broadcast batches
_MAXPLUS_CASES = [
    ((2, 3), 37, 21, (3,), 19),
    ((), 70, 35, (), 70),
    ((4,), 1, 40, (4,), 150),
    ((1,), 5, 17, (3,), 9),
    ((2,), 16, 16, (), 64),
]


@needs_gxx
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", _MAXPLUS_CASES)
@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_emulated_maxplus_equals_reference(emu: Emulator, dtype: Any, case: Any, layout: str) -> None:
    ba, r, j, bw, k = case
    a = _with_neg_inf(_ints(ba + (r, j))).astype(dtype)
    w = _with_neg_inf(_ints(bw + (k, j)), 0.1).astype(dtype)
    a[..., 0, :] = -np.inf  # a row with no path: val −inf, arg 0
    if layout == "transposed":
        w = _transposed(w)
    _same(cuda.maxplus_vecmat(a, w, launch=emu), reference.maxplus_vecmat(a, w))
    _same(cuda.maxplus_vecmat(a, w, launch=emu, max_grid=1), reference.maxplus_vecmat(a, w))


@needs_gxx
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", _MAXPLUS_CASES)
@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_emulated_signed_equals_reference(emu: Emulator, dtype: Any, case: Any, layout: str) -> None:
    ba, r, j, bw, k = case
    a = _pairs(ba + (r, j)).astype(dtype)
    w = _ints(bw + (k, j)).astype(dtype)  # about 1/7 zeros: no edge
    w[..., 0, :] = 0  # a column with no edge at all: (−inf, +inf), arg 0
    if layout == "transposed":
        w = _transposed(w)
    _same(cuda.signed_vecmat(a, w, launch=emu), reference.signed_vecmat(a, w))
    _same(cuda.signed_vecmat(a, w, launch=emu, max_grid=1), reference.signed_vecmat(a, w))


@needs_gxx
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "case",
    [
        ((2,), 19, 11, 3, (2,), 17),  # 2×2 blocks, partial
        ((), 3, 37, 5, (), 20),
        ((3,), 1, 9, 1, (), 33),  # K = 1: plain max-plus
        ((), 18, 30, 20, (), 5),  # K = 20: 12 j values per shared-memory step
        ((), 4, 6, cuda.KBEST_MAX, (), 3),
    ],
)
@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_emulated_kbest_equals_reference(emu: Emulator, dtype: Any, case: Any, layout: str) -> None:
    ba, r, j, q, bw, k = case
    a = _sorted_lists(ba + (r, j, q)).astype(dtype)
    w = _with_neg_inf(_ints(bw + (k, j)), 0.1).astype(dtype)
    if layout == "transposed":
        w = _transposed(w)
    _same(cuda.kbest_vecmat(a, w, launch=emu), reference.kbest_vecmat(a, w))
    _same(cuda.kbest_vecmat(a, w, launch=emu, max_grid=1), reference.kbest_vecmat(a, w))


@needs_gxx
def test_emulated_kernels_on_continuous_values(emu: Emulator) -> None:
    """Random real values (no ties), float32: still bit-identical to the reference."""
    a = rng.standard_normal((3, 33, 50)).astype(np.float32)
    w = rng.standard_normal((3, 41, 50)).astype(np.float32)
    _same(cuda.maxplus_vecmat(a, w, launch=emu), reference.maxplus_vecmat(a, w))
    p = rng.standard_normal((3, 33, 50, 2)).astype(np.float32)
    p = np.stack([p.max(-1), p.min(-1)], axis=-1)
    _same(cuda.signed_vecmat(p, w, launch=emu), reference.signed_vecmat(p, w))
    lists = -np.sort(-rng.standard_normal((3, 33, 50, 4)), axis=-1).astype(np.float32)
    _same(cuda.kbest_vecmat(lists, w, launch=emu), reference.kbest_vecmat(lists, w))


@needs_gxx
def test_emulated_wrappers_pick_the_expected_entry_points(emu: Emulator) -> None:
    emu.launched.clear()
    cuda.maxplus_vecmat(np.zeros((20, 3)), np.zeros((4, 3)), launch=emu)
    cuda.maxplus_vecmat(np.zeros((2, 3), np.float32), np.zeros((4, 3), np.float32), launch=emu)
    cuda.signed_vecmat(np.zeros((2, 3, 2), np.float32), np.ones((4, 3), np.float32), launch=emu)
    cuda.kbest_vecmat(np.zeros((2, 3, 2)), np.zeros((4, 3)), launch=emu)
    assert emu.launched == ["maxplus_f64_big", "maxplus_f32_skinny", "signed_f32_skinny", "kbest_f64"]


def test_wrappers_without_launch_fall_back_for_other_dtypes_and_long_lists() -> None:
    """float16 and K > KBEST_MAX never reach a kernel: the reference answers (no launch is attempted)."""

    def no_launch(*args: Any) -> None:
        raise AssertionError("no kernel should be launched")

    a16 = _ints((2, 5, 7)).astype(np.float16)
    w16 = _ints((3, 7)).astype(np.float16)
    _same(cuda.maxplus_vecmat(a16, w16, launch=no_launch), reference.maxplus_vecmat(a16, w16))
    lists = _sorted_lists((2, 3, cuda.KBEST_MAX + 1))
    w = _ints((4, 3))
    _same(cuda.kbest_vecmat(lists, w, launch=no_launch), reference.kbest_vecmat(lists, w))


def test_wrappers_handle_empty_problems_without_a_launch() -> None:
    """j = 0 (no candidate: −inf / (−inf, +inf), arg 0) and r = 0 are answered without a launch, as the reference."""

    def no_launch(*args: Any) -> None:
        raise AssertionError("no kernel should be launched")

    for name, a, w in [
        ("maxplus_vecmat", np.zeros((3, 0)), np.zeros((2, 0))),
        ("maxplus_vecmat", np.zeros((2, 0, 4)), np.zeros((4,))[None, :].repeat(5, 0)),
        ("kbest_vecmat", np.zeros((3, 0, 2)), np.zeros((2, 0))),
        ("signed_vecmat", np.zeros((3, 0, 2)), np.zeros((2, 0))),
        ("signed_vecmat", np.zeros((0, 4, 2), np.float32), np.ones((5, 4), np.float32)),
    ]:
        _same(getattr(cuda, name)(a, w, launch=no_launch), getattr(reference, name)(a, w))


def test_wrapper_errors_name_the_kernel_and_shapes() -> None:
    with pytest.raises(ValueError, match=r"maxplus_vecmat: contraction sizes differ.*\(3, 4\)"):
        cuda.maxplus_vecmat(np.zeros((2, 3)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"signed_vecmat: a must be \(\.\.\., r, j, 2\)"):
        cuda.signed_vecmat(np.zeros((2, 3, 3)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"kbest_vecmat: batch dims do not broadcast"):
        cuda.kbest_vecmat(np.zeros((2, 1, 3, 2)), np.zeros((3, 4, 3)))
