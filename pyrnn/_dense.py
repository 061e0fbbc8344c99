"""The one place through which the building blocks (Linear, Embedding, activations, attention,
losses, optimizers, the xLSTM block stack) reach their kernels: dense products and
element-wise passes on pyrnn's own kernels and threads (``pyrnn._core.blocks``), so that a
training or decoding step never calls NumPy's BLAS, whose own thread pool would compete with
pyrnn's for the cores.

The backend follows ``pyrnn._backend``: with ``pyrnn.testing.use_backend("reference")`` these
run the NumPy reference (``pyrnn.reference_blocks``, the same functions) instead.
Arguments are made C-contiguous here; dtypes are the caller's (the modules' own dtype).
"""
from __future__ import annotations

from types import ModuleType

import numpy as np

from . import _backend, _core, reference_blocks

_native = _core.blocks
_KERNEL_DTYPES = "fd"   # float32, float64 (dtype.char: a cheap test on hot paths)


def ops() -> ModuleType:
    """The module whose functions compute now: ``pyrnn._core.blocks`` or the reference."""
    return _native if _backend.name() == "native" else reference_blocks


def _c(a: np.ndarray) -> np.ndarray:
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)


def matmul(a: np.ndarray, b: np.ndarray, trans_a: bool = False, trans_b: bool = False) -> np.ndarray:
    """``op(a) @ op(b)``: 2-D, or a batch of products along a 3-D ``a``'s first axis (``b``
    3-D with the same batch, or 2-D shared by all)."""
    return ops().gemm(_c(a), _c(b), trans_a, trans_b)


def matmul_into(out: np.ndarray, a: np.ndarray, b: np.ndarray, trans_a: bool = False,
                trans_b: bool = False) -> None:
    """``out += op(a) @ op(b)`` in place (``out`` C-contiguous, e.g. a gradient accumulator)."""
    ops().gemm(_c(a), _c(b), trans_a, trans_b, out, 1.0)


def linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """``x @ weight.T + bias`` on the last axis of ``x`` (any leading axes)."""
    out_features, in_features = weight.shape
    y = ops().linear(_c(x).reshape(-1, in_features), weight, bias)
    return y.reshape(x.shape[:-1] + (out_features,))


def linear_backward(x: np.ndarray, dout: np.ndarray, weight: np.ndarray, dweight: np.ndarray,
                    dbias: np.ndarray | None) -> np.ndarray:
    """Accumulates ``dweight += dout^T x`` (and ``dbias += dout`` summed over rows) and returns
    ``dx = dout @ weight``, all on the last axis (any leading axes)."""
    out_features, in_features = weight.shape
    d2 = _c(dout).reshape(-1, out_features)
    k = ops()
    k.gemm(d2, _c(x).reshape(-1, in_features), True, False, dweight, 1.0)
    if dbias is not None:
        k.column_sums(d2, dbias)
    return k.gemm(d2, weight).reshape(dout.shape[:-1] + (in_features,))


def activation(kind: str, x: np.ndarray, slope: float = 0.0) -> np.ndarray:
    """``kind``: identity, tanh, sigmoid, relu, leaky_relu (``slope`` for x < 0)."""
    return ops().activation(kind, _c(x), slope)


def activation_backward(kind: str, x: np.ndarray, y: np.ndarray, dy: np.ndarray,
                        slope: float = 0.0) -> np.ndarray:
    return ops().activation_backward(kind, _c(x), _c(y), _c(dy), slope)


def softmax(x: np.ndarray, log: bool = False) -> np.ndarray:
    """Softmax (or log-softmax) over the last axis; -inf entries get probability 0."""
    return ops().softmax(_c(x), log)


def softmax_backward(y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    return ops().softmax_backward(_c(y), _c(dy))


def cross_entropy(logits: np.ndarray, targets: np.ndarray, scale: np.ndarray,
                  label_smoothing: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-row loss (float64) and ``dlogits`` scaled per row, for logits (M, N), int64
    targets (M,) in 0..N-1 and scale (M,)."""
    return ops().cross_entropy(_c(logits), _c(targets), _c(scale), label_smoothing)


def _in_place_ops(p: np.ndarray) -> ModuleType:
    # The kernels update C-contiguous float32/float64 arrays; any other parameter array an
    # optimizer is given (a strided view, float16) is updated by the reference, in place.
    if p.flags.c_contiguous and p.dtype.char in _KERNEL_DTYPES:
        return ops()
    return reference_blocks


def adam_update(p, g, m, v, lr, beta1, beta2, eps, weight_decay, decoupled, step) -> None:
    """One Adam step in place (AdamW's decay when ``decoupled``); ``step`` counts from 1."""
    k = _in_place_ops(p)
    k.adam_update(p, _c(g) if k is _native else g, m, v, lr, beta1, beta2, eps, weight_decay, decoupled, step)


def sgd_update(p, g, buf, lr, momentum, dampening, weight_decay, nesterov, first) -> None:
    """One SGD step in place; ``buf`` the momentum buffer (None without momentum)."""
    k = _in_place_ops(p)
    k.sgd_update(p, _c(g) if k is _native else g, buf, lr, momentum, dampening, weight_decay, nesterov, first)


def embedding_backward(ids: np.ndarray, dout: np.ndarray, skip: int | None, dweight: np.ndarray) -> None:
    """``dweight[ids[i]] += dout[i]`` for each flat position i, in order; ids equal to ``skip``
    (the padding row) are left out."""
    dim = dweight.shape[1]
    ops().embedding_backward(_c(ids.reshape(-1).astype(np.int64, copy=False)), _c(dout).reshape(-1, dim),
                             -1 if skip is None else int(skip), dweight)


def sum_squares(x: np.ndarray) -> float:
    """The sum of ``x**2``, accumulated in float64."""
    k = ops() if x.dtype.char in _KERNEL_DTYPES else reference_blocks
    return float(k.sum_squares(_c(x)))
