"""Best paths: read whole paths of the element-level gradient graph back from backpointers.

A selective semiring's backward pass (:class:`~semitorch.semirings.MaxProduct`,
:class:`~semitorch.semirings.KBest`, :class:`~semitorch.semirings.SignedMax`) run
with ``keep=True`` leaves, for every value entry of every tensor, a backpointer to the
consumer entry it was taken from. :func:`read_path` follows them forward from an
input entry to the output; :func:`top_paths` does this for the best path(s) from an
input. There is never any search.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import backend
from .backprop import _EDGE_SHIFT, _POS_MASK, BackwardResult, backward
from .semirings.kbest import KBest
from .semirings.maxproduct import MaxProduct
from .tape import Node, topological_order
from .tensor import Tensor


@dataclass(frozen=True)
class Step:
    """One edge of a path, read forward: the op that consumed the current element, and where it went.

    ``op`` / ``module``: the consuming op and the module path that created it;
    ``slot``: which of the op's inputs the element was; ``shape`` / ``index``: the op's
    output shape and the output element reached (``flat_index`` in C order);
    ``weight``: the edge weight (|∂out/∂in| for magnitude semirings, signed for
    :class:`~semitorch.semirings.SignedMax`), recovered as the ratio of the stored
    adjoints; ``tensor_id``: ``id()`` of the op's output tensor.
    """

    op: str
    module: str
    slot: int
    shape: tuple[int, ...]
    index: tuple[int, ...]
    flat_index: int
    weight: float
    tensor_id: int = field(repr=False)
    node: Node | None = field(default=None, repr=False, compare=False)


@dataclass
class Path:
    """A path from one input element to the (scalar) output, with its weight and its steps.

    ``start`` is the input element's flat index (``index`` the same as a tuple),
    ``weight`` the product of the steps' weights (0 with no steps: "no path"), ``rank``
    the value entry it was read from (0 for the best path; the rank for k-best; the
    component 0 = max / 1 = min for signed max).
    """

    weight: float
    steps: list[Step]
    start: int
    input_shape: tuple[int, ...]
    rank: int = 0
    input_name: str = "input"
    found: bool = True

    @property
    def index(self) -> tuple[int, ...]:
        """The input element, as a tuple index into the input's shape."""
        return tuple(int(i) for i in np.unravel_index(self.start, self.input_shape)) if self.input_shape else ()

    def __len__(self) -> int:
        return len(self.steps)

    def __bool__(self) -> bool:
        return self.found

    def table(self) -> str:
        """A readable table: one row per step, with the running product of edge weights."""
        src = f"{self.input_name}{list(self.index)} (shape {self.input_shape})"
        if not self.found:
            return f"no path from {src} to the output"
        head = f"path from {src} to the output: weight {self.weight:.6g} ({len(self.steps)} steps)"
        rows = [("step", "op", "module", "in", "to element", "of shape", "edge weight", "running product")]
        run = 1.0
        for i, s in enumerate(self.steps, 1):
            run *= s.weight
            rows.append(
                (
                    str(i),
                    s.op,
                    s.module or "-",
                    str(s.slot),
                    str(list(s.index)),
                    str(s.shape),
                    f"{s.weight:.6g}",
                    f"{run:.6g}",
                )
            )
        widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
        return "\n".join([head, *("  " + ln for ln in lines)])

    def __str__(self) -> str:
        return self.table()


def _no_path(tensor: Tensor, start: int, rank: int) -> Path:
    return Path(0.0, [], start, tensor.shape, rank, tensor.name or "input", found=False)


def _at(a: Any, flat: int) -> float:
    """One entry of ``a`` by flat C-order index, without copying ``a`` (it may be a broadcast view)."""
    return a[np.unravel_index(flat, a.shape)].item() if a.ndim else a.item()


