"""The op registry and the one helper that records an op's result on the tape."""

from __future__ import annotations

import functools
import inspect
import numbers
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from .. import backend
from ..tape import Node, is_grad_enabled
from ..tensor import Tensor

OPS: dict[str, Callable[..., Any]] = {}
"""Every public op, by name (the name recorded on tape nodes)."""


_NUMERIC = "biufc"  # numpy dtype kinds of numbers


def is_int(v: Any) -> bool:
    """An integer (Python or numpy), not a bool: the one test for int arguments (ops, layers, optimizers)."""
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def is_real(v: Any) -> bool:
    """A real number (Python or numpy), not a bool: the one test for real-number arguments."""
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))


def _numeric_array(v: Any) -> bool:
    """A numpy or device array (any shape, 0-d included) of numbers."""
    return (isinstance(v, np.ndarray) or backend.is_device_array(v)) and v.dtype.kind in _NUMERIC


class _Bad:
    """The value :data:`_ARG_KINDS`' coercers return for an argument of the wrong kind."""


_BAD = _Bad()


def _tensor(v: Any) -> Any:
    if isinstance(v, Tensor):
        return v
    return Tensor(v) if _numeric_array(v) else _BAD  # a constant, as an array operand of add or mul is


def _tensors(v: Any) -> Any:
    if isinstance(v, (list, tuple)) and all(isinstance(t, Tensor) for t in v):
        return v
    if isinstance(v, (str, bytes, dict, Tensor)) or _numeric_array(v) or not isinstance(v, Iterable):
        return _BAD
    out = [_tensor(t) for t in v]  # a generator is read once, here
    return _BAD if any(t is _BAD for t in out) else out


def _int(v: Any) -> Any:
    if is_int(v):
        return v
    if _numeric_array(v) and v.ndim == 0 and v.dtype.kind in "iu":
        return int(v)
    return _BAD


def _ints(v: Any) -> Any:
    if is_int(v):
        return v
    if _numeric_array(v) and v.ndim <= 1 and v.dtype.kind in "iu":
        return tuple(int(i) for i in v.tolist()) if v.ndim else int(v)
    if isinstance(v, (list, tuple, range)) and all(is_int(i) for i in v):
        return v
    return _BAD


def _real(v: Any) -> Any:
    return v if is_real(v) or (_numeric_array(v) and v.dtype.kind != "b") else _BAD


def _bool(v: Any) -> Any:
    if isinstance(v, bool):
        return v
    if isinstance(v, (np.bool_, numbers.Integral)):
        return bool(v)
    return _BAD


