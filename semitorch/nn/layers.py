"""Layers built on the engine's fused primitives: Linear, Embedding, LayerNorm, Dropout, GELU, containers.

Initialisation follows torch's defaults and draws from one generator that
:func:`manual_seed` resets, so a model built after ``manual_seed(s)`` is
reproducible (dropout masks too).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from .. import ops
from ..ops._core import is_int, is_real
from ..tensor import Tensor
from .module import Module, Parameter

_rng = np.random.default_rng()


def manual_seed(seed: int) -> None:
    """Reset the generator used for parameter initialisation and dropout masks."""
    global _rng
    _rng = np.random.default_rng(seed)


def rng() -> np.random.Generator:
    """The generator used for parameter initialisation and dropout masks."""
    return _rng


def uniform(shape: tuple[int, ...], bound: float, dtype: Any = np.float32) -> np.ndarray:
    """U(−bound, bound) samples from the module generator."""
    return _rng.uniform(-bound, bound, size=shape).astype(dtype)


def normal(shape: tuple[int, ...], std: float, dtype: Any = np.float32) -> np.ndarray:
    """N(0, std²) samples from the module generator."""
    return (_rng.standard_normal(shape) * std).astype(dtype)


def _size(owner: str, name: str, v: Any) -> int:
    """``v`` as a size (an int ≥ 0), or a clear error naming the layer and the argument."""
    if not is_int(v):
        raise TypeError(f"{owner}: {name} must be an int, got {type(v).__name__} {v!r}")
    if v < 0:
        raise ValueError(f"{owner}: {name} must be >= 0, got {v}")
    return int(v)


def _float_dtype(owner: str, dtype: Any) -> np.dtype:
    """``dtype`` as float32 or float64 (parameters require grad), or a clear error naming the layer."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{owner}: dtype {dtype!r} is not a dtype") from None
    if dt not in (np.float32, np.float64):
        raise TypeError(f"{owner}: parameters must be float32 or float64, got dtype {dt}")
    return dt


def _real(owner: str, name: str, v: Any) -> float:
    if not is_real(v):
        raise TypeError(f"{owner}: {name} must be a real number, got {type(v).__name__} {v!r}")
    return float(v)


