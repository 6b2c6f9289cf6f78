"""The built-in semirings beyond Real: registry, the worked example of ARCHITECTURE.md §8, the backprop-method
contracts (values and backpointers against the plain algebra), readouts, bad input, and one forward for all.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as hs

import semitorch as st
from semitorch.semirings import (
    SEMIRINGS,
    Count,
    Entropy,
    KBest,
    Log,
    LogCount,
    MaxProduct,
    Real,
    Semiring,
    SignedMax,
)
from semitorch.semirings.base import Semiring as BaseSemiring

MINE = {
    "log": Log,
    "maxproduct": MaxProduct,
    "signedmax": SignedMax,
    "kbest": KBest,
    "entropy": Entropy,
    "count": Count,
    "logcount": LogCount,
}


def make(name: str) -> Semiring:
    """An instance of a registered semiring (KBest with k = 3)."""
    return KBest(3) if name == "kbest" else SEMIRINGS[name]()


def test_registry() -> None:
    """Each semiring is registered under its name; its docstring gives the algebra, lift, readout, a reference."""
    for name, cls in MINE.items():
        assert SEMIRINGS[name] is cls
        doc = cls.__doc__ or ""
        for needed in ("(⊕, ⊗, 0̄, 1̄)", "Lift", "Readout", "Reference"):
            assert needed in doc, f"{cls.__name__} docstring lacks {needed!r}"
        assert getattr(st.semirings, cls.__name__) is cls


# ---- ARCHITECTURE.md §8 ------------------------------------------------------------------------


def worked_example() -> tuple[st.Tensor, st.Tensor]:
    """y = x @ W1 @ W2: paths from x0 weigh 12 and −12, from x1 −4 and −15."""
    x = st.tensor([1.0, 2.0], requires_grad=True)
    W1 = st.tensor([[3.0, 4.0], [-1.0, 5.0]])
    W2 = st.tensor([4.0, -3.0])
    return x @ W1 @ W2, x


H_X1 = -(4 / 19 * math.log(4 / 19) + 15 / 19 * math.log(15 / 19))
EXPECTED: dict[str, Any] = {
    "real": [0.0, -19.0],
    "log": [math.log(24), math.log(19)],
    "maxproduct": [12.0, 15.0],
    "kbest": [[12.0, 12.0, 0.0], [15.0, 4.0, 0.0]],
    "entropy": [math.log(2), H_X1],
    "count": [2.0, 2.0],
    "logcount": [math.log(2), math.log(2)],
    "signedmax": [[12.0, -12.0], [-4.0, -15.0]],
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_worked_example(name: str) -> None:
    """ARCHITECTURE.md §8, the exact numbers, for every semiring."""
    y, x = worked_example()
    np.testing.assert_allclose(st.grad(y, x, semiring=make(name)), EXPECTED[name], rtol=1e-12, atol=1e-15)


def test_worked_example_readout_options() -> None:
    """log=True readouts, Entropy's log mass, and the best path of x1 through the second hidden unit."""
    y, x = worked_example()
    np.testing.assert_allclose(st.grad(y, x, semiring=MaxProduct(log=True)), np.log([12.0, 15.0]), rtol=1e-12)
    np.testing.assert_allclose(st.grad(y, x, semiring=KBest(2, log=True)), np.log([[12, 12], [15, 4]]), rtol=1e-12)
    np.testing.assert_allclose(st.grad(y, x, semiring=Entropy(readout="log_mass")), np.log([24, 19]), rtol=1e-12)
    res = st.backward(y, [x], Entropy())
    np.testing.assert_allclose(Entropy.log_mass(res.values[0]), np.log([24, 19]), rtol=1e-12)
    np.testing.assert_allclose(Entropy.entropy(res.values[0]), EXPECTED["entropy"], rtol=1e-12)
    (p,) = st.top_paths(y, x, index=1)
    assert p.steps[0].index == (1,) and [s.weight for s in p.steps] == pytest.approx([5.0, 3.0], rel=1e-12)


