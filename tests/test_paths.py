"""st.top_paths / st.read_path: paths read back from backpointers, their printing, and the errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

import semitorch as st
from semitorch.semirings import Entropy, KBest, MaxProduct, SignedMax


def worked_example() -> tuple[st.Tensor, st.Tensor]:
    """ARCHITECTURE.md §8: y = x @ W1 @ W2 with modules 'layer1' and 'layer2'."""
    x = st.tensor([1.0, 2.0], requires_grad=True)
    x.name = "x"
    with st.module_scope("layer1"):
        h = x @ st.tensor([[3.0, 4.0], [-1.0, 5.0]])
    with st.module_scope("layer2"):
        y = h @ st.tensor([4.0, -3.0])
    return y, x


def test_best_path_of_the_worked_example() -> None:
    """The best path overall starts at x1, goes through the second hidden unit, and weighs 5·3 = 15."""
    y, x = worked_example()
    (p,) = st.top_paths(y, x)
    assert p.found and p.start == 1 and p.index == (1,) and p.weight == pytest.approx(15.0, rel=1e-12)
    assert [(s.op, s.module, s.slot, s.shape, s.index) for s in p.steps] == [
        ("matmul", "layer1", 0, (2,), (1,)),
        ("matmul", "layer2", 0, (), ()),
    ]
    assert [s.weight for s in p.steps] == pytest.approx([5.0, 3.0], rel=1e-12)
    text = str(p)
    assert text == p.table()
    assert text.splitlines()[0] == "path from x[1] (shape (2,)) to the output: weight 15 (2 steps)"
    assert "layer1" in text and "layer2" in text and "running product" in text


def test_k_best_over_all_elements_and_from_one() -> None:
    """k = 3 over all elements: 15, then the two paths of weight 12 from x0; k larger than the paths: all of them."""
    y, x = worked_example()
    paths = st.top_paths(y, x, k=3)
    assert [p.weight for p in paths] == pytest.approx([15.0, 12.0, 12.0], rel=1e-12)
    assert [p.start for p in paths] == [1, 0, 0]
    assert {paths[1].steps[0].index, paths[2].steps[0].index} == {(0,), (1,)}  # distinct paths
    every = st.top_paths(y, x, k=10)
    assert sorted(p.weight for p in every) == pytest.approx([4.0, 12.0, 12.0, 15.0], rel=1e-12)
    from_x1 = st.top_paths(y, x, k=5, index=(1,))
    assert [p.weight for p in from_x1] == pytest.approx([15.0, 4.0], rel=1e-12)
    assert [p.rank for p in from_x1] == [0, 1]
    assert st.top_paths(y, x, index=-1)[0].weight == pytest.approx(15.0)  # negative flat index


def test_signed_paths_through_read_path() -> None:
    """SignedMax keeps a path per component: the most positive and the most negative product."""
    y, x = worked_example()
    res = st.backward(y, [x], SignedMax(), keep=True)
    most_pos, most_neg = (st.read_path(res, x, 2 * 1 + c) for c in (0, 1))  # from x1
    assert most_pos.weight == pytest.approx(-4.0) and [s.weight for s in most_pos.steps] == pytest.approx([-1.0, 4.0])
    assert most_neg.weight == pytest.approx(-15.0) and [s.weight for s in most_neg.steps] == pytest.approx([5.0, -3.0])
    assert most_neg.rank == 1


def _deep_net() -> tuple[st.Tensor, st.Tensor]:
    rng = np.random.default_rng(3)
    x = st.tensor(rng.standard_normal((2, 5)), requires_grad=True)
    h = x
    for i in range(4):
        with st.module_scope(f"block.{i}"):
            h = st.layer_norm(st.gelu(h @ st.tensor(rng.standard_normal((5, 5)))))
            h = h + st.softmax(h, axis=0) * h
    return st.logsumexp(h[:, 1:3]), x


def test_paths_are_chains_of_the_tape_and_match_max_product() -> None:
    """Each element's path: a chain of real tape edges (step i's op consumed step i−1's tensor, in its slot),
    ending at the output, with weight equal to MaxProduct's readout and to the product of its steps."""
    y, x = _deep_net()
    best = st.grad(y, x, semiring=MaxProduct())
    res = st.backward(y, [x], MaxProduct(), keep=True)
    tensors = {id(t): t for t in st.tape.topological_order(y)}
    for e in range(x.size):
        p = st.read_path(res, x, e)
        assert p.weight == pytest.approx(float(best.reshape(-1)[e]), rel=1e-12)
        assert math.prod(s.weight for s in p.steps) == pytest.approx(p.weight, rel=1e-9)
        prev = x
        for s in p.steps:
            assert s.node is not None and s.node.inputs[s.slot] is prev
            assert s.shape == s.node.shape
            assert s.module.startswith("block.") or s.op in ("getitem", "logsumexp")
            prev = tensors[s.tensor_id]
        assert prev is y