def read_path(result: BackwardResult, tensor: Tensor, entry: int) -> Path:
    """The path stored for value entry ``entry`` of ``tensor`` in a ``keep=True`` selective backward result.

    ``entry`` is a flat index into the tensor's value array (shape ``tensor.shape +
    semiring.vshape``): element ``entry // prod(vshape)``, rank/component
    ``entry % prod(vshape)``. Returns a "no path" :class:`Path` (weight 0, no steps)
    when the entry stands for no path.
    """
    if not isinstance(result, BackwardResult):
        raise TypeError(
            f"read_path: result must be the BackwardResult of st.backward(..., keep=True), got {type(result).__name__}"
        )
    if not isinstance(tensor, Tensor):
        raise TypeError(f"read_path: tensor must be a Tensor, got {type(tensor).__name__}")
    try:
        if isinstance(entry, (bool, np.bool_)):
            raise TypeError
        entry = operator.index(entry)  # ints, numpy ints and 0-d integer arrays
    except TypeError:
        raise TypeError(f"read_path: entry must be an int (a flat index into the values), got {entry!r}") from None
    sr = result.semiring
    if not getattr(sr, "selective", False) or not hasattr(sr, "step_weight"):
        raise TypeError(f"read_path: the semiring {type(sr).__name__} keeps no backpointers (use MaxProduct or KBest)")
    vsize = math.prod(sr.vshape)
    if id(tensor) not in result.records:
        if result.output is None or any(t is tensor for t in topological_order(result.output)):
            raise ValueError(
                f"read_path: no values kept for the tensor of shape {tensor.shape}: run st.backward(..., keep=True) "
                "with this tensor among the inputs"
            )
        if not 0 <= entry < tensor.size * vsize:
            raise IndexError(f"read_path: entry {entry} is out of range for a tensor of shape {tensor.shape}")
        return _no_path(tensor, *divmod(int(entry), vsize))  # not connected to the output at all
    vals, bps = result.records[id(tensor)]
    if not 0 <= entry < vals.size:
        raise IndexError(f"read_path: entry {entry} is out of range for values of shape {tuple(vals.shape)}")
    start, rank = divmod(int(entry), vsize)
    v = _at(vals, entry)
    if not sr.has_path(v):
        return _no_path(tensor, start, rank)
    steps: list[Step] = []
    cur_v, cur_b, cur = v, bps, int(entry)
    while True:
        bp = int(_at(cur_b, cur))
        if bp < 0:
            break
        eid, pos = bp >> _EDGE_SHIFT, bp & _POS_MASK
        node, slot = result.edges[eid]
        oid = result.node_out[id(node)]
        nvals, nbps = result.records[oid]
        nv = _at(nvals, pos)
        el = pos // vsize
        idx = tuple(int(i) for i in np.unravel_index(el, node.shape)) if node.shape else ()
        w = sr.step_weight(cur_v, nv)
        steps.append(Step(node.op, node.module, slot, tuple(node.shape), idx, int(el), w, oid, node))
        cur_v, cur_b, cur = nv, nbps, pos
    return Path(sr.path_weight(v), steps, start, tensor.shape, rank, tensor.name or "input")


def _flat_index(index: Any, shape: tuple[int, ...]) -> int:
    size = math.prod(shape)
    if isinstance(index, numbers.Integral) and not isinstance(index, bool):
        i = int(index)
        if not -size <= i < size:
            raise IndexError(f"top_paths: index {i} is out of range for an input of shape {shape} ({size} elements)")
        return i % size
    if isinstance(index, Sequence) and all(isinstance(i, numbers.Integral) for i in index):
        if len(index) != len(shape) or any(not -n <= int(i) < n for i, n in zip(index, shape, strict=False)):
            raise IndexError(f"top_paths: index {tuple(index)} is invalid for an input of shape {shape}")
        return int(np.ravel_multi_index(tuple(int(i) % n for i, n in zip(index, shape, strict=True)), shape))
    raise TypeError(f"top_paths: index must be an int (flat) or a tuple of ints, got {index!r}")


def top_paths(output: Tensor, input: Tensor, k: int = 1, index: Any = None) -> list[Path]:  # noqa: A002
    """The ``k`` highest-|product| paths from ``input`` to the scalar ``output``, best first.

    With ``index`` (a flat int or a tuple) the paths start at that element of
    ``input``; without, the best over all its elements. One backward pass of
    :class:`~semitorch.semirings.MaxProduct` (k = 1) or
    :class:`~semitorch.semirings.KBest` (k > 1) with backpointers; each path is read
    from them (no search). Fewer than ``k`` paths are returned when fewer exist; an
    element with no path to the output gives ``[Path]`` with ``found=False``, weight 0
    and no steps (printed as "no path").
    """
    if not isinstance(output, Tensor) or not isinstance(input, Tensor):
        raise TypeError(
            f"top_paths: output and input must be Tensors, got {type(output).__name__} and {type(input).__name__}"
        )
    if not input.requires_grad:
        raise RuntimeError(
            f"top_paths: the input (shape {input.shape}) does not require grad, so no forward pass recorded "
            "paths from it: create it with requires_grad=True, then run the forward pass"
        )
    if not output.requires_grad or (output._node is None and output is not input):
        raise RuntimeError(
            f"top_paths: the output (shape {output.shape}) is not on a tape: run the forward pass from "
            "tensors that require grad (outside st.no_grad()) first"
        )
    if output.size != 1:
        raise ValueError(f"top_paths: the output must be a scalar (one element), got shape {output.shape}")
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"top_paths: k must be a positive int, got {k!r}")
    k = int(k)
    start = None if index is None else _flat_index(index, input.shape)
    sr = MaxProduct() if k == 1 else KBest(k)
    res = backward(output, [input], sr, keep=True)
    vals = backend.to_numpy(res.values[0])
    if id(input) not in res.records:  # not connected to the output at all
        return [_no_path(input, 0 if start is None else start, 0)]
    if start is not None:
        entries = [start * k + r for r in range(k)]
    else:
        flat = vals.reshape(-1)
        entries = [int(e) for e in np.argsort(-flat, kind="stable")[:k]]
    entries = [e for e in entries if vals.reshape(-1)[e] > -np.inf]
    if not entries:
        return [_no_path(input, 0 if start is None else start, 0)]
    return [read_path(res, input, e) for e in entries]
