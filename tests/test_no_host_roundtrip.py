"""No host round trips inside forward or backward: every op and every semiring on a stand-in device array.

:class:`GuardArray` is a CPU stand-in for a cupy array: it holds a numpy array but is
not one, and it is registered with :func:`semitorch.backend.register_device_array`,
so ``backend.xp_of`` treats it as a 'cuda' array and hands the ops, the semirings and
backprop the namespace :data:`GUARD_NS` (numpy's functions, taking and returning
GuardArrays). Everything that would read device data on the host is recorded with the
semitorch source line that did it:

- conversions: ``bool()``, ``int()``, ``float()``, ``operator.index``, ``.item()``,
  ``.tolist()``, ``.get()``, ``str()``, ``np.asarray(device_array)``;
- numpy itself applied to a device array (``np.exp(a)``, ``np.concatenate([a, b])``:
  cupy would refuse or silently leave the device), and host numpy arrays mixed into
  device operations (an array drawn on the host, then uploaded).

A second list records what cupy 14 cannot do at all (functions it lacks, ``ufunc.at``
/ ``reduce`` / ``accumulate`` beyond the ufuncs that support them, ``lexsort`` with a
tuple of keys, ``argsort`` kinds other than stable), so such code fails here, on the
CPU, instead of on the first GPU run. Data-dependent shapes (``unique``, ``nonzero``,
boolean-mask indexing), which make cupy synchronise internally, are recorded apart
(:data:`SYNCS`) and reported, not failed.

The tests run an MLP, an attention block (embedding, masked softmax, cross-entropy) and
an expression that applies every registered op, forward and backward, under every
registered semiring, and compare every readout with the same computation on numpy.
The only host reads allowed are those listed in :data:`ALLOWED`, each one boolean that
decides a branch on the host: the range checks of ``embedding`` and ``cross_entropy`` (a bad
id must raise) and the underflow rechecks of the Log/Entropy vecmats and structured row Jacobians.
"""

from __future__ import annotations

import inspect
import math
import operator
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import semitorch as st
from semitorch import backend
from semitorch.semirings import SEMIRINGS

_PKG = str(Path(st.__file__).parent)

CONVERSIONS: list[str] = []
"""Host reads of device data seen while watching: 'what at file:line in function'."""
UNSUPPORTED: list[str] = []
"""Calls cupy cannot make, seen while watching."""
SYNCS: list[str] = []
"""Data-dependent shapes (cupy synchronises to learn the size), seen while watching."""
ALLOWED_SEEN: list[tuple[str, str]] = []
"""(file, function) of allowed host reads seen while watching."""
_watching = [False]

ALLOWED = {
    ("nn.py", "cross_entropy"): "range check of the targets: one boolean read so that a bad target raises IndexError",
    ("nn.py", "embedding"): "range check of the ids: one boolean read so that a bad id raises IndexError",
    ("log.py", "rescaled_matmul"): "underflow recheck (Log, LogCount): one boolean read per vecmat decides whether "
    "outputs far below their row max are recomputed exactly",
    ("entropy.py", "vecmat_prepared"): "underflow recheck (Entropy): one boolean read per vecmat, as in "
    "rescaled_matmul",
    ("reference.py", "log_shift_low"): "underflow recheck: the one boolean read per vecmat (above) now comes from "
    "the log pass itself",
    ("log.py", "dense_recheck"): "underflow recheck of the structured (layer_norm/softmax) kernels: one boolean read "
    "per op decides whether rows far below their shift are recomputed with the dense Jacobian",
}
"""(file, function) of the host reads that are deliberate, with the reason."""


def _site() -> tuple[str, str, str]:
    """(file, function, 'file:line in function') of the innermost semitorch frame on the stack."""
    for fr in reversed(traceback.extract_stack()[:-2]):
        if fr.filename.startswith(_PKG):
            rel = str(Path(fr.filename).relative_to(_PKG))
            return Path(fr.filename).name, fr.name, f"semitorch/{rel}:{fr.lineno} in {fr.name}"
    return "", "", "<outside semitorch>"


def _note(where: list[str], what: str) -> None:
    if not _watching[0]:
        return
    f, fn, site = _site()
    if where is CONVERSIONS and (f, fn) in ALLOWED:
        ALLOWED_SEEN.append((f, fn))
        return
    where.append(f"{what} at {site}")


