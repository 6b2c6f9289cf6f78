"""Pictures of gradient graphs: the element-level graph of a small computation as Graphviz DOT.

:func:`element_graph` reads every edge (one per nonzero local derivative) from the
ops' local-derivative structures; :func:`draw_graph` lays it out, labels edges with
their weights and nodes with a semiring's backward values, and highlights the best
path. Rendering to SVG/PNG uses Graphviz's ``dot`` program (Debian package
``graphviz``); the DOT text needs nothing.
"""

from __future__ import annotations

import numbers
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import backend
from .backprop import apply_structure, backward
from .semirings.base import Semiring
from .tape import topological_order
from .tensor import Tensor


class _Rows(Semiring):
    """Real arithmetic on a trailing batch axis: pushes all rows of an identity through a structure."""

    name = "_rows"

    def __init__(self, n: int) -> None:
        self.vshape = (n,)

    def zeros(self, xp: Any, shape: tuple[int, ...], dtype: Any) -> Any:
        return xp.zeros(tuple(shape) + self.vshape, dtype=dtype)

    def lift(self, w: Any) -> Any:
        return w[..., None]

    def plus(self, a: Any, b: Any) -> Any:
        return a + b

    def times(self, a: Any, b: Any) -> Any:
        return a * b

    def sum(self, a: Any, axes: tuple[int, ...], keepdims: bool = False) -> Any:
        return a.sum(axis=axes, keepdims=keepdims)

    def scatter(self, a: Any, src: Any, index: Any, size: int) -> tuple[Any, None]:
        out = np.zeros((size,) + a.shape[1:], dtype=a.dtype)
        np.add.at(out, index, a)
        return out, None


def local_jacobian(node_structure: Any, out_shape: tuple[int, ...], in_shape: tuple[int, ...], dtype: Any) -> Any:
    """Dense ∂out/∂in (shape out.size × in.size) of one (node, input) pair, read from its structure."""
    n = int(np.prod(out_shape, dtype=np.int64))
    eye = np.eye(n, dtype=dtype).reshape(tuple(out_shape) + (n,))
    jt, _ = apply_structure(_Rows(n), node_structure, eye, None, np)
    jt = np.broadcast_to(jt, tuple(in_shape) + (n,))
    return np.ascontiguousarray(jt.reshape(-1, n).T)


@dataclass
class ElementGraph:
    """The element-level gradient graph: nodes are (tensor, element), edges carry local derivatives."""

    tensors: list[Tensor]
    labels: list[str]
    edges: list[tuple[tuple[int, int], tuple[int, int], float, str]] = field(default_factory=list)
    # ((tensor idx, element), (tensor idx, element), weight, op)
    edge_modules: list[str] = field(default_factory=list)  # module path of each edge's op

    @property
    def n_nodes(self) -> int:
        """Number of scalar nodes."""
        return sum(t.size for t in self.tensors)


def element_graph(output: Tensor, max_nodes: int = 200, inputs: list[Tensor] | None = None) -> ElementGraph:
    """Every scalar of every tensor on the tape behind ``output`` and every nonzero local derivative.

    With ``inputs``, only tensors that depend on one of them are kept (e.g. leave out
    a model's parameters). Refuses graphs of more than ``max_nodes`` scalars with a
    ValueError and a hint.
    """
    if not isinstance(output, Tensor) or not output.requires_grad:
        raise ValueError("element_graph: output must be a Tensor on the tape (requires_grad=True)")
    if isinstance(max_nodes, (bool, np.bool_)) or not isinstance(max_nodes, numbers.Real):
        raise TypeError(f"element_graph: max_nodes must be a number, got {type(max_nodes).__name__} {max_nodes!r}")
    if not max_nodes >= 1:
        raise ValueError(f"element_graph: max_nodes must be >= 1, got {max_nodes!r}")
    if inputs is not None:
        items = list(inputs) if isinstance(inputs, Iterable) and not isinstance(inputs, (Tensor, str)) else None
        if items is None or not all(isinstance(t, Tensor) for t in items):
            raise TypeError(f"element_graph: inputs must be an iterable of Tensors, got {type(inputs).__name__}")
        inputs = items
    order = topological_order(output)
    if inputs is not None:
        keep = {id(t) for t in inputs}
        for t in order:
            if t._node is not None and any(id(i) in keep for i in t._node.inputs):
                keep.add(id(t))
        order = [t for t in order if id(t) in keep]
    total = sum(t.size for t in order)
    if total > max_nodes:
        raise ValueError(
            f"element_graph: the computation has {total} scalar nodes in {len(order)} tensors, more than "
            f"max_nodes={max_nodes}; a drawing that large is unreadable. Draw a smaller computation "
            "(fewer elements or layers), or raise max_nodes if you really want it."
        )
    index = {id(t): i for i, t in enumerate(order)}
    labels = []
    for i, t in enumerate(order):
        labels.append(t.name or (t._node.op if t._node is not None else f"input{i}"))
    g = ElementGraph(list(order), labels)
    for t in order:
        node = t._node
        if node is None:
            continue
        for inp, st in zip(node.inputs, node.structures, strict=True):
            if st is None or id(inp) not in index:
                continue
            J = local_jacobian(st, t.shape, inp.shape, np.float64)
            for o, i in zip(*np.nonzero(J), strict=True):
                g.edges.append(((index[id(inp)], int(i)), (index[id(t)], int(o)), float(J[o, i]), node.op))
                g.edge_modules.append(node.module)
    return g


