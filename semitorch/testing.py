"""Testing helpers: ``gradcheck`` (finite differences), Hypothesis strategies, and semiring law checks.

``import semitorch.testing`` needs only numpy; Hypothesis is imported lazily
inside the strategy functions and :func:`assert_semiring_laws`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .backend import to_numpy
from .backprop import grad
from .semirings.base import Semiring
from .tape import no_grad
from .tensor import Tensor

__all__ = ["arrays", "assert_semiring_laws", "broadcastable_shapes", "gradcheck", "shapes"]


# ---- gradcheck ------------------------------------------------------------------------------


def _prepare(x: Any) -> tuple[Any, bool]:
    """A float64 copy of a differentiable input (and True), or the input unchanged (and False)."""
    if isinstance(x, Tensor):
        if not x.requires_grad:
            return x, False
        return Tensor(np.array(to_numpy(x.data), dtype=np.float64), requires_grad=True), True
    if isinstance(x, np.ndarray) and x.dtype.kind == "f":
        return Tensor(np.array(x, dtype=np.float64), requires_grad=True), True
    return x, False


def gradcheck(
    fn: Callable[..., Tensor],
    inputs: Sequence[Any],
    eps: float = 1e-6,
    rtol: float = 1e-6,
    atol: float = 1e-8,
    grad_output: Any = None,
) -> bool:
    """Check ``st.grad`` (Real semiring) of ``fn(*inputs)`` against central finite differences in float64.

    Inputs that are Tensors with ``requires_grad`` or float numpy arrays are
    checked (as float64 copies); anything else (constant tensors, integer ids,
    Python values) is passed through unchanged. ``grad_output`` seeds a
    non-scalar output; when omitted a fixed random seed (``default_rng(0)``) is
    used so that every output element is weighted. An element passes when
    ``|analytic − numeric| ≤ atol + rtol·|numeric|``.

    Raises ``AssertionError`` naming the worst element (input, index, both
    values) on mismatch; returns True otherwise.
    """
    prepared = [_prepare(x) for x in inputs]
    ins = [x for x, _ in prepared]
    checked = [i for i, (_, c) in enumerate(prepared) if c]
    if not checked:
        raise ValueError("gradcheck: no input is differentiable (pass float arrays or tensors with requires_grad=True)")
    out = fn(*ins)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck: fn must return a Tensor, got {type(out).__name__}")
    if grad_output is None:
        g = np.random.default_rng(0).standard_normal(out.shape)
    else:
        g = np.asarray(to_numpy(getattr(grad_output, "data", grad_output)), dtype=np.float64)
        g = np.broadcast_to(g, out.shape)
    analytic = grad(out, [ins[i] for i in checked], grad_output=np.array(g, dtype=out.dtype))

    def value() -> np.ndarray:
        with no_grad():
            o = fn(*ins)
        # copy: the output may be a view of an input that is about to change back
        return np.array(to_numpy(o.data), dtype=np.float64)

    worst: tuple[float, str] | None = None
    bad = total = 0
    for k, i in enumerate(checked):
        x = ins[i].data
        flat = x.reshape(-1)
        a = np.asarray(to_numpy(analytic[k]), dtype=np.float64)
        if a.shape != x.shape:
            raise AssertionError(f"gradcheck: input {i}: analytic gradient has shape {a.shape}, expected {x.shape}")
        num = np.empty(x.shape, dtype=np.float64)
        nflat = num.reshape(-1)
        for j in range(flat.size):
            orig = flat[j]
            flat[j] = orig + eps
            fp = value()
            flat[j] = orig - eps
            fm = value()
            flat[j] = orig
            nflat[j] = float(np.sum(g * (fp - fm))) / (2.0 * eps)
        excess = np.abs(a - num) - (atol + rtol * np.abs(num))
        excess = np.where(np.isnan(excess), np.inf, excess)
        total += excess.size
        bad += int((excess > 0).sum())
        if excess.size:
            j = int(np.argmax(excess))
            idx = np.unravel_index(j, x.shape)
            if excess.reshape(-1)[j] > 0 and (worst is None or excess.reshape(-1)[j] > worst[0]):
                an, nu = a.reshape(-1)[j], num.reshape(-1)[j]
                worst = (
                    float(excess.reshape(-1)[j]),
                    f"input {i} (shape {x.shape}) element {tuple(int(v) for v in idx)}: analytic {an!r} vs numeric "
                    f"{nu!r} (|diff| {abs(an - nu):.3e} > atol + rtol·|numeric| = {atol + rtol * abs(nu):.3e})",
                )
    if worst is not None:
        raise AssertionError(f"gradcheck failed: {bad} of {total} elements mismatch; worst: {worst[1]}")
    return True


# ---- Hypothesis strategies ---------------------------------------------------------------


def _hyp() -> Any:
    import hypothesis.strategies as hs  # noqa: PLC0415

    return hs


def _side(min_side: int, max_side: int) -> Any:
    hs = _hyp()
    side = hs.integers(min_side, max_side)
    # size-1 axes are where broadcasting bugs hide: draw them often
    return hs.one_of(hs.just(1), side) if min_side <= 1 <= max_side else side


def shapes(min_dims: int = 0, max_dims: int = 3, min_side: int = 1, max_side: int = 4) -> Any:
    """Strategy for array shapes (tuples of ints), drawing size-1 axes often."""
    hs = _hyp()
    return hs.lists(_side(min_side, max_side), min_size=min_dims, max_size=max_dims).map(tuple)


def broadcastable_shapes(n: int = 2, min_dims: int = 0, max_dims: int = 3, min_side: int = 1, max_side: int = 4) -> Any:
    """Strategy for ``n``-tuples of shapes that broadcast together.

    A result shape is drawn first; each operand takes a suffix of it (missing
    leading axes) and replaces some of its axes by 1.
    """
    hs = _hyp()

    @hs.composite
    def draw_shapes(draw: Any) -> tuple[tuple[int, ...], ...]:
        full = draw(shapes(min_dims, max_dims, min_side, max_side))
        out = []
        for _ in range(n):
            nd = draw(hs.integers(min(min_dims, len(full)), len(full)))
            suffix = full[len(full) - nd :]
            ones = draw(hs.lists(hs.booleans(), min_size=nd, max_size=nd))
            out.append(tuple(1 if o else s for s, o in zip(suffix, ones, strict=True)))
        return tuple(out)

    return draw_shapes()


def arrays(
    shape: Any,
    dtype: Any = np.float64,
    min_value: float = -2.0,
    max_value: float = 2.0,
    *,
    step: float | None = None,
    offset: float = 0.0,
    unique: bool = False,
    elements: Any = None,
) -> Any:
    """Strategy for numpy arrays of ``shape`` (a tuple or a strategy) with bounded finite elements.

    With ``step``, elements lie on the grid ``offset + k·step`` inside
    [min_value, max_value]: use it to keep values away from kinks and ties
    (e.g. ``step=0.1, offset=0.05`` never hits 0; with ``unique=True`` distinct
    values are at least ``step`` apart). ``elements`` overrides the element
    strategy entirely.
    """
    hs = _hyp()
    from hypothesis.extra import numpy as hnp  # noqa: PLC0415

    dt = np.dtype(dtype)
    if elements is None:
        if step is not None:
            lo = math.ceil((min_value - offset) / step - 1e-9)
            hi = math.floor((max_value - offset) / step + 1e-9)
            elements = hs.integers(lo, hi).map(lambda k: dt.type(offset + k * step))
        elif dt.kind == "f":
            elements = hs.floats(
                min_value,
                max_value,
                allow_nan=False,
                allow_infinity=False,
                allow_subnormal=False,
                width=8 * dt.itemsize,
            )
        elif dt.kind in "iu":
            elements = hs.integers(math.ceil(min_value), math.floor(max_value))
        else:
            raise ValueError(f"arrays: unsupported dtype {dt}")
    return hnp.arrays(dt, shape, elements=elements, unique=unique)


# ---- semiring laws --------------------------------------------------------------------------


def _mask_like(mask: np.ndarray, nv: int) -> np.ndarray:
    return mask.reshape(mask.shape + (1,) * nv)


def _draw_elements(sr: Semiring, data: Any, n: int, dtype: Any) -> list[np.ndarray]:
    """Three arrays of ``n`` semiring elements, each reachable in a real graph.

    Real weights (zero included) are lifted; further elements are random ⊕/⊗
    combinations of lifted weights, 0̄ and 1̄, mixed per element.
    """
    hs = _hyp()
    nv = len(sr.vshape)
    vdt = sr.value_dtype(np.dtype(dtype))
    weights = data.draw(
        hs.lists(arrays((n,), dtype, -4.0, 4.0), min_size=1, max_size=3),
        label="weights",
    )
    pool = [np.asarray(sr.lift(w)).astype(vdt, copy=False) for w in weights]
    pool += [np.asarray(sr.zeros(np, (n,), vdt)), np.asarray(sr.ones(np, (n,), vdt))]
    rng = np.random.default_rng(data.draw(hs.integers(0, 2**32 - 1), label="seed"))
    steps = data.draw(hs.integers(0, 8), label="combination steps")
    for _ in range(steps):
        i = data.draw(hs.integers(0, len(pool) - 1))
        j = data.draw(hs.integers(0, len(pool) - 1))
        op = sr.plus if data.draw(hs.booleans()) else sr.times
        new = np.asarray(op(pool[i], pool[j][rng.permutation(n)]))
        keep = rng.random(n) < 0.25  # some elements stay as they were: mixed depths
        pool.append(np.where(_mask_like(keep, nv), pool[i], new))
    stacked = np.stack(pool)  # (pool, n) + vshape
    return [stacked[rng.integers(0, len(pool), size=n), np.arange(n)] for _ in range(3)]


def _scale(nv: int, *terms: np.ndarray) -> np.ndarray:
    """Per structural element, the largest finite magnitude among ``terms`` (1 where there is none)."""
    mags = []
    for t in terms:
        t = np.asarray(t, dtype=np.float64)
        m = np.where(np.isfinite(t), np.abs(t), 0.0)
        mags.append(m.reshape(m.shape[:1] + (-1,)).max(axis=1) if nv else m)
    s = np.max(np.stack(mags), axis=0)
    return np.where(s > 0, s, 1.0)


def assert_semiring_laws(
    semiring: Semiring,
    n: int = 16,
    *,
    data: Any = None,
    max_examples: int | None = None,
    rtol: float = 1e-9,
    dtype: Any = np.float64,
) -> None:
    """Check the semiring axioms of ``semiring`` on Hypothesis-drawn elements.

    ⊕ is associative and commutative with identity 0̄; ⊗ is associative and
    commutative (unless the semiring sets ``commutative = False``) with
    identity 1̄; ⊗ distributes over ⊕ on both sides; 0̄ annihilates. Elements
    are arrays of shape (n,) + vshape built from lifted real weights (see
    :func:`_draw_elements`), so vector-valued semirings are covered; values
    must never be NaN.

    Values are compared with ``numpy.testing.assert_allclose`` (equal
    infinities are equal) after dividing each element by the largest finite
    magnitude among the law's operands and intermediate results: float error
    in a sum of terms is relative to the terms, not to the (possibly
    cancelling) result. A semiring may define ``assert_close(a, b)`` to
    override the comparison (e.g. for a non-canonical representation).

    Pass ``data`` (a Hypothesis ``data()`` object) to draw inside an existing
    ``@given`` test; otherwise the check runs its own ``@given`` test with the
    active settings profile (``max_examples`` overrides it).
    """
    if not isinstance(semiring, Semiring):
        raise TypeError(f"assert_semiring_laws: expected a Semiring instance, got {type(semiring).__name__}")
    sr = semiring
    nv = len(sr.vshape)
    custom = getattr(sr, "assert_close", None)

    def close(law: str, lhs: Any, rhs: Any, operands: dict[str, np.ndarray], *terms: Any) -> None:
        lhs, rhs = np.asarray(lhs), np.asarray(rhs)
        for name, v in (("lhs", lhs), ("rhs", rhs)):
            if np.isnan(np.asarray(v, dtype=np.float64)).any():
                raise AssertionError(f"{sr.name}: {law}: {name} contains NaN")
        try:
            if lhs.shape != rhs.shape:
                raise AssertionError(f"shapes differ: {lhs.shape} vs {rhs.shape}")
            if custom is not None:
                custom(lhs, rhs)
                return
            s = _scale(nv, lhs, rhs, *operands.values(), *terms).reshape((-1,) + (1,) * nv)
            np.testing.assert_allclose(
                np.asarray(lhs, dtype=np.float64) / s,
                np.asarray(rhs, dtype=np.float64) / s,
                rtol=rtol,
                atol=rtol,
                equal_nan=False,
            )
        except AssertionError as e:
            lf, rf = np.asarray(lhs, dtype=np.float64), np.asarray(rhs, dtype=np.float64)
            if lf.shape == rf.shape:
                with np.errstate(invalid="ignore"):
                    diff = np.where(lf == rf, 0.0, np.abs(lf - rf))
                diff = np.where(np.isnan(diff), np.inf, diff)
                i = int(np.unravel_index(int(np.argmax(diff)), diff.shape)[0]) if diff.size else 0
            else:
                i = 0
            ops = ", ".join(f"{k} = {np.asarray(v[i]).tolist()!r}" for k, v in operands.items())
            raise AssertionError(
                f"semiring {sr.name!r} ({type(sr).__name__}) violates {law} at element {i}: "
                f"{ops}; lhs = {np.asarray(lhs[i]).tolist()!r}, rhs = {np.asarray(rhs[i]).tolist()!r}\n{e}"
            ) from None

    def check(d: Any) -> None:
        a, b, c = _draw_elements(sr, d, n, dtype)
        for name, v in (("a", a), ("b", b), ("c", c)):
            if np.isnan(np.asarray(v, dtype=np.float64)).any():
                raise AssertionError(f"semiring {sr.name!r}: drawn element {name} contains NaN: {v!r}")
        vdt = a.dtype
        zero = np.asarray(sr.zeros(np, (n,), vdt))
        one = np.asarray(sr.ones(np, (n,), vdt))
        P, T = sr.plus, sr.times
        abc = {"a": a, "b": b, "c": c}
        ab = {"a": a, "b": b}
        ab_p, bc_p = P(a, b), P(b, c)
        close("⊕ associativity (a⊕b)⊕c = a⊕(b⊕c)", P(ab_p, c), P(a, bc_p), abc, ab_p, bc_p)
        close("⊕ commutativity a⊕b = b⊕a", ab_p, P(b, a), ab)
        close("⊕ identity a⊕0̄ = a", P(a, zero), a, {"a": a})
        close("⊕ identity 0̄⊕a = a", P(zero, a), a, {"a": a})
        ab_t, bc_t = T(a, b), T(b, c)
        close("⊗ associativity (a⊗b)⊗c = a⊗(b⊗c)", T(ab_t, c), T(a, bc_t), abc, ab_t, bc_t)
        if getattr(sr, "commutative", True):
            close("⊗ commutativity a⊗b = b⊗a", ab_t, T(b, a), ab)
        close("⊗ identity a⊗1̄ = a", T(a, one), a, {"a": a})
        close("⊗ identity 1̄⊗a = a", T(one, a), a, {"a": a})
        ac_t, ba_t, ca_t = T(a, c), T(b, a), T(c, a)
        close("left distributivity a⊗(b⊕c) = a⊗b ⊕ a⊗c", T(a, bc_p), P(ab_t, ac_t), abc, bc_p, ab_t, ac_t)
        close("right distributivity (b⊕c)⊗a = b⊗a ⊕ c⊗a", T(bc_p, a), P(ba_t, ca_t), abc, bc_p, ba_t, ca_t)
        close("annihilation a⊗0̄ = 0̄", T(a, zero), zero, {"a": a})
        close("annihilation 0̄⊗a = 0̄", T(zero, a), zero, {"a": a})

    if data is not None:
        check(data)
        return
    from hypothesis import given, settings  # noqa: PLC0415

    hs = _hyp()
    test = given(hs.data())(check)
    if max_examples is not None:
        test = settings(max_examples=max_examples)(test)
    test()
