"""Every semiring, and the paths read from backpointers, against brute-force path enumeration.

Random small computations (``tests/bruteforce.py``) are expanded into their
element-level DAG from torch's dense Jacobians; every path from every input element
to the output is listed, and each semiring's one backward pass must equal the
statistic of those lists: Real = Σ Π w, Log = log Σ Π|w|, MaxProduct = max Π|w|
(and the path read back is an arg-max path), KBest = the sorted top k (and the k
paths read back are k distinct paths with those weights), Entropy = the entropy of
the normalised path weights, Count / LogCount = the number of paths (and its log),
SignedMax = the max / min signed products (and their paths).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from bruteforce import Op, Program, graph_and_paths, programs, statistics
from hypothesis import assume, given, settings

import semitorch as st
from semitorch.semirings import Count, Entropy, KBest, Log, LogCount, MaxProduct, Real, SignedMax

K = 3
RTOL = 1e-9

SEMIRINGS: dict[str, Any] = {
    "real": Real(),
    "log": Log(),
    "maxproduct": MaxProduct(),
    "kbest": KBest(K),
    "entropy": Entropy(),
    "count": Count(),
    "logcount": LogCount(),
    "signedmax": SignedMax(),
}


def _close(got: np.ndarray, want: np.ndarray, atol: np.ndarray | float, what: str) -> None:
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    same_inf = np.isinf(want) & (got == want)
    with np.errstate(invalid="ignore"):  # inf - inf where both are the same infinity
        ok = same_inf | (np.abs(got - want) <= atol + RTOL * np.abs(want))
    assert ok.all(), f"{what}: got {got[~ok]}, brute force {want[~ok]} (at {np.argwhere(~ok).tolist()})"


def _edges(path: st.Path, op_of: dict[int, int]) -> tuple[tuple[int, int, int], ...]:
    return tuple((op_of[s.tensor_id], s.slot, s.flat_index) for s in path.steps)


def _check_path(path: st.Path, ctx: dict[str, Any], start: tuple[int, int], what: str, signed: bool = False) -> float:
    """The path read back is a path of the DAG from ``start``, each step weight is its edge's weight (|w| unless
    ``signed``), and the path weight is their product; returns the path's brute-force signed product."""
    edges = _edges(path, ctx["op_of"])
    known = ctx["paths"][start]
    assert edges in known, f"{what}: the path read back {edges} is not a path of the graph"
    node = start
    for s, edge in zip(path.steps, edges, strict=True):
        w = next(w for d, w in ctx["graph"].out_edges[node] if d == edge)
        assert math.isclose(s.weight, w if signed else abs(w), rel_tol=RTOL), f"{what}: step {s} has edge weight {w}"
        node = (edge[0], edge[2])
    prod = known[edges]
    assert math.isclose(path.weight, prod if signed else abs(prod), rel_tol=RTOL), (
        f"{what}: path weight {path.weight} but its edges multiply to {prod}"
    )
    assert math.isclose(math.prod(s.weight for s in path.steps), path.weight, rel_tol=RTOL), what
    return prod


