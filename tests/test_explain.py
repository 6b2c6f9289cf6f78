"""The explain API against brute force on tiny BERTs.

The reference graph is the element-level graph read from the ops' structures
(``semitorch.viz.element_graph``; its edges are checked against torch Jacobians in
test_viz.py and tests/test_bruteforce.py). On a 1-layer BERT every path is enumerated
explicitly; on a 2-layer BERT (2·10⁸ paths) the best path is found by an independent
dynamic program over the dense edge list.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from semitorch.explain import (
    ClassLogit,
    ComponentShares,
    Custom,
    Forward,
    LogitDiff,
    PathEntropy,
    TopPaths,
    block_inputs,
    entropy_per_token,
    routes_of,
    top_paths_per_token,
)
from semitorch.nn import BertConfig, BertForMaskedLM, BertModel, manual_seed
from semitorch.viz import element_graph


def tiny_bert(layers: int, seed: int = 0) -> BertModel:
    """A float64 BERT with hidden 3, one head, intermediate 1 (few enough paths to enumerate)."""
    manual_seed(seed)
    cfg = BertConfig(
        vocab_size=7, hidden_size=3, num_hidden_layers=layers, num_attention_heads=1, intermediate_size=1,
        max_position_embeddings=4, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    return BertModel(cfg, add_pooling_layer=False).astype(np.float64)


def target(T: int) -> Custom:
    """A scalar: the first unit of the last token's final hidden state."""
    return Custom(lambda o: o.last_hidden_state[0, T - 1, 0], "h[-1, 0]")


def graph_of(fw: Forward) -> tuple:
    """Element graph restricted to the input leaf's descendants, with adjacency lists."""
    g = element_graph(fw.quantity, max_nodes=10**6, inputs=[fw.leaf])
    idx = {id(t): i for i, t in enumerate(g.tensors)}
    out = defaultdict(list)
    for k, (a, b, w, _op) in enumerate(g.edges):
        out[a].append((b, w, k))
    return g, idx, out


