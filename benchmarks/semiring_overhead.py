"""Semiring overhead: one backward pass per semiring on a 6-layer BERT encoder, timed against Real.

Builds ``semitorch.nn.bert.BertEncoder`` (6 layers, hidden 384, 12 heads, FFN 1536,
random weights, float32, eval mode), runs ONE forward on random embeddings
(batch 1, seq 32), then times ``st.grad(out, [embeddings], semiring=...)`` for each
semiring, interleaved round by round, and prints medians and each one's time
divided by Real's, next to the targets. It also measures, in the same run, the
max-plus kernel's throughput (G max-add/s) against numpy's BLAS matmul (GFLOP/s)
on the same shapes, and (``--profile``) where a semiring backward spends its time.

    python benchmarks/semiring_overhead.py            # full run
    python benchmarks/semiring_overhead.py --quick    # smoke run (2 layers, few repeats)
    python benchmarks/semiring_overhead.py --profile MaxProduct --profile KBest
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import sys
import time
from typing import Any

import numpy as np

import semitorch as st
from semitorch import kernels
from semitorch.nn.bert import BertConfig, BertEncoder

TARGETS = {"Log": 2.0, "Entropy": 2.5, "MaxProduct": 4.0, "KBest(5)": 15.0}


def semirings() -> dict[str, st.Semiring]:
    """The semirings to time, by display name (Real first: the reference)."""
    S = st.semirings
    return {
        "Real": S.Real(),
        "Log": S.Log(),
        "Entropy": S.Entropy(),
        "MaxProduct": S.MaxProduct(),
        "KBest(5)": S.KBest(5),
        "SignedMax": S.SignedMax(),
        "Count": S.Count(),
    }


def build(layers: int, hidden: int, heads: int, ffn: int, seq: int, seed: int = 0) -> tuple[st.Tensor, st.Tensor]:
    """One forward of a random encoder stack; returns (scalar output, embeddings leaf)."""
    cfg = BertConfig(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=ffn,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    enc = BertEncoder(cfg).eval()
    rng = np.random.default_rng(seed)
    emb = st.tensor(rng.standard_normal((1, seq, hidden)).astype(np.float32), requires_grad=True)  # (1, T, C)
    h, _, _ = enc(emb)  # (1, T, C)
    probe = st.tensor(rng.standard_normal(hidden).astype(np.float32))  # (C,)
    out = (h[0, 0] * probe).sum()  # a scalar read from the first token's final state
    return out, emb


def set_threads(n: int) -> None:
    """Limit numba's and the BLAS library's thread pools to ``n`` threads (BLAS via threadpoolctl, if installed)."""
    import numba

    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        print("threadpoolctl is not installed: BLAS keeps its default thread count")
        return
    threadpool_limits(n)


def interleaved(fns: dict[str, Any], rounds: int) -> dict[str, list[float]]:
    """Each function run once to warm up, then ``rounds`` rounds that run each once in turn: its times (s)."""
    for f in fns.values():
        f()
    ts: dict[str, list[float]] = {n: [] for n in fns}
    for _ in range(rounds):
        for n, f in fns.items():
            t = time.perf_counter()
            f()
            ts[n].append(time.perf_counter() - t)
    return ts


def kernel_throughput(shapes: list[tuple[int, int, int]], reps: int) -> list[str]:
    """Max-plus kernel (G max-add/s) and BLAS matmul (GFLOP/s) on the same (r, j, k), interleaved."""
    rng = np.random.default_rng(1)
    lines = [f"kernel throughput (float32, backend {kernels.BACKEND}; medians of {reps}, interleaved):"]
    for r, j, k in shapes:
        a = rng.standard_normal((r, j)).astype(np.float32)
        w = rng.standard_normal((k, j)).astype(np.float32)
        wt = np.ascontiguousarray(w.T)
        ak = -np.sort(-rng.standard_normal((r, j, 5)).astype(np.float32), axis=-1)
        a2 = np.stack([np.abs(a), -np.abs(a)], axis=-1)
        fns = {
            "blas": lambda a=a, wt=wt: a @ wt,
            "maxplus": lambda a=a, w=w: kernels.maxplus_vecmat(a, w),
            "kbest5": lambda ak=ak, w=w: kernels.kbest_vecmat(ak, w),
            "signed": lambda a2=a2, w=w: kernels.signed_vecmat(a2, w),
        }
        med = {n: statistics.median(v) for n, v in interleaved(fns, reps).items()}
        ops_ = r * j * k
        lines.append(
            f"  ({r}, {j}) x ({j}, {k}): BLAS {2 * ops_ / med['blas'] / 1e9:7.2f} GFLOP/s | "
            f"max-plus {ops_ / med['maxplus'] / 1e9:6.2f} G max-add/s "
            f"({med['maxplus'] / med['blas']:5.1f}x BLAS time) | "
            f"k-best(5) {med['kbest5'] / med['blas']:6.1f}x | signed {med['signed'] / med['blas']:6.1f}x"
        )
    return lines


def _busy_seconds() -> float | None:
    """CPU seconds all processes have used so far (Linux /proc/stat), or None elsewhere."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


