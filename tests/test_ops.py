"""Every primitive op, one line each: forward vs torch (float64 and float32), real backward vs torch autograd
(float64, 1e-10 relative) and vs central finite differences (``st.testing.gradcheck``), on Hypothesis-drawn
shapes with broadcasting and size-1 axes.

A row is ``(name, gen, f_st, f_torch)``: ``gen(data)`` draws the float inputs (numpy arrays, differentiated)
and the constant arguments (axes, masks, ids, ...), which both functions take after the inputs.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import hypothesis.strategies as hs
import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from hypothesis import given

import semitorch as st
from semitorch.semirings import Count, Entropy, KBest, Log, MaxProduct, Real, SignedMax
from semitorch.testing import arrays, broadcastable_shapes, gradcheck, shapes

Gen = Callable[[Any], tuple[list[np.ndarray], list[Any]]]


def tc(x: Any) -> torch.Tensor:
    """A constant torch tensor from a numpy value."""
    return torch.as_tensor(np.asarray(x))


def assert_close(actual: Any, expected: Any, rtol: float, what: str) -> None:
    """Elementwise ``rtol``, plus an absolute slack of ``rtol`` times the arrays' largest magnitude.

    The magnitude is floored at 1: inputs are O(1) and seeds N(0, 1), so the terms summed are O(1) and
    rounding noise is measured on that scale (torch gives -7e-15 where layer_norm's gradient is exactly 0).
    """
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = max(np.abs(expected).max(initial=0.0), np.abs(actual).max(initial=0.0), 1.0)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, err_msg=what)


# ---- generators: data -> (float inputs, constants) --------------------------------------------


def ew(**kw: Any) -> Gen:
    """One input of any shape; ``kw`` goes to ``arrays`` (bounds, or a grid away from kinks)."""
    return lambda d: ([d.draw(arrays(d.draw(shapes()), **kw))], [])


def bcast(*specs: dict[str, Any]) -> Gen:
    """len(specs) broadcastable inputs; each spec is ``arrays`` keyword arguments."""

    def gen(d: Any) -> tuple[list[np.ndarray], list[Any]]:
        shps = d.draw(broadcastable_shapes(len(specs)))
        return [d.draw(arrays(s, **spec)) for s, spec in zip(shps, specs, strict=True)], []

    return gen


POS = dict(min_value=0.5, max_value=2.5)  # log, sqrt, fractional powers, denominators
OFF0 = dict(step=0.1, offset=0.05)  # a grid that never hits 0 (relu, abs, leaky_relu kinks)
DISTINCT = dict(step=0.01, unique=True)  # distinct values 0.01 apart: no arg-max ties


def with_mask(d: Any) -> tuple[list[np.ndarray], list[Any]]:
    """where(cond, a, b): three broadcastable shapes; the condition is a constant."""
    sc, sa, sb = d.draw(broadcastable_shapes(3))
    cond = d.draw(arrays(sc, bool, elements=hs.booleans()))
    return [d.draw(arrays(sa)), d.draw(arrays(sb))], [cond]


def fill_mask(d: Any) -> tuple[list[np.ndarray], list[Any]]:
    """masked_fill(x, mask, v): a mask that broadcasts to x's shape."""
    sx, sm = d.draw(broadcastable_shapes(2))
    sx = tuple(np.broadcast_shapes(sx, sm))
    return [d.draw(arrays(sx))], [d.draw(arrays(sm, bool, elements=hs.booleans())), -7.5]


def reduction(**kw: Any) -> Gen:
    """One input (>= 1 dim) and (axis: None, int or tuple, keepdims)."""

    def gen(d: Any) -> tuple[list[np.ndarray], list[Any]]:
        shp = d.draw(shapes(1))
        nd = len(shp)
        axis = d.draw(
            hs.one_of(
                hs.none(),
                hs.integers(-nd, nd - 1),
                hs.lists(hs.integers(0, nd - 1), unique=True, min_size=1, max_size=nd).map(tuple),
            )
        )
        return [d.draw(arrays(shp, **kw))], [axis, d.draw(hs.booleans())]

    return gen


def dims(a: torch.Tensor, axis: Any) -> Any:
    """torch's ``dim`` for a numpy-style ``axis`` (None: all axes)."""
    return tuple(range(a.ndim)) if axis is None else axis


def along_axis(d: Any) -> tuple[list[np.ndarray], list[Any]]:
    """One input (>= 1 dim) and an axis (negative allowed)."""
    shp = d.draw(shapes(1))
    return [d.draw(arrays(shp))], [d.draw(hs.integers(-len(shp), len(shp) - 1))]


def layer_norm_in(affine: bool) -> Gen:
    """x (>= 1 dim) and, if ``affine``, weight and bias of shape (n,)."""

    def gen(d: Any) -> tuple[list[np.ndarray], list[Any]]:
        shp = d.draw(shapes(1))
        xs = [d.draw(arrays(shp))]
        if affine:
            xs += [d.draw(arrays(shp[-1:])), d.draw(arrays(shp[-1:]))]
        return xs, []

    return gen


def ce(one_d: bool = False, ignore: int = -100) -> Gen:
    """logits (N, C) (or (C,)) and integer targets, some equal to ``ignore`` (never all of them)."""

    def gen(d: Any) -> tuple[list[np.ndarray], list[Any]]:
        n = 1 if one_d else d.draw(hs.integers(1, 4))
        c = d.draw(hs.integers(2 if ignore >= 0 else 1, 5))
        logits = d.draw(arrays((c,) if one_d else (n, c), min_value=-3.0, max_value=3.0))
        tg = np.array(d.draw(hs.lists(hs.integers(0, c - 1), min_size=n, max_size=n)), dtype=np.int64)
        ignored = np.array(d.draw(hs.lists(hs.booleans(), min_size=n, max_size=n)))
        keep = d.draw(hs.integers(0, n - 1))
        ignored[keep] = False
        if tg[keep] == ignore:
            tg[keep] = (ignore + 1) % c
        tg[ignored] = ignore
        return [logits], [tg.reshape(()) if one_d else tg]

    return gen


def matmul_in(d: Any) -> tuple[list[np.ndarray], list[Any]]:
    """Operands of a @ b: batched with broadcasting batch dims and size-1 axes, or 1-D on either side."""
    k = d.draw(hs.integers(1, 4))
    ba, bb = d.draw(broadcastable_shapes(2, max_dims=2))
    a_1d, b_1d = d.draw(hs.booleans()), d.draw(hs.booleans())
    sa = (k,) if a_1d else ba + (d.draw(hs.integers(1, 4)), k)
    sb = (k,) if b_1d else bb + (k, d.draw(hs.integers(1, 4)))
    return [d.draw(arrays(sa)), d.draw(arrays(sb))], []


def reshape_in(d: Any) -> tuple[list[np.ndarray], list[Any]]:
    """A shape and another with the same number of elements (axes permuted, 1s inserted, maybe a -1)."""
    shp = d.draw(shapes())
    new = list(d.draw(hs.permutations(list(shp))))
    for _ in range(d.draw(hs.integers(0, 2))):
        new.insert(d.draw(hs.integers(0, len(new))), 1)
    if new and d.draw(hs.booleans()):
        new[d.draw(hs.integers(0, len(new) - 1))] = -1
    return [d.draw(arrays(shp))], [tuple(new)]


def perm_in(d: Any) -> tuple[list[np.ndarray], list[Any]]:
    """An input and a permutation of its axes."""
    shp = d.draw(shapes())
    return [d.draw(arrays(shp))], [tuple(d.draw(hs.permutations(range(len(shp)))))]


def two_axes(d: Any) -> tuple[list[np.ndarray], list[Any]]:
    """An input (>= 1 dim) and two axes (negative allowed)."""
    shp = d.draw(shapes(1))
    ax = hs.integers(-len(shp), len(shp) - 1)
    return [d.draw(arrays(shp))], [d.draw(ax), d.draw(ax)]


def bcast_to_in(d: Any) -> tuple[list[np.ndarray], list[Any]]:
    """An input and a shape it broadcasts to (new leading axes, size-1 axes expanded)."""
    s, other = d.draw(broadcastable_shapes(2))
    return [d.draw(arrays(s))], [tuple(np.broadcast_shapes(s, other))]


def expand_in(d: Any) -> tuple[list[np.ndarray], list[Any]]:
    """An input and an axis in [-(ndim+1), ndim]."""
    shp = d.draw(shapes())
    return [d.draw(arrays(shp))], [d.draw(hs.integers(-len(shp) - 1, len(shp)))]


def squeeze_in(d: Any) -> tuple[list[np.ndarray], list[Any]]:
    """An input with size-1 axes and None or one of those axes."""
    shp = d.draw(shapes(1))
    ones = [i for i, s in enumerate(shp) if s == 1]
    return [d.draw(arrays(shp))], [d.draw(hs.sampled_from([None] + ones))]


def basic_index(d: Any) -> tuple[list[np.ndarray], list[Any]]:
    """ints (negative too) and slices (any step sign, possibly empty) on some of the leading axes."""
    shp = d.draw(shapes(1))
    idx = []
    for n in shp[: d.draw(hs.integers(1, len(shp)))]:
        if d.draw(hs.booleans()):
            idx.append(d.draw(hs.integers(-n, n - 1)))
        else:
            b = hs.one_of(hs.none(), hs.integers(-n - 1, n + 1))
            idx.append(slice(d.draw(b), d.draw(b), d.draw(hs.sampled_from([None, 1, 2, 3, -1, -2]))))
    return [d.draw(arrays(shp))], [tuple(idx)]


def newaxis_index(d: Any) -> tuple[list[np.ndarray], list[Any]]:
    """None and Ellipsis mixed with an int or a slice."""
    shp = d.draw(shapes(1))
    n = shp[-1]
    last = d.draw(hs.one_of(hs.integers(-n, n - 1), hs.just(slice(1, None)), hs.just(slice(None, None, -1))))
    idx = d.draw(hs.sampled_from([(None, Ellipsis, last), (Ellipsis, None, last), (Ellipsis, last, None), (None,)]))
    return [d.draw(arrays(shp))], [idx]


def array_index(d: Any) -> tuple[list[np.ndarray], list[Any]]:
    """An integer array (repeats and negative ids) on axis 0, or on axis 1 after a full slice."""
    shp = d.draw(shapes(1))
    on1 = len(shp) > 1 and d.draw(hs.booleans())
    n = shp[1] if on1 else shp[0]
    ids = np.array(d.draw(hs.lists(hs.integers(-n, n - 1), min_size=1, max_size=6)), dtype=np.int64)
    ids = ids.reshape(d.draw(hs.sampled_from([(-1,), (1, -1), (-1, 1)])))
    return [d.draw(arrays(shp))], [(slice(None), ids) if on1 else ids]


def bool_index(d: Any) -> tuple[list[np.ndarray], list[Any]]:
    """A boolean mask over the leading axes."""
    shp = d.draw(shapes(1))
    k = d.draw(hs.integers(1, len(shp)))
    return [d.draw(arrays(shp))], [d.draw(arrays(shp[:k], bool, elements=hs.booleans()))]


def tindex(t: torch.Tensor, idx: Any) -> torch.Tensor:
    """numpy indexing for torch: arrays natively; ints, slices (negative steps too), None, Ellipsis by axis."""
    idx = idx if isinstance(idx, tuple) else (idx,)
    if any(isinstance(i, np.ndarray) for i in idx):
        return t[tuple(tc(i) if isinstance(i, np.ndarray) else i for i in idx)]
    real = sum(1 for i in idx if i is not None and i is not Ellipsis)
    if not any(i is Ellipsis for i in idx):
        idx = idx + (Ellipsis,)
    k = next(j for j, i in enumerate(idx) if i is Ellipsis)
    idx = idx[:k] + (slice(None),) * (t.ndim - real) + idx[k + 1 :]
    ax = 0
    for i in idx:
        if i is None:
            t, ax = t.unsqueeze(ax), ax + 1
        elif isinstance(i, int):
            t = t.select(ax, i)
        else:
            t, ax = t.index_select(ax, torch.as_tensor(np.arange(t.shape[ax])[i].copy(), dtype=torch.long)), ax + 1
    return t


def concat_in(stacked: bool) -> Gen:
    """1-3 inputs of one shape (stack), or differing along the concat axis (concat); and the axis."""

    def gen(d: Any) -> tuple[list[np.ndarray], list[Any]]:
        shp = d.draw(shapes(0 if stacked else 1))
        k = d.draw(hs.integers(1, 3))
        if stacked:
            return [d.draw(arrays(shp)) for _ in range(k)], [d.draw(hs.integers(-len(shp) - 1, len(shp)))]
        ax = d.draw(hs.integers(-len(shp), len(shp) - 1))
        sizes = [d.draw(hs.integers(1, 3)) for _ in range(k)]
        xs = [d.draw(arrays(shp[: ax % len(shp)] + (s,) + shp[ax % len(shp) + 1 :])) for s in sizes]
        return xs, [ax]

    return gen


def split_in(d: Any) -> tuple[list[np.ndarray], list[Any]]:
    """An input, equal sections (a divisor of the axis size) or sorted cut indices, an axis, and which part."""
    shp = d.draw(shapes(1))
    ax = d.draw(hs.integers(-len(shp), len(shp) - 1))
    n = shp[ax]
    if d.draw(hs.booleans()):
        how: Any = d.draw(hs.sampled_from([k for k in range(1, n + 1) if n % k == 0]))
        parts = how
    else:
        how = sorted(d.draw(hs.lists(hs.integers(0, n), max_size=3)))
        parts = len(how) + 1
    return [d.draw(arrays(shp))], [how, ax, d.draw(hs.integers(0, parts - 1))]


def embedding_in(d: Any) -> tuple[list[np.ndarray], list[Any]]:
    """A table (V, D) and integer ids of any shape, repeats included."""
    v, dim = d.draw(hs.integers(1, 5)), d.draw(hs.integers(1, 4))
    ids = d.draw(arrays(d.draw(shapes(max_dims=2)), np.int64, 0, v - 1))
    return [d.draw(arrays((v, dim)))], [ids]


def dropout_in(d: Any) -> tuple[list[np.ndarray], list[Any]]:
    """An input, a drop probability and a mask seed."""
    return ew()(d)[0], [d.draw(hs.sampled_from([0.0, 0.2, 0.5, 0.9])), d.draw(hs.integers(0, 2**32 - 1))]


def dropout_ref(a: torch.Tensor, p: float, seed: int) -> torch.Tensor:
    """The documented dropout: keep where default_rng(seed).random(shape) >= p, scale by 1/(1-p)."""
    keep = np.random.default_rng(seed).random(tuple(a.shape)) >= p
    return a * tc(keep).to(a.dtype) / (1.0 - p)


# ---- the table: one line per op ---------------------------------------------------------------

CASES: list[tuple[str, Gen, Callable[..., Any], Callable[..., Any]]] = [
    ("add", bcast({}, {}), lambda a, b: a + b, lambda a, b: a + b),
    ("add_scalar", ew(), lambda a: 2.5 + a, lambda a: 2.5 + a),
    ("sub", bcast({}, {}), lambda a, b: a - b, lambda a, b: a - b),
    ("rsub_scalar", ew(), lambda a: 2.5 - a, lambda a: 2.5 - a),
    ("mul", bcast({}, {}), lambda a, b: a * b, lambda a, b: a * b),
    ("div", bcast({}, POS), lambda a, b: a / b, lambda a, b: a / b),
    ("rdiv_scalar", ew(**POS), lambda a: 1.5 / a, lambda a: 1.5 / a),
    ("neg", ew(), lambda a: -a, lambda a: -a),
    ("pow_int", ew(), lambda a: a**3, lambda a: a**3),
    ("pow_frac", ew(**POS), lambda a: st.pow(a, -1.5), lambda a: a**-1.5),
    ("square", ew(), st.square, torch.square),
    ("exp", ew(), st.exp, torch.exp),
    ("log", ew(**POS), st.log, torch.log),
    ("sqrt", ew(**POS), st.sqrt, torch.sqrt),
    ("abs", ew(**OFF0), st.abs, torch.abs),
    ("tanh", ew(), st.tanh, torch.tanh),
    ("sigmoid", ew(min_value=-6.0, max_value=6.0), st.sigmoid, torch.sigmoid),
    ("relu", ew(**OFF0), st.relu, torch.relu),
    ("leaky_relu", ew(**OFF0), lambda a: st.leaky_relu(a, 0.1), lambda a: F.leaky_relu(a, 0.1)),
    ("gelu_erf", ew(min_value=-3.0, max_value=3.0), st.gelu, F.gelu),
    ("gelu_tanh", ew(min_value=-3.0, max_value=3.0), lambda a: st.gelu(a, "tanh"),
     lambda a: F.gelu(a, approximate="tanh")),  # fmt: skip
    ("maximum", bcast(dict(step=0.1), dict(step=0.1, offset=0.05)), st.maximum, torch.maximum),
    ("minimum", bcast(dict(step=0.1), dict(step=0.1, offset=0.05)), st.minimum, torch.minimum),
    ("where", with_mask, lambda a, b, c: st.where(c, a, b), lambda a, b, c: torch.where(tc(c), a, b)),
    ("masked_fill", fill_mask, lambda a, m, v: a.masked_fill(m, v), lambda a, m, v: a.masked_fill(tc(m), v)),
    ("clip", ew(step=0.2, offset=0.1), lambda a: st.clip(a, -0.55, 0.45), lambda a: a.clamp(-0.55, 0.45)),
    ("clip_lo", ew(step=0.2, offset=0.1), lambda a: st.clip(a, -0.55), lambda a: a.clamp(min=-0.55)),
    ("sum", reduction(), lambda a, ax, kd: a.sum(ax, kd), lambda a, ax, kd: a.sum(dims(a, ax), keepdim=kd)),
    ("mean", reduction(), lambda a, ax, kd: a.mean(ax, kd), lambda a, ax, kd: a.mean(dims(a, ax), keepdim=kd)),
    ("max", reduction(**DISTINCT), lambda a, ax, kd: a.max(ax, kd), lambda a, ax, kd: a.amax(dims(a, ax), kd)),
    ("logsumexp", reduction(), st.logsumexp, lambda a, ax, kd: torch.logsumexp(a, dims(a, ax), kd)),
    ("softmax", along_axis, st.softmax, torch.softmax),
    ("log_softmax", along_axis, st.log_softmax, torch.log_softmax),
    ("layer_norm", layer_norm_in(True), st.layer_norm, lambda a, w, b: F.layer_norm(a, a.shape[-1:], w, b)),
    ("layer_norm_plain", layer_norm_in(False), st.layer_norm, lambda a: F.layer_norm(a, a.shape[-1:])),
    ("cross_entropy_mean", ce(), st.cross_entropy, lambda a, t: F.cross_entropy(a, tc(t))),
    ("cross_entropy_sum", ce(), lambda a, t: st.cross_entropy(a, t, reduction="sum"),
     lambda a, t: F.cross_entropy(a, tc(t), reduction="sum")),  # fmt: skip
    ("cross_entropy_none", ce(), lambda a, t: st.cross_entropy(a, t, reduction="none"),
     lambda a, t: F.cross_entropy(a, tc(t), reduction="none")),  # fmt: skip
    ("cross_entropy_ignore0", ce(ignore=0), lambda a, t: st.cross_entropy(a, t, ignore_index=0),
     lambda a, t: F.cross_entropy(a, tc(t), ignore_index=0)),  # fmt: skip
    ("cross_entropy_1d", ce(one_d=True), st.cross_entropy, lambda a, t: F.cross_entropy(a, tc(t))),
    ("matmul", matmul_in, lambda a, b: a @ b, lambda a, b: a @ b),
    ("reshape", reshape_in, st.reshape, torch.reshape),
    ("transpose", perm_in, st.transpose, torch.permute),
    ("permute_method", perm_in, lambda a, p: a.permute(*p), lambda a, p: a.permute(p)),
    ("transpose_reverse", ew(), lambda a: a.T, lambda a: a.permute(tuple(reversed(range(a.ndim))))),
    ("swapaxes", two_axes, st.swapaxes, torch.swapaxes),
    ("broadcast_to", bcast_to_in, st.broadcast_to, torch.broadcast_to),
    ("expand_dims", expand_in, st.expand_dims, torch.unsqueeze),
    ("squeeze", squeeze_in, st.squeeze, lambda a, ax: a.squeeze() if ax is None else a.squeeze(ax)),
    ("getitem_basic", basic_index, lambda a, i: a[i], tindex),
    ("getitem_newaxis", newaxis_index, lambda a, i: a[i], tindex),
    ("getitem_int_array", array_index, lambda a, i: a[i], tindex),
    ("getitem_bool", bool_index, lambda a, i: a[i], tindex),
    ("concat", concat_in(False), lambda *xs: st.concat(xs[:-1], xs[-1]), lambda *xs: torch.cat(xs[:-1], xs[-1])),
    ("stack", concat_in(True), lambda *xs: st.stack(xs[:-1], xs[-1]), lambda *xs: torch.stack(xs[:-1], xs[-1])),
    ("split", split_in, lambda a, h, ax, i: st.split(a, h, ax)[i], lambda a, h, ax, i: torch.tensor_split(a, h, ax)[i]),
    ("embedding", embedding_in, lambda t, i: st.embedding(i, t), lambda t, i: F.embedding(tc(i), t)),
    ("dropout_train", dropout_in, lambda a, p, s: st.dropout(a, p, True, s), dropout_ref),
    ("dropout_eval", dropout_in, lambda a, p, s: st.dropout(a, p, False, s), lambda a, p, s: F.dropout(a, p, False)),
]  # fmt: skip


def check_op(d: Any, gen: Gen, f_st: Callable[..., Any], f_torch: Callable[..., Any]) -> None:
    """The one helper: forward vs torch (float64, float32), backward vs torch autograd and gradcheck."""
    xs, consts = gen(d)
    ts = [st.tensor(x, requires_grad=True) for x in xs]
    tt = [torch.tensor(x, requires_grad=True) for x in xs]
    out, ref = f_st(*ts, *consts), f_torch(*tt, *consts)
    assert isinstance(out, st.Tensor) and out.dtype == np.float64
    assert_close(out.numpy(), ref.detach().numpy(), 1e-10, "float64 forward")

    rng = np.random.default_rng(d.draw(hs.integers(0, 2**32 - 1), label="seed"))
    seed = rng.standard_normal(out.shape)
    grads = st.grad(out, ts, grad_output=seed)
    if ref.requires_grad:
        tg = torch.autograd.grad(ref, tt, tc(seed), allow_unused=True)
    else:  # the output does not depend on the inputs (e.g. an empty index)
        tg = (None,) * len(tt)
    for i, (g, r) in enumerate(zip(grads, tg, strict=True)):
        ref_g = np.zeros(xs[i].shape) if r is None else r.numpy()
        assert_close(g, ref_g, 1e-10, f"gradient of input {i}")
    gradcheck(lambda *a: f_st(*a, *consts), ts, grad_output=seed)

    out32 = f_st(*[st.tensor(x.astype(np.float32), requires_grad=True) for x in xs], *consts)
    ref32 = f_torch(*[torch.tensor(x.astype(np.float32)) for x in xs], *consts)
    assert out32.dtype == np.float32, f"float32 inputs gave a {out32.dtype} output"
    assert_close(out32.numpy(), ref32.numpy(), 1e-5, "float32 forward")


@pytest.mark.parametrize(("name", "gen", "f_st", "f_torch"), CASES, ids=[c[0] for c in CASES])
@given(d=hs.data())
def test_op(name: str, gen: Gen, f_st: Callable[..., Any], f_torch: Callable[..., Any], d: Any) -> None:
    """Forward and real backward of one op agree with torch and with finite differences."""
    check_op(d, gen, f_st, f_torch)


def test_every_registered_op_is_in_the_table() -> None:
    """Each built-in op of the registry has a row here (so a new op cannot land untested)."""
    names = [name for name, *_ in CASES]
    builtin = [op for op, fn in st.OPS.items() if fn.__module__.startswith("semitorch.ops.")]
    missing = sorted(
        op for op in builtin if op != "astype" and not any(n == op or n.startswith(f"{op}_") for n in names)
    )
    assert not missing, f"ops without a row in test_ops.CASES: {missing}"


def test_maximum_minimum_ties_split_like_torch() -> None:
    """On ties maximum/minimum give ½ to each operand, as torch does."""
    x = np.array([1.0, 2.0, 3.0])
    y = np.array([1.0, 0.0, 3.0])
    for f_st, f_t in ((st.maximum, torch.maximum), (st.minimum, torch.minimum)):
        a, b = st.tensor(x, requires_grad=True), st.tensor(y, requires_grad=True)
        ta, tb = torch.tensor(x, requires_grad=True), torch.tensor(y, requires_grad=True)
        ga = st.grad(f_st(a, b).sum(), [a, b])
        gt = torch.autograd.grad(f_t(ta, tb).sum(), [ta, tb])
        for g, r in zip(ga, gt, strict=True):
            np.testing.assert_array_equal(g, r.numpy())


def test_cross_entropy_all_ignored_is_nan_with_zero_gradient_like_torch() -> None:
    """Mean over zero kept rows: the loss is NaN and the gradient 0, as in torch."""
    x = np.random.default_rng(0).standard_normal((2, 3))
    a, ta = st.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    tg = np.array([-100, -100])
    loss, ref = st.cross_entropy(a, tg), F.cross_entropy(ta, tc(tg))
    assert np.isnan(loss.item()) and np.isnan(ref.item())
    np.testing.assert_array_equal(st.grad(loss, a), torch.autograd.grad(ref, ta)[0].numpy())


def test_max_ties_take_the_lowest_index() -> None:
    """max keeps one edge, to the first arg-max in C order over the reduced axes (documented in reduce.py)."""
    x = st.tensor(np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]]), requires_grad=True)
    np.testing.assert_array_equal(st.grad(x.max(1).sum(), x), [[0, 1, 0], [1, 0, 0]])
    np.testing.assert_array_equal(st.grad(x.max(), x), [[0, 1, 0], [0, 0, 0]])


