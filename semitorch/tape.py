"""The tape: Node records (op, inputs, local-derivative structures, module path), no_grad, topological order."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .tensor import Tensor

_state = threading.local()


def _st() -> threading.local:
    if not hasattr(_state, "grad_enabled"):
        _state.grad_enabled = True
        _state.modules = []
    return _state


def is_grad_enabled() -> bool:
    """Whether ops currently record nodes on the tape."""
    return _st().grad_enabled


@contextlib.contextmanager
def no_grad() -> Iterator[None]:
    """Context manager: tensors created inside record nothing on the tape."""
    s = _st()
    prev = s.grad_enabled
    s.grad_enabled = False
    try:
        yield
    finally:
        s.grad_enabled = prev


@contextlib.contextmanager
def enable_grad() -> Iterator[None]:
    """Context manager: re-enable recording inside a ``no_grad`` block."""
    s = _st()
    prev = s.grad_enabled
    s.grad_enabled = True
    try:
        yield
    finally:
        s.grad_enabled = prev


@contextlib.contextmanager
def module_scope(path: str) -> Iterator[None]:
    """Record ``path`` (a module's dotted name) on every node created inside."""
    s = _st()
    s.modules.append(path)
    try:
        yield
    finally:
        s.modules.pop()


def current_module() -> str:
    """The innermost module path being called ('' outside any module)."""
    m = _st().modules
    return m[-1] if m else ""


class Node:
    """One op application on the tape.

    ``structures`` is a thunk returning, for each input, its local-derivative
    structure (``ops.structures``) or ``None`` when that input carries no edge.
    It runs once, at the first backward pass, and its result is cached so that
    later passes under other semirings reuse it (passes may run in parallel threads).
    """

    __slots__ = ("op", "inputs", "_thunk", "_structs", "module", "shape", "dtype", "__weakref__")

    def __init__(
        self,
        op: str,
        inputs: Sequence[Tensor],
        structures: Callable[[], Sequence[Any]],
        shape: tuple[int, ...],
        dtype: Any,
    ) -> None:
        self.op = op
        self.inputs = tuple(inputs)
        self._thunk: Callable[[], Sequence[Any]] | None = structures
        self._structs: tuple[Any, ...] | None = None
        self.module = current_module()
        self.shape = shape
        self.dtype = dtype

    @property
    def structures(self) -> tuple[Any, ...]:
        """The local-derivative structure of each input (computed once)."""
        structs = self._structs
        if structs is None:
            assert self._thunk is not None
            structs = tuple(self._thunk())  # the thunk is kept: threads racing here compute the same thing
            if len(structs) != len(self.inputs):
                raise RuntimeError(f"op {self.op!r} returned {len(structs)} structures for {len(self.inputs)} inputs")
            self._structs = structs
        return structs

    def __repr__(self) -> str:
        mod = f" in {self.module!r}" if self.module else ""
        return f"Node({self.op}{mod}, shape={self.shape})"


def topological_order(root: Tensor) -> list[Tensor]:
    """Tensors reachable from ``root`` through recorded nodes, inputs before consumers.

    Iterative depth-first search: no recursion limit, so a 10,000-op chain works.
    """
    order: list[Tensor] = []
    seen: set[int] = {id(root)}
    stack: list[tuple[Tensor, int]] = [(root, 0)]
    while stack:
        t, i = stack.pop()
        node = t._node
        inputs = node.inputs if node is not None else ()
        if i < len(inputs):
            stack.append((t, i + 1))
            child = inputs[i]
            if child.requires_grad and id(child) not in seen:
                seen.add(id(child))
                stack.append((child, 0))
        else:
            order.append(t)
    return order
