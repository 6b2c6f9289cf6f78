"""Brute-force reference for semiring backprop: expand a small computation into its element-level DAG and
enumerate every path.

A :class:`Program` is a list of leaves (float64 inputs) and primitive ops, each op
given twice: as the semitorch primitive and as the equivalent torch function. The
DAG's edges come from each op's dense Jacobian computed *independently* of
semitorch, by ``torch.func.jacrev`` of the torch function at the same inputs
(float64); exact-zero entries are not edges. :func:`enumerate_paths` then lists
every path (a tuple of edges) from every leaf element to the scalar output with its
signed product, and :func:`statistics` turns those lists into what each semiring
must return. :func:`programs` is the Hypothesis strategy that draws programs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from hypothesis import assume
from hypothesis import strategies as hs

import semitorch as st

F = torch.nn.functional

Edge = tuple[int, int, int]
"""(op position in the program, input slot of that op, flat index of the element reached)."""
PathList = list[tuple[tuple[Edge, ...], float]]
"""Paths as (edges, signed product of their weights)."""


@dataclass
class Op:
    """One primitive op: its pool arguments (all tensors), the semitorch and the torch function of them."""

    name: str
    args: tuple[int, ...]
    st_fn: Callable[..., Any]
    th_fn: Callable[..., torch.Tensor]


@dataclass
class Program:
    """Pool entries in order: an ndarray is a leaf (an input that requires grad), an :class:`Op` an op."""

    entries: list[Any] = field(default_factory=list)
    values: list[torch.Tensor] = field(default_factory=list)  # torch float64 value of every entry

    def add_leaf(self, value: np.ndarray) -> int:
        """Append a leaf; returns its pool index."""
        self.entries.append(np.asarray(value, dtype=np.float64))
        self.values.append(torch.tensor(self.entries[-1]))
        return len(self.entries) - 1

    def add_op(self, op: Op) -> int:
        """Append an op (computing its torch value now); returns its pool index."""
        self.entries.append(op)
        self.values.append(op.th_fn(*[self.values[a] for a in op.args]))
        return len(self.entries) - 1

    @property
    def leaves(self) -> list[int]:
        """Pool indices of the leaves."""
        return [i for i, e in enumerate(self.entries) if not isinstance(e, Op)]

    def describe(self) -> str:
        """One line per entry (for failure messages)."""
        out = []
        for i, e in enumerate(self.entries):
            shp = tuple(self.values[i].shape)
            out.append(f"{i}: leaf {shp}" if not isinstance(e, Op) else f"{i}: {e.name}{e.args} -> {shp}")
        return "\n".join(out)

    def build(self) -> tuple[st.Tensor, list[st.Tensor], list[st.Tensor]]:
        """Run the program in semitorch: (output, leaf tensors, every pool tensor)."""
        ts: list[st.Tensor] = []
        for e in self.entries:
            if isinstance(e, Op):
                ts.append(e.st_fn(*[ts[a] for a in e.args]))
            else:
                ts.append(st.tensor(e, requires_grad=True))
        return ts[-1], [ts[i] for i in self.leaves], ts


@dataclass
class Graph:
    """The element-level DAG: ``out_edges[(pool index, flat element)]`` = [(Edge, signed weight), ...]."""

    sizes: list[int]
    out_edges: dict[tuple[int, int], list[tuple[Edge, float]]]
    output: int


def element_graph(prog: Program) -> Graph:
    """Edges of every op from its dense torch Jacobian (jacrev, float64); exact zeros are not edges."""
    sizes = [int(v.numel()) for v in prog.values]
    out_edges: dict[tuple[int, int], list[tuple[Edge, float]]] = {}
    for i, e in enumerate(prog.entries):
        if not isinstance(e, Op):
            continue
        ins = tuple(prog.values[a] for a in e.args)
        jac = torch.func.jacrev(e.th_fn, argnums=tuple(range(len(ins))))(*ins)
        for slot, a in enumerate(e.args):
            J = jac[slot].detach().numpy().reshape(sizes[i], sizes[a])
            for o, k in zip(*np.nonzero(J), strict=True):
                out_edges.setdefault((a, int(k)), []).append(((i, slot, int(o)), float(J[o, k])))
    return Graph(sizes, out_edges, len(prog.entries) - 1)


def count_paths(g: Graph) -> dict[tuple[int, int], int]:
    """Number of paths from every element to the output (dynamic programming, to bound enumeration)."""
    memo: dict[tuple[int, int], int] = {(g.output, 0): 1}
    for t in range(g.output - 1, -1, -1):  # edges go from lower to higher pool index
        for e in range(g.sizes[t]):
            memo[(t, e)] = sum(memo.get((d[0], d[2]), 0) for d, _ in g.out_edges.get((t, e), []))
    return memo


def enumerate_paths(
    g: Graph, starts: list[tuple[int, int]]
) -> dict[tuple[int, int], list[tuple[tuple[Edge, ...], float]]]:
    """Every path (edge tuple, signed product) from each start element to the output, by explicit expansion."""
    memo: dict[tuple[int, int], PathList] = {(g.output, 0): [((), 1.0)]}

    def paths(node: tuple[int, int]) -> PathList:
        if node in memo:
            return memo[node]
        out = []
        for edge, w in g.out_edges.get(node, []):
            for rest, p in paths((edge[0], edge[2])):
                out.append(((edge, *rest), w * p))
        memo[node] = out
        return out

    for t in range(g.output, -1, -1):  # fill bottom-up: no deep recursion
        for e in range(g.sizes[t]):
            paths((t, e))
    return {s: memo[s] for s in starts}


def statistics(products: list[float], k: int) -> dict[str, Any]:
    """What every semiring must return for one element, from its list of signed path products."""
    p = np.asarray(products, dtype=np.float64)
    a = np.abs(p)
    n = len(p)
    z = a.sum()
    top = np.sort(a)[::-1][:k]
    with np.errstate(divide="ignore"):
        ent = float(-(a / z * np.log(a / z)).sum()) if n else 0.0
        return {
            "real": float(p.sum()),
            "log": float(np.log(z)) if n else -np.inf,
            "maxproduct": float(a.max()) if n else 0.0,
            "kbest": np.concatenate([top, np.zeros(k - len(top))]),
            "entropy": ent,
            "count": float(n),
            "logcount": math.log(n) if n else -np.inf,
            "signedmax": np.array([p.max(), p.min()]) if n else np.array([-np.inf, np.inf]),
        }


# ---- the Hypothesis strategy ------------------------------------------------------------------


class Chooser:
    """Uniform random choices for the program's structure (Hypothesis draws the seed and the program length)."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def int(self, lo: int, hi: int) -> int:
        """An int in [lo, hi]."""
        return int(self.rng.integers(lo, hi + 1))

    def pick(self, seq: Any, p: Any = None) -> Any:
        """One element of ``seq`` (optionally with probabilities ``p``)."""
        return seq[int(self.rng.choice(len(seq), p=p))]

    def coin(self, p: float = 0.5) -> bool:
        """True with probability ``p``."""
        return bool(self.rng.random() < p)