def test_k_best_paths_agree_with_the_kbest_values() -> None:
    """The k paths from an element weigh exactly the KBest readout, in order; the first is MaxProduct's."""
    y, x = _deep_net()
    vals = st.grad(y, x, semiring=KBest(4))
    for e in (0, 7):
        paths = st.top_paths(y, x, k=4, index=e)
        assert [p.weight for p in paths] == pytest.approx(list(vals.reshape(-1, 4)[e]), rel=1e-12)
        assert len({tuple((s.tensor_id, s.slot, s.flat_index) for s in p.steps) for p in paths}) == 4
        (best,) = st.top_paths(y, x, index=e)
        assert best.weight == pytest.approx(paths[0].weight, rel=1e-12)


def test_no_path_is_a_result_not_an_error() -> None:
    """An element, or a whole input, without a path to the output gives a printable 'no path'."""
    x = st.tensor([1.0, 2.0, 3.0], requires_grad=True)
    z = st.tensor([1.0], requires_grad=True)
    y = (x * st.tensor([2.0, 0.0, 1.0])).sum()
    (p,) = st.top_paths(y, x, index=1)
    assert not p.found and p.weight == 0.0 and p.steps == [] and len(p) == 0
    assert str(p) == "no path from input[1] (shape (3,)) to the output"
    (q,) = st.top_paths(y, z)  # z is not used at all
    assert not q.found and str(q).startswith("no path")
    res = st.backward(y, [x, z], MaxProduct(), keep=True)
    assert not st.read_path(res, z, 0).found


def test_top_paths_before_any_forward_is_a_clear_error() -> None:
    """A leaf that does not require grad, or an output that is not on a tape, names the problem."""
    x = st.tensor([1.0, 2.0])
    y = (x * 2.0).sum()
    with pytest.raises(RuntimeError, match="top_paths: the input .* does not require grad"):
        st.top_paths(y, x)
    x = st.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="top_paths: the output .* is not on a tape"):
        st.top_paths(st.tensor(3.0), x)
    with st.no_grad():
        y = (x * 2.0).sum()
    with pytest.raises(RuntimeError, match="not on a tape"):
        st.top_paths(y, x)


def test_top_paths_bad_arguments() -> None:
    """Non-scalar output, k, index and argument types are checked with messages naming them."""
    y, x = worked_example()
    with pytest.raises(ValueError, match=r"output must be a scalar .* shape \(2,\)"):
        st.top_paths(x * 2.0, x)
    for k in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="k must be a positive int"):
            st.top_paths(y, x, k=k)
    with pytest.raises(IndexError, match=r"index 2 is out of range for an input of shape \(2,\)"):
        st.top_paths(y, x, index=2)
    with pytest.raises(IndexError, match=r"index \(0, 0\) is invalid for an input of shape \(2,\)"):
        st.top_paths(y, x, index=(0, 0))
    with pytest.raises(TypeError, match="index must be an int"):
        st.top_paths(y, x, index="0")
    with pytest.raises(TypeError, match="must be Tensors"):
        st.top_paths(y, np.array([1.0, 2.0]))


def test_read_path_needs_a_kept_selective_pass() -> None:
    """read_path on a non-selective result, or for a tensor that was not an input of the pass, is an error."""
    y, x = worked_example()
    with pytest.raises(TypeError, match="keeps no backpointers"):
        st.read_path(st.backward(y, [x], Entropy(), keep=True), x, 0)
    w = st.tensor([3.0, 4.0], requires_grad=True)
    h = x * w
    res = st.backward(h.sum(), [x], MaxProduct(), keep=True)
    with pytest.raises(ValueError, match=r"no values kept for the tensor of shape \(2,\)"):
        st.read_path(res, w, 0)  # w feeds the output but was not an input of the pass
    assert st.read_path(res, h, 1).weight == pytest.approx(1.0)  # intermediate tensors are kept too
    with pytest.raises(IndexError, match="entry 5 is out of range"):
        st.read_path(res, x, 5)
