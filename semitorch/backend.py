"""Array backend: numpy or cupy, chosen by the arrays' type. The only module that imports cupy."""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import numpy as np

from semitorch._erf import erf_float32

_cupy: ModuleType | None = None
_cupy_checked = False


def _try_cupy() -> ModuleType | None:
    """Import cupy lazily; None if it is not installed."""
    global _cupy, _cupy_checked
    if not _cupy_checked:
        _cupy_checked = True
        try:
            import cupy  # noqa: PLC0415

            _cupy = cupy
        except Exception:  # ImportError, or a broken CUDA install
            _cupy = None
    return _cupy


_DEVICE_TYPES: dict[type, Any] = {}  # stand-in device array types -> their namespace (register_device_array)


def register_device_array(cls: type, namespace: Any) -> None:
    """Treat arrays of type ``cls`` as device ('cuda') arrays served by the array namespace ``namespace``.

    For tests: a CPU stand-in for cupy arrays (e.g. one that forbids every host
    conversion) runs the device code paths without a GPU. ``namespace`` must offer
    the numpy functions the ops use, plus ``erf``.
    """
    _DEVICE_TYPES[cls] = namespace


def is_cupy_array(a: Any) -> bool:
    """True if ``a`` is a cupy ndarray (without importing cupy when it is not loaded)."""
    return type(a).__module__.startswith("cupy")


def is_device_array(a: Any) -> bool:
    """True if ``a`` lives on the 'cuda' device: a cupy array, or a registered stand-in."""
    return is_cupy_array(a) or type(a) in _DEVICE_TYPES


def xp_of(*arrays: Any) -> ModuleType:
    """The array namespace (numpy or cupy) of the given arrays.

    Python and numpy scalars and ``None`` are ignored. Mixing host (numpy) and device
    (cupy) arrays raises a ``ValueError`` naming both devices.
    """
    found = None
    seen = False  # found is None both before the first array and after a host one
    for a in arrays:
        if a is None or isinstance(a, (int, float, bool, complex, np.generic)):
            continue
        dev = type(a) if is_device_array(a) else None
        if not seen:
            found, seen = dev, True
        elif (found is None) != (dev is None):
            raise ValueError("arrays on different devices: cpu (numpy) and cuda (cupy) mixed in one op")
    if found is not None:
        if found in _DEVICE_TYPES:
            return _DEVICE_TYPES[found]
        cupy = _try_cupy()
        assert cupy is not None
        return cupy
    return np


def device_of(a: Any) -> str:
    """'cuda' for a device (cupy) array, 'cpu' otherwise."""
    return "cuda" if is_device_array(a) else "cpu"


def erf(x: Any) -> Any:
    """Elementwise error function in the array's own namespace.

    numpy float32 arrays use semitorch's own vectorised float32 erf (``semitorch._erf``,
    within 1.31 ulps, about 3x faster than scipy's scalar loop); other numpy dtypes
    use scipy (exact) when installed, else ``math.erf`` elementwise; cupy arrays use
    cupyx, registered device arrays their namespace's ``erf``.
    """
    if type(x) in _DEVICE_TYPES:
        return _DEVICE_TYPES[type(x)].erf(x)
    if is_cupy_array(x):
        from cupyx.scipy.special import erf as _cerf  # noqa: PLC0415

        return _cerf(x)
    if x.dtype == np.float32:
        out = erf_float32(x)
        return out[()] if out.ndim == 0 else out
    try:
        from scipy.special import erf as _serf  # noqa: PLC0415
    except ImportError:  # exact but slow fallback: numpy has no erf
        return np.vectorize(math.erf, otypes=[x.dtype])(x).astype(x.dtype, copy=False)
    return _serf(x).astype(x.dtype, copy=False)


def to_numpy(a: Any) -> np.ndarray:
    """A host (numpy) copy of ``a``; a no-op for numpy arrays."""
    if is_device_array(a):
        return a.get()
    return np.asarray(a)


def cuda_available() -> bool:
    """True only when cupy imports and a CUDA device can actually be used."""
    cupy = _try_cupy()
    if cupy is None:
        return False
    try:
        return bool(cupy.cuda.is_available())
    except Exception:
        return False


def to_device(a: Any, device: str) -> Any:
    """Move array ``a`` to 'cpu' (numpy) or 'cuda' (cupy)."""
    if device == "cpu":
        return to_numpy(a)
    if device == "cuda":
        if not cuda_available():
            raise RuntimeError(
                "cannot move to device 'cuda': no CUDA GPU is available "
                "(cupy is not installed or cupy.cuda.is_available() is False); data stays on 'cpu'"
            )
        cupy = _try_cupy()
        assert cupy is not None
        return cupy.asarray(a)
    raise ValueError(f"unknown device {device!r}: expected 'cpu' or 'cuda'")