def enumerate_paths(g, idx, out, fw: Forward) -> dict[int, list[tuple[float, list[int]]]]:  # noqa: ANN001
    """token -> [(|product|, edge ids)] over every path from any of its embedding dimensions."""
    sink = (idx[id(fw.quantity)], 0)
    leaf = idx[id(fw.leaf)]
    C = fw.leaf.shape[-1]
    res: dict[int, list[tuple[float, list[int]]]] = defaultdict(list)

    def walk(node, prod, edges, tok):  # noqa: ANN001, ANN202
        if node == sink:
            res[tok].append((abs(prod), list(edges)))
            return
        for b, w, k in out.get(node, ()):
            edges.append(k)
            walk(b, prod * w, edges, tok)
            edges.pop()

    for e in range(fw.leaf.size):
        walk((leaf, e), 1.0, [], e // C)
    return res


def classify(module: str, op: str) -> str | None:
    """The component named by the module of the edge leaving an attention block's input."""
    for c in ("key", "query", "value"):
        if module.endswith(f"attention.self.{c}"):
            return c
    return "skip" if module.endswith("attention.output") and op == "add" else None


def route_of(g, fw: Forward, edges: list[int], n_layers: int) -> dict[int, str]:  # noqa: ANN001
    """layer -> component, for the path given by its edge ids."""
    att, _ = block_inputs(fw.quantity, n_layers)
    where = {g.tensors.index(t): layer for layer, t in enumerate(att) if t is not None}
    out = {}
    for k in edges:
        (ta, _), _, _, op = g.edges[k]
        if ta in where:
            out[where[ta]] = classify(g.edge_modules[k], op)
    return out


def test_one_layer_every_path_enumerated() -> None:
    """Best path weights, the paths themselves, components and entropies equal explicit enumeration."""
    model = tiny_bert(1)
    ids = np.array([1, 4, 2])
    tgt = target(3)
    fw = Forward.run(model, ids, tgt)
    g, idx, out = graph_of(fw)
    paths = enumerate_paths(g, idx, out, fw)
    assert 1000 < sum(len(v) for v in paths.values()) < 200_000

    tp = top_paths_per_token(fw)  # on the same forward, so tensors can be matched
    routes = routes_of(fw, 1, 3, tp)
    ent = entropy_per_token(fw)
    # the Captum-style classes run their own forward and must agree
    assert np.allclose(TopPaths(model).attribute(ids, tgt).weights, tp.weights, rtol=1e-12)
    assert np.allclose(PathEntropy(model).attribute(ids, tgt).entropy, ent.entropy, rtol=1e-12)
    assert ComponentShares(model).attribute(ids, tgt).routes == routes.routes
    allw = []
    for tok in range(3):
        ws = np.array([w for w, _ in paths[tok] if w > 0])
        allw.append(ws)
        best_w, best_edges = max(paths[tok], key=lambda p: p[0])
        assert np.isclose(tp.weights[tok], best_w, rtol=1e-10)
        # the same path, edge by edge
        got = tp.paths[tok][0]
        nodes = [(idx[s.tensor_id], s.flat_index) for s in got.steps]
        assert nodes == [g.edges[k][1] for k in best_edges]
        # the same component at the attention input
        want = route_of(g, fw, best_edges, 1)
        assert routes.attention(0, tok).component == want[0]
        # entropy of the token's path distribution
        p = ws / ws.sum()
        assert np.isclose(ent.entropy[tok], -(p * np.log(p)).sum(), rtol=1e-9)
        assert np.isclose(ent.log_mass[tok], np.log(ws.sum()), rtol=1e-9)
    ws = np.concatenate(allw)
    p = ws / ws.sum()
    assert np.isclose(ent.sentence_entropy, -(p * np.log(p)).sum(), rtol=1e-9)


def test_two_layers_best_paths_by_dynamic_programming() -> None:
    """On a 2-layer BERT (too many paths to list) the best path per token and its route through
    both layers equal a max-product dynamic program over the element graph's edge list."""
    model = tiny_bert(2, seed=1)
    ids = np.array([3, 1, 5])
    tgt = target(3)
    fw = Forward.run(model, ids, tgt)
    g, idx, out = graph_of(fw)
    sink = (idx[id(fw.quantity)], 0)
    best: dict[tuple[int, int], float] = {sink: 1.0}
    arg: dict[tuple[int, int], int] = {}
    for ti in reversed(range(len(g.tensors))):  # g.tensors is in topological order
        for e in range(g.tensors[ti].size):
            node = (ti, e)
            if node == sink:
                continue
            cands = [(abs(w) * best[b], k) for b, w, k in out.get(node, ()) if b in best]
            if cands:
                best[node], arg[node] = max(cands, key=lambda c: (c[0], -c[1]))
    tp = top_paths_per_token(fw)
    routes = routes_of(fw, 2, 3, tp)
    leaf, C = idx[id(fw.leaf)], fw.leaf.shape[-1]
    for tok in range(3):
        d = max(range(C), key=lambda c: best.get((leaf, tok * C + c), 0.0))
        assert np.isclose(tp.weights[tok], best[(leaf, tok * C + d)], rtol=1e-10)
        edges, node = [], (leaf, tok * C + d)
        while node != sink:
            edges.append(arg[node])
            node = g.edges[arg[node]][1]
        got = [(idx[s.tensor_id], s.flat_index) for s in tp.paths[tok][0].steps]
        assert got == [g.edges[k][1] for k in edges]
        want = route_of(g, fw, edges, 2)
        for layer in range(2):
            assert routes.attention(layer, tok).component == want[layer]


def test_masked_lm_target_and_component_roles() -> None:
    """A LogitDiff target on a masked LM: every real token gets a route at every layer."""
    manual_seed(2)
    cfg = BertConfig(vocab_size=12, hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=8)
    model = BertForMaskedLM(cfg)
    ids = np.array([2, 5, 6, 4, 3])
    r = ComponentShares(model).attribute(ids, LogitDiff(3, 7, 8), tokens=list("abcde"))
    for layer in range(2):
        for tok in range(5):
            route = r.attention(layer, tok)
            assert route.component in ("key", "query", "value", "skip")
            assert (route.head is None) == (route.component == "skip")
    assert "L0" in r.table() and "a" in r.table()


def test_bad_input() -> None:
    """Clear errors: k < 1, non-scalar target, wrong token count, non-BERT for component shares."""
    model = tiny_bert(1)
    with pytest.raises(ValueError, match="k must be a positive int"):
        TopPaths(model, k=0)
    with pytest.raises(ValueError, match="scalar"):
        TopPaths(model).attribute(np.array([1, 2]), Custom(lambda o: o.last_hidden_state))
    with pytest.raises(ValueError, match="3 token labels for 2 tokens"):
        TopPaths(model).attribute(np.array([1, 2]), target(2), tokens=["a", "b", "c"])
    with pytest.raises(TypeError, match="not a BERT"):
        ComponentShares(lambda x: x)
    with pytest.raises(TypeError, match="target must be"):
        TopPaths(model).attribute(np.array([1, 2]), "logit")
    with pytest.raises(IndexError, match="out of range"):
        ClassLogit(5)(type("O", (), {"logits": model(input_ids=np.array([[1, 2]])).last_hidden_state[:, 0]})())


def test_paths_and_entropy_in_two_threads_hold_kernels_to_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run side by side, each pass's kernels stay on its own thread (kernels.one_thread), with the same results."""
    import contextlib
    import threading

    from semitorch import kernels
    from semitorch.explain import paths_and_entropy

    entered: list[int] = []
    real = kernels.one_thread

    @contextlib.contextmanager
    def recording():  # noqa: ANN202
        with real():
            entered.append(threading.get_ident())
            yield

    monkeypatch.setattr(kernels, "one_thread", recording)
    monkeypatch.setattr("semitorch.explain.core.os.cpu_count", lambda: 2)  # the threaded route on any machine
    fw = Forward.run(tiny_bert(1), np.array([1, 2, 3]), target(3))
    paths, ent = paths_and_entropy(fw, parallel=True)
    assert len(entered) == 2 and threading.get_ident() not in entered  # both passes, in worker threads
    serial_paths, serial_ent = paths_and_entropy(fw, parallel=False)
    assert len(entered) == 2  # the serial route does not need it
    np.testing.assert_allclose(ent.entropy, serial_ent.entropy, rtol=1e-12)
    assert [p[0].weight for p in paths.paths] == [p[0].weight for p in serial_paths.paths]
