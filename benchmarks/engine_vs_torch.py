"""Forward+backward time of semitorch vs torch CPU eager on the same models, same thread count.

Models: a 3-layer MLP (batch 256, 784-512-512-10) and a 6-layer, hidden-384, 12-head
transformer encoder stack (batch 8, seq 32, GELU FFN 1536, post-LN, random weights), float32.
Runs are interleaved (semitorch, torch, semitorch, ...) and medians are compared.

    python benchmarks/engine_vs_torch.py [--repeats N] [--quick]

Target: semitorch <= 1.5x torch's time.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

import semitorch as st


def _threads() -> int:
    try:
        from threadpoolctl import threadpool_info

        n = [i["num_threads"] for i in threadpool_info() if i.get("user_api") == "blas"]
        return n[0] if n else torch.get_num_threads()
    except ImportError:
        return torch.get_num_threads()


def mlp_params(rng: np.random.Generator, sizes: list[int]) -> list[np.ndarray]:
    """Weights and biases of an MLP with the given layer sizes."""
    ps = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        ps += [(rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32), np.zeros(b, np.float32)]
    return ps


def mlp_st(x: st.Tensor, ps: list[st.Tensor], y: np.ndarray) -> st.Tensor:
    """MLP forward + cross-entropy loss in semitorch."""
    h = x
    for i in range(0, len(ps), 2):
        h = h @ ps[i] + ps[i + 1]
        if i + 2 < len(ps):
            h = st.relu(h)
    return st.cross_entropy(h, y)


def mlp_torch(x: torch.Tensor, ps: list[torch.Tensor], y: torch.Tensor) -> torch.Tensor:
    """The same MLP in torch."""
    h = x
    for i in range(0, len(ps), 2):
        h = h @ ps[i] + ps[i + 1]
        if i + 2 < len(ps):
            h = torch.relu(h)
    return torch.nn.functional.cross_entropy(h, y)


def encoder_params(rng: np.random.Generator, layers: int, d: int, ff: int) -> list[np.ndarray]:
    """Per layer: Wq, bq, Wk, bk, Wv, bv, Wo, bo, ln1 w, b, W1, b1, W2, b2, ln2 w, b."""
    ps = []
    for _ in range(layers):
        for a, b in [(d, d)] * 4:
            ps += [(rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32), np.zeros(b, np.float32)]
        ps += [np.ones(d, np.float32), np.zeros(d, np.float32)]
        ps += [(rng.standard_normal((d, ff)) / np.sqrt(d)).astype(np.float32), np.zeros(ff, np.float32)]
        ps += [(rng.standard_normal((ff, d)) / np.sqrt(ff)).astype(np.float32), np.zeros(d, np.float32)]
        ps += [np.ones(d, np.float32), np.zeros(d, np.float32)]
    return ps


def encoder(lib: str, x, ps, heads: int):  # noqa: ANN001, ANN201
    """Post-LN transformer encoder stack in either library (lib = 'st' or 'torch')."""
    if lib == "st":
        sm, ln, gelu = st.softmax, st.layer_norm, st.gelu

        def split(t, B, T):  # noqa: ANN001, ANN202
            return t.reshape(B, T, heads, -1).transpose(0, 2, 1, 3)  # (B, nh, T, hs)

        def merge(t, B, T):  # noqa: ANN001, ANN202
            return t.transpose(0, 2, 1, 3).reshape(B, T, -1)

        def lnf(h, w, b):  # noqa: ANN001, ANN202
            return ln(h, w, b, 1e-12)

        def swap(t):  # noqa: ANN001, ANN202
            return t.swapaxes(-1, -2)
    else:
        F = torch.nn.functional

        def sm(t):  # noqa: ANN001, ANN202
            return torch.softmax(t, -1)

        def split(t, B, T):  # noqa: ANN001, ANN202
            return t.reshape(B, T, heads, -1).permute(0, 2, 1, 3)

        def merge(t, B, T):  # noqa: ANN001, ANN202
            return t.permute(0, 2, 1, 3).reshape(B, T, -1)

        def lnf(h, w, b):  # noqa: ANN001, ANN202
            return F.layer_norm(h, (h.shape[-1],), w, b, 1e-12)

        gelu = F.gelu

        def swap(t):  # noqa: ANN001, ANN202
            return t.transpose(-1, -2)

    B, T, d = x.shape
    hs = d // heads
    h = x
    for i in range(0, len(ps), 16):
        Wq, bq, Wk, bk, Wv, bv, Wo, bo, g1, b1, W1, c1, W2, c2, g2, b2 = ps[i : i + 16]
        q, k, v = split(h @ Wq + bq, B, T), split(h @ Wk + bk, B, T), split(h @ Wv + bv, B, T)  # (B, nh, T, hs)
        att = sm((q @ swap(k)) * (1.0 / hs**0.5))  # (B, nh, T, T)
        a = merge(att @ v, B, T) @ Wo + bo  # (B, T, d)
        h = lnf(h + a, g1, b1)
        f = gelu(h @ W1 + c1) @ W2 + c2  # (B, T, d)
        h = lnf(h + f, g2, b2)
    return (h * h).mean()


def bench(name: str, run_st, run_torch, repeats: int) -> float:  # noqa: ANN001
    """Interleave runs, print medians and the ratio; return the ratio."""
    for _ in range(2):
        run_st()
        run_torch()
    ts, tt = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run_st()
        t1 = time.perf_counter()
        run_torch()
        t2 = time.perf_counter()
        ts.append(t1 - t0)
        tt.append(t2 - t1)
    ms, mt = statistics.median(ts), statistics.median(tt)
    print(f"{name:42s} semitorch {ms * 1e3:8.2f} ms   torch {mt * 1e3:8.2f} ms   ratio {ms / mt:5.2f}x")
    return ms / mt


def main() -> None:
    """Run both benchmarks and print the ratios."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--quick", action="store_true", help="tiny sizes and 3 repeats (smoke test)")
    args = ap.parse_args()
    torch.set_num_threads(_threads())
    print(f"threads: torch {torch.get_num_threads()}, numpy BLAS {_threads()}")
    rng = np.random.default_rng(0)
    reps = 3 if args.quick else args.repeats

    sizes = [64, 32, 32, 10] if args.quick else [784, 512, 512, 10]
    N = 16 if args.quick else 256
    x = rng.standard_normal((N, sizes[0])).astype(np.float32)
    y = rng.integers(0, 10, N)
    ps = mlp_params(rng, sizes)
    sp = [st.tensor(p, requires_grad=True) for p in ps]
    tp = [torch.tensor(p, requires_grad=True) for p in ps]
    sx, tx, ty = st.tensor(x), torch.tensor(x), torch.tensor(y)

    def st_mlp() -> None:
        st.grad(mlp_st(sx, sp, y), sp)

    def torch_mlp() -> None:
        torch.autograd.grad(mlp_torch(tx, tp, ty), tp)

    r1 = bench(f"MLP {'-'.join(map(str, sizes))}, batch {N}", st_mlp, torch_mlp, reps)

    L, d, heads, ff, B, T = (2, 32, 4, 64, 2, 8) if args.quick else (6, 384, 12, 1536, 8, 32)
    ps = encoder_params(rng, L, d, ff)
    sp = [st.tensor(p, requires_grad=True) for p in ps]
    tp = [torch.tensor(p, requires_grad=True) for p in ps]
    x = rng.standard_normal((B, T, d)).astype(np.float32)
    sx = st.tensor(x, requires_grad=True)
    tx = torch.tensor(x, requires_grad=True)

    def st_enc() -> None:
        st.grad(encoder("st", sx, sp, heads), [sx, *sp])

    def torch_enc() -> None:
        torch.autograd.grad(encoder("torch", tx, tp, heads), [tx, *tp])

    r2 = bench(f"encoder {L}x{d}, {heads} heads, B{B} T{T}", st_enc, torch_enc, reps)
    print(f"target <= 1.5x: MLP {'OK' if r1 <= 1.5 else 'MISSED'}, encoder {'OK' if r2 <= 1.5 else 'MISSED'}")


if __name__ == "__main__":
    main()
