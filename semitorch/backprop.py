"""Backprop: the one place where ops' local-derivative structures meet a semiring's arithmetic.

One reverse walk over the tape computes, for every requested input element, the
⊕ over all paths to the output of the ⊗ of the lifted edge weights. Selective
semirings (max, k-best) also record a backpointer per value entry, from which
:class:`BackwardResult` reads whole paths forward without any search.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import backend
from .ops.structures import Elementwise, Linear, RowJacobian, Scatter, Take
from .semirings.base import Semiring
from .semirings.real import Real
from .tape import Node, topological_order
from .tensor import Tensor

_EDGE_SHIFT = 40  # backpointer = edge_id << 40 | flat index into the consumer's values
_POS_MASK = (1 << _EDGE_SHIFT) - 1


def _check_semiring(semiring: Any) -> Semiring:
    if semiring is None:
        return Real()
    if isinstance(semiring, type) and issubclass(semiring, Semiring):
        try:
            inspect.signature(semiring).bind()
        except TypeError as e:
            raise TypeError(
                f"semiring {semiring.__name__} needs arguments ({e}): pass an instance, e.g. st.semirings.KBest(5)"
            ) from None
        return semiring()
    if not isinstance(semiring, Semiring):
        raise TypeError(
            f"semiring must be a semitorch Semiring instance (e.g. st.semirings.Real()), got {type(semiring).__name__}"
        )
    return semiring


# ---- applying one structure ---------------------------------------------------------------


def _fit(sr: Semiring, a: Any, s: Any, shape: tuple[int, ...], xp: Any) -> tuple[Any, Any]:
    """⊕-reduce broadcast axes of a (structural part) down to ``shape``; broadcast up if smaller.

    The one place where broadcasting is undone.
    """
    nv = len(sr.vshape)
    nd = a.ndim - nv
    lead = nd - len(shape)
    if lead > 0:
        a, s = sr.reduce(a, s, tuple(range(lead)), False)
    elif lead < 0:
        a = a.reshape((1,) * -lead + a.shape)
        s = None if s is None else s.reshape(a.shape)
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and a.shape[i] != 1)
    if axes:
        a, s = sr.reduce(a, s, axes, True)
    full = tuple(shape) + a.shape[len(shape) :]
    if a.shape != full:
        a = xp.broadcast_to(a, full)
        s = None if s is None else xp.broadcast_to(s, full)
    return a, s


def _swap_last2(a: Any, nd: int) -> Any:
    axes = list(range(a.ndim))
    axes[nd - 2], axes[nd - 1] = axes[nd - 1], axes[nd - 2]
    return a.transpose(axes)


def _move(a: Any, src: int, dst: int) -> Any:
    axes = list(range(a.ndim))
    axes.insert(dst, axes.pop(src))
    return a.transpose(axes)


def _vshape_tail(sr: Semiring, a: Any) -> tuple[int, ...]:
    nv = len(sr.vshape)
    return tuple(a.shape[a.ndim - nv :]) if nv else ()


_SPARSE = 0.5  # compute only the rows holding a value when at most this fraction does


def _row_subset(sr: Semiring, a2: Any, xp: Any) -> Any:
    """Indices of the rows of ``a2`` (R, ...) that hold a value, or None when most do."""
    if a2.shape[0] < 4 or backend.is_device_array(a2):  # on a GPU, picking rows would cost a host sync
        return None
    nz = sr.nonzero_rows(a2)
    k = int(nz.sum())
    return None if k > _SPARSE * a2.shape[0] else xp.nonzero(nz)[0]


def _scatter_rows(sr: Semiring, rows: Any, R: int, r: Any, rs: Any, xp: Any) -> tuple[Any, Any]:
    """Results of a row subset put back among R rows of 0̄ (backpointers -1)."""
    inner = r.shape[1 : r.ndim - len(sr.vshape)]
    out = sr.zeros(xp, (R,) + inner, r.dtype)
    out[rows] = r
    outs = None
    if rs is not None:
        outs = xp.full(out.shape, -1, dtype=xp.int64)
        outs[rows] = rs
    return out, outs


def _vecmat_rows(sr: Semiring, a2: Any, s2: Any, P: Any, xp: Any) -> tuple[Any, Any]:
    """vecmat of (R, j) + v rows against a shared prepared W (k, j), skipping rows and columns j that hold no value.

    Backpointers stay exact: the src entries travel with the columns they belong to.
    """
    if backend.is_device_array(a2):  # on a GPU, skipping rows/columns would cost host syncs: compute them all
        return sr.vecmat_prepared(a2, s2, P)
    rows = _row_subset(sr, a2, xp)
    R = a2.shape[0]
    if rows is not None:
        a2, s2 = a2[rows], None if s2 is None else s2[rows]
    if a2.shape[1] >= 8:
        live = sr.nonzero_columns(a2)
        if int(live.sum()) <= _SPARSE * a2.shape[1]:
            cols = xp.nonzero(live)[0]
            a2, s2, P = a2[:, cols], None if s2 is None else s2[:, cols], sr.take_columns(P, cols)
    r, rs = sr.vecmat_prepared(a2, s2, P)
    return (r, rs) if rows is None else _scatter_rows(sr, rows, R, r, rs, xp)


def _prepared(sr: Semiring, st: Linear, tag: str, make_W: Any) -> Any:
    """The semiring's prepared form of a Linear structure's weights, kept in the structure's memo.

    Semirings of one ``prep_key`` share it; a later pass over the same forward (another
    semiring, output or index) reuses it instead of lifting W again.
    """
    if sr.prep_key is None:  # nothing to share: prepare afresh
        return sr.prepare(make_W())
    key = (sr.prep_key, tag)
    P = st.memo.get(key)
    if P is None:
        P = sr.prepare(make_W())
        st.memo[key] = P  # a racing thread may compute the same value; either copy is right
    return P


def apply_structure(sr: Semiring, st: Any, a: Any, s: Any, xp: Any) -> tuple[Any, Any]:
    """The adjoint contribution of one (node, input) pair, from the node's output adjoint ``a``."""
    v = _vshape_tail(sr, a)
    if isinstance(st, Elementwise):
        if st.out_view is not None:
            a = a.reshape(st.out_view + v)
            s = None if s is None else s.reshape(a.shape)
        if sr.edge_key is not None and getattr(st.d, "ndim", 0):  # lifted weights kept for later passes
            key = ("edge", sr.edge_key)
            P = st.memo.get(key)
            if P is None:
                P = st.memo[key] = sr.prepare_edge(st.d)
            a, s = sr.edge_prepared(a, s, P)
        else:
            a, s = sr.edge(a, s, st.d)
        return _fit(sr, a, s, st.in_shape, xp)
    if isinstance(st, Linear):
        a = a.reshape(st.adj_view + v)
        s = None if s is None else s.reshape(a.shape)
        nd = len(st.adj_view)
        W = st.W
        if st.transpose:
            a = _swap_last2(a, nd)
            s = None if s is None else _swap_last2(s, nd)
            if len(st.in_view) == 2 and nd > 2:
                # fold the batch into the contraction: one call instead of a batch and a ⊕-reduce
                p = a.shape[nd - 2]
                a = _move(a, nd - 2, 0).reshape((p, -1) + v)
                s = None if s is None else _move(s, nd - 2, 0).reshape(a.shape)

                def folded(W: Any = W) -> Any:
                    """W with the batch folded into its contraction axis, as ``a`` was."""
                    Wb = xp.broadcast_to(W, st.adj_view[:-2] + W.shape[-2:])
                    return _move(Wb, nd - 2, 0).reshape(W.shape[-2], -1)

                r, rs = sr.vecmat_prepared(a, s, _prepared(sr, st, "fold", folded))
                r, rs = _swap_last2(r, 2), None if rs is None else _swap_last2(rs, 2)
                return r.reshape(st.in_shape + v), None if rs is None else rs.reshape(st.in_shape + v)
        P = _prepared(sr, st, "W", lambda: W)
        if W.ndim == 2 and nd > 2:
            lead = a.shape[: nd - 1]
            a2 = a.reshape((-1, a.shape[nd - 1]) + v)
            r, rs = _vecmat_rows(sr, a2, None if s is None else s.reshape(a2.shape), P, xp)
            r = r.reshape(lead + r.shape[1:])
            rs = None if rs is None else rs.reshape(r.shape)
        else:
            r, rs = sr.vecmat_prepared(a, s, P)
        if st.transpose:
            r = _swap_last2(r, r.ndim - len(v))
            rs = None if rs is None else _swap_last2(rs, rs.ndim - len(v))
        r, rs = _fit(sr, r, rs, st.in_view, xp)
        return r.reshape(st.in_shape + v), None if rs is None else rs.reshape(st.in_shape + v)
    if isinstance(st, Take):
        return st.fn(a), None if s is None else st.fn(s)
    if isinstance(st, RowJacobian):
        nd = a.ndim - len(v)
        ax = st.axis
        if sr.use_vjp and st.vjp is not None:
            return _move(st.vjp(_move(a, ax, nd - 1)), nd - 1, ax), None
        am = _move(a, ax, nd - 1)
        lead, n = am.shape[: nd - 1], am.shape[nd - 1]
        a2 = am.reshape((int(np.prod(lead, dtype=np.int64)), n) + v)  # not -1: the tensor may be empty
        s2 = None if s is None else _move(s, ax, nd - 1).reshape(a2.shape)
        rows = _row_subset(sr, a2, xp)
        if rows is not None:  # only the rows that carry a value: J for those rows only
            a2, s2 = a2[rows], None if s2 is None else s2[rows]
        if a2.shape[0] == 0 or n == 0:  # no row holds a value, or there are none, or they are empty
            r = sr.zeros(xp, (a2.shape[0], n), a2.dtype)
            rs = xp.full(r.shape, -1, dtype=xp.int64) if sr.selective else None
        elif sr.fast_affine and st.affine is not None:  # structured J: a kernel that never builds it
            logc = None
            if rows is None:
                parts = st.memo.get("affine")
                if parts is None:
                    parts = st.memo["affine"] = st.affine(None)
                if sr.edge_key == "logabs":  # log|c|, shared by the log-space semirings
                    logc = st.memo.get("logc")
                    if logc is None:
                        logc = st.memo["logc"] = sr.prepare_edge(parts[0])
            else:
                parts = st.affine(rows)
            r, rs = sr.affine_vecmat(a2, s2, *parts, logc=logc)
        else:
            J = st.jac(rows) if rows is not None else st.jac().reshape(-1, n, n)  # (R, n_out, n_in)
            a3 = a2.reshape((a2.shape[0], 1, n) + v)
            r, rs = sr.vecmat(a3, None if s2 is None else s2.reshape(a3.shape), xp.swapaxes(J, -1, -2))
            r = r.reshape((a2.shape[0], n) + v)
            rs = None if rs is None else rs.reshape(r.shape)
        if rows is not None:
            r, rs = _scatter_rows(sr, rows, int(np.prod(lead, dtype=np.int64)), r, rs, xp)
        r = _move(r.reshape(lead + (n,) + v), nd - 1, ax)
        rs = None if rs is None else _move(rs.reshape(lead + (n,) + v), nd - 1, ax)
        return r, rs
    if isinstance(st, Scatter):
        size = 1
        for d in st.in_shape:
            size *= d
        if st.basic is not None:
            z = sr.zeros(xp, st.in_shape, a.dtype)
            z[st.basic] = a
            zs = None
            if s is not None:
                zs = xp.full(z.shape, -1, dtype=xp.int64)
                zs[st.basic] = s
            return z, zs
        rows = a.reshape((-1,) + v)
        srows = None if s is None else s.reshape(rows.shape)
        idx = st.index.reshape(-1)
        if st.unique:
            z = sr.zeros(xp, (size,), a.dtype)
            z[idx] = rows
            zs = None
            if srows is not None:
                zs = xp.full(z.shape, -1, dtype=xp.int64)
                zs[idx] = srows
        else:
            z, zs = sr.scatter(rows, srows, idx, size)
        return z.reshape(st.in_shape + v), None if zs is None else zs.reshape(st.in_shape + v)
    raise NotImplementedError(f"backprop: unknown local-derivative structure {type(st).__name__}")


