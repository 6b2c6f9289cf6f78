"""The engine as a whole: tensors, the tape, seeding and .grad, no_grad, re-running a kept tape, deep chains,
whole models (MLP, attention block) against torch, the ARCHITECTURE.md §8 example, and memory over many rounds.
"""

from __future__ import annotations

import gc
import math
import sys
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812

import semitorch as st


def assert_close(actual: Any, expected: Any, rtol: float = 1e-10, what: str = "") -> None:
    """Elementwise ``rtol`` plus an absolute slack of ``rtol`` × max(1, largest magnitude) (rounding noise)."""
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = max(np.abs(expected).max(initial=0.0), np.abs(actual).max(initial=0.0), 1.0)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, err_msg=what)


# ---- tensors ----------------------------------------------------------------------------------


def test_tensor_dtype_defaults_follow_numpy() -> None:
    """Python floats give float64, ints int64, bools bool; explicit dtype and numpy arrays are kept."""
    for data in ([1.0, 2.0], [1, 2], [True, False], 3.5, 7, np.float32([1, 2]), np.arange(3, dtype=np.int32)):
        assert st.tensor(data).dtype == np.asarray(data).dtype, data
    assert st.tensor([1, 2], dtype=np.float32).dtype == np.float32
    assert st.tensor(np.ones(2, np.float32), requires_grad=True).dtype == np.float32


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (np.ones(2, np.float32), np.ones(2, np.float64)),
        (np.ones(2, np.float32), 2.5),
        (np.ones(2, np.float32), 2),
        (np.ones(2, np.int64), np.ones(2, np.float32)),
        (np.ones(2, np.int64), 2.5),
        (np.ones(2, np.int32), np.ones(2, np.int64)),
        (np.ones((), np.float64), np.ones(2, np.float32)),
    ],
)
def test_dtype_promotion_follows_numpy(a: Any, b: Any) -> None:
    """Binary ops promote dtypes exactly as numpy does (NEP 50: Python scalars are weak)."""
    ta = st.tensor(a)
    tb = st.tensor(b) if isinstance(b, np.ndarray) else b
    for f in (lambda x, y: x + y, lambda x, y: x * y, lambda x, y: y - x):
        r = f(ta, tb)
        expected = f(a, b)
        assert r.dtype == expected.dtype, (a.dtype, type(b), r.dtype, expected.dtype)
        np.testing.assert_array_equal(r.numpy(), expected)


def test_tensor_accessors() -> None:
    """.numpy(), .item(), .tolist(), .detach(), .shape/.ndim/.dtype/.size, comparisons."""
    a = np.arange(6.0).reshape(2, 3)
    t = st.tensor(a, requires_grad=True)
    assert t.shape == (2, 3) and t.ndim == 2 and t.dtype == np.float64 and t.size == 6 and len(t) == 2
    assert isinstance(t.numpy(), np.ndarray)
    np.testing.assert_array_equal(t.numpy(), a)
    assert t.tolist() == a.tolist()
    assert st.tensor([[4.5]]).item() == 4.5 and isinstance(st.tensor([[4.5]]).item(), float)
    assert isinstance(st.tensor(3).item(), int)
    y = t * 2.0
    d = y.detach()
    assert not d.requires_grad and d.is_leaf and d._node is None
    assert np.shares_memory(d.data, y.data)
    assert y.requires_grad and not y.is_leaf and y._node is not None and y._node.op == "mul"
    c = t > 2.0
    assert c.dtype == bool and not c.requires_grad
    np.testing.assert_array_equal(c.numpy(), a > 2.0)
    assert t.device == "cpu"


# ---- backward, seeding, .grad -----------------------------------------------------------------


