"""The one place through which layers and cells reach the layer kernels.

By default that is the compiled module ``pyrnn._core``. Tests can swap in the NumPy
reference (``pyrnn.reference``, same function names) with ``pyrnn.testing.use_backend``.
There is deliberately no automatic fallback: if ``_core`` is missing, importing pyrnn fails.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from . import _core

BACKENDS = {"native": "pyrnn._core", "reference": "pyrnn.reference"}

_ops: ModuleType = _core
_name: str = "native"
# Whether the native kernels are the active backend: a global that hot streaming paths read
# without a function call.
native: bool = True


def ops() -> ModuleType:
    """The module whose ``layer_forward``/``layer_backward`` the layers call now."""
    return _ops


def name() -> str:
    """``"native"`` or ``"reference"``."""
    return _name


def set_backend(backend: str) -> str:
    """Switch to ``backend`` ("native" or "reference"); returns the previous name."""
    global _ops, _name, native
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {sorted(BACKENDS)}, got {backend!r}")
    previous = _name
    _ops = importlib.import_module(BACKENDS[backend])
    _name = backend
    native = _ops is _core
    return previous
