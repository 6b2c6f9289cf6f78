"""Semirings: one file each; every built-in is registered in :data:`SEMIRINGS`. No semiring knows any op."""

from .base import SEMIRINGS, Semiring, register_semiring
from .real import Real

__all__ = ["SEMIRINGS", "Real", "Semiring", "register_semiring"]