def check_program(prog: Program, expanded: Any) -> None:
    """All semirings and path read-outs on one program, against its enumerated paths ``expanded``."""
    out, leaves, ts = prog.build()
    for t, v in zip(ts, prog.values, strict=True):  # same computation as the torch reference
        np.testing.assert_allclose(t.numpy(), v.numpy(), rtol=1e-12, atol=1e-12)
    g, paths = expanded
    op_of = {id(t): i for i, t in enumerate(ts)}
    ctx = {"op_of": op_of, "graph": g, "paths": {s: dict(ps) for s, ps in paths.items()}}
    desc = prog.describe()
    stats = {s: statistics([p for _, p in ps], K) for s, ps in paths.items()}

    for name, sr in SEMIRINGS.items():
        got = st.grad(out, leaves, semiring=sr)
        for leaf, pos in zip(got, prog.leaves, strict=True):
            n = g.sizes[pos]
            want = np.stack([np.asarray(stats[(pos, e)][name], dtype=np.float64) for e in range(n)])
            got_flat = np.asarray(leaf, dtype=np.float64).reshape(want.shape)
            mass = np.array([sum(abs(p) for _, p in paths[(pos, e)]) for e in range(n)])
            if name == "real":  # signed sums cancel: error is relative to the terms
                atol: Any = 1e-12 + RTOL * mass
            elif name == "entropy":
                atol = 1e-9
            else:
                atol = 1e-12
            _close(got_flat, want, atol, f"{name} at leaf {pos}\n{desc}")
    log_mass = st.grad(out, leaves, semiring=Entropy(readout="log_mass"))
    for leaf, pos in zip(log_mass, prog.leaves, strict=True):
        want = np.array([stats[(pos, e)]["log"] for e in range(g.sizes[pos])])
        _close(leaf.reshape(-1), want, 1e-12, f"entropy log mass at leaf {pos}\n{desc}")

    # best paths, k-best paths and signed paths, read back from backpointers
    res_max = st.backward(out, leaves, MaxProduct(), keep=True)
    res_k = st.backward(out, leaves, KBest(K), keep=True)
    res_s = st.backward(out, leaves, SignedMax(), keep=True)
    for t, pos in zip(leaves, prog.leaves, strict=True):
        for e in range(g.sizes[pos]):
            known = dict(paths[(pos, e)])
            s = stats[(pos, e)]
            what = f"leaf {pos} element {e}\n{desc}"
            best = st.read_path(res_max, t, e)
            if not known:
                assert not best.found and best.weight == 0 and not best.steps, what
                continue
            prod = _check_path(best, ctx, (pos, e), "best path, " + what)
            assert abs(prod) >= s["maxproduct"] * (1 - RTOL), f"best path is not an arg-max path: {what}"
            got_k = [st.read_path(res_k, t, e * K + r) for r in range(min(K, len(known)))]
            edges_k = [_edges(p, op_of) for p in got_k]
            assert len(set(edges_k)) == len(edges_k), f"k-best paths repeat: {what}"
            w_k = [abs(_check_path(p, ctx, (pos, e), f"k-best path {r}, " + what)) for r, p in enumerate(got_k)]
            np.testing.assert_allclose(w_k, s["kbest"][: len(w_k)], rtol=RTOL, err_msg=what)
            for c in (0, 1):
                p = st.read_path(res_s, t, 2 * e + c)
                sp = _check_path(p, ctx, (pos, e), f"signed path {c}, " + what, signed=True)
                assert math.isclose(sp, s["signedmax"][c], rel_tol=RTOL), what

    # the public API: the best path over all elements of each leaf, and k = 2 from one element
    for t, pos in zip(leaves, prog.leaves, strict=True):
        bests = [stats[(pos, e)]["maxproduct"] for e in range(g.sizes[pos])]
        (p,) = st.top_paths(out, t)
        if max(bests) == 0:
            assert not p.found and str(p).startswith("no path"), desc
            continue
        assert math.isclose(p.weight, max(bests), rel_tol=RTOL), desc
        known = ctx["paths"][(pos, p.start)]
        _check_path(p, ctx, (pos, p.start), f"top_paths from leaf {pos}\n{desc}")
        two = st.top_paths(out, t, k=2, index=p.start)
        assert len(two) == min(2, len(known)), desc
        np.testing.assert_allclose([q.weight for q in two], stats[(pos, p.start)]["kbest"][: len(two)], rtol=RTOL)


@pytest.mark.slow
@settings(max_examples=300)
@given(programs())
def test_semirings_equal_brute_force(prog: Program) -> None:
    """Hundreds of random computations: every semiring and every path read-out equals enumeration."""
    expanded = graph_and_paths(prog)
    assume(expanded is not None)  # a few programs have too many paths to list
    check_program(prog, expanded)


def test_brute_force_sees_worked_example() -> None:
    """The enumerator itself, on ARCHITECTURE.md §8: paths 12, −12 from x0 and −4, −15 from x1."""
    prog = Program()
    x = prog.add_leaf(np.array([1.0, 2.0]))
    w1 = prog.add_leaf(np.array([[3.0, 4.0], [-1.0, 5.0]]))
    w2 = prog.add_leaf(np.array([4.0, -3.0]))
    h = prog.add_op(Op("matmul", (x, w1), lambda a, b: a @ b, lambda a, b: a @ b))
    prog.add_op(Op("matmul", (h, w2), lambda a, b: a @ b, lambda a, b: a @ b))
    expanded = graph_and_paths(prog)
    assert expanded is not None
    paths = expanded[1]
    assert sorted(p for _, p in paths[(x, 0)]) == [-12.0, 12.0]
    assert sorted(p for _, p in paths[(x, 1)]) == [-15.0, -4.0]
    check_program(prog, expanded)