@contextmanager
def watch() -> Iterator[None]:
    """Record conversions, cupy-unsupported calls and syncs made inside the block (lists cleared first)."""
    for seen in (CONVERSIONS, UNSUPPORTED, SYNCS, ALLOWED_SEEN):
        seen.clear()
    _watching[0] = True
    try:
        yield
    finally:
        _watching[0] = False


# ---- the stand-in array --------------------------------------------------------------------

_SCALARS = (int, float, bool, complex, np.generic)


def _quiet() -> Any:
    return np.errstate(all="ignore")  # cupy never warns about inf/nan arithmetic


def _wrap(x: Any) -> Any:
    """numpy results as device results: arrays and numpy scalars become GuardArrays (cupy returns 0-d arrays)."""
    if isinstance(x, np.ndarray):
        return GuardArray(x)
    if isinstance(x, np.generic) and not isinstance(x, (np.str_, np.bytes_)):
        return GuardArray(np.asarray(x))
    if isinstance(x, tuple):
        return tuple(_wrap(v) for v in x)
    if isinstance(x, list):
        return [_wrap(v) for v in x]
    return x


def _unwrap(x: Any, what: str, host_ok: bool = False) -> Any:
    """GuardArrays to their numpy data; a host ndarray mixed in is recorded (cupy would reject it)."""
    if isinstance(x, GuardArray):
        return x._a
    if isinstance(x, np.ndarray):
        if not host_ok:
            _note(CONVERSIONS, f"host numpy array {x.shape} passed to device {what}")
        return x
    if isinstance(x, (tuple, list)):
        return type(x)(_unwrap(v, what, host_ok) for v in x)
    if isinstance(x, dict):
        return {k: _unwrap(v, what, host_ok) for k, v in x.items()}
    return x


def _binop(op: Callable[[Any, Any], Any], name: str, reflected: bool = False) -> Callable[..., Any]:
    def f(self: GuardArray, other: Any) -> Any:
        if not isinstance(other, (GuardArray, np.ndarray, *_SCALARS)):
            return NotImplemented
        o = _unwrap(other, f"operator {name}")
        with _quiet():
            return _wrap(op(o, self._a) if reflected else op(self._a, o))

    f.__name__ = name
    return f


def _inplace(op: Callable[[Any, Any], Any], name: str) -> Callable[..., Any]:
    def f(self: GuardArray, other: Any) -> GuardArray:
        with _quiet():
            self._a = op(self._a, _unwrap(other, f"operator {name}"))
        return self

    f.__name__ = name
    return f


def _conversion(name: str, fn: Callable[[np.ndarray], Any]) -> Callable[..., Any]:
    def f(self: GuardArray, *args: Any, **kwargs: Any) -> Any:
        _note(CONVERSIONS, f"{name} of a device array {self._a.shape}")
        return fn(self._a, *args, **kwargs)

    f.__name__ = name
    return f


_METHODS = {
    "reshape", "transpose", "swapaxes", "astype", "sum", "max", "min", "mean", "prod", "argmax", "argmin",
    "any", "all", "copy", "squeeze", "ravel", "flatten", "fill", "cumsum", "cumprod", "argsort", "sort",
    "clip", "take", "repeat", "view", "dot", "std", "var", "round", "diagonal", "conj", "put",
}  # fmt: skip
_SYNC_METHODS = {"nonzero"}


class _Flags:
    """cupy's ndarray.flags: only c_contiguous, f_contiguous and owndata (no writeable, no aligned)."""

    def __init__(self, f: Any) -> None:
        self._f = f

    def __getattr__(self, name: str) -> Any:
        if name not in ("c_contiguous", "f_contiguous", "owndata"):
            raise AttributeError(f"ndarray.flags.{name}: cupy's flags have only c_contiguous, f_contiguous, owndata")
        return getattr(self._f, name)


