"""The op registry and the one helper that records an op's result on the tape."""

from __future__ import annotations

import functools
import inspect
import numbers
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import backend
from ..tape import Node, is_grad_enabled
from ..tensor import Tensor

OPS: dict[str, Callable[..., Any]] = {}
"""Every public op, by name (the name recorded on tape nodes)."""


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def _is_real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))


def _tensors(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and all(isinstance(t, Tensor) for t in v)


def _ints(v: Any) -> bool:
    return _is_int(v) or (isinstance(v, (list, tuple)) and all(_is_int(i) for i in v))


# annotation (as written in the op's signature) -> (test, what the error says is expected)
_ARG_KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "Tensor": (lambda v: isinstance(v, Tensor), "a semitorch Tensor (wrap arrays with st.tensor(...))"),
    "Tensor | None": (lambda v: v is None or isinstance(v, Tensor), "a semitorch Tensor or None"),
    "Sequence[Tensor]": (_tensors, "a list or tuple of semitorch Tensors"),
    "Sequence[int]": (_ints, "an int or a sequence of ints"),
    "int": (_is_int, "an int"),
    "int | None": (lambda v: v is None or _is_int(v), "an int or None"),
    "float": (_is_real, "a real number"),
    "float | None": (lambda v: v is None or _is_real(v), "a real number or None"),
    "bool": (lambda v: isinstance(v, (bool, np.bool_)), "a bool"),
    "str": (lambda v: isinstance(v, str), "a str"),
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
    if isinstance(v, (Tensor, numbers.Number, np.generic)) or backend.is_device_array(v):
        return
    if isinstance(v, np.ndarray) and (v.dtype.kind in "biuf"):
        return
    if isinstance(v, (list, tuple)):
        try:
            if np.asarray(v).dtype.kind in "biuf":
                return
        except (ValueError, TypeError):
            pass
    raise TypeError(f"{op}: {name} must be a Tensor, a number or a numeric array, got {_describe(v)}")


def _annotation_key(ann: Any) -> str:
    """An annotation as :data:`_ARG_KINDS` spells it, module prefixes dropped: ``st.Tensor`` → ``Tensor``."""
    text = ann if isinstance(ann, str) else ann.__name__ if isinstance(ann, type) else str(ann)
    text = re.sub(r"\b[A-Za-z_][\w.]*\.(?=[A-Za-z_])", "", text)
    return {"Optional[Tensor]": "Tensor | None", "Optional[int]": "int | None", "Optional[float]": "float | None"}.get(
        text, text
    )


def register(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``fn`` to :data:`OPS` under its name (a trailing underscore dropped); returns it with its arguments checked.

    Parameters annotated (as strings) ``Tensor``, ``Tensor | None``, ``Sequence[Tensor]``,
    ``Sequence[int]``, ``int``, ``int | None``, ``float``, ``float | None``, ``bool`` or
    ``str`` are checked on every call: a value of another kind raises a TypeError that
    names the op, the parameter and what it got, before the op touches it. Other
    annotations (``Any``) are the op's own business.
    """
    name = fn.__name__.rstrip("_")
    checks = []
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
        for pos, pname, default, ok, expected in checks:
            if pos is not None and pos < len(args):
                v = args[pos]
            elif pname in kwargs:
                v = kwargs[pname]
            else:
                continue  # a default, or missing (then the call itself says so)
            if not ok(v) and not (v is default and default is not inspect.Parameter.empty):
                hint = ARG_HINTS.get((name, pname))
                msg = f"{name}: {pname} must be {expected}, got {_describe(v)}"
                raise TypeError(msg + (f"; {hint}" if hint else ""))
        return fn(*args, **kwargs)

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


def norm_axes(axis: Any, ndim: int, op: str) -> tuple[int, ...]:
    """Normalise an ``axis`` argument (None, int or tuple) to sorted non-negative ints."""
    if axis is None:
        return tuple(range(ndim))
    if _is_int(axis):
        axes: tuple[Any, ...] = (axis,)
    elif isinstance(axis, (list, tuple)) and all(_is_int(a) for a in axis):
        axes = tuple(axis)
    else:
        raise TypeError(f"{op}: axis must be None, an int or a tuple of ints, got {_describe(axis)}")
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
