"""Runtime configuration: OpenMP threads and a report of how this build was made."""
from __future__ import annotations

import numbers
import platform
import sys
from typing import Any

import numpy as np

from . import _core


def set_num_threads(n: int) -> None:
    """Threads used by pyrnn's native kernels (OpenMP); n >= 1."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    _core.set_num_threads(int(n))


def get_num_threads() -> int:
    """Threads the native kernels use now."""
    return int(_core.get_num_threads())


def version() -> str:
    from importlib import metadata

    try:
        return metadata.version("pyrnn")
    except metadata.PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown (not installed)"


def config() -> dict[str, Any]:
    """The build and runtime configuration as a dict (what ``show_config`` prints)."""
    return {
        "pyrnn": version(),
        "compiler": _core.compiler(),
        "isa": _core.active_isa(),
        "available_isas": list(_core.available_isas()),
        "openmp": _core.openmp_version(),
        "num_threads": get_num_threads(),
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