def test_backward_seeds_and_accumulates_grad() -> None:
    """Tensor.backward(seed) fills leaves' .grad; a second backward adds to it; st.grad leaves .grad alone."""
    x = st.tensor([1.0, 2.0, 3.0], requires_grad=True)
    w = st.tensor(np.float32([0.5, -1.0, 2.0]), requires_grad=True)
    const = st.tensor([1.0, 1.0, 1.0])
    y = x * x + const  # non-scalar
    seed = np.array([1.0, 10.0, 100.0])
    y.backward(seed)
    np.testing.assert_array_equal(x.grad, 2 * x.numpy() * seed)
    assert const.grad is None
    (x * 3.0).sum().backward()
    np.testing.assert_array_equal(x.grad, 2 * x.numpy() * seed + 3.0)
    before = x.grad.copy()
    st.grad((x * x).sum(), x)
    np.testing.assert_array_equal(x.grad, before)
    (w * w).sum().backward()
    assert w.grad.dtype == np.float32
    np.testing.assert_array_equal(w.grad, 2 * w.numpy())


@pytest.mark.parametrize("call", ["backward", "grad"])
def test_non_scalar_output_without_seed_raises(call: str) -> None:
    """A non-scalar output needs grad_output; the error names the shape."""
    x = st.tensor(np.ones((2, 3)), requires_grad=True)
    y = x * 2.0
    with pytest.raises(RuntimeError, match=r"output has shape \(2, 3\); a non-scalar output needs grad_output"):
        y.backward() if call == "backward" else st.grad(y, x)


def test_single_element_output_needs_no_seed() -> None:
    """A one-element output of any rank is seeded with 1."""
    x = st.tensor(np.array([[2.0]]), requires_grad=True)
    np.testing.assert_array_equal(st.grad(x * x, x), [[4.0]])


def test_no_grad_records_nothing() -> None:
    """Inside st.no_grad() ops record no node and results do not require grad; enable_grad re-enables."""
    x = st.tensor([1.0, 2.0], requires_grad=True)
    with st.no_grad():
        assert not st.is_grad_enabled()
        y = st.tanh(x * 2.0).sum()
        with st.enable_grad():
            z = x * 2.0
    assert st.is_grad_enabled()
    assert not y.requires_grad and y._node is None
    assert z.requires_grad and z._node is not None
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()


def test_unconnected_input_gets_zero() -> None:
    """An input with no path to the output gets 0 (the real semiring's 0̄)."""
    x = st.tensor([1.0, 2.0], requires_grad=True)
    u = st.tensor([5.0], requires_grad=True)
    out = (x * x).sum()
    gx, gu = st.grad(out, [x, u])
    np.testing.assert_array_equal(gx, [2.0, 4.0])
    np.testing.assert_array_equal(gu, [0.0])