def _optional(f: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda v: None if v is None else f(v)


# annotation (as written in the op's signature) -> (coercer, what the error says is expected).
# A coercer returns the value (converted where that is harmless: a numeric array becomes a
# constant Tensor, numpy ints and bools become Python ones) or _BAD.
_ARG_KINDS: dict[str, tuple[Callable[[Any], Any], str]] = {
    "Tensor": (_tensor, "a semitorch Tensor or a numeric array"),
    "Tensor | None": (_optional(_tensor), "a semitorch Tensor, a numeric array or None"),
    "Sequence[Tensor]": (_tensors, "a sequence of semitorch Tensors (or numeric arrays)"),
    "Sequence[int]": (_ints, "an int or a sequence of ints"),
    "int": (_int, "an int"),
    "int | None": (_optional(_int), "an int or None"),
    "float": (_real, "a real number"),
    "float | None": (_optional(_real), "a real number or None"),
    "bool": (_bool, "a bool"),
    "str": (lambda v: v if isinstance(v, str) else _BAD, "a str"),
}


ARG_HINTS: dict[tuple[str, str], str] = {}
"""(op, parameter) -> a hint appended to the TypeError that :func:`register`'s check raises for it."""


def _describe(v: Any) -> str:
    shape = getattr(v, "shape", None)
    if isinstance(v, (list, tuple)) and v and len(v) <= 8:
        return f"{type(v).__name__} of {', '.join(type(i).__name__ for i in v)}"
    return type(v).__name__ + (f" of shape {tuple(shape)}" if shape is not None else f" {v!r}"[:60])


def check_operand(op: str, name: str, v: Any) -> None:
    """A TypeError naming ``op`` unless ``v`` is a Tensor, a number, or a numeric array (or list of numbers)."""
    if isinstance(v, (Tensor, numbers.Number)) or _numeric_array(v):
        return
    if isinstance(v, np.generic) and v.dtype.kind in _NUMERIC:
        return
    if isinstance(v, (list, tuple)):
        try:
            if np.asarray(v).dtype.kind in _NUMERIC:
                return
        except (ValueError, TypeError):
            pass
    raise TypeError(f"{op}: {name} must be a Tensor, a number or a numeric array, got {_describe(v)}")


_PREFIXES = re.compile(r"\b(?:st|semitorch(?:\.tensor)?|typing|collections\.abc)\.(?=[A-Za-z_])")


def _annotation_key(ann: Any) -> str:
    """An annotation as :data:`_ARG_KINDS` spells it: ``st.Tensor`` → ``Tensor`` (other modules' names stay)."""
    text = ann if isinstance(ann, str) else ann.__name__ if isinstance(ann, type) else str(ann)
    text = _PREFIXES.sub("", text)
    return {"Optional[Tensor]": "Tensor | None", "Optional[int]": "int | None", "Optional[float]": "float | None"}.get(
        text, text
    )


def register(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``fn`` to :data:`OPS` under its name (a trailing underscore dropped); returns it with its arguments checked.

    Parameters annotated ``Tensor``, ``Tensor | None``, ``Sequence[Tensor]``,
    ``Sequence[int]``, ``int``, ``int | None``, ``float``, ``float | None``, ``bool`` or
    ``str`` (as strings, or as semitorch's own types) are checked on every call: a value
    of another kind raises a TypeError that names the op, the parameter and what it got,
    before the op touches it. Harmless conversions are made on the way: a numeric array
    where a Tensor is expected becomes a constant Tensor, an integer array a tuple of
    ints, a numpy bool or int a bool. Other annotations (``Any``) are the op's own
    business. A class is registered as it is, unchecked.
    """
    name = fn.__name__.rstrip("_")
    checks = []
    if not isinstance(fn, type):
        for i, p in enumerate(inspect.signature(fn).parameters.values()):
            named = p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            kind = _ARG_KINDS.get(_annotation_key(p.annotation)) if named else None
            if kind is not None:
                pos = i if p.kind is not p.KEYWORD_ONLY else None
                checks.append((pos, p.name, p.default, kind[0], kind[1]))
    if not checks:
        OPS[name] = fn
        return fn

    @functools.wraps(fn)
    def checked(*args: Any, **kwargs: Any) -> Any:
        new_args = None
        for pos, pname, default, coerce, expected in checks:
            if pos is not None and pos < len(args):
                v = args[pos]
            elif pname in kwargs:
                v, pos = kwargs[pname], None
            else:
                continue  # a default, or missing (then the call itself says so)
            if v is default:
                continue
            c = coerce(v)
            if c is _BAD:
                hint = ARG_HINTS.get((name, pname))
                msg = f"{name}: {pname} must be {expected}, got {_describe(v)}"
                raise TypeError(msg + (f"; {hint}" if hint else ""))
            if c is not v:
                if pos is None:
                    kwargs[pname] = c
                else:
                    new_args = list(args) if new_args is None else new_args
                    new_args[pos] = c
        return fn(*(args if new_args is None else new_args), **kwargs)

    OPS[name] = checked
    return checked


def data(x: Any) -> Any:
    """The raw array (or scalar) behind ``x``."""
    return x.data if isinstance(x, Tensor) else x


def as_tensor(x: Any) -> Tensor:
    """``x`` if it is a Tensor, else a constant leaf holding it."""
    return x if isinstance(x, Tensor) else Tensor(np.asarray(x))


def xp(op: str, *xs: Any) -> Any:
    """The array namespace of the operands; a cpu/cuda mix is an error naming ``op``."""
    try:
        return backend.xp_of(*(data(x) for x in xs))
    except ValueError as e:
        devs = ", ".join(
            f"{backend.device_of(data(x))} {tuple(getattr(data(x), 'shape', ()))}" for x in xs if x is not None
        )
        raise ValueError(f"{op}: operands are on different devices ({devs}); move them with .to(...)") from e


def broadcast_shapes(op: str, *shapes: tuple[int, ...]) -> tuple[int, ...]:
    """np.broadcast_shapes with an error that names the op and the shapes."""
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        raise ValueError(f"{op}: shapes {' and '.join(str(tuple(s)) for s in shapes)} are not broadcastable") from None


def record(op: str, out: Any, inputs: Sequence[Any], structures: Callable[[], Sequence[Any]]) -> Tensor:
    """Wrap the forward result ``out`` in a Tensor and, if any input needs grad, record a node.

    ``inputs`` may hold non-tensors (Python scalars, constant arrays); ``structures``
    is a thunk returning one structure per entry of ``inputs`` (entries for
    non-tensors are dropped).
    """
    if not is_grad_enabled() or not any(isinstance(x, Tensor) and x.requires_grad for x in inputs):
        return Tensor(out)
    keep = [i for i, x in enumerate(inputs) if isinstance(x, Tensor)]
    tensors = [inputs[i] for i in keep]
    if len(keep) == len(inputs):
        thunk = structures
    else:

        def thunk() -> list[Any]:
            s = structures()
            return [s[i] for i in keep]

    node = Node(op, tensors, thunk, tuple(out.shape), out.dtype)
    return Tensor(out, requires_grad=True, _node=node)


def int_tuple(v: Any, op: str, what: str) -> tuple[int, ...]:
    """An int, a sequence of ints or a 1-d integer array as a tuple of ints, or a TypeError naming ``op``."""
    c = _ints(v)
    if c is _BAD:
        raise TypeError(f"{op}: {what} must be an int or a tuple of ints, got {_describe(v)}")
    return (int(c),) if is_int(c) else tuple(int(i) for i in c)


def norm_axes(axis: Any, ndim: int, op: str) -> tuple[int, ...]:
    """Normalise an ``axis`` argument (None, int or tuple) to sorted non-negative ints."""
    if axis is None:
        return tuple(range(ndim))
    c = _ints(axis)
    if c is _BAD:
        raise TypeError(f"{op}: axis must be None, an int or a tuple of ints, got {_describe(axis)}")
    axes: tuple[Any, ...] = (c,) if is_int(c) else tuple(c)
    out = []
    for a in axes:
        if not -ndim <= a < max(ndim, 1):
            raise ValueError(f"{op}: axis {a} is out of range for a tensor with {ndim} dims")
        out.append(int(a) % max(ndim, 1))
    if len(set(out)) != len(out):
        raise ValueError(f"{op}: repeated axis in {axis}")
    return tuple(sorted(out))


def keepdims_shape(shape: tuple[int, ...], axes: tuple[int, ...]) -> tuple[int, ...]:
    """``shape`` with the reduced ``axes`` kept as size 1."""
    return tuple(1 if i in axes else s for i, s in enumerate(shape))