def _fmt(v: float) -> str:
    return f"{v:.3g}"


@dataclass
class Drawing:
    """A drawn graph: ``dot`` holds the Graphviz source; :meth:`render` writes SVG/PNG."""

    dot: str
    highlighted: list[tuple[str, str]] = field(default_factory=list)  # (tail, head) DOT node ids

    def render(self, path: str, format: str | None = None) -> str:  # noqa: A002
        """Write the picture to ``path`` (format from the suffix: .svg, .png, .pdf, .dot); returns the path."""
        fmt = format or os.path.splitext(path)[1].lstrip(".") or "svg"
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise FileNotFoundError(f"render: directory {directory!r} does not exist")
        if fmt == "dot":
            data = self.dot.encode()
        else:
            exe = shutil.which("dot")
            if exe is None:
                raise RuntimeError(
                    "render: Graphviz's 'dot' program is not installed (Debian: apt-get install graphviz); "
                    "the DOT source is in Drawing.dot, or render to a .dot file"
                )
            r = subprocess.run([exe, f"-T{fmt}"], input=self.dot.encode(), capture_output=True, check=False)
            if r.returncode != 0:
                raise RuntimeError(f"render: dot -T{fmt} failed: {r.stderr.decode(errors='replace')}")
            data = r.stdout
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix="." + fmt)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        return path

    def _repr_svg_(self) -> str | None:
        if shutil.which("dot") is None:
            return None
        r = subprocess.run(["dot", "-Tsvg"], input=self.dot.encode(), capture_output=True, check=False)
        return r.stdout.decode() if r.returncode == 0 else None


def draw_graph(
    output: Tensor,
    semiring: Any = None,
    highlight: str | None = "best",
    inputs: list[Tensor] | None = None,
    max_nodes: int = 200,
) -> Drawing:
    """Draw the element-level gradient graph of ``output`` as Graphviz DOT.

    Edges are labelled with their local derivative; with ``semiring`` given, each
    node is labelled with the readout of that semiring's backward value at it
    (e.g. the gradient, or the best path weight from the node to the output).
    ``highlight='best'`` draws the best (highest |product|) path from ``inputs``
    (default: the leaves) to the output in red, as :func:`semitorch.top_paths` finds it.
    """
    g = element_graph(output, max_nodes=max_nodes)
    node_vals: dict[int, Any] = {}
    if semiring is not None:
        res = backward(output, g.tensors, semiring, keep=False)
        for i, v in enumerate(res.values):
            node_vals[i] = backend.to_numpy(res.semiring.readout(v))
    hl: set[tuple[tuple[int, int], tuple[int, int]]] = set()
    if highlight == "best":
        hl = _best_path_edges(g, output, inputs)
    elif highlight is not None:
        raise ValueError(f"draw_graph: highlight must be 'best' or None, got {highlight!r}")
    lines = ["digraph G {", "  rankdir=LR;", '  node [shape=circle, fontsize=10, fontname="Helvetica"];']
    lines.append('  edge [fontsize=9, fontname="Helvetica"];')
    for ti, t in enumerate(g.tensors):
        lines.append(f'  subgraph cluster_{ti} {{ label="{g.labels[ti]} {t.shape}"; style=rounded; color=gray70;')
        flat = backend.to_numpy(t.data).reshape(-1)
        for e in range(t.size):
            lab = f"{_fmt(float(flat[e]))}"
            if ti in node_vals:
                lab += f"\\n[{_fmt(float(np.asarray(node_vals[ti]).reshape(t.size, -1)[e, 0]))}]"
            lines.append(f'    n{ti}_{e} [label="{lab}"];')
        lines.append("  }")
    drawn_hl = []
    for a, b, w, op in g.edges:
        tail, head = f"n{a[0]}_{a[1]}", f"n{b[0]}_{b[1]}"
        style = ", color=red, penwidth=2.5, fontcolor=red" if (a, b) in hl else ""
        if (a, b) in hl:
            drawn_hl.append((tail, head))
        lines.append(f'  {tail} -> {head} [label="{_fmt(w)}", tooltip="{op}"{style}];')
    lines.append("}")
    return Drawing("\n".join(lines) + "\n", drawn_hl)


