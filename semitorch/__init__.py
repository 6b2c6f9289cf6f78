"""semitorch: a small, exact autodiff framework whose backward pass is generic over semirings.

With the real (+, ×) semiring ``st.grad`` computes gradients; with other
semirings the same single backward pass computes statistics of the
element-level gradient graph (best paths, entropy, path counts, ...).
"""

from . import backend, cuda, data, explain, nn, ops, optim, semirings, viz
from .backprop import BackwardResult, backward, grad
from .ops import *  # noqa: F403
from .ops import OPS
from .paths import Path, Step, read_path, top_paths
from .semirings import SEMIRINGS, Real, Semiring
from .tape import Node, enable_grad, is_grad_enabled, module_scope, no_grad
from .tensor import Tensor, tensor

__version__ = "0.1.0"

__all__ = [
    "OPS", "SEMIRINGS", "BackwardResult", "Node", "Real", "Semiring", "Tensor", "cuda", "data", "explain", "nn",
    "optim", "viz",
    "backend", "backward", "enable_grad", "grad", "is_grad_enabled", "module_scope", "no_grad", "ops",
    "semirings", "tensor",
]  # fmt: skip
__all__ += ["Path", "Step", "read_path", "top_paths"]
__all__ += [n for n in ops.__all__ if n not in __all__]
