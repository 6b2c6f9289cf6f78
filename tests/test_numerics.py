"""Numerics: deep float32 networks give finite log-space semiring values that agree with float64; zero edges.

Path products over 24 layers leave float32's range in linear scale, so the max-product,
log and entropy semirings keep log-space values (ARCHITECTURE.md §5). The float64 run
of the same network (same weights) is the reference.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

import semitorch as st
from semitorch.semirings import Count, Entropy, KBest, Log, LogCount, MaxProduct, Real, SignedMax

RTOL = 1e-4


def mlp(dtype: type, depth: int = 24, width: int = 16, scale: float = 0.01) -> tuple[st.Tensor, st.Tensor]:
    """A tanh MLP with small weights: every path product is far below float32's smallest normal (1e-38)."""
    rng = np.random.default_rng(0)
    x = st.tensor(rng.standard_normal(width), requires_grad=True, dtype=dtype)
    h = x
    for _ in range(depth):
        W = st.tensor(rng.standard_normal((width, width)) * scale, dtype=dtype)
        b = st.tensor(rng.standard_normal(width) * 0.1, dtype=dtype)
        h = st.tanh(h @ W + b)
    return (h * st.tensor(rng.standard_normal(width), dtype=dtype)).sum(), x


def transformer(dtype: type, depth: int = 12, seq: int = 4, d: int = 16, heads: int = 2) -> tuple[st.Tensor, st.Tensor]:
    """A pre-LN transformer stack (attention with softmax, layer_norm, gelu MLP, residuals), built from primitives."""
    rng = np.random.default_rng(1)

    def p(*shape: int, s: float = 0.3) -> st.Tensor:
        return st.tensor(rng.standard_normal(shape) * s / math.sqrt(shape[0]), dtype=dtype)

    x = st.tensor(rng.standard_normal((seq, d)), requires_grad=True, dtype=dtype)
    h = x
    dh = d // heads
    for _ in range(depth):
        a = st.layer_norm(h, st.tensor(np.ones(d), dtype=dtype), st.tensor(np.zeros(d), dtype=dtype))
        q = (a @ p(d, d)).reshape(seq, heads, dh).transpose(1, 0, 2)  # (nh, T, hs)
        k = (a @ p(d, d)).reshape(seq, heads, dh).transpose(1, 0, 2)
        v = (a @ p(d, d)).reshape(seq, heads, dh).transpose(1, 0, 2)
        att = st.softmax((q @ k.transpose(0, 2, 1)) * (1.0 / math.sqrt(dh)), axis=-1)  # (nh, T, T)
        y = (att @ v).transpose(1, 0, 2).reshape(seq, d)
        h = h + y @ p(d, d)
        m = st.layer_norm(h)
        h = h + st.gelu(m @ p(d, 2 * d)) @ p(2 * d, d)
    return (h[-1] * st.tensor(rng.standard_normal(d), dtype=dtype)).sum(), x


NETS: dict[str, Callable[[type], tuple[st.Tensor, st.Tensor]]] = {"mlp24": mlp, "transformer12": transformer}


@pytest.mark.parametrize("net", sorted(NETS))
def test_float32_agrees_with_float64(net: str) -> None:
    """MaxProduct, Log and Entropy of a deep float32 network are finite and within 1e-4 of float64."""
    out32, x32 = NETS[net](np.float32)
    out64, x64 = NETS[net](np.float64)
    for sr in (MaxProduct(log=True), MaxProduct(), Log(), Entropy(), Entropy(readout="log_mass")):
        v32 = st.grad(out32, x32, semiring=sr)
        v64 = st.grad(out64, x64, semiring=sr)
        assert np.isfinite(v32).all(), f"{net} {sr}: non-finite float32 values {v32}"
        np.testing.assert_allclose(v32, v64, rtol=RTOL, err_msg=f"{net} {sr}")
    best = st.grad(out32, x32, semiring=MaxProduct())
    assert (best > 0).all()
    if net == "mlp24":  # the point of log space: in linear float32 these paths underflow
        assert best.max() < np.finfo(np.float32).tiny


@pytest.mark.parametrize("net", sorted(NETS))
def test_kbest_float32_agrees_with_float64(net: str) -> None:
    """The k best path weights in float32 agree with float64; the best equals MaxProduct's."""
    out32, x32 = NETS[net](np.float32)
    out64, x64 = NETS[net](np.float64)
    v32 = st.grad(out32, x32, semiring=KBest(3, log=True))
    v64 = st.grad(out64, x64, semiring=KBest(3, log=True))
    assert np.isfinite(v32).all()
    np.testing.assert_allclose(v32, v64, rtol=RTOL)
    np.testing.assert_allclose(v32[..., 0], st.grad(out32, x32, semiring=MaxProduct(log=True)), rtol=1e-6)