class Linear(Module):
    """y = x Wᵀ + b with ``weight`` of shape (out_features, in_features), as torch.nn.Linear.

    Init: U(−1/√in, 1/√in) for weight and bias (torch's default).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype: Any = np.float32) -> None:
        super().__init__()
        in_features, out_features = (
            _size("Linear", "in_features", in_features),
            _size("Linear", "out_features", out_features),
        )
        dtype = _float_dtype("Linear", dtype)
        self.in_features, self.out_features = in_features, out_features
        bound = 1.0 / math.sqrt(in_features) if in_features else 0.0
        self.weight = Parameter(uniform((out_features, in_features), bound, dtype))
        self.bias = Parameter(uniform((out_features,), bound, dtype)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        """x @ Wᵀ (+ b)."""
        if x.shape[-1:] != (self.in_features,):
            raise ValueError(f"Linear: input of shape {x.shape} has no last axis of size {self.in_features}")
        y = ops.matmul(x, ops.transpose(self.weight))
        return y + self.bias if self.bias is not None else y

    def extra_repr(self) -> str:
        """in, out, bias."""
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Embedding(Module):
    """A lookup table of ``num_embeddings`` rows of size ``embedding_dim`` (init N(0, 1), as torch)."""

    def __init__(
        self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None, dtype: Any = np.float32
    ):
        super().__init__()
        num_embeddings = _size("Embedding", "num_embeddings", num_embeddings)
        embedding_dim = _size("Embedding", "embedding_dim", embedding_dim)
        dtype = _float_dtype("Embedding", dtype)
        if padding_idx is not None:
            if not is_int(padding_idx):
                raise TypeError(f"Embedding: padding_idx must be an int or None, got {type(padding_idx).__name__}")
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise ValueError(
                    f"Embedding: padding_idx {padding_idx} is out of range for a table of {num_embeddings} rows"
                )
            padding_idx = int(padding_idx) % num_embeddings
        self.num_embeddings, self.embedding_dim, self.padding_idx = num_embeddings, embedding_dim, padding_idx
        w = normal((num_embeddings, embedding_dim), 1.0, dtype)
        if padding_idx is not None:
            w[padding_idx] = 0.0
        self.weight = Parameter(w)

    def forward(self, ids: Any) -> Tensor:
        """Rows of the table for integer ``ids`` of any shape: shape ids.shape + (dim,)."""
        return ops.embedding(ids, self.weight)

    def extra_repr(self) -> str:
        """Table size."""
        return f"{self.num_embeddings}, {self.embedding_dim}"


class LayerNorm(Module):
    """Layer normalisation over the last axis with learned ``weight`` (ones) and ``bias`` (zeros). One primitive."""

    def __init__(self, normalized_shape: int, eps: float = 1e-5, dtype: Any = np.float32) -> None:
        super().__init__()
        if isinstance(normalized_shape, (tuple, list)) and len(normalized_shape) == 1:  # torch's (n,) form
            normalized_shape = normalized_shape[0]
        elif isinstance(normalized_shape, (tuple, list)):
            raise ValueError(
                f"LayerNorm: normalises over the last axis only, so normalized_shape must be an int or (n,), "
                f"got {tuple(normalized_shape)}"
            )
        normalized_shape = _size("LayerNorm", "normalized_shape", normalized_shape)
        eps, dtype = _real("LayerNorm", "eps", eps), _float_dtype("LayerNorm", dtype)
        self.normalized_shape, self.eps = normalized_shape, eps
        self.weight = Parameter(np.ones(normalized_shape, dtype=dtype))
        self.bias = Parameter(np.zeros(normalized_shape, dtype=dtype))

    def forward(self, x: Tensor) -> Tensor:
        """st.layer_norm(x, weight, bias, eps)."""
        return ops.layer_norm(x, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        """Size and eps."""
        return f"{self.normalized_shape}, eps={self.eps}"


class Dropout(Module):
    """Inverted dropout with probability ``p`` while training; the identity in eval mode."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        p = _real("Dropout", "p", p)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        """st.dropout with this module's training flag (masks drawn from the module generator)."""
        if not self.training or self.p == 0.0:
            return x
        return ops.dropout(x, self.p, True, seed=int(_rng.integers(2**63)))

    def extra_repr(self) -> str:
        """p."""
        return f"p={self.p}"


class GELU(Module):
    """GELU activation (``approximate`` 'none' or 'tanh'). One primitive."""

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x: Tensor) -> Tensor:
        """st.gelu(x)."""
        return ops.gelu(x, self.approximate)


class ReLU(Module):
    """max(x, 0)."""

    def forward(self, x: Tensor) -> Tensor:
        """st.relu(x)."""
        return ops.relu(x)


class Tanh(Module):
    """tanh(x)."""

    def forward(self, x: Tensor) -> Tensor:
        """st.tanh(x)."""
        return ops.tanh(x)


class ModuleList(Module):
    """A list of sub-modules named "0", "1", ... (indexable, iterable; not callable itself)."""

    def __init__(self, modules: Iterable[Module] = ()) -> None:
        super().__init__()
        self._list: list[Module] = []
        if isinstance(modules, Module) or not isinstance(modules, Iterable):
            raise TypeError(f"ModuleList: modules must be an iterable of Modules, got {type(modules).__name__}")
        for m in modules:
            self.append(m)

    def append(self, m: Module) -> ModuleList:
        """Add ``m`` at the end; returns self."""
        if not isinstance(m, Module):
            raise TypeError(f"ModuleList: can only hold Modules, got {type(m).__name__}")
        setattr(self, str(len(self._list)), m)
        self._list.append(m)
        return self

    def __getitem__(self, i: int) -> Module:
        return self._list[i]

    def __len__(self) -> int:
        return len(self._list)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._list)


class Sequential(ModuleList):
    """Sub-modules named "0", "1", ... applied in order."""

    def __init__(self, *modules: Module) -> None:
        super().__init__(modules)

    def forward(self, x: Any) -> Any:
        """Apply every sub-module in turn."""
        for m in self._list:
            x = m(x)
        return x
