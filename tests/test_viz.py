"""Gradient-graph pictures: edges equal torch's Jacobians; the highlighted path is top_paths' path."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
import torch

import semitorch as st
from semitorch.semirings import MaxProduct, Real
from semitorch.viz import draw_graph, element_graph


def _small() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    return rng.standard_normal(3), 0.3 * rng.standard_normal((3, 4)), rng.standard_normal(4)


def test_edges_are_the_jacobian_entries_of_each_op() -> None:
    """Every edge weight is an entry of the op's Jacobian computed by torch.func.jacrev."""
    x0, W0, v0 = _small()
    x = st.tensor(x0, requires_grad=True)
    h = st.tanh(x @ st.tensor(W0))
    s = st.softmax(h)
    y = (s * st.tensor(v0)).sum()
    g = element_graph(y)
    tx = torch.tensor(x0)
    th = torch.tanh(tx @ torch.tensor(W0))
    jac = {
        "matmul": torch.func.jacrev(lambda a: a @ torch.tensor(W0))(tx),
        "tanh": torch.func.jacrev(torch.tanh)(tx @ torch.tensor(W0)),
        "softmax": torch.func.jacrev(lambda a: torch.softmax(a, -1))(th),
    }
    seen = {e[3] for e in g.edges}
    assert {"matmul", "tanh", "softmax", "mul", "sum"} <= seen
    for (_, ia), (_, ib), w, op in g.edges:
        if op in jac:
            assert np.isclose(w, jac[op][ib, ia].item(), rtol=1e-12, atol=0), (op, ia, ib)
    # every nonzero Jacobian entry is an edge (tanh: diagonal only; softmax: dense)
    n_soft = sum(1 for e in g.edges if e[3] == "softmax")
    assert n_soft == int((jac["softmax"] != 0).sum())
    n_tanh = sum(1 for e in g.edges if e[3] == "tanh")
    assert n_tanh == int((jac["tanh"] != 0).sum()) == 4


def test_highlighted_path_is_top_paths() -> None:
    """The red edges of the DOT output are exactly the steps of st.top_paths' best path."""
    x0, W0, v0 = _small()
    x = st.tensor(x0, requires_grad=True)
    y = (st.gelu(x @ st.tensor(W0)) * st.tensor(v0)).sum()
    d = draw_graph(y, semiring=MaxProduct(), inputs=[x])
    red = re.findall(r"(n\d+_\d+) -> (n\d+_\d+) \[[^\]]*color=red", d.dot)
    assert red == d.highlighted and len(red) == 4  # matmul, gelu, mul, sum
    best = st.top_paths(y, x, k=1)[0]
    g = element_graph(y)
    idx = {id(t): i for i, t in enumerate(g.tensors)}
    want = []
    cur = f"n{idx[id(x)]}_{best.start}"
    for s in best.steps:
        nxt = f"n{idx[s.tensor_id]}_{s.flat_index}"
        want.append((cur, nxt))
        cur = nxt
    assert red == want


def test_node_labels_show_semiring_values() -> None:
    """With a semiring, each node shows its backward value (here: the gradient)."""
    x = st.tensor([1.0, 2.0], requires_grad=True)
    y = x @ st.tensor([[3.0, 4.0], [-1.0, 5.0]]) @ st.tensor([4.0, -3.0])
    d = draw_graph(y, semiring=Real(), highlight=None)
    assert 'label="2\\n[-19]"' in d.dot and 'label="1\\n[0]"' in d.dot


def test_too_large_graph_is_refused_with_a_hint() -> None:
    """A graph with more scalars than max_nodes raises a ValueError that says what to do."""
    x = st.tensor(np.ones((20, 20)), requires_grad=True)
    with pytest.raises(ValueError, match=r"401 scalar nodes.*max_nodes=200.*smaller computation"):
        draw_graph(x.sum())


def test_render_dot_and_svg(tmp_path) -> None:  # noqa: ANN001
    """render() writes the file atomically; a missing directory is a clear error."""
    x = st.tensor([1.0, 2.0], requires_grad=True)
    d = draw_graph((x * x).sum(), highlight=None)
    p = d.render(str(tmp_path / "g.dot"))
    assert open(p).read() == d.dot
    assert not [f for f in tmp_path.iterdir() if f.name.startswith(".tmp-")]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        d.render(str(tmp_path / "nope" / "g.svg"))
    if shutil.which("dot"):
        svg = d.render(str(tmp_path / "g.svg"))
        assert open(svg).read().lstrip().startswith(("<?xml", "<svg"))
