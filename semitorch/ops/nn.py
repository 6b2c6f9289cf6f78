"""Fused neural-network primitives. Each is ONE primitive whose edges are its exact Jacobian
entries, not a decomposition into exp/sum/div (which would add spurious paths).

| op | structure | edge weight |
|---|---|---|
| softmax(x, axis) | RowJacobian | s_j (δ_jk − s_k) |
| log_softmax(x, axis) | RowJacobian | δ_jk − s_k |
| layer_norm(x, w, b, eps) | RowJacobian to x; Elementwise to w, b | w_j (δ_jk − 1/n − x̂_j x̂_k/n)/σ; x̂; 1 |
| gelu(x, approximate) | Elementwise | Φ(x) + x φ(x) (or the tanh form's derivative) |
| cross_entropy(logits, targets) | Elementwise to logits | (softmax − onehot) / n_valid (mean) |
| embedding(ids, table) | Scatter to table | 1 from table[id, d] to out[..., d] (repeated ids fan out) |
| dropout(x, p, training) | Elementwise | mask / (1 − p) (dropped elements: no edge) |
"""

from __future__ import annotations

import math
from typing import Any

from .. import backend
from ..tensor import Tensor
from ._core import data, record, register, xp
from .structures import Elementwise, RowJacobian, Scatter


def _softmax_data(x: Any, axis: int) -> Any:
    m = xp("softmax", x)
    if x.shape[axis] == 0:  # an empty axis: an empty result (as torch), no max to take
        return x.astype(m.float64 if x.dtype.kind != "f" else x.dtype, copy=True)
    mx = x.max(axis=axis, keepdims=True)
    e = x - m.where(m.isfinite(mx), mx, 0.0)  # one new array, then in place: exp, normalise
    if e.dtype.kind != "f":
        e = e.astype(m.float64)
    m.exp(e, out=e)
    e /= e.sum(axis=axis, keepdims=True)
    return e


def _rows(a: Any, rows: Any) -> Any:
    """``a`` (lead + (n,)) as (R, n): all rows flattened, or only the flat row indices ``rows``."""
    a2 = a.reshape(-1, a.shape[-1])
    return a2 if rows is None else a2[rows]


def _add_diag(m: Any, J: Any, d: Any) -> Any:
    """J[:, i, i] += d[:, i] in place; returns J."""
    i = m.arange(J.shape[-1])
    J[:, i, i] += d
    return J


def xp_full(m: Any, col: Any, n: int) -> Any:
    """A column (R, 1) repeated to (R, n)."""
    return m.broadcast_to(col, (col.shape[0], n))


def _axis(x: Tensor, axis: int, op: str) -> int:
    if not -x.ndim <= axis < max(x.ndim, 1):
        raise ValueError(f"{op}: axis {axis} is out of range for shape {x.shape}")
    return axis % max(x.ndim, 1)


@register
def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """Softmax along ``axis``. One primitive: edge weight ∂s_j/∂x_k = s_j (δ_jk − s_k)."""
    ax = _axis(x, axis, "softmax")
    m = xp("softmax", x)
    s = _softmax_data(x.data, ax)

    def structs() -> list[Any]:
        sm = m.moveaxis(s, ax, -1)

        def jac(rows: Any = None) -> Any:
            r = _rows(sm, rows)
            J = _add_diag(m, -(r[:, :, None] * r[:, None, :]), r)  # diag(s) − s sᵀ
            return J if rows is not None else J.reshape(sm.shape + sm.shape[-1:])

        def vjp(g: Any) -> Any:
            return sm * (g - (g * sm).sum(axis=-1, keepdims=True))

        def affine(rows: Any = None) -> tuple[Any, ...]:  # s_j (δ_jk − s_k): c = s, D = 1, p = 0, u = −1, v = s
            r = _rows(sm, rows)
            one = m.ones(r.shape[0], dtype=r.dtype)
            return r, one, one * 0, -m.ones_like(r), r

        return [RowJacobian(jac, vjp, ax, affine)]

    return record("softmax", s, [x], structs)


@register
def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """log softmax along ``axis``. One primitive: edge weight δ_jk − s_k."""
    ax = _axis(x, axis, "log_softmax")
    m = xp("log_softmax", x)
    if x.shape[ax] == 0:  # an empty axis: an empty result (as torch), no max to take
        out = x.data.astype(m.float64 if x.dtype.kind != "f" else x.dtype, copy=True)
    else:
        mx = x.data.max(axis=ax, keepdims=True)
        z = x.data - m.where(m.isfinite(mx), mx, 0.0)
        out = z - m.log(m.exp(z).sum(axis=ax, keepdims=True))

    def structs() -> list[Any]:
        sm = m.moveaxis(m.exp(out), ax, -1)

        def jac(rows: Any = None) -> Any:
            r = _rows(sm, rows)
            J = _add_diag(m, m.repeat(-r[:, None, :], r.shape[-1], axis=1), 1.0)  # I − 1 sᵀ
            return J if rows is not None else J.reshape(sm.shape + sm.shape[-1:])

        def vjp(g: Any) -> Any:
            return g - sm * g.sum(axis=-1, keepdims=True)

        def affine(rows: Any = None) -> tuple[Any, ...]:  # δ_jk − s_k: c = 1, D = 1, p = 0, u = −1, v = s
            r = _rows(sm, rows)
            one = m.ones(r.shape[0], dtype=r.dtype)
            return m.ones_like(r), one, one * 0, -m.ones_like(r), r

        return [RowJacobian(jac, vjp, ax, affine)]

    return record("log_softmax", out, [x], structs)


