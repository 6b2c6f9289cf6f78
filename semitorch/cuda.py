"""``st.cuda``: whether a CUDA GPU can be used (through cupy)."""

from __future__ import annotations

from . import backend


def is_available() -> bool:
    """True only when cupy imports and ``cupy.cuda.is_available()`` is true (not merely importable)."""
    return backend.cuda_available()