def test_max_is_not_the_gradient() -> None:
    """An engine taking the max only across ops (summing inside matmul) would return the gradient here."""
    y, x = worked_example()
    assert not np.allclose(st.grad(y, x, semiring=MaxProduct()), np.abs(st.grad(y, x)))


# ---- one forward, every semiring ---------------------------------------------------------------


def test_one_forward_answers_every_semiring() -> None:
    """The forward runs once and every node's structures are computed once, however many semirings ask."""
    calls = {"forward": 0, "structures": 0}

    def forward(x: st.Tensor) -> st.Tensor:
        calls["forward"] += 1
        rng = np.random.default_rng(0)
        h = st.tanh(x @ st.tensor(rng.standard_normal((3, 4))))
        h = st.layer_norm(st.softmax(h, axis=-1) * h)
        return (h @ st.tensor(rng.standard_normal(4))).sum()

    x = st.tensor(np.random.default_rng(1).standard_normal((2, 3)), requires_grad=True)
    y = forward(x)
    nodes = [t._node for t in st.tape.topological_order(y) if t._node is not None]
    for node in nodes:
        thunk = node._thunk

        def counted(thunk: Any = thunk) -> Any:
            calls["structures"] += 1
            return thunk()

        node._thunk = counted
    first = {}
    for name in sorted(SEMIRINGS):
        if name in MINE or name == "real":
            first[name] = st.grad(y, x, semiring=make(name))
    structs = [node.structures for node in nodes]
    for name, value in first.items():  # again: the same answers from the same structures
        np.testing.assert_array_equal(st.grad(y, x, semiring=make(name)), value)
    assert all(a is b for a, b in zip(structs, [node.structures for node in nodes], strict=True))
    assert calls == {"forward": 1, "structures": len(nodes)}


# ---- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [0, -2, 2.5, "3", True, None])
def test_kbest_needs_a_positive_int(k: Any) -> None:
    """KBest(0), a negative k or a non-int k is a ValueError naming k."""
    with pytest.raises(ValueError, match="KBest: k must be a positive int"):
        KBest(k)


def test_kbest_accepts_numpy_ints() -> None:
    """A numpy integer is an int."""
    assert KBest(np.int64(4)).vshape == (4,)


@pytest.mark.parametrize("bad", ["maxproduct", 3, np.zeros(2), object()])
def test_wrong_kind_of_semiring_is_a_type_error(bad: Any) -> None:
    """st.grad / st.backward with something that is not a Semiring: TypeError naming what was given."""
    y, x = worked_example()
    with pytest.raises(TypeError, match=f"semiring must be a semitorch Semiring instance.*{type(bad).__name__}"):
        st.grad(y, x, semiring=bad)
    with pytest.raises(TypeError, match="semiring must be a semitorch Semiring"):
        st.backward(y, [x], bad)


def test_semiring_class_is_instantiated() -> None:
    """A Semiring class (no-argument constructor) works like its instance."""
    y, x = worked_example()
    np.testing.assert_allclose(st.grad(y, x, semiring=MaxProduct), [12.0, 15.0])


def test_entropy_readout_must_be_known() -> None:
    """Entropy(readout=...) names the allowed readouts."""
    with pytest.raises(ValueError, match="'entropy' or 'log_mass'"):
        Entropy(readout="mass")


# ---- the backprop methods against the plain algebra --------------------------------------------


