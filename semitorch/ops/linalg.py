"""matmul: the Linear structure. Edge a[..., i, k] -> out[..., i, j] has weight b[..., k, j];
edge b[..., k, j] -> out[..., i, j] has weight a[..., i, k]. Batched, broadcasting; 1-D operands
are promoted as numpy does (the promotion adds no node)."""

from __future__ import annotations

from typing import Any

from ..tensor import Tensor
from ._core import as_tensor, broadcast_shapes, check_operand, record, register, xp
from .structures import Linear


@register
def matmul(a: Any, b: Any) -> Tensor:
    """a @ b (numpy semantics: batched, broadcasting, 1-D promoted). See the module doc for edges."""
    check_operand("matmul", "a", a)
    check_operand("matmul", "b", b)
    a, b = as_tensor(a), as_tensor(b)
    m = xp("matmul", a, b)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: operands must have at least 1 dim, got shapes {a.shape} and {b.shape}")
    av = a.data if a.ndim > 1 else a.data.reshape(1, -1)
    bv = b.data if b.ndim > 1 else b.data.reshape(-1, 1)
    if av.shape[-1] != bv.shape[-2]:
        raise ValueError(
            f"matmul: shapes {a.shape} and {b.shape} do not align "
            f"(contracted dims {av.shape[-1]} and {bv.shape[-2]} differ)"
        )
    batch = broadcast_shapes("matmul (batch dims)", av.shape[:-2], bv.shape[:-2])
    if bv.ndim == 2 and av.ndim > 2:  # fold the batch into one BLAS call
        outv = (av.reshape(-1, av.shape[-1]) @ bv).reshape(av.shape[:-1] + (bv.shape[-1],))
    else:
        outv = m.matmul(av, bv)
    out_view = batch + (av.shape[-2], bv.shape[-1])
    shape = out_view[:-2]
    if a.ndim > 1:
        shape += (av.shape[-2],)
    if b.ndim > 1:
        shape += (bv.shape[-1],)
    out = outv.reshape(shape)
    return record(
        "matmul",
        out,
        [a, b],
        lambda: [
            Linear(bv, out_view, False, av.shape, a.shape),
            Linear(m.swapaxes(av, -1, -2), out_view, True, bv.shape, b.shape),
        ],
    )