class OtherLoad:
    """Context manager: how many cores' worth of CPU *other* processes used while it was open.

    The machine's busy time from /proc/stat minus this process's own CPU time, over the
    wall time; ``cores`` stays None where /proc/stat is missing.
    """

    def __enter__(self) -> OtherLoad:
        self.cores: float | None = None
        self._t, self._busy, self._own = time.perf_counter(), _busy_seconds(), sum(os.times()[:2])
        return self

    def __exit__(self, *exc: object) -> None:
        busy = _busy_seconds()
        if busy is not None and self._busy is not None:
            other = (busy - self._busy) - (sum(os.times()[:2]) - self._own)
            self.cores = max(0.0, other) / max(time.perf_counter() - self._t, 1e-9)


def time_semirings(out: st.Tensor, emb: st.Tensor, rounds: int) -> dict[str, list[float]]:
    """Interleaved rounds: each round runs every semiring's backward once (after one warm-up each)."""
    fns = {n: (lambda sr=sr: st.grad(out, [emb], semiring=sr)) for n, sr in semirings().items()}
    return interleaved(fns, rounds)


def semiring_named(name: str) -> tuple[str, st.Semiring]:
    """The timed semiring called ``name`` (any case; ``KBest`` means ``KBest(5)``), or a ValueError naming them."""
    table = semirings()
    by = {n.lower(): n for n in table} | {n.split("(")[0].lower(): n for n in table}
    key = by.get(name.lower())
    if key is None:
        raise ValueError(f"--profile: no semiring called {name!r}; choose one of {', '.join(table)}")
    return key, table[key]


