"""Runtime configuration: OpenMP threads, the memory kept for reuse, and a report of how this
build was made."""
from __future__ import annotations

import numbers
import platform
import sys
import warnings
from typing import Any

import numpy as np

from . import _core
from ._threads import default_threads

FORKED = "1: this process was forked after pyrnn's threads ran (OpenMP's pool does not survive fork)"


def set_num_threads(n: int) -> None:
    """Threads used by pyrnn's native kernels (OpenMP); n >= 1. In a process forked after
    pyrnn's threads ran, native calls stay on one thread (a RuntimeWarning says so)."""
    global _source
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if n > 1 and _core.fork_limited():
        warnings.warn(f"pyrnn.set_num_threads({n}) in a process forked after pyrnn's threads ran: "
                      "native calls stay on one thread here (start workers with the 'spawn' or "
                      "'forkserver' method to use threads in them)", RuntimeWarning, stacklevel=2)
    _core.set_num_threads(int(n))
    _source = "set_num_threads()"


def get_num_threads() -> int:
    """Threads the native kernels use now."""
    return int(_core.get_num_threads())


def release_memory() -> None:
    """Frees the large buffers pyrnn keeps for reuse between calls. Training workspaces and
    gate gradients of 32 MB and more go back to a pool when a step is done, so that the next
    step does not pay a page fault per page of fresh memory (smaller ones are left to malloc,
    which keeps them itself); the pool keeps at most 8 idle blocks and 1 GiB. Call this after
    training when the rest of the program needs the memory."""
    _core.release_idle_buffers()


def thread_source() -> str:
    """Where the current thread count came from: PYRNN_NUM_THREADS, OMP_NUM_THREADS, the cores
    this process may use (affinity mask and cgroup CPU quota), set_num_threads(), or a fork."""
    return FORKED if _core.fork_limited() else _source


_threads_at_import, _source = default_threads()
_core.set_num_threads(_threads_at_import)


def version() -> str:
    """pyrnn's version (that of its Python files, which the compiled module matches)."""
    from ._version import __version__

    return __version__


def config() -> dict[str, Any]:
    """The build and runtime configuration as a dict (what ``show_config`` prints)."""
    return {
        "pyrnn": version(),
        "compiler": _core.compiler(),
        "isa": _core.active_isa(),
        "available_isas": list(_core.available_isas()),
        "openmp": _core.openmp_version(),
        "num_threads": get_num_threads(),
        "threads_from": thread_source(),
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def show_config(file: Any = None) -> dict[str, Any]:
    """Print the configuration (version, compiler, ISA in use and available, OpenMP version and
    threads, NumPy) and return it as a dict."""
    info = config()
    labels = {
        "pyrnn": "pyrnn version",
        "compiler": "compiler",
        "isa": "ISA in use",
        "available_isas": "ISAs available",
        "openmp": "OpenMP version",
        "num_threads": "threads",
        "threads_from": "threads from",
        "numpy": "numpy version",
        "python": "python version",
    }
    out = file if file is not None else sys.stdout
    width = max(map(len, labels.values()))
    for key, label in labels.items():
        value = info[key]
        if isinstance(value, list):
            value = ", ".join(value)
        print(f"{label:<{width}}  {value}", file=out)
    return info