# ---- the walk -----------------------------------------------------------------------------


@dataclass
class BackwardResult:
    """Values for the requested inputs, and (when kept) every tensor's values and backpointers."""

    semiring: Semiring
    values: list[Any]
    output: Tensor | None = None
    records: dict[int, tuple[Any, Any]] = field(default_factory=dict)  # id(tensor) -> (values, backpointers)
    edges: list[tuple[Node, int]] = field(default_factory=list)  # edge id -> (consumer node, input slot)
    node_out: dict[int, int] = field(default_factory=dict)  # id(node) -> id(its output tensor)


def backward(
    output: Tensor,
    inputs: Tensor | Iterable[Tensor],
    semiring: Any = None,
    grad_output: Any = None,
    keep: bool = False,
) -> BackwardResult:
    """Run one reverse pass of ``semiring`` from ``output`` to ``inputs`` (one Tensor, or an iterable of them).

    ``grad_output`` seeds a non-scalar output (lifted into the semiring: edges
    to a super-sink). With ``keep=True`` (selective semirings) every tensor's
    values and backpointers stay in the result for path reconstruction.
    """
    sr = _check_semiring(semiring)
    if not isinstance(output, Tensor):
        raise TypeError(f"backward: output must be a Tensor, got {type(output).__name__}")
    if isinstance(inputs, Tensor):  # one input (iterating a Tensor would walk its rows)
        inputs = [inputs]
    elif isinstance(inputs, (str, bytes)) or not isinstance(inputs, Iterable):
        raise TypeError(f"backward: inputs must be a Tensor or an iterable of Tensors, got {type(inputs).__name__}")
    else:
        inputs = list(inputs)  # a generator is read once
    if not output.requires_grad:
        raise RuntimeError(
            f"backward: the output (shape {output.shape}) does not require grad: no input of the ops that "
            "made it requires grad, or it was computed under st.no_grad()"
        )
    if grad_output is None and output.size != 1:
        raise RuntimeError(
            f"backward: the output has shape {output.shape}; a non-scalar output needs grad_output "
            "(a seed of the same shape), or reduce it to a scalar first"
        )
    for i, t in enumerate(inputs):
        if not isinstance(t, Tensor):
            raise TypeError(f"backward: inputs[{i}] is a {type(t).__name__}, not a Tensor")
        if not t.requires_grad:
            raise RuntimeError(f"backward: inputs[{i}] (shape {t.shape}) does not require grad")
    xp = backend.xp_of(output.data)
    if grad_output is not None:
        g = grad_output.data if isinstance(grad_output, Tensor) else grad_output
        if not backend.is_device_array(g):
            try:
                g = np.asarray(g)  # numbers and lists of numbers too
            except (TypeError, ValueError):
                g = np.asarray(None)
            if g.dtype.kind not in "biuf":
                raise TypeError(
                    f"backward: grad_output must be a Tensor, an array or a real number, got "
                    f"{type(grad_output).__name__}" + (f" of dtype {g.dtype}" if g.dtype.kind != "O" else "")
                )
        if tuple(getattr(g, "shape", ())) not in (output.shape, ()):
            raise ValueError(f"backward: grad_output has shape {tuple(g.shape)}, expected {output.shape}")
        grad_output = g

    order = topological_order(output)
    want = {id(t) for t in inputs}
    relevant: set[int] = set()
    for t in order:
        if id(t) in want or (t._node is not None and any(id(i) in relevant for i in t._node.inputs)):
            relevant.add(id(t))

    vdt = sr.value_dtype(output.dtype)
    adj: dict[int, Any] = {id(output): sr.seed(xp, output.shape, output.dtype, grad_output).astype(vdt, copy=False)}
    bps: dict[int, Any] = {}
    res = BackwardResult(sr, [], output if keep else None)
    if sr.selective:
        bps[id(output)] = xp.full(adj[id(output)].shape, -1, dtype=xp.int64)
    found: dict[int, tuple[Any, Any]] = {}
    for t in reversed(order):
        tid = id(t)
        if tid not in relevant or tid not in adj:
            continue
        a = adj.pop(tid)
        s = bps.pop(tid, None)
        if tid in want:
            found[tid] = (a, s)
        if keep:
            res.records[tid] = (a, s)
        node = t._node
        if node is None:
            continue
        if keep:
            res.node_out[id(node)] = tid
        structs = node.structures
        for slot, (inp, st) in enumerate(zip(node.inputs, structs, strict=True)):
            iid = id(inp)
            if st is None or iid not in relevant:
                continue
            src = None
            if sr.selective:  # backpointers into a's entries, tagged with this edge set's id
                eid = len(res.edges)
                res.edges.append((node, slot))
                base = eid << _EDGE_SHIFT
                src = xp.arange(base, base + a.size, dtype=xp.int64).reshape(a.shape)
            c, cs = apply_structure(sr, st, a, src, xp)  # cs: entries of src, or -1 where no path
            vt = sr.value_dtype(inp.dtype)
            if c.dtype != vt:
                c = c.astype(vt)
            if iid in adj:
                adj[iid], bps_new = sr.accumulate(adj[iid], bps.get(iid), c, cs)
                if bps_new is not None:
                    bps[iid] = bps_new
            else:
                adj[iid] = c
                if cs is not None:
                    bps[iid] = cs
    for t in inputs:
        if id(t) in found:
            val, _ = found[id(t)]
            full = t.shape + _vshape_tail(sr, val)
            if val.shape != full or not getattr(val.flags, "writeable", True) or 0 in val.strides:  # cupy: no flag
                val = xp.array(xp.broadcast_to(val, full))
        else:  # not connected to the output: no path
            val = sr.zeros(xp, t.shape, sr.value_dtype(t.dtype))
        res.values.append(val)
    return res