def test_zero_edge_is_no_edge() -> None:
    """An edge of weight exactly 0 is no edge: not counted, never on a best path, 0·log 0 = 0 in the entropy."""
    x = st.tensor([1.0, 2.0], requires_grad=True)
    W = st.tensor([[0.0, 3.0], [2.0, 0.0]])  # x0 reaches only h1 (weight 3), x1 only h0 (weight 2)
    y = (x @ W) @ st.tensor([0.5, 4.0])
    assert st.grad(y, x, semiring=Count()).tolist() == [1.0, 1.0]
    np.testing.assert_allclose(st.grad(y, x, semiring=LogCount()), [0.0, 0.0])
    np.testing.assert_allclose(st.grad(y, x, semiring=MaxProduct()), [12.0, 1.0])
    np.testing.assert_allclose(st.grad(y, x, semiring=Log()), np.log([12.0, 1.0]), atol=1e-15)
    ent = st.grad(y, x, semiring=Entropy())
    assert np.isfinite(ent).all()
    np.testing.assert_allclose(ent, [0.0, 0.0], atol=1e-15)  # one path each: no uncertainty
    np.testing.assert_allclose(st.grad(y, x, semiring=KBest(2)), [[12.0, 0.0], [1.0, 0.0]])
    np.testing.assert_allclose(st.grad(y, x, semiring=SignedMax()), [[12.0, 12.0], [1.0, 1.0]])
    (p,) = st.top_paths(y, x, index=1)
    assert [s.weight for s in p.steps] == pytest.approx([2.0, 0.5], rel=1e-12)


def test_all_zero_edges_mean_no_path() -> None:
    """Where every edge is 0 nothing reaches the output: no path, and no NaN anywhere."""
    x = st.tensor([1.0, -1.0], requires_grad=True)
    y = (x * st.tensor([0.0, 2.0])).sum()
    assert st.grad(y, x, semiring=Real()).tolist() == [0.0, 2.0]
    assert st.grad(y, x, semiring=Count()).tolist() == [0.0, 1.0]
    assert st.grad(y, x, semiring=Log())[0] == -np.inf
    assert st.grad(y, x, semiring=MaxProduct()).tolist() == [0.0, 2.0]
    assert st.grad(y, x, semiring=Entropy()).tolist() == [0.0, 0.0]
    assert st.grad(y, x, semiring=Entropy(readout="log_mass"))[0] == -np.inf
    assert st.grad(y, x, semiring=SignedMax())[0].tolist() == [-np.inf, np.inf]
    (p,) = st.top_paths(y, x, index=0)
    assert not p.found and p.weight == 0 and p.steps == [] and str(p).startswith("no path")


def test_entropy_of_many_equal_paths_is_log_count() -> None:
    """n equal-weight paths have entropy log n; large fan-in in float32 stays exact to rounding."""
    n = 4096
    x = st.tensor(np.ones(1, dtype=np.float32), requires_grad=True)
    y = (st.broadcast_to(x, (n,)) * st.tensor(np.full(n, 1e-30, dtype=np.float32))).sum()
    np.testing.assert_allclose(st.grad(y, x, semiring=Entropy()), [math.log(n)], rtol=1e-6)
    np.testing.assert_allclose(st.grad(y, x, semiring=LogCount()), [math.log(n)], rtol=1e-12)
    np.testing.assert_allclose(st.grad(y, x, semiring=Log()), [math.log(n * 1e-30)], rtol=1e-6)


def test_sums_far_below_their_row_max_stay_exact() -> None:
    """Rescaled BLAS vecmats: where the row's dominant terms meet zero weights and the rest lie e^-100 below,
    float32 exp would underflow; those outputs are recomputed exactly (against float64 logsumexp)."""
    a = np.array([[0.0, -100.0, -101.0]], dtype=np.float32)
    W = np.array([[0.0, 1.0, 2.0], [1.0, 1.0, 1.0]], dtype=np.float32)
    want = np.logaddexp(-100.0, -101.0 + math.log(2.0))
    v, _ = Log().vecmat(a, None, W)
    np.testing.assert_allclose(v, [[want, 0.0]], rtol=1e-6, atol=1e-6)
    E = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)
    e, _ = Entropy().vecmat(np.stack([a, E], axis=-1), None, W)
    t = np.array([-100.0, -101.0 + math.log(2.0)])
    p = np.exp(t - want)
    ent = (p * (np.array([2.0, 3.0]) - np.log([1.0, 2.0]))).sum()
    np.testing.assert_allclose(e[0, 0], [want, ent], rtol=1e-5)  # float32: terms of size 100 cancel
    np.testing.assert_allclose(e[0, 1], [0.0, 1.0], atol=1e-6)
    c, _ = LogCount().vecmat(a.astype(np.float64) * 8, None, W.astype(np.float64))  # gaps of e^-800 in float64
    np.testing.assert_allclose(c, [[np.logaddexp(-800.0, -808.0), 0.0]], rtol=1e-12)
