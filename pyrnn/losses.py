"""Losses returning ``(loss, dpred)``: the scalar loss and its gradient with respect to the
predictions (or logits), ready for ``model.backward``.

Both reduce to the mean over *valid* elements, so a padded batch of variable-length sequences
gives the same loss and gradients as the unpadded sequences concatenated: pass ``mask``
(True/1 where a position is real) or, for cross-entropy, ``ignore_index`` (targets equal to it
are padding).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import _checks, _dense


def _float(pred: Any, name: str) -> np.ndarray:
    arr = np.asarray(pred.detach().cpu().numpy() if hasattr(pred, "detach") else pred)
    if arr.dtype.kind != "f":
        raise TypeError(f"{name} must be a floating-point array, got dtype {arr.dtype}")
    return arr


def _mask(mask: Any, shape: tuple[int, ...], name: str = "mask") -> np.ndarray | None:
    if mask is None:
        return None
    m = np.asarray(mask)
    if m.shape != shape[:m.ndim]:
        raise ValueError(f"{name}: expected shape {_checks.shape_str(shape[:m.ndim])} (a prefix of "
                         f"{_checks.shape_str(shape)}), got {_checks.shape_str(m.shape)}")
    return m.astype(bool)


def mse(pred: Any, target: Any, mask: Any = None) -> tuple[float, np.ndarray]:
    """Mean squared error over the valid elements.

    ``mask`` has the shape of ``pred`` or a prefix of it (e.g. (B, T) for predictions
    (B, T, F)): masked-out positions contribute neither loss nor gradient.
    """
    pred = _float(pred, "pred")
    target = np.asarray(target, dtype=pred.dtype)
    if target.shape != pred.shape:
        raise ValueError(f"target: expected shape {_checks.shape_str(pred.shape)} like pred, "
                         f"got {_checks.shape_str(target.shape)}")
    diff = pred - target
    m = _mask(mask, pred.shape)
    if m is not None:
        m = np.broadcast_to(m.reshape(m.shape + (1,) * (pred.ndim - m.ndim)), pred.shape)
        diff = np.where(m, diff, 0)
        count = int(m.sum())
    else:
        count = diff.size
    count = max(count, 1)
    loss = float(np.sum(diff * diff) / count)
    return loss, (2.0 / count) * diff


def _kernel_dtype(arr: np.ndarray) -> np.ndarray:
    """``arr`` in a dtype the kernels take (float32 / float64; other floats go through float64)."""
    return arr if arr.dtype in (np.float32, np.float64) else arr.astype(np.float64)


def log_softmax(logits: Any) -> np.ndarray:
    """Numerically stable log-softmax over the last axis."""
    logits = _float(logits, "logits")
    return _dense.softmax(_kernel_dtype(logits), log=True).astype(logits.dtype, copy=False)


def softmax(logits: Any) -> np.ndarray:
    """Numerically stable softmax over the last axis."""
    logits = _float(logits, "logits")
    return _dense.softmax(_kernel_dtype(logits)).astype(logits.dtype, copy=False)


def cross_entropy(logits: Any, targets: Any, mask: Any = None, ignore_index: int | None = None,
                  label_smoothing: float = 0.0) -> tuple[float, np.ndarray]:
    """Cross-entropy from unnormalised ``logits`` (..., C) and integer class ``targets`` (...).

    The mean over valid positions: those where ``mask`` is true (if given) and the target is not
    ``ignore_index`` (if given). ``label_smoothing`` in [0, 1) mixes the one-hot target with the
    uniform distribution, as ``torch.nn.functional.cross_entropy(label_smoothing=...)``.
    Returns ``(loss, dlogits)``.
    """
    logits = _float(logits, "logits")
    targets = np.asarray(targets.detach().cpu().numpy() if hasattr(targets, "detach") else targets)
    if targets.dtype.kind not in "iu":
        raise TypeError(f"targets must be integer class indices, got dtype {targets.dtype}")
    if logits.ndim < 1 or targets.shape != logits.shape[:-1]:
        raise ValueError(f"targets: expected shape {_checks.shape_str(logits.shape[:-1])} (logits' shape "
                         f"without the class axis), got {_checks.shape_str(targets.shape)}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    C = logits.shape[-1]
    flat = _kernel_dtype(logits).reshape(-1, C)
    m = _mask(mask, targets.shape)
    valid = None   # None: every position counts (and the kernel checks the classes)
    safe = targets
    if ignore_index is not None or m is not None:
        valid = np.ones(targets.shape, bool)
        if ignore_index is not None:
            valid &= targets != ignore_index
        if m is not None:
            valid &= np.broadcast_to(m.reshape(m.shape + (1,) * (targets.ndim - m.ndim)), targets.shape)
        safe = np.where(valid, targets, 0)
        if valid.any() and (safe.min() < 0 or safe.max() >= C):
            bad = safe[(safe < 0) | (safe >= C)].flat[0]
            raise ValueError(f"targets: class {bad} is outside 0..{C - 1}")
    rows = flat.shape[0]
    if valid is None:
        count = max(rows, 1)
        scale = np.full(rows, 1.0 / count, flat.dtype)
    else:
        count = max(int(valid.sum()), 1)
        scale = (valid / count).astype(flat.dtype).reshape(-1)
    per, grad = _dense.cross_entropy(flat, safe.reshape(-1).astype(np.int64, copy=False), scale,
                                     float(label_smoothing))
    loss = float((per.sum() if valid is None else np.sum(per[valid.reshape(-1)])) / count)
    return loss, grad.reshape(logits.shape).astype(logits.dtype, copy=False)


class MSELoss:
    """``MSELoss()(pred, target, mask=None) -> (loss, dpred)``; see :func:`mse`."""

    def __call__(self, pred: Any, target: Any, mask: Any = None) -> tuple[float, np.ndarray]:
        return mse(pred, target, mask)

    def __repr__(self) -> str:
        return "MSELoss()"


class CrossEntropyLoss:
    """``CrossEntropyLoss(ignore_index=None, label_smoothing=0.0)(logits, targets, mask=None)``;
    see :func:`cross_entropy`."""

    def __init__(self, ignore_index: int | None = None, label_smoothing: float = 0.0) -> None:
        self.ignore_index = ignore_index
        self.label_smoothing = float(label_smoothing)

    def __call__(self, logits: Any, targets: Any, mask: Any = None) -> tuple[float, np.ndarray]:
        return cross_entropy(logits, targets, mask, self.ignore_index, self.label_smoothing)

    def __repr__(self) -> str:
        return f"CrossEntropyLoss(ignore_index={self.ignore_index}, label_smoothing={self.label_smoothing})"