class GuardArray:
    """A device-array stand-in on the CPU: numpy data behind an interface that records host reads."""

    __slots__ = ("_a",)
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, a: np.ndarray) -> None:
        self._a = a

    # metadata: no data is read
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    strides = property(lambda self: self._a.strides)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    flags = property(lambda self: _Flags(self._a.flags))
    T = property(lambda self: GuardArray(self._a.T))
    device = property(lambda self: "guard")

    def __len__(self) -> int:
        return len(self._a)

    def __repr__(self) -> str:
        return f"GuardArray(shape={self._a.shape}, dtype={self._a.dtype})"

    def __iter__(self) -> Iterator[Any]:
        return (_wrap(v) for v in self._a)

    # reading device data on the host
    __bool__ = _conversion("bool()", bool)
    __int__ = _conversion("int()", int)
    __float__ = _conversion("float()", float)
    __complex__ = _conversion("complex()", complex)
    __index__ = _conversion("operator.index()", operator.index)
    __str__ = _conversion("str()", str)
    __format__ = _conversion("format()", format)
    item = _conversion(".item()", np.ndarray.item)
    tolist = _conversion(".tolist()", np.ndarray.tolist)
    get = _conversion(".get()", np.array)
    __array__ = _conversion("np.asarray()", lambda a, dtype=None, copy=None: np.asarray(a, dtype=dtype))

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        _note(CONVERSIONS, f"numpy ufunc np.{ufunc.__name__}.{method} applied to a device array")
        ins = [i._a if isinstance(i, GuardArray) else i for i in inputs]
        if "out" in kwargs:
            kwargs["out"] = tuple(o._a if isinstance(o, GuardArray) else o for o in kwargs["out"])
        return _wrap(getattr(ufunc, method)(*ins, **kwargs))

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        _note(CONVERSIONS, f"numpy function np.{func.__name__} applied to a device array")
        return _wrap(func(*_unwrap(args, func.__name__, True), **_unwrap(kwargs, func.__name__, True)))

    def __getitem__(self, idx: Any) -> Any:
        t = idx if isinstance(idx, tuple) else (idx,)
        if any(isinstance(i, GuardArray) and i.dtype == bool for i in t):
            _note(SYNCS, f"boolean-mask indexing of {self._a.shape}")
        return _wrap(self._a[_unwrap(idx, "indexing", host_ok=True)])

    def __setitem__(self, idx: Any, value: Any) -> None:
        self._a[_unwrap(idx, "indexing", host_ok=True)] = _unwrap(value, "item assignment")

    def __getattr__(self, name: str) -> Any:
        if name in _METHODS or name in _SYNC_METHODS:
            meth = getattr(self._a, name)

            def call(*args: Any, **kwargs: Any) -> Any:
                if name in _SYNC_METHODS:
                    _note(SYNCS, f".{name}()")
                with _quiet():
                    return _wrap(meth(*_unwrap(args, f".{name}()"), **_unwrap(kwargs, f".{name}()")))

            return call
        raise AttributeError(f"GuardArray has no attribute {name!r} (not among the ndarray methods it forwards)")


for _n, _op in {
    "add": operator.add, "sub": operator.sub, "mul": operator.mul, "truediv": operator.truediv,
    "floordiv": operator.floordiv, "mod": operator.mod, "pow": operator.pow, "matmul": operator.matmul,
    "and": operator.and_, "or": operator.or_, "xor": operator.xor, "lshift": operator.lshift,
    "rshift": operator.rshift,
}.items():  # fmt: skip
    setattr(GuardArray, f"__{_n}__", _binop(_op, f"__{_n}__"))
    setattr(GuardArray, f"__r{_n}__", _binop(_op, f"__r{_n}__", reflected=True))
    setattr(GuardArray, f"__i{_n}__", _inplace(_op, f"__i{_n}__"))
for _n, _op in {"lt": operator.lt, "le": operator.le, "gt": operator.gt, "ge": operator.ge,
                "eq": operator.eq, "ne": operator.ne}.items():  # fmt: skip
    setattr(GuardArray, f"__{_n}__", _binop(_op, f"__{_n}__"))


def _unary(op: Callable[[Any], Any]) -> Callable[[GuardArray], GuardArray]:
    return lambda self: GuardArray(op(self._a))


for _n, _op1 in {"neg": operator.neg, "pos": operator.pos, "abs": operator.abs, "invert": operator.invert}.items():
    setattr(GuardArray, f"__{_n}__", _unary(_op1))


