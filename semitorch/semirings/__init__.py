"""Semirings: one file each, registered in :data:`SEMIRINGS`. No semiring knows any op.

Every module in this package is imported here, and each class it registers
with :func:`register_semiring` is exposed under its class name
(``st.semirings.Real``, ``st.semirings.MaxProduct``, ...).
"""

import importlib as _importlib
import pkgutil as _pkgutil

from .base import SEMIRINGS, Semiring, register_semiring

for _m in sorted(_pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _m.name != "base" and not _m.name.startswith("_"):
        _importlib.import_module(f"{__name__}.{_m.name}")
globals().update({cls.__name__: cls for cls in SEMIRINGS.values()})

__all__ = ["SEMIRINGS", "Semiring", "register_semiring"]
__all__ += [c.__name__ for c in sorted(SEMIRINGS.values(), key=lambda c: c.__name__)]