def _values(sr: Semiring, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Random values of ``sr`` reachable in a graph: ⊕ and ⊗ of lifted weights, with zeros (no path) and ones."""
    pool = [sr.lift(w) for w in (rng.standard_normal(shape) * 2 for _ in range(3))]
    pool.append(sr.lift(np.where(rng.random(shape) < 0.5, 0.0, rng.standard_normal(shape))))
    pool += [sr.zeros(np, shape, np.float64), sr.ones(np, shape, np.float64)]
    for _ in range(4):
        i, j = rng.integers(len(pool), size=2)
        pool.append((sr.plus if rng.random() < 0.5 else sr.times)(pool[i], pool[j]))
    pick = rng.integers(len(pool), size=shape)
    stacked = np.stack(np.broadcast_arrays(*pool))
    return np.take_along_axis(stacked, pick.reshape((1, *shape) + (1,) * len(sr.vshape)), axis=0)[0]


def _assert_same(sr: Semiring, got: np.ndarray, want: np.ndarray) -> None:
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def _check_src(sr: Semiring, val: np.ndarray, src: np.ndarray | None, cand: Any) -> None:
    """Every finite value entry's backpointer names a candidate entry giving exactly that value."""
    if not sr.selective:
        assert src is None
        return
    assert src is not None and src.shape == val.shape
    for pos in np.ndindex(val.shape):
        if not np.isfinite(val[pos]):
            continue
        assert cand(pos, int(src[pos])) == pytest.approx(float(val[pos]), rel=1e-12, abs=1e-300), (sr, pos)


def _entry_times(sr: Semiring, v: float, w: float) -> float:
    """One value entry ⊗ one real edge weight: the signed product, or log-magnitude plus log|w|."""
    if sr.name == "signedmax":
        return float(v * w)
    with np.errstate(divide="ignore"):
        return float(v + np.log(abs(w)))


@pytest.mark.parametrize("name", sorted(MINE))
@given(seed=hs.integers(0, 2**32 - 1), r=hs.integers(1, 3), j=hs.integers(0, 4), k=hs.integers(1, 3))
def test_vecmat_matches_the_algebra(name: str, seed: int, r: int, j: int, k: int) -> None:
    """vecmat = ⊕_j a ⊗ lift(W) (the generic definition); backpointers name the (j, rank) that won."""
    sr = make(name)
    rng = np.random.default_rng(seed)
    a = _values(sr, rng, (2, r, j))  # a batch of 2
    W = np.where(rng.random((k, j)) < 0.3, 0.0, rng.standard_normal((k, j)))
    src = np.arange(a.size).reshape(a.shape) if sr.selective else None
    val, vsrc = sr.vecmat(a, src, W)
    if j == 0:
        _assert_same(sr, val, sr.zeros(np, (2, r, k), np.float64))
        return
    _assert_same(sr, val, BaseSemiring.vecmat(sr, a, None, W)[0])

    def cand(pos: tuple[int, ...], s: int) -> float:  # pos = (batch, r, k[, rank]); s names (batch, r, j[, rank])
        idx = np.unravel_index(s, a.shape)
        assert idx[:2] == pos[:2]
        return _entry_times(sr, a[idx], W[pos[2], idx[2]])

    _check_src(sr, val, vsrc, cand)


@pytest.mark.parametrize("name", sorted(MINE))
@given(seed=hs.integers(0, 2**32 - 1), n=hs.integers(1, 7), size=hs.integers(1, 4))
def test_scatter_reduce_accumulate_edge_match_the_algebra(name: str, seed: int, n: int, size: int) -> None:
    """scatter / reduce / accumulate / edge against plus / sum / times, with backpointers to the winning entry."""
    sr = make(name)
    rng = np.random.default_rng(seed)
    a = _values(sr, rng, (n, 3))
    b = _values(sr, rng, (n, 3))
    src_a = np.arange(a.size).reshape(a.shape) if sr.selective else None
    src_b = src_a + a.size if src_a is not None else None
    both = np.concatenate([a.reshape(-1), b.reshape(-1)])

    val, vs = sr.accumulate(a, src_a, b, src_b)
    _assert_same(sr, val, sr.plus(a, b))
    _check_src(sr, val, vs, lambda pos, s: both[s])

    for axes in ((0,), (1,), (0, 1)):
        for keepdims in (False, True):
            val, vs = sr.reduce(a, src_a, axes, keepdims)
            _assert_same(sr, val, sr.sum(a, axes, keepdims))
            _check_src(sr, val, vs, lambda pos, s: a.reshape(-1)[s])

    rows = a.reshape((-1, *sr.vshape))
    index = rng.integers(0, size, len(rows))
    srows = None if src_a is None else src_a.reshape(rows.shape)
    val, vs = sr.scatter(rows, srows, index, size)
    want = sr.zeros(np, (size,), np.float64)
    for i, t in enumerate(index):
        want[t] = sr.plus(want[t], rows[i])
    _assert_same(sr, val, want)
    _check_src(sr, val, vs, lambda pos, s: a.reshape(-1)[s])

    w = np.where(rng.random((n, 3)) < 0.3, 0.0, rng.standard_normal((n, 3)))
    for weight in (w, w[0], -1.5, 0.0, None):
        val, vs = sr.edge(a, src_a, weight)
        lw = sr.lift(np.asarray(1.0 if weight is None else weight, dtype=np.float64))
        _assert_same(sr, val, sr.times(a, lw))

        def via(pos: tuple[int, ...], s: int, weight: Any = weight) -> float:
            assert np.unravel_index(s, a.shape)[:2] == pos[:2]
            wv = 1.0 if weight is None else float(np.broadcast_to(np.asarray(weight), (n, 3))[pos[:2]])
            return _entry_times(sr, a.reshape(-1)[s], wv)

        _check_src(sr, val, vs, via)


@pytest.mark.parametrize("name", sorted(MINE))
def test_seed_and_value_dtype(name: str) -> None:
    """Seeds are 1̄ or the lifted grad_output; counts are float64 even for float32 tensors."""
    sr = make(name)
    np.testing.assert_array_equal(sr.seed(np, (2,), np.float64, None), sr.ones(np, (2,), np.float64))
    g = np.array([2.0, 0.0])
    np.testing.assert_array_equal(sr.seed(np, (2,), np.float64, g), sr.lift(g))
    want = np.float64 if name in ("count", "logcount") else np.float32
    assert np.dtype(sr.value_dtype(np.dtype(np.float32))) == want


def test_float32_backward_keeps_float32_values() -> None:
    """Log-space semirings work in the tensor's dtype; counts in float64."""
    x = st.tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    y = (st.tanh(x) * 2.0).sum()
    for sr, dt in ((Log(), np.float32), (Entropy(), np.float32), (MaxProduct(log=True), np.float32)):
        assert st.backward(y, [x], sr).values[0].dtype == dt
    assert st.backward(y, [x], Count()).values[0].dtype == np.float64
    assert st.grad(y, x, semiring=MaxProduct()).dtype == np.float64  # the exp readout


def test_grad_output_seeds_edges_to_a_super_sink() -> None:
    """A non-scalar output with grad_output g: like the scalar Σ g·y (one more edge of weight g per element)."""
    x = st.tensor([1.0, -2.0], requires_grad=True)
    W = st.tensor([[1.0, 2.0, 0.5], [3.0, -1.0, 0.0]])
    g = np.array([1.0, -2.0, 4.0])
    for sr in (Log(), MaxProduct(), KBest(2), Entropy(), Count(), SignedMax(), Real()):
        y1 = x @ W
        y2 = (x @ W * st.tensor(g)).sum()
        np.testing.assert_allclose(st.grad(y1, x, semiring=sr, grad_output=g), st.grad(y2, x, semiring=sr))


def test_unconnected_input_has_no_path() -> None:
    """An input the output does not depend on reads as 0̄ in every semiring."""
    x = st.tensor([1.0, 2.0], requires_grad=True)
    z = st.tensor([3.0], requires_grad=True)
    y = (x * 2.0).sum()
    for name in MINE:
        sr = make(name)
        (v,) = st.backward(y, [z], sr).values
        np.testing.assert_array_equal(v, sr.zeros(np, (1,), v.dtype))