def test_gradcheck_catches_a_wrong_gradient() -> None:
    """gradcheck raises, naming the worst element, when the recorded edges are wrong."""
    x = st.tensor(np.array([0.5, 1.5]), requires_grad=True)
    # exp(x) recorded as relu(x) * e^x with e^x a constant: the true derivative of the value is e^x,
    # but the gradient misses the term through the constant
    bad = lambda a: st.relu(a) * st.tensor(np.exp(a.data))  # noqa: E731
    with pytest.raises(AssertionError, match=r"gradcheck failed: 2 of 2 elements mismatch; worst: input 0"):
        gradcheck(bad, [x])


def test_non_bool_conditions_mean_nonzero() -> None:
    """where/masked_fill with an integer condition behave like its != 0 boolean (edges included), as torch."""
    x = np.array([1.0, 2.0, 3.0])
    c = np.array([2, 0, -1])
    a, b = st.tensor(x, requires_grad=True), st.tensor(-x, requires_grad=True)
    ta, tb = torch.tensor(x, requires_grad=True), torch.tensor(-x, requires_grad=True)
    out, ref = (
        st.where(c, a, b) + a.masked_fill(c, 0.0),
        torch.where(tc(c != 0), ta, tb) + ta.masked_fill(tc(c != 0), 0.0),
    )
    np.testing.assert_array_equal(out.numpy(), ref.detach().numpy())
    for g, r in zip(st.grad(out.sum(), [a, b]), torch.autograd.grad(ref.sum(), [ta, tb]), strict=True):
        np.testing.assert_array_equal(g, r.numpy())


