"""Validation of user input, with messages that name the argument, the expected and the given shape.

Everything here returns new (or read-only-used) arrays: pyrnn never writes into a caller's
array, and what a training cache keeps is always a copy (the ``kept`` arguments). Arrays handed to the kernels are C-contiguous and of the layer's dtype, so views
(transposed, strided, negative strides) are copied here rather than rejected.
"""
from __future__ import annotations

import numbers
import functools
import os
from typing import Any

import numpy as np

SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


# ---------------------------------------------------------------------------------------------
# constructor arguments


def layer_dtype(dtype: Any) -> np.dtype:
    """The compute dtype of a layer or cell: float32 or float64."""
    try:
        dt = np.dtype(dtype)
    except TypeError as e:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from e
    if dt not in SUPPORTED_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt


def positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def proj_size(value: Any, hidden_size: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"proj_size must be an int, got {type(value).__name__}")
    if not 0 <= value < hidden_size:
        raise ValueError(f"proj_size must be 0 (no projection) or in 1..hidden_size-1 = "
                         f"1..{hidden_size - 1}, got {value}")
    return int(value)


def dropout(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"dropout must be a number in [0, 1], got {type(value).__name__}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"dropout must be in [0, 1], got {value}")
    return float(value)


def choice(value: Any, name: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return value


# ---------------------------------------------------------------------------------------------
# arrays


def pair(value: Any, name: str, parts: tuple[str, str]) -> tuple[Any, Any]:
    """An LSTM state argument: None, or a pair (first, second) where either may be None."""
    if value is None:
        return None, None
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        got = type(value).__name__
        if isinstance(value, (tuple, list)):
            got += f" of length {len(value)}"
        raise TypeError(f"{name} must be a pair ({parts[0]}, {parts[1]}) or None, got {got}")
    return value[0], value[1]


def shape_str(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _numpy_view(value: Any, name: str) -> np.ndarray:
    """``value`` as an ndarray, a view of the caller's memory wherever NumPy can make one (arrays,
    torch tensors, memoryviews and other buffers); non-floating input raises TypeError."""
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be an array of floats, got {type(value).__name__}") from e
    if arr.dtype.kind != "f":
        raise TypeError(f"{name} must be a floating-point array (float32 or float64), "
                        f"got dtype {arr.dtype}")
    return arr


def _contiguous(arr: np.ndarray, name: str, dtype: np.dtype, kept: bool, value: Any) -> np.ndarray:
    """``arr`` (a view of ``value``) as a C-contiguous, native-order array of ``dtype``.

    ``kept``: the result will be kept after the call returns (a training cache reads it again in
    backward), so it must be pyrnn's own copy: a view of the caller's array, tensor or buffer
    would see the caller's later writes. Other results may share memory with the caller: the
    kernels only read them, during the call.
    """
    if arr.dtype != dtype or not arr.flags.c_contiguous:
        # e.g. a broadcast view whose copy would not fit: refuse before allocating
        fits_in_memory(arr.size, dtype, f"a contiguous {np.dtype(dtype).name} copy of {name}")
    out = np.ascontiguousarray(arr, dtype=dtype)
    # a list or tuple was already copied by np.asarray: nobody else holds that memory
    if kept and not isinstance(value, (list, tuple)) and np.may_share_memory(out, arr):
        out = out.copy()
    return out


def float_array(value: Any, name: str, dtype: np.dtype, *, kept: bool = False) -> np.ndarray:
    """``value`` as a C-contiguous array of ``dtype``; floating inputs of another precision or
    byte order are converted, anything non-floating raises TypeError naming ``name``. With
    ``kept``, the result never shares memory with ``value`` (see ``_contiguous``)."""
    return _contiguous(_numpy_view(value, name), name, dtype, kept, value)


def expect_shape(arr: np.ndarray, name: str, expected: tuple[int, ...], legend: str) -> None:
    """Raise ValueError unless ``arr.shape == expected``; ``legend`` spells the axes."""
    if arr.shape != tuple(expected):
        raise ValueError(f"{name}: expected shape {legend} = {shape_str(tuple(expected))}, "
                         f"got {shape_str(arr.shape)}")


def sequence(x: Any, input_size: int, batch_first: bool, dtype: np.dtype, *,
             kept: bool = False) -> tuple[np.ndarray, bool]:
    """A layer's input as a time-major (T, B, I) array, and whether it was batched. ``kept``: the
    result is kept for backward, so it is a copy (see ``_contiguous``)."""
    arr = _numpy_view(x, "x")
    layout = "(B, T, I)" if batch_first else "(T, B, I)"
    if arr.ndim not in (2, 3):
        raise ValueError(f"x: expected a 3-D array {layout} or a 2-D unbatched sequence (T, I) "
                         f"with I = {input_size}, got shape {shape_str(arr.shape)}")
    if arr.shape[-1] != input_size:
        expected = layout if arr.ndim == 3 else "(T, I)"
        raise ValueError(f"x: expected shape {expected} with I = input_size = {input_size}, "
                         f"got shape {shape_str(arr.shape)}")
    batched = arr.ndim == 3
    if not batched:
        arr = arr[:, None, :]
    elif batch_first:
        arr = arr.transpose(1, 0, 2)
    return _contiguous(arr, "x", dtype, kept, x), batched


def step_input(x: Any, input_size: int, dtype: np.dtype, *, kept: bool = False) -> tuple[np.ndarray, bool]:
    """A cell's input x_t as a (1, B, I) array (one time step), and whether it was batched.
    ``kept``: the result is kept for backward, so it is a copy (see ``_contiguous``)."""
    arr = float_array(x, "x", dtype, kept=kept)
    if arr.ndim not in (1, 2) or arr.shape[-1] != input_size:
        raise ValueError(f"x: expected shape (B, I) or unbatched (I,) with I = input_size = "
                         f"{input_size}, got shape {shape_str(arr.shape)}")
    batched = arr.ndim == 2
    return (arr[None] if batched else arr[None, None]), batched


def state(value: Any, name: str, shape: tuple[int, ...], legend: str, dtype: np.dtype) -> np.ndarray:
    """An initial state (or state gradient) of exactly ``shape``; None means zeros."""
    if value is None:
        return np.zeros(shape, dtype)
    arr = float_array(value, name, dtype)
    expect_shape(arr, name, shape, legend)
    return arr


def lengths(value: Any, T: int, B: int, batched: bool) -> np.ndarray | None:
    """Per-sequence lengths as a new int64 (B,) array with every value in 1..T, or None."""
    if value is None:
        return None
    if hasattr(value, "detach") and hasattr(value, "numpy"):
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if isinstance(value, (list, tuple)) and len(value) == 0:
        arr = np.zeros(0, np.int64)  # np.asarray([]) is float64, yet [] is the lengths of an empty batch
    if arr.dtype.kind not in "iu":
        raise TypeError(f"lengths must be integers, got dtype {arr.dtype}")
    if not batched and arr.ndim == 0:
        arr = arr.reshape(1)
    legend = "(B,)" if batched else "() or (1,) for an unbatched sequence"
    expect_shape(arr, "lengths", (B,), legend)
    if T == 0 and B > 0:
        raise ValueError("lengths cannot be given for an empty sequence (T = 0): each must be in 1..T")
    if B > 0 and (arr.min() < 1 or arr.max() > T):
        bad = int(np.flatnonzero((arr < 1) | (arr > T))[0])
        raise ValueError(f"lengths[{bad}] = {arr[bad]} is outside 1..T = 1..{T}")
    # always pyrnn's own copy (B integers): training caches keep it until backward
    return np.array(arr, dtype=np.int64, order="C", copy=True)


# ---------------------------------------------------------------------------------------------
# memory


@functools.lru_cache(maxsize=1)
def _physical_memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def fits_in_memory(n_elements: int, dtype: np.dtype, what: str) -> None:
    """Raise MemoryError before asking for more memory than this machine has.

    An over-committed allocation can succeed and then kill the process when touched; failing
    early with a clear message is better than a crash.
    """
    nbytes = int(n_elements) * np.dtype(dtype).itemsize
    limit = _physical_memory_bytes()
    if limit is not None and nbytes > limit:
        raise MemoryError(f"{what} needs about {nbytes / 2**30:.1f} GiB, more than this machine's "
                          f"{limit / 2**30:.1f} GiB of memory")