def _best_path_edges(g: ElementGraph, output: Tensor, inputs: list[Tensor] | None) -> set[Any]:
    """Edges of the best path (from ``top_paths``) as ((tensor, elem), (tensor, elem)) pairs."""
    from .paths import top_paths  # noqa: PLC0415

    index = {id(t): i for i, t in enumerate(g.tensors)}
    cands = inputs if inputs is not None else [t for t in g.tensors if t._node is None]
    best = None
    for t in cands:
        p = top_paths(output, t, k=1)[0]
        if p.steps and (best is None or p.weight > best[0].weight):
            best = (p, t)
    if best is None:
        return set()
    path, t = best
    edges = set()
    cur = (index[id(t)], int(path.start))
    for s in path.steps:
        nxt = (index[s.tensor_id], int(s.flat_index))
        edges.add((cur, nxt))
        cur = nxt
    return edges


COMPONENT_COLORS = {"key": "#d62728", "query": "#1f77b4", "value": "#2ca02c", "skip": "#7f7f7f"}


def path_flow(routes: Any, path: str | None = None, title: str | None = None, highlight: Sequence[int] = ()) -> Any:
    """The token × layer picture of each token's best path (matplotlib).

    One line per source token, through the sequence position its best path occupies at
    each layer's attention input, coloured by the component it leaves through there
    (Key, Query, Value, skip) and as wide as its weight (relative to the heaviest).
    Tokens in ``highlight`` are drawn opaque, the others faded. With ``path`` the figure
    is written there (PNG/SVG/PDF by suffix, atomically) and closed; otherwise returned.
    """
    try:
        import matplotlib

        if path is not None:
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover - depends on the optional extra
        raise ImportError("path_flow needs matplotlib: pip install 'semitorch[plot]'") from e
    from matplotlib.lines import Line2D

    if not all(hasattr(routes, a) for a in ("tokens", "n_layers", "routes")):
        raise TypeError(
            "path_flow: routes must be a ComponentRoutes (from semitorch.explain.routes_of or "
            f"ComponentShares), got {type(routes).__name__}"
        )
    tokens = list(routes.tokens)
    T, L = len(tokens), routes.n_layers
    att = [r for r in routes.routes if r.block == "attention"]
    after = {(r.token, r.layer): r.position for r in routes.routes if r.block == "ffn"}  # position after attention
    wmax = max((r.weight for r in att), default=1.0) or 1.0
    fig, ax = plt.subplots(figsize=(1.6 + 1.1 * (L + 1), 0.9 + 0.38 * T))
    by_tok: dict[int, dict[int, Any]] = {}
    for r in att:
        by_tok.setdefault(r.token, {})[r.layer] = r
    for tok, layers in sorted(by_tok.items()):
        alpha = 1.0 if (not highlight or tok in highlight) else 0.25
        for layer in range(L):
            r = layers.get(layer)
            if r is None or r.position < 0:
                continue
            nxt = layers.get(layer + 1)
            y0 = r.position
            y1 = after.get((tok, layer), nxt.position if nxt is not None and nxt.position >= 0 else y0)
            lw = 0.8 + 5.0 * (r.weight / wmax) ** 0.5
            ax.plot([layer, layer + 1], [y0, y1], color=COMPONENT_COLORS[r.component], lw=lw, alpha=alpha,
                    solid_capstyle="round")  # fmt: skip
        first = layers.get(min(layers)) if layers else None
        if first is not None and first.position >= 0:
            ax.plot([-0.35, min(layers)], [tok, first.position], color="black", lw=0.6, alpha=alpha * 0.6)
    ax.set_yticks(range(T), tokens)
    ax.set_xticks(range(L + 1), [f"layer {i}" for i in range(L)] + ["out"])
    ax.set_xlim(-0.5, L + 0.2)
    ax.invert_yaxis()
    ax.grid(axis="x", color="0.9")
    handles = [Line2D([0], [0], color=c, lw=3, label=k) for k, c in COMPONENT_COLORS.items()]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, title="leaves via")
    ax.set_title(title or f"best path of each token ({routes.target})", fontsize=10)
    fig.tight_layout()
    if path is None:
        return fig
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        plt.close(fig)
        raise FileNotFoundError(f"path_flow: directory {directory!r} does not exist")
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.splitext(path)[1] or ".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=130)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
        plt.close(fig)
    return path