# ---- st.testing itself ----------------------------------------------------------------------


def test_gradcheck_passes_float32_inputs_as_float64_and_returns_true() -> None:
    """float32 inputs are checked as float64 copies; constants and integer arguments pass through."""
    x = st.tensor(np.float32([[0.5, -1.0], [2.0, 0.25]]), requires_grad=True)
    ids = np.array([1, 0, 1])
    assert gradcheck(lambda t, i: st.embedding(i, t) * st.tanh(t).sum(), [x, ids]) is True
    assert gradcheck(lambda a, b: a @ b, [np.ones((2, 3)), np.arange(6.0).reshape(3, 2)]) is True


def test_gradcheck_needs_a_differentiable_input() -> None:
    """Nothing to check is an error, not a silent pass."""
    with pytest.raises(ValueError, match="gradcheck: no input is differentiable"):
        gradcheck(lambda a: a * 2.0, [st.tensor([1.0])])


@given(d=hs.data())
def test_strategies_draw_what_they_promise(d: Any) -> None:
    """shapes are bounded; broadcastable_shapes broadcast; arrays respect bounds and grids."""
    shp = d.draw(shapes(1, 3, max_side=4))
    assert 1 <= len(shp) <= 3 and all(1 <= s <= 4 for s in shp)
    group = d.draw(broadcastable_shapes(3))
    full = np.broadcast_shapes(*group)
    assert all(len(s) <= len(full) for s in group)
    x = d.draw(arrays(shp, min_value=-1.0, max_value=1.5))
    assert x.shape == shp and x.dtype == np.float64 and np.all((x >= -1.0) & (x <= 1.5))
    g = d.draw(arrays(shp, np.float32, step=0.1, offset=0.05))
    assert g.dtype == np.float32 and np.all(np.abs(g) >= 0.049)
    np.testing.assert_allclose(
        (g.astype(np.float64) - 0.05) / 0.1, np.round((g.astype(np.float64) - 0.05) / 0.1), atol=1e-5
    )


