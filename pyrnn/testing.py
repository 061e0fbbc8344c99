"""Helpers for tests: run pyrnn's layers on the native kernels or on the NumPy reference."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

from . import _backend


@contextlib.contextmanager
def use_backend(backend: str) -> Iterator[None]:
    """Within the block, layers, cells and the building blocks (``pyrnn._dense``: Linear,
    attention, losses, optimizers, ...) compute with ``backend`` ("native" or "reference").

    >>> with use_backend("reference"):
    ...     y, h_n = pyrnn.GRU(3, 4)(x)
    """
    previous = _backend.set_backend(backend)
    try:
        yield
    finally:
        _backend.set_backend(previous)


def backend_name() -> str:
    """The backend in use now: "native" or "reference"."""
    return _backend.name()