# ---- the namespace: numpy's functions on GuardArrays, limited to what cupy 14 offers ---------

NOT_IN_CUPY = frozenset(
    "False_ ScalarType True_ asmatrix block bmat busday_count busday_offset busdaycalendar bytes_ char character "
    "clongdouble complex256 core ctypeslib datetime64 datetime_as_string datetime_data dtypes einsum_path emath "
    "errstate f2py flexible float128 frompyfunc fromregex geomspace get_include getbufsize geterr geterrcall "
    "histogram_bin_edges info insert is_busday isnat little_endian longdouble ma matrix matvec memmap "
    "nanpercentile nanquantile ndenumerate nditer nested_iters object_ polyder polydiv polyint rec recarray "
    "record sctypeDict setbufsize seterr seterrcall show_runtime spacing str_ strings test timedelta64 "
    "typecodes unstack vecdot vecmat void".split()
)
"""numpy 2.4 names that cupy 14.2 does not have (``set(dir(numpy)) - set(dir(cupy))``)."""

_UFUNC_METHODS = {  # what cupy 14's ufunc methods accept (others raise NotImplementedError)
    "at": {"add", "subtract", "maximum", "minimum", "bitwise_and", "bitwise_or", "bitwise_xor"},
    "reduce": {"add", "multiply"},
    "accumulate": {"add", "multiply"},
    "reduceat": {"add"},
}
_UPLOADS = {"asarray", "array", "asanyarray", "ascontiguousarray"}  # host data to the device: allowed
_DATA_DEPENDENT = {"unique", "nonzero", "flatnonzero", "argwhere", "compress", "extract"}
_RNG_METHODS = {"random", "standard_normal", "integers", "uniform", "standard_exponential", "exponential"}


class _GuardUfunc:
    def __init__(self, uf: np.ufunc) -> None:
        self._uf = uf

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        what = f"xp.{self._uf.__name__}"
        with _quiet():
            return _wrap(self._uf(*_unwrap(args, what), **_unwrap(kwargs, what)))

    def __getattr__(self, method: str) -> Any:
        fn = getattr(self._uf, method)
        if method not in ("at", "reduce", "accumulate", "reduceat", "outer"):
            return fn

        def call(*args: Any, **kwargs: Any) -> Any:
            ok = _UFUNC_METHODS.get(method)
            if ok is not None and self._uf.__name__ not in ok:
                _note(UNSUPPORTED, f"xp.{self._uf.__name__}.{method} (cupy supports .{method} only for {sorted(ok)})")
            what = f"xp.{self._uf.__name__}.{method}"
            return _wrap(fn(*_unwrap(args, what), **_unwrap(kwargs, what)))

        return call


class _GuardGenerator:
    def __init__(self, seed: Any) -> None:
        self._g = np.random.default_rng(seed)

    def __getattr__(self, name: str) -> Any:
        if name not in _RNG_METHODS:
            _note(UNSUPPORTED, f"xp.random.default_rng().{name} (not a cupy Generator method)")
        fn = getattr(self._g, name)
        return lambda *a, **k: _wrap(fn(*a, **k))


class _GuardRandom:
    @staticmethod
    def default_rng(seed: Any = None) -> _GuardGenerator:
        return _GuardGenerator(seed)

    def __getattr__(self, name: str) -> Any:
        _note(UNSUPPORTED, f"xp.random.{name} (only default_rng is provided on the guarded device)")
        raise AttributeError(name)