def test_strategies_cover_size_one_axes_and_missing_leading_axes() -> None:
    """Over many draws, size-1 axes and operands with fewer dims than the result both occur."""
    from hypothesis import find

    find(shapes(1, 3), lambda s: 1 in s and len(s) == 3)
    find(broadcastable_shapes(2), lambda g: len(g[0]) < len(np.broadcast_shapes(*g)) and 1 in g[1])


def test_testing_imports_without_hypothesis() -> None:
    """semitorch.testing imports Hypothesis lazily: the module loads when Hypothesis cannot be imported."""
    import subprocess
    import sys

    code = "import sys; sys.modules['hypothesis'] = None; import semitorch.testing as t; print(t.gradcheck.__name__)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert r.returncode == 0 and r.stdout.strip() == "gradcheck", r.stderr


@pytest.mark.parametrize("shape", [(4, 0), (3, 0), (1, 0), (0,), (0, 4), (0, 0), (2, 0, 3)], ids=str)
@pytest.mark.parametrize("op", ["softmax", "log_softmax", "layer_norm"])
def test_row_ops_on_empty_tensors_match_torch(op, shape):
    """softmax, log_softmax and layer_norm of an empty tensor (the normalised axis empty too) give torch's empty
    result, without warnings, and every semiring's backward gives an empty adjoint."""
    x = np.zeros(shape, np.float32)
    fns = {
        "softmax": (lambda a: st.softmax(a, -1), lambda a: torch.softmax(a, -1)),
        "log_softmax": (lambda a: st.log_softmax(a, 0), lambda a: torch.log_softmax(a, 0)),
        "layer_norm": (
            lambda a: st.layer_norm(a, st.tensor(np.ones(shape[-1], np.float32))),
            lambda a: F.layer_norm(a, (shape[-1],), torch.ones(shape[-1])),
        ),
    }
    f, tf = fns[op]
    want = tf(torch.tensor(x)).numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        xt = st.tensor(x, requires_grad=True)
        y = f(xt)
        assert y.shape == want.shape and y.dtype == np.float32
        for sr in [Real(), Log(), Entropy(), MaxProduct(), KBest(3), SignedMax(), Count()]:
            g = st.grad(y.sum() + (xt * 0).sum(), [xt], semiring=sr)[0]
            assert g.shape[: len(shape)] == shape
