"""Interpretability with semiring backprop: which pathways of a model carry a prediction.

Captum-style explainers (``Explainer(model).attribute(inputs, target=...)``):
:class:`TopPaths`, :class:`PathEntropy`, :class:`ComponentShares`; targets in
:mod:`semitorch.explain.targets`.
"""

from .core import (
    COMPONENTS,
    ComponentRoutes,
    ComponentShares,
    ComponentTable,
    Forward,
    LayerRoute,
    PathEntropy,
    TokenEntropy,
    TokenPaths,
    TopPaths,
    block_inputs,
    condensed_table,
    entropy_per_token,
    paths_and_entropy,
    routes_of,
    top_paths_per_token,
)
from .targets import ClassLogit, Custom, LogitDiff, Target, TokenLogit, as_target

__all__ = [
    "COMPONENTS", "ClassLogit", "ComponentRoutes", "ComponentShares", "ComponentTable", "Custom", "Forward",
    "LayerRoute", "LogitDiff", "PathEntropy", "Target", "TokenEntropy", "TokenLogit", "TokenPaths", "TopPaths",
    "as_target", "block_inputs", "condensed_table", "entropy_per_token", "paths_and_entropy", "routes_of",
    "top_paths_per_token",
]  # fmt: skip