def _leaf(ch: Chooser, prog: Program, shape: tuple[int, ...], positive: bool = False) -> int:
    """A new leaf of ``shape``: values in ±[0.2, 1.5] (positive: [0.5, 2]), with some exact zeros unless positive."""
    rng = ch.rng
    if positive:
        v = rng.uniform(0.5, 2.0, shape)
    else:
        v = rng.uniform(0.2, 1.5, shape) * rng.choice([-1.0, 1.0], shape)
        if ch.coin(0.25):  # exact zeros: zero edges downstream must not be edges
            v = np.where(rng.random(shape) < 0.3, 0.0, v)
    return prog.add_leaf(v)


def _no_ties(v: torch.Tensor, axis: int | None) -> bool:
    x = v.detach().numpy()
    x = x.reshape(1, -1) if axis is None else np.moveaxis(x, axis, -1).reshape(-1, x.shape[axis])
    return all(len(np.unique(r)) == len(r) for r in x)


UNARY = {
    "tanh": (st.tanh, torch.tanh),
    "sigmoid": (st.sigmoid, torch.sigmoid),
    "square": (st.square, torch.square),
    "neg": (st.neg, torch.neg),
    "relu": (st.relu, torch.relu),
    "abs": (st.abs, torch.abs),
    "gelu": (st.gelu, F.gelu),
    "gelu_tanh": (lambda x: st.gelu(x, "tanh"), lambda x: F.gelu(x, approximate="tanh")),
    "exp": (st.exp, torch.exp),
}

BINARY = {
    "add": (lambda a, b: a + b, lambda a, b: a + b),
    "sub": (lambda a, b: a - b, lambda a, b: a - b),
    "mul": (lambda a, b: a * b, lambda a, b: a * b),
}

KINDS = {  # kind: relative frequency
    "unary": 3, "binary": 2, "binary_same": 1, "binary_leaf": 2, "div": 1, "matmul": 4, "matmul_self": 1,
    "softmax": 2, "log_softmax": 1, "layer_norm": 2, "sum": 2, "mean": 1, "max": 1, "logsumexp": 1,
    "reshape": 1, "transpose": 1, "getitem": 1, "getitem_array": 1, "broadcast_to": 1, "concat": 1, "embedding": 1,
}  # fmt: skip


