"""Tensor: a backend array, a requires_grad flag, the node that created it, and operators."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import backend
from .tape import Node

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


class Tensor:
    """An n-dimensional array that can record the ops applied to it.

    ``data`` is the backend array (numpy or cupy); ``grad`` is filled by
    :meth:`backward` for leaves that require grad; ``_node`` is the tape record
    of the op that created it (``None`` for leaves).
    """

    __slots__ = ("data", "requires_grad", "grad", "_node", "name", "__weakref__")
    __array_priority__ = 1000  # numpy scalars/arrays on the left defer to our operators

    def __init__(self, data: Any, requires_grad: bool = False, _node: Node | None = None) -> None:
        if isinstance(data, Tensor):
            data = data.data
        if not hasattr(data, "dtype") or not hasattr(data, "shape"):
            data = np.asarray(data)
        if requires_grad and data.dtype not in _FLOATS:
            raise TypeError(
                f"only float32 and float64 tensors can require grad, got dtype {data.dtype} (shape {tuple(data.shape)})"
            )
        self.data = data
        self.requires_grad = bool(requires_grad)
        self.grad: Any = None
        self._node = _node
        self.name: str | None = None

    # ---- array facts -------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        """The shape, as a tuple of ints."""
        return tuple(self.data.shape)

    @property
    def dtype(self) -> Any:
        """The numpy dtype of the data."""
        return self.data.dtype

    @property
    def ndim(self) -> int:
        """Number of axes."""
        return self.data.ndim

    @property
    def size(self) -> int:
        """Number of elements."""
        return int(self.data.size)

    @property
    def device(self) -> str:
        """'cpu' (numpy) or 'cuda' (cupy)."""
        return backend.device_of(self.data)

    @property
    def is_leaf(self) -> bool:
        """True if no recorded op created this tensor."""
        return self._node is None

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        g = ", requires_grad=True" if self.requires_grad else ""
        op = f", op={self._node.op}" if self._node is not None else ""
        body = np.array2string(backend.to_numpy(self.data), separator=", ", threshold=20, edgeitems=3)
        return f"tensor({body}, dtype={self.dtype}{g}{op})"

    # ---- conversion --------------------------------------------------------------------
    def numpy(self) -> np.ndarray:
        """The data as a numpy array (a copy to host for device tensors)."""
        return backend.to_numpy(self.data)

    def item(self) -> float | int | bool:
        """The value of a one-element tensor as a Python scalar."""
        if self.data.size != 1:
            raise ValueError(f"item(): tensor of shape {self.shape} has {self.size} elements, expected 1")
        return self.data.reshape(()).item()

    def tolist(self) -> Any:
        """The data as nested Python lists."""
        return self.numpy().tolist()

    def to(self, device: str) -> Tensor:
        """This tensor on ``device`` ('cpu' or 'cuda'): itself if already there, else a new leaf.

        Moving a tensor that requires grad keeps ``requires_grad`` (the copy is a new leaf).
        Without a GPU, ``to('cuda')`` raises a RuntimeError saying so.
        """
        if device == self.device:
            return self
        return Tensor(backend.to_device(self.data, device), requires_grad=self.requires_grad)

    def cpu(self) -> Tensor:
        """Same as ``to('cpu')``."""
        return self.to("cpu")

    def detach(self) -> Tensor:
        """A new leaf sharing the data, with requires_grad=False."""
        return Tensor(self.data)

    def requires_grad_(self, flag: bool = True) -> Tensor:
        """Set requires_grad in place (leaves only) and return self."""
        if flag and self.data.dtype not in _FLOATS:
            raise TypeError(f"only float32 and float64 tensors can require grad, got dtype {self.dtype}")
        self.requires_grad = flag
        return self

    def astype(self, dtype: Any) -> Tensor:
        """Cast to ``dtype`` (recorded as an elementwise op with weight-1 edges)."""
        return _ops.astype(self, dtype)

    def backward(self, grad_output: Any = None) -> None:
        """Real-semiring backward: accumulate d self / d leaf into each leaf's ``.grad``.

        A non-scalar tensor needs ``grad_output`` (the seed, same shape).
        """
        from .backprop import backward_into_leaves  # noqa: PLC0415

        backward_into_leaves(self, grad_output)

    # ---- operators (defined in ops; bound here) ----------------------------------------
    def __add__(self, o: Any) -> Tensor:
        return _ops.add(self, o)

    def __radd__(self, o: Any) -> Tensor:
        return _ops.add(o, self)

    def __sub__(self, o: Any) -> Tensor:
        return _ops.sub(self, o)

    def __rsub__(self, o: Any) -> Tensor:
        return _ops.sub(o, self)

    def __mul__(self, o: Any) -> Tensor:
        return _ops.mul(self, o)

    def __rmul__(self, o: Any) -> Tensor:
        return _ops.mul(o, self)

    def __truediv__(self, o: Any) -> Tensor:
        return _ops.div(self, o)

    def __rtruediv__(self, o: Any) -> Tensor:
        return _ops.div(o, self)

    def __neg__(self) -> Tensor:
        return _ops.neg(self)

    def __pow__(self, p: Any) -> Tensor:
        return _ops.pow(self, p)

    def __matmul__(self, o: Any) -> Tensor:
        return _ops.matmul(self, o)

    def __rmatmul__(self, o: Any) -> Tensor:
        return _ops.matmul(o, self)

    def __abs__(self) -> Tensor:
        return _ops.abs(self)

    def __getitem__(self, idx: Any) -> Tensor:
        return _ops.getitem(self, idx)

    # comparisons give plain (non-differentiable) boolean tensors
    def __lt__(self, o: Any) -> Tensor:
        return Tensor(self.data < _raw(o))

    def __le__(self, o: Any) -> Tensor:
        return Tensor(self.data <= _raw(o))

    def __gt__(self, o: Any) -> Tensor:
        return Tensor(self.data > _raw(o))

    def __ge__(self, o: Any) -> Tensor:
        return Tensor(self.data >= _raw(o))

    __hash__ = object.__hash__

    # ---- methods -----------------------------------------------------------------------
    @property
    def T(self) -> Tensor:  # noqa: N802
        """Reverse the axes."""
        return _ops.transpose(self)

    def sum(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        """See :func:`semitorch.sum`."""
        return _ops.sum(self, axis=axis, keepdims=keepdims)

    def mean(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        """See :func:`semitorch.mean`."""
        return _ops.mean(self, axis=axis, keepdims=keepdims)

    def max(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        """See :func:`semitorch.max`."""
        return _ops.max(self, axis=axis, keepdims=keepdims)

    def reshape(self, *shape: Any) -> Tensor:
        """See :func:`semitorch.reshape`."""
        if len(shape) == 1 and not isinstance(shape[0], (int, np.integer)):  # x.reshape((2, 3)), x.reshape(arr)
            shape = shape[0]
        return _ops.reshape(self, shape)

    def transpose(self, *axes: Any) -> Tensor:
        """See :func:`semitorch.transpose`."""
        if len(axes) == 1 and not isinstance(axes[0], (int, np.integer)):  # x.transpose((1, 0)), or None
            axes = axes[0]
        return _ops.transpose(self, axes if axes is None or len(axes) else None)

    def permute(self, *axes: Any) -> Tensor:
        """Same as :meth:`transpose` with explicit axes."""
        return self.transpose(*axes)

    def swapaxes(self, a: int, b: int) -> Tensor:
        """See :func:`semitorch.swapaxes`."""
        return _ops.swapaxes(self, a, b)

    def exp(self) -> Tensor:
        """See :func:`semitorch.exp`."""
        return _ops.exp(self)

    def log(self) -> Tensor:
        """See :func:`semitorch.log`."""
        return _ops.log(self)

    def sqrt(self) -> Tensor:
        """See :func:`semitorch.sqrt`."""
        return _ops.sqrt(self)

    def tanh(self) -> Tensor:
        """See :func:`semitorch.tanh`."""
        return _ops.tanh(self)

    def sigmoid(self) -> Tensor:
        """See :func:`semitorch.sigmoid`."""
        return _ops.sigmoid(self)

    def relu(self) -> Tensor:
        """See :func:`semitorch.relu`."""
        return _ops.relu(self)

    def square(self) -> Tensor:
        """See :func:`semitorch.square`."""
        return _ops.square(self)

    def softmax(self, axis: int = -1) -> Tensor:
        """See :func:`semitorch.softmax`."""
        return _ops.softmax(self, axis=axis)

    def log_softmax(self, axis: int = -1) -> Tensor:
        """See :func:`semitorch.log_softmax`."""
        return _ops.log_softmax(self, axis=axis)

    def logsumexp(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        """See :func:`semitorch.logsumexp`."""
        return _ops.logsumexp(self, axis=axis, keepdims=keepdims)

    def clip(self, lo: Any = None, hi: Any = None) -> Tensor:
        """See :func:`semitorch.clip`."""
        return _ops.clip(self, lo, hi)

    def masked_fill(self, mask: Any, value: float) -> Tensor:
        """See :func:`semitorch.masked_fill`."""
        return _ops.masked_fill(self, mask, value)

    def expand_dims(self, axis: Any) -> Tensor:
        """See :func:`semitorch.expand_dims`."""
        return _ops.expand_dims(self, axis)

    def squeeze(self, axis: Any = None) -> Tensor:
        """See :func:`semitorch.squeeze`."""
        return _ops.squeeze(self, axis)

    def broadcast_to(self, shape: tuple[int, ...]) -> Tensor:
        """See :func:`semitorch.broadcast_to`."""
        return _ops.broadcast_to(self, shape)


def _raw(o: Any) -> Any:
    return o.data if isinstance(o, Tensor) else o


def tensor(data: Any, requires_grad: bool = False, dtype: Any = None, device: str | None = None) -> Tensor:
    """Create a leaf :class:`Tensor` from array-like ``data``.

    Python floats give float64 and dtype promotion follows numpy. ``device``
    is 'cpu' (default for host data) or 'cuda' (a cupy array).
    """
    if isinstance(data, Tensor):
        data = data.data
    if device is not None and device not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}: expected 'cpu' or 'cuda'")
    if backend.is_device_array(data) and device != "cpu":
        arr = data if dtype is None else data.astype(dtype)
    elif device == "cuda":
        arr = backend.to_device(np.asarray(data, dtype=dtype), "cuda")
    else:
        try:
            arr = np.array(backend.to_numpy(data) if backend.is_device_array(data) else data, dtype=dtype)
        except (TypeError, ValueError) as e:
            msg = f"tensor: cannot make an array of {type(data).__name__} data with dtype {dtype} ({e})"
            raise (TypeError if isinstance(e, TypeError) else ValueError)(msg) from None
    if arr.dtype.kind not in "biufc":
        hint = " (for a list of Tensors use st.stack)" if arr.dtype.kind == "O" else ""
        raise TypeError(
            f"tensor: data must be numbers (bool, int, float or complex), got dtype {arr.dtype} from "
            f"{type(data).__name__} data{hint}"
        )
    return Tensor(arr, requires_grad=requires_grad)


from . import ops as _ops  # noqa: E402  (bind operators after the class exists)
