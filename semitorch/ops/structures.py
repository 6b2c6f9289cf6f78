"""Local-derivative structures: what an op declares for each input; a semiring supplies the arithmetic.

Every edge of the element-level gradient graph belongs to one of these shapes
(ARCHITECTURE.md §4). Arrays here are plain backend arrays of real edge weights.
Functions stored in a structure act on the leading (structural) axes of an
adjoint array and must carry any trailing axes (a semiring's value shape, or a
backpointer array of the same shape) along unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Array = Any


@dataclass(frozen=True, slots=True)
class Elementwise:
    """Edges out[i] -> in[i] with weight ``d[i]`` (broadcasting is fan-out).

    The adjoint of the output is viewed as ``out_view`` (when given) and
    broadcast against ``d``; the result is ⊕-reduced to ``in_shape``. ``memo`` is
    backprop's: it keeps a semiring's lifted ``d`` for later passes.
    """

    d: Array
    in_shape: tuple[int, ...]
    out_view: tuple[int, ...] | None = None
    memo: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Linear:
    """Matmul-like edges: adj_in[..., r, k] = ⊕_j adj[..., r, j] ⊗ W[..., k, j].

    ``adj_view``: the output adjoint's shape as seen by the product (1-D operands
    promoted); ``transpose``: swap the last two axes of the adjoint before and of
    the result after (the right operand of ``a @ b``); the result is ⊕-reduced to
    ``in_view`` (batch broadcasting) and reshaped to ``in_shape``.
    ``memo`` is an empty dict the op never reads: backprop keeps a semiring's
    lifted copy of ``W`` there, so that passes after the first reuse it.
    """

    W: Array
    adj_view: tuple[int, ...]
    transpose: bool
    in_view: tuple[int, ...]
    in_shape: tuple[int, ...]
    memo: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class RowJacobian:
    """A dense Jacobian per row along ``axis``: J[..., j, k] = d out[..., j] / d in[..., k].

    Rows are laid out with ``axis`` moved last. ``jac()`` builds J (shape
    rows + (n, n)) on demand (only semirings other than Real need it);
    ``jac(rows)`` builds only the flat row indices ``rows`` (shape (len(rows), n, n));
    ``vjp(adj)`` is an optional closed-form real vector-Jacobian product on the
    moved layout that the Real semiring uses instead (never changing the result).
    ``axis`` is non-negative.

    ``affine(rows)``, when given, states J's structure: it returns ``(c, D, p, u, v)``
    with c, u, v of shape (R, n) and D, p of shape (R,) (R = the rows selected as for
    ``jac``) such that J[r, j, k] = c[r, j]·(D[r]·[j = k] + p[r] + u[r, j]·v[r, k]):
    a diagonal, a constant and a rank-1 term (layer_norm, softmax, log_softmax).
    Semirings with a structured kernel use it instead of ``jac`` (the edges are the
    same; only the (R, n, n) array is never built). ``memo`` is backprop's: it keeps
    ``affine(None)`` for later passes over the same forward.
    """

    jac: Callable[[], Array]
    vjp: Callable[[Array], Array] | None = None
    axis: int = -1
    affine: Callable[[Array | None], tuple[Array, Array, Array, Array, Array]] | None = None
    memo: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Take:
    """Weight-1 edges where each input element feeds exactly one output element.

    ``fn(adj_out)`` gathers the input's adjoint from the output's (reshape,
    transpose, a slice of a concat, the broadcast of a sum, ...).
    """

    fn: Callable[[Array], Array]


@dataclass(frozen=True, slots=True)
class Scatter:
    """Weight-1 edges where each output element comes from exactly one input element.

    ``index`` has the output's shape and holds the flat index of its source
    element in the input (``in_shape``). ``unique`` says no input element feeds
    two outputs, so the scatter needs no ⊕ (getitem with slices, split, ...).
    ``basic``: for ints-and-slices indexing, the index tuple itself; the adjoint
    is then assigned as ``adj_in[basic] = adj_out`` and ``index`` is None.
    """

    index: Array
    in_shape: tuple[int, ...]
    unique: bool
    basic: tuple[Any, ...] | None = None