def _mm(a: Any, b: Any) -> Any:
    return a @ b


def _add_op(ch: Chooser, prog: Program) -> None:
    """Append one random op (and any new leaves it needs), mostly reading the latest pool entry."""
    n = len(prog.entries)
    x = n - 1 if ch.coin(0.75) else ch.int(0, n - 1)
    xv = prog.values[x]
    shp = tuple(xv.shape)
    nd = len(shp)
    names = list(KINDS)
    freq = np.array([KINDS[k] for k in names], dtype=float)
    kind = ch.pick(names, freq / freq.sum())
    if kind == "unary":
        name = ch.pick(sorted(UNARY))
        if name == "exp" and float(xv.abs().max()) > 3:
            name = "tanh"
        f, g = UNARY[name]
        prog.add_op(Op(name, (x,), f, g))
    elif kind in ("binary", "binary_same", "binary_leaf"):
        name = ch.pick(sorted(BINARY))
        f, g = BINARY[name]
        if kind == "binary_same":  # fan-out: the same tensor on both sides (two edges per element)
            y = x
        elif kind == "binary":  # another pool tensor (or x itself) broadcasting to x's shape
            y = ch.pick([i for i in range(n) if _broadcasts(shp, tuple(prog.values[i].shape))])
        else:  # a new leaf with a broadcasting shape
            y = _leaf(ch, prog, ch.pick(_broadcast_variants(shp)))
        prog.add_op(Op(name, (y, x) if ch.coin() else (x, y), f, g))
    elif kind == "div":
        y = _leaf(ch, prog, ch.pick(_broadcast_variants(shp)), positive=True)
        prog.add_op(Op("div", (x, y), lambda a, b: a / b, lambda a, b: a / b))
    elif kind == "matmul_self" and nd == 2 and shp[0] == shp[1]:  # x @ x: fan-out through both operands
        prog.add_op(Op("matmul", (x, x), _mm, _mm))
    elif kind in ("matmul", "matmul_self") and nd >= 1:
        p = ch.int(1, 3)
        if ch.coin():  # x @ W, W 2-D or 1-D
            w = _leaf(ch, prog, (shp[-1], p) if ch.coin(0.8) else (shp[-1],))
            prog.add_op(Op("matmul", (x, w), _mm, _mm))
        elif nd <= 2:  # W @ x, or a batch of W @ x
            w = _leaf(ch, prog, (p, shp[0]) if ch.coin(0.7) else (2, p, shp[0]))
            prog.add_op(Op("matmul", (w, x), _mm, _mm))
    elif kind in ("softmax", "log_softmax") and nd >= 1:
        ax = ch.int(-nd, nd - 1)
        if kind == "softmax":
            prog.add_op(Op("softmax", (x,), lambda a: st.softmax(a, ax), lambda a: torch.softmax(a, ax)))
        else:
            prog.add_op(Op("log_softmax", (x,), lambda a: st.log_softmax(a, ax), lambda a: torch.log_softmax(a, ax)))
    elif kind == "layer_norm" and nd >= 1 and shp[-1] >= 2:
        m = shp[-1]
        if ch.coin():
            w = _leaf(ch, prog, (m,))
            b = _leaf(ch, prog, (m,))
            th = lambda a, w_, b_: F.layer_norm(a, (m,), w_, b_, eps=1e-5)  # noqa: E731
            prog.add_op(Op("layer_norm", (x, w, b), st.layer_norm, th))
        else:
            prog.add_op(Op("layer_norm", (x,), st.layer_norm, lambda a: F.layer_norm(a, (m,), eps=1e-5)))
    elif kind in ("sum", "mean", "max", "logsumexp") and nd >= 1:
        ax = None if ch.coin(0.2) else ch.int(0, nd - 1)
        dims: Any = tuple(range(nd)) if ax is None else ax
        if kind == "max" and not _no_ties(xv, ax):
            kind = "sum"
        sf = {"sum": st.sum, "mean": st.mean, "max": st.max, "logsumexp": st.logsumexp}[kind]
        tf = {"sum": torch.sum, "mean": torch.mean, "max": torch.amax, "logsumexp": torch.logsumexp}[kind]
        prog.add_op(Op(kind, (x,), lambda a: sf(a, axis=ax), lambda a: tf(a, dim=dims)))
    elif kind == "reshape":
        size = int(np.prod(shp))
        new = ch.pick([(size,), (1, size)] + [(d, size // d) for d in (2, 3) if size % d == 0])
        prog.add_op(Op("reshape", (x,), lambda a: a.reshape(new), lambda a: a.reshape(new)))
    elif kind == "transpose" and nd >= 2:
        perm = tuple(int(i) for i in ch.rng.permutation(nd))
        prog.add_op(Op("transpose", (x,), lambda a: a.transpose(perm), lambda a: a.permute(perm)))
    elif kind == "getitem" and nd >= 1:
        idx = ch.pick([(slice(0, max(1, shp[0] - 1)),), (slice(None, None, 2),), (shp[0] - 1,), (Ellipsis, 0)])
        prog.add_op(Op("getitem", (x,), lambda a: a[idx], lambda a: a[idx]))
    elif kind == "getitem_array" and nd >= 1:  # repeated integer indices: fan-out
        ids = ch.rng.integers(0, shp[0], size=ch.int(1, 3))
        prog.add_op(Op("getitem", (x,), lambda a: a[ids], lambda a: a[torch.as_tensor(ids)]))
    elif kind == "broadcast_to":
        new = (2, *shp)
        prog.add_op(Op("broadcast_to", (x,), lambda a: st.broadcast_to(a, new), lambda a: torch.broadcast_to(a, new)))
    elif kind == "concat" and nd >= 1:
        y = ch.pick([i for i in range(n) if tuple(prog.values[i].shape)[1:] == shp[1:] and prog.values[i].dim() == nd])
        prog.add_op(Op("concat", (x, y), lambda a, b: st.concat([a, b], 0), lambda a, b: torch.cat([a, b], 0)))
    elif kind == "embedding" and nd == 2:
        ids = ch.rng.integers(0, shp[0], size=(ch.int(1, 2), ch.int(1, 2)))
        prog.add_op(
            Op("embedding", (x,), lambda t: st.embedding(ids, t), lambda t: F.embedding(torch.as_tensor(ids), t))
        )
    else:  # the kind does not apply to x's shape: an elementwise op instead
        prog.add_op(Op("tanh", (x,), st.tanh, torch.tanh))


def _broadcasts(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    try:
        return np.broadcast_shapes(a, b) == a
    except ValueError:
        return False


def _broadcast_variants(shp: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Shapes that broadcast to ``shp``: itself, its last axes, size-1 axes."""
    out = [shp, shp[1:], tuple(1 if i == 0 else d for i, d in enumerate(shp))]
    return [s for s in out if _broadcasts(shp, s)]


@hs.composite
def programs(draw: Any, max_ops: int = 8) -> Program:
    """A random program over small shapes ending in a scalar: ops, then ``sum(last * c)`` with a constant c.

    Hypothesis draws the number of leaves and ops and the seed of the structural choices.
    """
    ch = Chooser(draw(hs.integers(0, 2**32 - 1), label="seed"))
    prog = Program()
    for _ in range(draw(hs.integers(1, 2), label="leaves")):
        _leaf(ch, prog, tuple(int(d) for d in ch.rng.integers(1, 4, size=ch.int(1, 2))))
    for _ in range(draw(hs.integers(3, max_ops), label="ops")):
        _add_op(ch, prog)
    last = len(prog.entries) - 1
    c = ch.rng.uniform(0.5, 1.5, tuple(prog.values[last].shape))
    prog.add_op(Op("mul", (last,), lambda a: a * c, lambda a: a * torch.as_tensor(c)))
    prog.add_op(Op("sum", (len(prog.entries) - 1,), lambda a: a.sum(), lambda a: a.sum()))
    assume(all(bool(torch.isfinite(v).all()) for v in prog.values))
    # A value that cancels to rounding noise (e.g. the mean of a layer_norm output: 0.0 in one
    # library, -7e-17 in the other) makes an edge exist in one graph and not in the other
    # (weight exactly 0 = no edge), so such programs are not comparable: skip them.
    assume(all(bool(((v == 0) | (v.abs() > 1e-9)).all()) for v in prog.values))
    return prog


def graph_and_paths(prog: Program, max_paths: int = 4000) -> tuple[Graph, dict[tuple[int, int], PathList]] | None:
    """The element graph and the enumerated paths of every leaf element; None if there are over ``max_paths``."""
    g = element_graph(prog)
    counts = count_paths(g)
    starts = [(t, e) for t in prog.leaves for e in range(g.sizes[t])]
    if sum(counts[s] for s in starts) > max_paths:
        return None
    return g, enumerate_paths(g, starts)