@register
def layer_norm(x: Tensor, weight: Tensor | None = None, bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Layer normalisation over the last axis, then ``* weight + bias``. One primitive.

    Edges to x: w_j (δ_jk − 1/n − x̂_j x̂_k / n) / σ within each row; to weight: x̂; to bias: 1.
    """
    m = xp("layer_norm", x, weight, bias)
    if x.ndim == 0:
        raise ValueError("layer_norm: the input must have at least 1 dim (normalised over the last), got shape ()")
    n = x.shape[-1]
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None and tuple(p.shape) != (n,):
            raise ValueError(f"layer_norm: {name} has shape {tuple(p.shape)}, expected ({n},) for input {x.shape}")
    # the mean accumulated in float64: a 1-ulp float32 error in it is amplified by 1/σ on near-constant rows
    if n == 0:  # an empty axis: an empty result (as torch), nothing to average
        mu = m.zeros(x.shape[:-1] + (1,), dtype=x.dtype)
    else:
        mu = x.data.mean(axis=-1, keepdims=True, dtype=m.float64).astype(x.dtype, copy=False)
    xhat = x.data - mu  # centred; normalised in place below (few full-size temporaries)
    var = m.einsum("...i,...i->...", xhat, xhat)[..., None] / max(n, 1)
    rstd = (1.0 / m.sqrt(var + eps)).astype(xhat.dtype, copy=False)
    xhat *= rstd
    w = data(weight)
    if weight is not None:
        out = xhat * w
        if bias is not None:
            out += bias.data
    else:
        out = xhat + bias.data if bias is not None else xhat

    def structs() -> list[Any]:
        def jac(rows: Any = None) -> Any:
            xh, rs = _rows(xhat, rows), _rows(rstd, rows)  # (R, n), (R, 1)
            J = (xh * (rs / -n))[:, :, None] * xh[:, None, :]  # −x̂_j x̂_k / (n σ)
            J -= (rs / n)[:, :, None]
            _add_diag(m, J, xp_full(m, rs, n))
            if weight is not None:
                J *= w[None, :, None]
            return J if rows is not None else J.reshape(xhat.shape + (n,))

        def vjp(g: Any) -> Any:
            gw = g * w if weight is not None else g
            if n == 0:  # an empty axis: no means to take
                return gw
            return rstd * (gw - gw.mean(axis=-1, keepdims=True) - xhat * (gw * xhat).mean(axis=-1, keepdims=True))

        def affine(rows: Any = None) -> tuple[Any, ...]:
            # w_j σ⁻¹ (δ_jk − 1/n − x̂_j x̂_k/n) = c_j (n δ_jk − 1 − x̂_j x̂_k) with c = w σ⁻¹ / n
            xh, rs = _rows(xhat, rows), _rows(rstd, rows)  # (R, n), (R, 1)
            c = m.broadcast_to(rs / n, xh.shape)
            c = c * w if weight is not None else m.ascontiguousarray(c)
            R = xh.shape[0]
            return c, m.full(R, n, dtype=xh.dtype), m.full(R, -1, dtype=xh.dtype), -xh, xh

        s: list[Any] = [RowJacobian(jac, vjp, x.ndim - 1, affine)]
        if weight is not None:
            s.append(Elementwise(xhat, (n,)))
        if bias is not None:
            s.append(Elementwise(None, (n,)))
        return s

    ins: list[Any] = [x] + [p for p in (weight, bias) if p is not None]
    return record("layer_norm", out, ins, structs)


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


@register
def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    """GELU: x Φ(x) (``approximate='none'``, erf form) or the tanh approximation. One primitive.

    Edge weight: Φ(x) + x φ(x), or the tanh form's exact derivative.
    """
    m = xp("gelu", x)
    v = x.data
    if approximate == "none":
        cdf = 0.5 * (1.0 + backend.erf(v / math.sqrt(2.0)))
        out = v * cdf
        return record(
            "gelu", out, [x], lambda: [Elementwise(cdf + v * m.exp(-0.5 * v * v) / math.sqrt(2 * math.pi), x.shape)]
        )
    if approximate == "tanh":
        inner = _SQRT_2_OVER_PI * (v + 0.044715 * v**3)
        t = m.tanh(inner)
        out = 0.5 * v * (1.0 + t)

        def d() -> Any:
            return 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * _SQRT_2_OVER_PI * (1.0 + 3 * 0.044715 * v * v)

        return record("gelu", out, [x], lambda: [Elementwise(d(), x.shape)])
    raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")


@register
def cross_entropy(logits: Tensor, targets: Any, ignore_index: int = -100, reduction: str = "mean") -> Tensor:
    """Cross-entropy of ``logits`` (N, C) or (C,) against integer ``targets`` (N,) or (). One primitive.

    As torch.nn.functional.cross_entropy: rows whose target is ``ignore_index``
    are dropped; ``reduction`` is 'mean' (over kept rows), 'sum' or 'none'.
    Edge weight logits[n, c] -> loss: softmax[n, c] − [c = target_n], divided by
    the number of kept rows for 'mean'.
    """
    m = xp("cross_entropy", logits, targets)
    t = data(targets)
    t = m.asarray(t)
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"cross_entropy: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    if logits.ndim not in (1, 2) or t.ndim != logits.ndim - 1 or (logits.ndim == 2 and t.shape[0] != logits.shape[0]):
        raise ValueError(
            f"cross_entropy: logits of shape {logits.shape} need targets of shape "
            f"{logits.shape[:1] if logits.ndim == 2 else ()}, got {tuple(t.shape)}"
        )
    if t.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: targets must be integers, got dtype {t.dtype}")
    lg = logits.data if logits.ndim == 2 else logits.data[None]
    tt = t.reshape(-1)
    nc = lg.shape[1]
    valid = tt != ignore_index
    bad = valid & ((tt < 0) | (tt >= nc))
    if bool(bad.any()):
        raise IndexError(f"cross_entropy: target {int(tt[bad][0])} is out of range for {nc} classes")
    safe = m.where(valid, tt, 0)
    mx = lg.max(axis=1, keepdims=True)
    z = lg - mx
    lse = m.log(m.exp(z).sum(axis=1, keepdims=True))
    nll = -(m.take_along_axis(z, safe[:, None], axis=1) - lse)[:, 0] * valid
    if reduction == "mean":  # the count of kept rows stays on the device (no host sync)
        nvalid = valid.sum()
        n1 = m.maximum(nvalid, 1)
        out = m.where(nvalid > 0, nll.sum() / n1.astype(lg.dtype), m.asarray(float("nan"), dtype=lg.dtype))
        out = m.asarray(out, dtype=lg.dtype)
        scale: Any = m.where(nvalid > 0, 1.0 / n1, 0.0)
        view: tuple[int, ...] | None = None
    elif reduction == "sum":
        out, scale, view = nll.sum().astype(lg.dtype), 1.0, None
    else:
        out, scale, view = nll.astype(lg.dtype), 1.0, (lg.shape[0], 1)
        if logits.ndim == 1:
            out, view = out.reshape(()), (1,)

    def structs() -> list[Any]:
        d = m.exp(z - lse)
        m.put_along_axis(d, safe[:, None], m.take_along_axis(d, safe[:, None], axis=1) - 1.0, axis=1)
        d = d * (valid[:, None] * scale)
        if logits.ndim == 1:
            d = d[0]
        return [Elementwise(d.astype(lg.dtype, copy=False), logits.shape, view)]

    return record("cross_entropy", out, [logits], structs)


@register
def embedding(ids: Any, table: Tensor) -> Tensor:
    """Row gather ``table[ids]`` (ids: integers of any shape). One primitive.

    Edges: weight 1 from table[id, d] to out[..., d]; a repeated id fans out.
    """
    m = xp("embedding", ids, table)
    i = m.asarray(data(ids))
    if i.dtype.kind not in "iu":
        raise TypeError(f"embedding: ids must be integers, got dtype {i.dtype}")
    if table.ndim != 2:
        raise ValueError(f"embedding: table must be 2-D (num_embeddings, dim), got shape {table.shape}")
    nv, dim = table.shape
    if i.size and bool(((i < 0) | (i >= nv)).any()):  # one boolean read: the range check
        bad = int(i.min()) if int(i.min()) < 0 else int(i.max())
        raise IndexError(f"embedding: id {bad} is out of range for a table of {nv} rows (shape {table.shape})")
    out = table.data[i]

    def structs() -> list[Any]:
        flat = i[..., None] * dim + m.arange(dim)
        return [Scatter(flat, table.shape, False)]

    return record("embedding", out, [table], structs)


@register
def dropout(x: Tensor, p: float = 0.5, training: bool = True, seed: int | None = None) -> Tensor:
    """Inverted dropout: zero each element with probability ``p`` and scale the rest by 1/(1−p).

    Identity (no node) when ``training`` is False or p == 0. ``seed`` makes the mask
    reproducible. Edges: 1/(1−p) to kept elements; dropped ones have no edge.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    m = xp("dropout", x)
    keep = m.random.default_rng(seed).random(x.shape) >= p  # drawn where x lives (no host round trip)
    scale = 0.0 if p == 1.0 else 1.0 / (1.0 - p)
    d = keep.astype(x.dtype) * scale
    return record("dropout", x.data * d, [x], lambda: [Elementwise(d, x.shape)])