def _check_call(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    if name == "lexsort" and args and not hasattr(args[0], "ndim"):
        _note(UNSUPPORTED, "xp.lexsort with a tuple/list of keys (cupy needs one (k, N) array)")
    if name in ("argsort", "sort") and kwargs.get("kind") not in (None, "stable"):
        _note(UNSUPPORTED, f"xp.{name}(kind={kwargs['kind']!r}) (cupy sorts are stable only)")


class GuardNamespace:
    """numpy's namespace for GuardArrays: calls unwrap their arguments and wrap their results."""

    random = _GuardRandom()

    @staticmethod
    def erf(x: Any) -> Any:
        from scipy.special import erf as _erf

        return _wrap(_erf(_unwrap(x, "erf")).astype(x.dtype, copy=False))

    def __getattr__(self, name: str) -> Any:
        if name in NOT_IN_CUPY:
            raise AttributeError(f"cupy has no {name!r}")
        obj = getattr(np, name)
        if isinstance(obj, np.ufunc):
            return _GuardUfunc(obj)
        if isinstance(obj, type) or not callable(obj):
            return obj  # dtypes, constants

        def call(*args: Any, **kwargs: Any) -> Any:
            _check_call(name, args, kwargs)
            if name in _DATA_DEPENDENT or (name == "repeat" and len(args) > 1 and isinstance(args[1], GuardArray)):
                _note(SYNCS, f"xp.{name}")
            host_ok = name in _UPLOADS
            with _quiet():
                return _wrap(obj(*_unwrap(args, f"xp.{name}", host_ok), **_unwrap(kwargs, f"xp.{name}", host_ok)))

        return call


GUARD_NS = GuardNamespace()
backend.register_device_array(GuardArray, GUARD_NS)


def guard(x: Any) -> Any:
    """A numpy array (or a Tensor's data) as a GuardArray."""
    return GuardArray(np.array(x))


# ---- models: forward functions over a parameter dict ----------------------------------------

rng = np.random.default_rng(7)


def _mlp_params() -> dict[str, np.ndarray]:
    return {
        "x": rng.standard_normal((5, 6)),
        "w1": rng.standard_normal((8, 6)) / 2,
        "b1": rng.standard_normal(8) / 4,
        "g": 1 + rng.standard_normal(8) / 4,
        "beta": rng.standard_normal(8) / 4,
        "w2": rng.standard_normal((3, 8)) / 2,
    }


def _mlp(p: dict[str, st.Tensor], xp: Any) -> st.Tensor:
    h = p["x"] @ p["w1"].T + p["b1"]  # (5, 8)
    h = st.layer_norm(st.gelu(h), p["g"], p["beta"])
    h = st.tanh(h) * st.sigmoid(h) + st.relu(h)
    logits = h @ p["w2"].T  # (5, 3)
    return (st.log_softmax(logits, axis=-1) * logits).sum()


_T, _D, _H, _V = 4, 8, 2, 11
_IDS = np.array([[1, 3, 3, 0], [5, 1, 10, 3]])
_MASK = np.array([[0, 0, 0, 1], [0, 0, 0, 0]], dtype=bool)  # padding key
_TARGETS = np.array([2, 0])


def _attn_params() -> dict[str, np.ndarray]:
    d = {f"w{n}": rng.standard_normal((_D, _D)) / 3 for n in "qkvo"}
    d.update(
        table=rng.standard_normal((_V, _D)),
        pos=rng.standard_normal((_T, _D)) / 4,
        g=1 + rng.standard_normal(_D) / 4,
        b=rng.standard_normal(_D) / 4,
        cls=rng.standard_normal((3, _D)) / 2,
    )
    return d


def _attention(p: dict[str, st.Tensor], xp: Any) -> st.Tensor:
    ids, mask, targets = xp.asarray(_IDS), xp.asarray(_MASK), xp.asarray(_TARGETS)
    x = st.embedding(ids, p["table"]) + p["pos"]  # (B, T, D)
    x = st.layer_norm(x, p["g"], p["b"])
    B, dh = x.shape[0], _D // _H

    def heads(t: st.Tensor) -> st.Tensor:
        return t.reshape(B, _T, _H, dh).transpose(0, 2, 1, 3)  # (B, H, T, dh)

    q, k, v = (heads(x @ p[f"w{n}"]) for n in "qkv")
    scores = (q @ k.swapaxes(-1, -2)) / math.sqrt(dh)  # (B, H, T, T)
    scores = scores.masked_fill(mask[:, None, None, :], -1e9)
    att = st.softmax(scores, axis=-1) @ v  # (B, H, T, dh)
    y = att.transpose(0, 2, 1, 3).reshape(B, _T, _D) @ p["wo"]
    y = st.dropout(x + y, p=0.25, seed=3)
    logits = y.mean(axis=1) @ p["cls"].T  # (B, 3)
    return st.cross_entropy(logits, targets)


def _soup_params() -> dict[str, np.ndarray]:
    return {"a": rng.standard_normal((3, 4)), "b": rng.uniform(0.5, 2.0, (3, 4)), "c": rng.standard_normal(4)}


def _soup(p: dict[str, st.Tensor], xp: Any) -> st.Tensor:
    """Every registered op at least once (see test_the_soup_covers_every_op)."""
    a, b, c = p["a"], p["b"], p["c"]
    t = st.add(a, c) - st.mul(a, b) + st.div(a, b) + st.neg(c) + st.pow(b, 1.5) + st.square(a)
    t = t + st.sqrt(b) + st.exp(a) * 0.1 + st.log(b) + st.abs(a) + st.leaky_relu(a, 0.1) + st.clip(a, -0.5, 0.5)
    t = t + st.maximum(a, c) + st.minimum(a, b) + st.where(a.data > 0, a, b) + st.astype(b, np.float64)
    t = t + st.masked_fill(a, a.data < -1, 0.0) + st.broadcast_to(c, (3, 4)) + st.relu(a)
    u = st.concat([t, a], axis=0)  # (6, 4)
    u = st.stack([u, st.transpose(u, (0, 1)) * 2], axis=0)  # (2, 6, 4)
    u = st.expand_dims(st.reshape(u, (12, 4)), 0)  # (1, 12, 4)
    u = st.squeeze(st.swapaxes(u, 1, 2), 0)  # (4, 12)
    v = st.getitem(u, (slice(None), slice(1, 9)))  # basic: (4, 8)
    w = st.getitem(u, xp.asarray([0, 2, 2, 3]))  # advanced, repeated rows: (4, 12)
    parts = st.split(v, 2, axis=1)
    s = st.matmul(parts[0], st.transpose(parts[1])) + st.max(w, axis=1, keepdims=True)
    s = s + st.logsumexp(w, axis=0)[:4] + st.mean(w, axis=1, keepdims=True) + st.softmax(s, axis=0)
    s = st.layer_norm(st.gelu(s, approximate="tanh"), None, None) + st.log_softmax(s, axis=1)
    s = st.sigmoid(st.tanh(s)) + st.dropout(s, p=0.5, seed=1) + st.embedding(xp.asarray([1, 0, 1, 3]), s)
    ce = st.cross_entropy(s, xp.asarray([0, 3, -100, 1]), reduction="sum")
    return st.sum(s * s) + ce


MODELS = {"mlp": (_mlp_params, _mlp), "attention": (_attn_params, _attention), "soup": (_soup_params, _soup)}
PARAMS = {name: make() for name, (make, _) in MODELS.items()}


def semirings() -> dict[str, st.Semiring]:
    """One instance of every semiring semitorch registers (required constructor arguments from ``_ARGS``)."""
    out = {}
    for name, cls in sorted(SEMIRINGS.items()):
        if not cls.__module__.startswith("semitorch."):
            continue  # registered by a test or a doc page in this process
        required = [
            p.name
            for p in list(inspect.signature(cls.__init__).parameters.values())[1:]
            if p.default is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        kwargs = {k: _ARGS[name][k] for k in required} if required else {}
        out[name] = cls(**kwargs)
    return out


_ARGS = {"kbest": {"k": 3}}


def _run(model: str, sr: st.Semiring, on_device: bool) -> tuple[list[Any], Any]:
    """Forward and backward of ``model`` under ``sr``: the readouts and the output (arrays where they live)."""
    _, fwd = MODELS[model]
    xp = GUARD_NS if on_device else np
    p = {k: st.Tensor(guard(v) if on_device else v.copy(), requires_grad=True) for k, v in PARAMS[model].items()}
    out = fwd(p, xp)
    return st.grad(out, list(p.values()), semiring=sr), out.data


def _check_clean() -> None:
    assert not CONVERSIONS, "host round trips inside forward/backward:\n" + "\n".join(dict.fromkeys(CONVERSIONS))
    assert not UNSUPPORTED, "calls cupy cannot make:\n" + "\n".join(dict.fromkeys(UNSUPPORTED))


@pytest.mark.parametrize("semiring", sorted(semirings()))
@pytest.mark.parametrize("model", sorted(MODELS))
def test_forward_and_backward_stay_on_the_device(model: str, semiring: str) -> None:
    sr = semirings()[semiring]
    want, want_out = _run(model, sr, on_device=False)
    with watch():
        got, got_out = _run(model, sr, on_device=True)
    _check_clean()
    assert all(isinstance(g, GuardArray) for g in [*got, got_out])
    np.testing.assert_allclose(backend.to_numpy(got_out), want_out, rtol=1e-12, atol=0)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(backend.to_numpy(g), w, rtol=1e-12, atol=0)


def test_real_tensor_backward_stays_on_the_device() -> None:
    p = {k: st.Tensor(guard(v), requires_grad=True) for k, v in PARAMS["attention"].items()}
    with watch():
        _attention(p, GUARD_NS).backward()
    _check_clean()
    q = {k: st.Tensor(v.copy(), requires_grad=True) for k, v in PARAMS["attention"].items()}
    _attention(q, np).backward()
    for k, t in p.items():
        np.testing.assert_allclose(backend.to_numpy(t.grad), q[k].grad, rtol=1e-12, atol=0)


def builtin_ops() -> set[str]:
    """The ops semitorch itself registers (tests and docs may register more in the same process)."""
    return {name for name, fn in st.OPS.items() if getattr(fn, "__module__", "").startswith("semitorch.")}


def test_the_allowed_reads_are_not_stale() -> None:
    """Each allowed host read happens (the allow-list names real sites): attention forward, Log and Entropy backward."""
    p = {k: st.Tensor(guard(v), requires_grad=True) for k, v in PARAMS["attention"].items()}
    srs = semirings()
    seen: set[tuple[str, str]] = set()
    with watch():
        out = _attention(p, GUARD_NS)
        seen |= set(ALLOWED_SEEN)
        _check_clean()
        for name in ("log", "entropy"):
            st.grad(out, list(p.values()), semiring=srs[name])
    _check_clean()
    seen |= set(ALLOWED_SEEN)
    assert seen == set(ALLOWED)


def test_the_soup_covers_every_op() -> None:
    """The 'soup' model applies every op in ``st.OPS``: a new op must be added there (and so be checked)."""
    p = {k: st.Tensor(v.copy(), requires_grad=True) for k, v in PARAMS["soup"].items()}
    codes = {getattr(inspect.unwrap(fn), "__code__", None): name for name, fn in st.OPS.items()}  # past the arg check
    called: set[str] = set()

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code in codes:
            called.add(codes[frame.f_code])

    sys.setprofile(profile)
    try:
        _soup(p, np)
    finally:
        sys.setprofile(None)
    missing = builtin_ops() - called
    assert not missing, f"ops not exercised by the device test: {sorted(missing)}"


def test_the_guard_records_what_it_should() -> None:
    """The guard itself: each kind of host read, numpy-on-device call and cupy gap is caught."""
    a = guard(np.arange(6.0).reshape(2, 3))
    with watch():
        bool(a.any()), int(a.sum()), float(a.max()), a.tolist(), np.asarray(a), np.exp(a)  # noqa: B018
        np.concatenate([a, a]), a + np.ones(3), GUARD_NS.where(a > 1, np.zeros(3), a)  # noqa: B018
        GUARD_NS.maximum.accumulate(a), GUARD_NS.lexsort((a[0], a[1])), GUARD_NS.unique(a), a[a > 2]  # noqa: B018
    kinds = " | ".join(CONVERSIONS)
    for what in ("bool()", "int()", "float()", ".tolist()", "np.asarray()", "np.exp", "np.concatenate", "operator"):
        assert what in kinds
    assert "passed to device xp.where" in kinds
    assert len(UNSUPPORTED) == 2 and "accumulate" in UNSUPPORTED[0] and "lexsort" in UNSUPPORTED[1]
    assert len(SYNCS) == 2
    with watch():
        b = GUARD_NS.exp(a) * 2 + GUARD_NS.asarray(np.ones(3)) - a.sum(axis=0)  # device work and an upload
        b[0, 1:] = GUARD_NS.zeros(2)
        GUARD_NS.add.at(b, GUARD_NS.asarray([0, 0]), 1.0)
    assert not CONVERSIONS and not UNSUPPORTED and not SYNCS
    assert isinstance(b, GuardArray) and backend.xp_of(b) is GUARD_NS and backend.device_of(b) == "cuda"
