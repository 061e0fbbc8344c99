"""NumPy's BLAS thread count (the building blocks' dense products run on NumPy), and a context
manager that limits pyrnn's and BLAS's threads together.

On a busy machine, idle-spinning BLAS threads can slow the small products of a training step
by 10x; the demo's ``--threads`` and the learning tests use this to run single-threaded.
Only OpenBLAS (NumPy's wheels) is handled; elsewhere the calls report False / None.
"""
from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Iterator

_SET = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
        "openblas_set_num_threads64_", "openblas_set_num_threads")
_GET = ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads",
        "openblas_get_num_threads64_", "openblas_get_num_threads")


def _openblas_function(names: tuple[str, ...]):
    try:
        with open("/proc/self/maps") as f:
            libs = sorted({line.split()[-1] for line in f
                           if "openblas" in line.lower() and line.split()[-1].startswith("/")})
    except OSError:
        return None
    for path in libs:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in names:
            fn = getattr(lib, name, None)
            if fn is not None:
                return fn
    return None


def set_blas_threads(n: int) -> bool:
    """Set NumPy's OpenBLAS thread count; returns whether it could."""
    fn = _openblas_function(_SET)
    if fn is None:
        return False
    fn(ctypes.c_int(int(n)))
    return True


def get_blas_threads() -> int | None:
    fn = _openblas_function(_GET)
    return None if fn is None else int(fn())


@contextlib.contextmanager
def limit_threads(n: int) -> Iterator[None]:
    """Run pyrnn's kernels and NumPy's BLAS with ``n`` threads inside the block, then restore."""
    from .config import get_num_threads, set_num_threads

    old, old_blas = get_num_threads(), get_blas_threads()
    set_num_threads(n)
    set_blas_threads(n)
    try:
        yield
    finally:
        set_num_threads(old)
        if old_blas is not None:
            set_blas_threads(old_blas)