def test_tape_is_kept_after_backward(make_semiring: Callable[[str], st.Semiring]) -> None:
    """One forward, many backward passes: the same result each time, under a second Real object, and after
    passes of every other registered semiring (each of which also repeats itself exactly)."""
    rng = np.random.default_rng(1)
    x = st.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    w = st.tensor(rng.standard_normal((4, 2)), requires_grad=True)
    out = st.softmax(st.tanh(x @ w), axis=-1).sum()
    g1 = st.grad(out, [x, w])
    g2 = st.grad(out, [x, w])
    g3 = st.grad(out, [x, w], semiring=st.Real())
    out.backward()
    for a, b, c, leaf in zip(g1, g2, g3, (x, w), strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(a, leaf.grad)
    for name in sorted(st.semirings.SEMIRINGS):
        sr = make_semiring(name)
        r1 = st.grad(out, [x, w], semiring=sr)
        r2 = st.grad(out, [x, w], semiring=make_semiring(name))
        for a, b in zip(r1, r2, strict=True):
            np.testing.assert_array_equal(a, b, err_msg=name)
    for a, b in zip(g1, st.grad(out, [x, w]), strict=True):
        np.testing.assert_array_equal(a, b)


def test_semiring_class_and_instance_are_accepted() -> None:
    """semiring=Real (the class) works like semiring=Real()."""
    x = st.tensor([1.0, 2.0], requires_grad=True)
    out = (x * x).sum()
    np.testing.assert_array_equal(st.grad(out, x, semiring=st.Real), st.grad(out, x, semiring=st.Real()))


def test_ten_thousand_op_chain_backprops_without_recursion() -> None:
    """A 10,000-op chain (well past the recursion limit) backprops; d/dx of (x·c + ½)∘5000 is c^5000."""
    assert sys.getrecursionlimit() < 10_000
    c = 1.0001
    x = st.tensor(0.3, requires_grad=True)
    y = x
    for _ in range(5000):
        y = y * c
        y = y + 0.5
    g = st.grad(y, x)
    assert_close(g, c**5000, what="chain gradient")
    y.backward()
    assert_close(x.grad, c**5000, what="chain .grad")
    del y
    gc.collect()


# ---- whole models vs torch ------------------------------------------------------------------


def _mlp_params(rng: np.random.Generator) -> list[np.ndarray]:
    """W1, b1, W2, b2, W3, b3 of a 6 → 8 → 8 → 3 MLP."""
    sizes = [(6, 8), (8, 8), (8, 3)]
    out = []
    for i, o in sizes:
        out += [rng.standard_normal((i, o)) / math.sqrt(i), rng.standard_normal(o) * 0.1]
    return out


def _mlp(lib: Any, x: Any, p: list[Any], y: Any) -> tuple[Any, list[Any]]:
    """tanh → relu → linear → cross_entropy; returns the loss and the hidden activations."""
    h1 = lib.tanh(x @ p[0] + p[1])
    h2 = lib.relu(h1 @ p[2] + p[3])
    logits = h2 @ p[4] + p[5]
    ce = st.cross_entropy if lib is st else F.cross_entropy
    return ce(logits, y), [h1, h2, logits]


def test_mlp_gradients_match_torch() -> None:
    """A 3-layer MLP with cross-entropy: loss and every parameter's gradient equal torch's (float64)."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 6))
    y = np.array([0, 2, 1, 2])
    ps = _mlp_params(rng)
    sp = [st.tensor(p, requires_grad=True) for p in ps]
    tp = [torch.tensor(p, requires_grad=True) for p in ps]
    loss, _ = _mlp(st, st.tensor(x), sp, y)
    ref, _ = _mlp(torch, torch.tensor(x), tp, torch.tensor(y))
    assert_close(loss.item(), ref.item(), what="loss")
    for i, (g, r) in enumerate(zip(st.grad(loss, sp), torch.autograd.grad(ref, tp), strict=True)):
        assert_close(g, r.numpy(), what=f"parameter {i}")


def test_gradient_wrt_intermediate_tensors_matches_retain_grad() -> None:
    """Inputs may be hidden activations: st.grad w.r.t. them equals torch's retain_grad()."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 6))
    y = np.array([1, 1, 0, 2])
    ps = _mlp_params(rng)
    sp = [st.tensor(p, requires_grad=True) for p in ps]
    tp = [torch.tensor(p, requires_grad=True) for p in ps]
    loss, hidden = _mlp(st, st.tensor(x), sp, y)
    ref, thidden = _mlp(torch, torch.tensor(x), tp, torch.tensor(y))
    for h in thidden:
        h.retain_grad()
    ref.backward()
    grads = st.grad(loss, [*hidden, sp[0]])
    for i, (g, h) in enumerate(zip(grads, [*thidden, tp[0]], strict=True)):
        assert_close(g, h.grad.numpy(), what=f"tensor {i}")


def _attention(lib: Any, x: Any, p: dict[str, Any], mask: Any, heads: int) -> Any:
    """One post-LN self-attention block: q/k/v projections, masked softmax over scaled scores, residual, LN."""
    B, S, D = x.shape
    hd = D // heads

    def split(t: Any) -> Any:  # (B, S, D) -> (B, H, S, hd)
        return t.reshape(B, S, heads, hd).permute(0, 2, 1, 3)

    q, k, v = (split(x @ p[f"W{n}"] + p[f"b{n}"]) for n in "qkv")
    scores = q @ k.swapaxes(-1, -2) / math.sqrt(hd)  # (B, H, S, S)
    scores = scores.masked_fill(mask, -1e9)
    probs = lib.softmax(scores, -1) if lib is st else torch.softmax(scores, -1)
    ctx = (probs @ v).permute(0, 2, 1, 3).reshape(B, S, D)
    h = x + ctx @ p["Wo"] + p["bo"]
    if lib is st:
        return st.layer_norm(h, p["ln_w"], p["ln_b"])
    return F.layer_norm(h, (D,), p["ln_w"], p["ln_b"])


def test_attention_block_gradients_match_torch() -> None:
    """Batch 2, sequence 5, 2 heads, padding mask: output and every parameter's (and x's) gradient equal torch's."""
    rng = np.random.default_rng(4)
    B, S, D = 2, 5, 8
    names = ["Wq", "Wk", "Wv", "Wo", "bq", "bk", "bv", "bo", "ln_w", "ln_b"]
    ps = {
        n: rng.standard_normal((D, D) if n.startswith("W") else (D,)) / (math.sqrt(D) if n[0] == "W" else 1)
        for n in names
    }
    x = rng.standard_normal((B, S, D))
    mask = np.zeros((B, 1, 1, S), dtype=bool)
    mask[1, ..., 3:] = True  # the second sequence has two padding positions
    sp = {n: st.tensor(v, requires_grad=True) for n, v in ps.items()}
    tp = {n: torch.tensor(v, requires_grad=True) for n, v in ps.items()}
    sx, tx = st.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    out = _attention(st, sx, sp, mask, heads=2)
    ref = _attention(torch, tx, tp, torch.tensor(mask), heads=2)
    assert_close(out.numpy(), ref.detach().numpy(), what="forward")
    seed = rng.standard_normal(out.shape)
    grads = st.grad(out, [sx, *sp.values()], grad_output=seed)
    refs = torch.autograd.grad(ref, [tx, *tp.values()], torch.tensor(seed))
    for name, g, r in zip(["x", *names], grads, refs, strict=True):
        assert_close(g, r.numpy(), what=name)


def test_worked_example_architecture_section_8() -> None:
    """y = x @ W1 @ W2 with W1 = [[3, 4], [-1, 5]], W2 = [4, -3]: the real gradient is [0, −19]."""
    x = st.tensor([1.0, 2.0], requires_grad=True)
    W1 = st.tensor([[3.0, 4.0], [-1.0, 5.0]])
    W2 = st.tensor([4.0, -3.0])
    y = x @ W1 @ W2
    np.testing.assert_array_equal(st.grad(y, x), [0.0, -19.0])
    res = st.backward(y, [x])
    np.testing.assert_array_equal(res.values[0], [0.0, -19.0])
    y.backward()
    np.testing.assert_array_equal(x.grad, [0.0, -19.0])


# ---- memory ---------------------------------------------------------------------------------


def _live_engine_objects() -> int:
    """Tensors and Nodes (subclasses included) alive after a full collection."""
    gc.collect()
    return sum(1 for o in gc.get_objects() if issubclass(type(o), (st.Tensor, st.Node)))


def _rounds(n: int, keep: list[Any] | None) -> list[tuple[int, int]]:
    """Run ``n`` MLP forward+backward rounds; measure (traced bytes, live Tensors+Nodes) after rounds 20 and n."""
    rng = np.random.default_rng(5)
    x = st.tensor(rng.standard_normal((4, 6)))
    y = np.array([0, 1, 2, 0])
    sp = [st.tensor(p, requires_grad=True) for p in _mlp_params(rng)]
    marks = []
    for i in range(1, n + 1):
        loss, _ = _mlp(st, x, sp, y)
        st.grad(loss, sp)
        loss.backward()
        for p in sp:
            p.grad = None
        if keep is not None:
            keep.append(loss)
        del loss
        if i in (20, n):
            count = _live_engine_objects()
            marks.append((tracemalloc.get_traced_memory()[0], count))
    return marks


def test_memory_does_not_grow_over_rounds() -> None:
    """200 forward+backward rounds of the MLP: traced memory and live Tensor/Node counts stay flat after
    round 20 (a small constant slack for allocator caches); retaining each round's loss is detected."""
    slack = 64 * 1024
    tracemalloc.start()
    try:
        (m20, c20), (m200, c200) = _rounds(200, None)
        kept: list[Any] = []
        (k20, kc20), (k60, kc60) = _rounds(60, kept)
    finally:
        tracemalloc.stop()
    assert m200 - m20 < slack, f"traced memory grew by {m200 - m20} bytes between rounds 20 and 200"
    assert c200 == c20, f"live Tensors+Nodes grew from {c20} to {c200}"
    # the measurement is not blind: keeping every loss (and so its whole tape) shows up in both numbers
    assert k60 - k20 > slack and kc60 > kc20