def profile(out: st.Tensor, emb: st.Tensor, name: str, top: int = 18) -> list[str]:
    """cProfile of one backward under semiring ``name``: the top functions by own time."""
    name, sr = semiring_named(name)
    st.grad(out, [emb], semiring=sr)
    pr = cProfile.Profile()
    pr.enable()
    st.grad(out, [emb], semiring=sr)
    pr.disable()
    s = io.StringIO()
    stats = pstats.Stats(pr, stream=s)
    total = stats.total_tt
    rows = []
    for (file, line, fn), (_cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append((tt, ct, nc, f"{file.split('semitorch/')[-1]}:{line}({fn})"))
    rows.sort(reverse=True)
    kern = sum(tt for tt, _, _, where in rows if where.startswith("kernels/"))
    lines = [
        f"profile of one {name} backward: {total * 1e3:.1f} ms total, of which {kern * 1e3:.1f} ms "
        f"({kern / total:.0%}) inside semitorch/kernels; top functions by own time:"
    ]
    lines.append(f"  {'own ms':>8} {'share':>6} {'cum ms':>8} {'calls':>6}  function")
    for tt, ct, nc, where in rows[:top]:
        lines.append(f"  {tt * 1e3:8.2f} {tt / total:6.1%} {ct * 1e3:8.2f} {nc:6d}  {where}")
    return lines


def time_kept(out: st.Tensor, emb: st.Tensor, rounds: int) -> list[str]:
    """MaxProduct and KBest(5) with every tensor's values and backpointers kept (``keep=True``, as top_paths runs).

    The main table times ``st.grad``, whose selective passes compute the backpointers and drop
    each tensor's as the walk moves on; reading paths needs them all kept, which costs the
    fresh memory of every record. Interleaved with Real's ``st.grad``.
    """
    srs = {"Real": st.semirings.Real(), "MaxProduct": st.semirings.MaxProduct(), "KBest(5)": st.semirings.KBest(5)}
    kept: dict[str, float] = {}
    for n, sr in srs.items():
        if n != "Real":
            res = st.backward(out, [emb], semiring=sr, keep=True)
            kept[n] = sum(a.nbytes + (0 if b is None else b.nbytes) for a, b in res.records.values()) / 1e6
            del res
    fns = {
        n: (lambda sr=sr: st.grad(out, [emb], semiring=sr))
        if n == "Real"
        else (lambda sr=sr: st.backward(out, [emb], semiring=sr, keep=True))
        for n, sr in srs.items()
    }
    med = {n: statistics.median(v) for n, v in interleaved(fns, rounds).items()}
    lines = [
        f"with every tensor's values and backpointers kept (st.backward(..., keep=True), as st.top_paths runs), "
        f"medians of {rounds} rounds against Real's st.grad ({med['Real'] * 1e3:.2f} ms):"
    ]
    for n in ("MaxProduct", "KBest(5)"):
        lines.append(
            f"  {n:<11} {med[n] * 1e3:10.2f} {med[n] / med['Real']:8.2f}   ({kept[n]:.0f} MB of records kept per pass)"
        )
    return lines


def record_contractions(out: st.Tensor, emb: st.Tensor) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (adjoint rows, W) of every Linear contraction of one Real backward, as the pass hands them to BLAS."""
    real_vecmat = st.semirings.Real.vecmat
    calls: list[tuple[np.ndarray, np.ndarray]] = []

    def recording(self: st.Semiring, a: np.ndarray, src: object, W: np.ndarray) -> tuple[np.ndarray, None]:
        calls.append((a, W))
        return real_vecmat(self, a, src, W)

    st.semirings.Real.vecmat = recording  # type: ignore[method-assign]
    try:
        st.grad(out, [emb], semiring=st.semirings.Real())
    finally:
        st.semirings.Real.vecmat = real_vecmat  # type: ignore[method-assign]
    return calls


def record_affine_entropy(out: st.Tensor, emb: st.Tensor) -> list[tuple[np.ndarray, ...]]:
    """The (g, h, u, v, p, D) of every structured-Jacobian entropy contraction of one Entropy backward."""
    orig = kernels.affine_entropy_sum
    calls: list[tuple[np.ndarray, ...]] = []

    def recording(*args: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        calls.append(tuple(np.array(x, copy=True) for x in args))
        return orig(*args)

    kernels.affine_entropy_sum = recording  # type: ignore[assignment]
    try:
        st.grad(out, [emb], semiring=st.semirings.Entropy())
    finally:
        kernels.affine_entropy_sum = orig  # type: ignore[assignment]
    return calls


def row_jacobian_logs(g: np.ndarray, u: np.ndarray, v: np.ndarray, p: np.ndarray) -> int:
    """How many logs the numba kernels take for one call of :func:`semitorch.kernels.affine_entropy_sum`.

    Long symmetric float32 rows (layer_norm) take the sorted-series kernel: a log per pair j < k
    with ρ ≤ |v_j·v_k/p| ≤ 1/ρ (the band near q = 0) and 3n more; shorter symmetric rows one per
    pair j ≤ k; rows with p = 0 (softmax) 3n; other rows n².
    """
    from semitorch.kernels import numba_cpu as nc

    R, n = g.shape
    gg, uu, vv, pp, _ = nc._affine_args(g, u, v, p, np.zeros(R, g.dtype))
    if nc._series_rows_apply(gg, uu, vv, pp):
        total = 3 * R * n
        for r in range(R):
            w = np.abs(vv[r].astype(np.float64)) / np.sqrt(abs(float(pp[r])))
            t = np.outer(w, w)
            total += int(np.count_nonzero(np.triu((t >= nc._PSI_RHO) & (t <= 1 / nc._PSI_RHO), 1)))
        return total
    if np.array_equal(uu, -vv):
        return R * n * (n + 1) // 2
    zero = int(np.count_nonzero(pp == 0))
    return zero * 3 * n + (R - zero) * n * n


def entropy_floor(out: st.Tensor, emb: st.Tensor, rounds: int) -> list[str]:
    """Where Entropy's time must go: its three BLAS products and the logs of the row Jacobians, against Real's pass.

    The expectation semiring's ⊗ on pairs is a dual-number product, whose bilinear rank
    is 3 (Alder–Strassen: 2·dim − 1 for this local algebra), so every contraction needs
    three matrix products where Real needs one: S = P|W|ᵀ, T₁ = (P∘E)|W|ᵀ and T₂ =
    P(|W| log|W|)ᵀ. This replays the pass's own contractions (Real's shapes and live
    rows), interleaved with whole Real passes: Real's product, and the three products in
    the arrangement Entropy uses (P and P∘E stacked, |W|ᵀ and (|W| log|W|)ᵀ prepared
    beforehand, as a pass reuses them), with nothing else: no exp, no log, no other op.
    It also replays the pass's structured row-Jacobian contractions (layer_norm, softmax)
    through :func:`semitorch.kernels.affine_entropy_sum`, which needs Σ g|q| log|q| over every
    Jacobian row (layer_norm's long rows by sorting and series, with a log only for the
    band of pairs near q = 0; softmax's rows, rank one off the diagonal, factor into O(n)
    sums), where Real uses a closed-form VJP: that is this implementation's cost, not a bound.

    A second bound starts from a whole Log pass, timed in the same rounds: Entropy's pairs
    carry Log's value L = log Z, so its pass computes at least what Log's does, plus the
    two products that Entropy adds to Log's one (the three products' time less Real's
    products, on the same shapes). What is left below the 2.5x target is all the time
    Entropy could spend on everything else: the T₂ = Σ g|q| log|q| sums of the row
    Jacobians, E's share of the exp/log passes, its ⊕ and its elementwise edges.
    """
    calls = record_contractions(out, emb)
    affine = record_affine_entropy(out, emb)
    rng = np.random.default_rng(2)
    real_sr, log_sr = st.semirings.Real(), st.semirings.Log()
    three = []
    for a, W in calls:
        AT = np.ascontiguousarray(np.swapaxes(np.abs(W), -1, -2))
        BT = AT * np.log(np.where(AT > 0, AT, 1))
        X = rng.random(a.shape[:-2] + (2 * a.shape[-2], a.shape[-1])).astype(np.float32)
        three.append((X, AT, BT, a.shape[-2]))
    logs = sum(row_jacobian_logs(g, u, v, pp) for g, _, u, v, pp, _ in affine)

    def real_products() -> None:
        for a, W in calls:
            real_sr.vecmat(a, None, W)

    def entropy_products() -> None:
        for X, AT, BT, r in three:
            np.matmul(X, AT)
            np.matmul(X[..., :r, :], BT)

    def row_jacobians() -> None:
        for args in affine:
            kernels.affine_entropy_sum(*args)

    fns = {
        "pass": lambda: st.grad(out, [emb], semiring=real_sr),
        "log": lambda: st.grad(out, [emb], semiring=log_sr),
        "real": real_products,
        "three": entropy_products,
        "rows": row_jacobians,
    }
    med = {n: statistics.median(v) for n, v in interleaved(fns, rounds).items()}
    rest = max(med["pass"] - med["real"], 0.0)
    base = med["three"] + rest
    both = base + med["rows"]
    log_bound = med["log"] + max(med["three"] - med["real"], 0.0)
    target = TARGETS["Entropy"]
    left = target * med["pass"] - log_bound
    return [
        f"Entropy's cost, replayed: the pass's {len(calls)} Linear contractions and {len(affine)} row Jacobians, "
        f"medians of {rounds} rounds",
        f"  Real's pass                                       {med['pass'] * 1e3:8.2f} ms",
        f"  Real's products alone                             {med['real'] * 1e3:8.2f} ms "
        f"({med['real'] / med['pass']:.0%} of the pass)",
        f"  the 3 products Entropy needs, on Real's shapes    {med['three'] * 1e3:8.2f} ms "
        f"= {med['three'] / med['pass']:.2f}x Real's pass (a floor: dual-number products)",
        f"  ... plus the rest of Real's pass at its cost      {base * 1e3:8.2f} ms = {base / med['pass']:.2f}x",
        f"  {f'row Jacobians, {logs / 1e6:.1f}M logs':<48} {med['rows'] * 1e3:8.2f} ms "
        f"= {med['rows'] / med['pass']:.2f}x (kernels.affine_entropy_sum; Real: a closed-form VJP)",
        f"  the two together                                  {both * 1e3:8.2f} ms = {both / med['pass']:.2f}x "
        "Real's pass, before any exp/log pass or ⊕",
        f"  Log's pass (Entropy's L = log Z is Log's value)    {med['log'] * 1e3:8.2f} ms "
        f"= {med['log'] / med['pass']:.2f}x",
        f"  ... plus the 2 products Entropy adds to its one   {log_bound * 1e3:8.2f} ms "
        f"= {log_bound / med['pass']:.2f}x Real's pass, before the row Jacobians' T₂ logs",
        f"  {f'left under the {target:g}x target for all the rest':<49}{left * 1e3:8.2f} ms "
        f"({left / max(len(affine), 1) * 1e3:.2f} ms a row-Jacobian call, whose kernel takes "
        f"{med['rows'] / max(len(affine), 1) * 1e3:.2f} ms here)",
    ]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; prints a table; returns 0."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: 2 layers, few repeats")
    p.add_argument("--rounds", type=int, default=None, help="interleaved timing rounds (default 15, quick 3)")
    p.add_argument("--profile", action="append", default=None, help="also cProfile one backward of this semiring")
    p.add_argument("--no-kernels", action="store_true", help="skip the kernel-throughput table")
    p.add_argument("--no-keep", action="store_true", help="skip timing the passes that keep backpointers for paths")
    p.add_argument("--no-floor", action="store_true", help="skip the replay of what Entropy's pass must compute")
    p.add_argument(
        "--threads", type=int, default=None, help="limit BLAS and numba to this many threads (default: theirs)"
    )
    args = p.parse_args(argv)
    for name in args.profile or []:  # before minutes of timing, not after
        try:
            semiring_named(name)
        except ValueError as e:
            p.error(str(e))
    if args.threads:
        set_threads(args.threads)
    layers = 2 if args.quick else 6
    rounds = args.rounds or (3 if args.quick else 15)

    print(
        f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs (timings are wall-clock); "
        f"threads: {args.threads or 'default'}"
    )
    if os.getloadavg()[0] > (os.cpu_count() or 1):
        print(
            "WARNING: the machine is oversubscribed: multi-threaded BLAS/numba timings (and so the ratios) are "
            "unreliable; --threads 1 gives fairer ratios"
        )
    t0 = time.perf_counter()
    backend = kernels.warmup()
    print(f"kernels: backend {backend}, warmup {time.perf_counter() - t0:.2f} s")
    if backend == "numba":
        from semitorch.kernels import numba_cpu

        timeout = os.environ.get("OPENBLAS_THREAD_TIMEOUT", "unset")
        print(
            f"idle BLAS threads {'spin' if numba_cpu.BLAS_SPINS else 'sleep'} after each call "
            f"(OPENBLAS_THREAD_TIMEOUT={timeout}): the kernels of Log/Entropy/MaxProduct passes "
            f"split over threads from {numba_cpu._nchunks_threshold(True):.3g} evaluations a call "
            f"(the others from {numba_cpu._nchunks_threshold(False):.3g})"
        )

    if not args.no_kernels:
        shapes = [(32, 384, 1536), (32, 1536, 384), (32, 384, 384)]
        for line in kernel_throughput(shapes[:1] if args.quick else shapes, 3 if args.quick else 15):
            print(line)

    out, emb = build(layers, 384, 12, 1536, 32)
    print(f"\nmodel: {layers}-layer encoder, hidden 384, 12 heads, FFN 1536, seq 32, batch 1, float32")
    with OtherLoad() as other:
        ts = time_semirings(out, emb, rounds)
    real = statistics.median(ts["Real"])
    # Another process on a 2-core machine stalls multi-threaded BLAS (a thread waits for its
    # descheduled partner), inflating Real many times over and every ratio with it.
    if other.cores is None:
        busy = os.getloadavg()[0] > (os.cpu_count() or 1) + 0.5 and args.threads != 1
    else:
        busy = other.cores > 0.25
        print(f"other processes used {other.cores:.2f} cores during the timing")
    print(f"backward st.grad(out, [embeddings]): medians of {rounds} interleaved rounds")
    print(f"  {'semiring':<11} {'median ms':>10} {'/ Real':>8} {'target':>8}")
    for n, v in ts.items():
        m = statistics.median(v)
        tgt = TARGETS.get(n)
        mark = "" if tgt is None else ("  unreliable" if busy else "  ok" if m / real <= tgt else "  MISSED")
        print(f"  {n:<11} {m * 1e3:10.2f} {m / real:8.2f} {'' if tgt is None else f'<= {tgt:g}':>8}{mark}")

    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    if busy:
        print("WARNING: other work ran during the timing: the ratios above are unreliable (rerun on a quiet machine)")

    if not args.no_keep:
        print()
        for line in time_kept(out, emb, rounds):
            print(line)

    if not args.no_floor:
        print()
        for line in entropy_floor(out, emb, rounds):
            print(line)

    for name in args.profile or []:
        print()
        for line in profile(out, emb, name):
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
