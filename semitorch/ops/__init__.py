"""Primitive ops: forward and local-derivative structure side by side. No op knows any semiring.

Every op is registered in :data:`OPS`; see each module's docstring for its table of edges.
"""

from . import structures
from ._core import OPS, register
from .elementwise import (
    abs,
    add,
    astype,
    clip,
    div,
    exp,
    leaky_relu,
    log,
    masked_fill,
    maximum,
    minimum,
    mul,
    neg,
    pow,
    relu,
    sigmoid,
    sqrt,
    square,
    sub,
    tanh,
    where,
)
from .linalg import matmul
from .nn import cross_entropy, dropout, embedding, gelu, layer_norm, log_softmax, softmax
from .reduce import logsumexp, max, mean, sum
from .shape import (
    broadcast_to,
    concat,
    expand_dims,
    getitem,
    permute,
    reshape,
    split,
    squeeze,
    stack,
    swapaxes,
    transpose,
)

__all__ = [
    "OPS", "register", "structures",
    "abs", "add", "astype", "clip", "div", "exp", "leaky_relu", "log", "masked_fill", "maximum", "minimum",
    "mul", "neg", "pow", "relu", "sigmoid", "sqrt", "square", "sub", "tanh", "where",
    "matmul", "cross_entropy", "dropout", "embedding", "gelu", "layer_norm", "log_softmax", "softmax",
    "logsumexp", "max", "mean", "sum",
    "broadcast_to", "concat", "expand_dims", "getitem", "permute", "reshape", "split", "squeeze", "stack",
    "swapaxes", "transpose",
]  # fmt: skip