def grad(output: Tensor, inputs: Any, semiring: Any = None, grad_output: Any = None) -> Any:
    """The readout of ``semiring``'s backward pass from ``output`` to each of ``inputs``.

    With the default (``Real``) semiring this is d output / d input. ``inputs``
    may be one tensor (one array is returned) or a sequence (a list is
    returned). The tape is kept, so the same forward can be asked again with
    another semiring.
    """
    single = isinstance(inputs, Tensor)
    if not single and not isinstance(inputs, (list, tuple)):
        raise TypeError(f"grad: inputs must be a Tensor or a list/tuple of Tensors, got {type(inputs).__name__}")
    ins = [inputs] if single else list(inputs)
    res = backward(output, ins, semiring, grad_output)
    outs = [res.semiring.readout(v) for v in res.values]
    return outs[0] if single else outs


def backward_into_leaves(output: Tensor, grad_output: Any = None) -> None:
    """``Tensor.backward()``: accumulate the real gradient into ``.grad`` of every leaf that requires grad."""
    if not output.requires_grad:
        raise RuntimeError(
            f"backward: tensor of shape {output.shape} does not require grad (no input of the ops that made "
            "it requires grad, or it was computed under st.no_grad())"
        )
    leaves = [t for t in topological_order(output) if t._node is None and t.requires_grad]
    res = backward(output, leaves, Real(), grad_output)
    for t, g in zip(leaves, res.values, strict=True):
        g = g.astype(t.dtype, copy=False)
        t.grad = g if t.grad is None else t.grad + g
