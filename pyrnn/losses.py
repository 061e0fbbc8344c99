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


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    return _dense.softmax(_kernel_dtype(logits), log=True).astype(logits.dtype, copy=False)


def log_softmax(logits: Any) -> np.ndarray:
    """Numerically stable log-softmax over the last axis."""
    return _log_softmax(_float(logits, "logits"))


def softmax(logits: Any) -> np.ndarray:
    """Numerically stable softmax over the last axis."""
    logits = _float(logits, "logits")
    return _dense.softmax(_kernel_dtype(logits)).astype(logits.dtype, copy=False)


def _class_targets(scores: np.ndarray, targets: Any, mask: Any, ignore_index: int | None,
                   label_smoothing: float) -> tuple[np.ndarray, np.ndarray]:
    """Checked class targets for scores (..., C): the targets with invalid positions set to class
    0, and the (...) bool array of valid positions (mask true, target not ``ignore_index``)."""
    targets = np.asarray(targets.detach().cpu().numpy() if hasattr(targets, "detach") else targets)
    if targets.dtype.kind not in "iu":
        raise TypeError(f"targets must be integer class indices, got dtype {targets.dtype}")
    if scores.ndim < 1 or targets.shape != scores.shape[:-1]:
        raise ValueError(f"targets: expected shape {_checks.shape_str(scores.shape[:-1])} (the scores' shape "
                         f"without the class axis), got {_checks.shape_str(targets.shape)}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    C = scores.shape[-1]
    valid = np.ones(targets.shape, bool)
    if ignore_index is not None:
        valid &= targets != ignore_index
    m = _mask(mask, targets.shape)
    if m is not None:
        valid &= np.broadcast_to(m.reshape(m.shape + (1,) * (targets.ndim - m.ndim)), targets.shape)
    safe = np.where(valid, targets, 0)
    if valid.any() and (safe.min() < 0 or safe.max() >= C):
        bad = safe[(safe < 0) | (safe >= C)].flat[0]
        raise ValueError(f"targets: class {bad} is outside 0..{C - 1}")
    return safe, valid


def cross_entropy(logits: Any, targets: Any, mask: Any = None, ignore_index: int | None = None,
                  label_smoothing: float = 0.0) -> tuple[float, np.ndarray]:
    """Cross-entropy from unnormalised ``logits`` (..., C) and integer class ``targets`` (...).

    The mean over valid positions: those where ``mask`` is true (if given) and the target is not
    ``ignore_index`` (if given). ``label_smoothing`` in [0, 1) mixes the one-hot target with the
    uniform distribution, as ``torch.nn.functional.cross_entropy(label_smoothing=...)``.
    Returns ``(loss, dlogits)``.
    """
    logits = _float(logits, "logits")
    safe, valid = _class_targets(logits, targets, mask, ignore_index, label_smoothing)
    C = logits.shape[-1]
    flat = _kernel_dtype(logits).reshape(-1, C)
    count = max(int(valid.sum()), 1)
    scale = (valid / count).astype(flat.dtype).reshape(-1)
    per, grad = _dense.cross_entropy(flat, safe.reshape(-1).astype(np.int64, copy=False), scale,
                                     float(label_smoothing))
    loss = float(np.sum(per[valid.reshape(-1)]) / count)
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


# ---------------------------------------------------------------------------------------------
# more losses, each the mean over valid elements as above, with PyTorch's definitions


def _targets_like(target: Any, pred: np.ndarray) -> np.ndarray:
    target = np.asarray(target.detach().cpu().numpy() if hasattr(target, "detach") else target, dtype=pred.dtype)
    if target.shape != pred.shape:
        raise ValueError(f"target: expected shape {_checks.shape_str(pred.shape)} like pred, "
                         f"got {_checks.shape_str(target.shape)}")
    return target


def _elementwise_mean(per: np.ndarray, dper: np.ndarray, mask: Any) -> tuple[float, np.ndarray]:
    """Mean of the per-element losses ``per`` over the valid elements, and its gradient from the
    per-element derivatives ``dper``."""
    m = _mask(mask, per.shape)
    if m is not None:
        m = np.broadcast_to(m.reshape(m.shape + (1,) * (per.ndim - m.ndim)), per.shape)
        per, dper = np.where(m, per, 0), np.where(m, dper, 0)
        count = int(m.sum())
    else:
        count = per.size
    count = max(count, 1)
    return float(np.sum(per) / count), (dper / count).astype(per.dtype, copy=False)


def l1(pred: Any, target: Any, mask: Any = None) -> tuple[float, np.ndarray]:
    """Mean absolute error (``torch.nn.functional.l1_loss``; gradient sign(pred - target))."""
    pred = _float(pred, "pred")
    diff = pred - _targets_like(target, pred)
    return _elementwise_mean(np.abs(diff), np.sign(diff), mask)


def huber(pred: Any, target: Any, mask: Any = None, delta: float = 1.0) -> tuple[float, np.ndarray]:
    """Huber loss (``torch.nn.functional.huber_loss``): 0.5 d^2 where |d| <= delta, else
    delta (|d| - 0.5 delta)."""
    if not delta > 0:
        raise ValueError(f"delta must be > 0, got {delta}")
    pred = _float(pred, "pred")
    d = pred - _targets_like(target, pred)
    small = np.abs(d) <= delta
    per = np.where(small, 0.5 * d * d, delta * (np.abs(d) - 0.5 * delta))
    return _elementwise_mean(per, np.where(small, d, delta * np.sign(d)), mask)


def _check_probability_targets(target: np.ndarray) -> None:
    if target.size and (target.min() < 0 or target.max() > 1):
        raise ValueError("target: binary cross-entropy needs targets in [0, 1]")


def bce(pred: Any, target: Any, mask: Any = None) -> tuple[float, np.ndarray]:
    """Binary cross-entropy of probabilities ``pred`` in [0, 1] (``binary_cross_entropy``; the
    logarithms are clamped at -100 as PyTorch does). Prefer :func:`bce_with_logits`."""
    pred = _float(pred, "pred")
    target = _targets_like(target, pred)
    _check_probability_targets(target)
    if pred.size and (pred.min() < 0 or pred.max() > 1):
        raise ValueError("pred: bce needs probabilities in [0, 1] (for raw scores use bce_with_logits)")
    with np.errstate(divide="ignore"):
        log_p, log_q = np.maximum(np.log(pred), -100), np.maximum(np.log1p(-pred), -100)
    per = -(target * log_p + (1 - target) * log_q)
    eps = np.finfo(pred.dtype).eps
    dper = (pred - target) / np.maximum(pred * (1 - pred), eps)
    return _elementwise_mean(per, dper, mask)


def bce_with_logits(logits: Any, target: Any, mask: Any = None, pos_weight: Any = None) -> tuple[float, np.ndarray]:
    """Binary cross-entropy on raw scores (``binary_cross_entropy_with_logits``), computed stably;
    ``pos_weight`` (broadcast over the last axis) weighs the positive term."""
    x = _float(logits, "logits")
    target = _targets_like(target, x)
    _check_probability_targets(target)
    log_sig = -np.logaddexp(0, -x)           # log sigmoid(x)
    log_one_minus = -np.logaddexp(0, x)      # log (1 - sigmoid(x))
    pw = 1.0 if pos_weight is None else np.asarray(pos_weight, x.dtype)
    per = -(pw * target * log_sig + (1 - target) * log_one_minus)
    sig = np.exp(log_sig)
    dper = -(pw * target * (1 - sig)) + (1 - target) * sig
    return _elementwise_mean(per, dper, mask)


def nll(log_probs: Any, targets: Any, mask: Any = None, weight: Any = None, ignore_index: int | None = None,
        label_smoothing: float = 0.0) -> tuple[float, np.ndarray]:
    """Negative log-likelihood of log-probabilities (..., C) (``torch.nn.functional.nll_loss``)
    with optional class ``weight`` (C,) and ``label_smoothing``: the weighted mean
    sum(w[y] * loss) / sum(w[y]) over valid positions, as PyTorch. Returns (loss, dlog_probs)."""
    return _class_loss(_float(log_probs, "log_probs"), targets, mask, weight, ignore_index, label_smoothing, False)


def weighted_cross_entropy(logits: Any, targets: Any, mask: Any = None, weight: Any = None,
                           ignore_index: int | None = None, label_smoothing: float = 0.0) -> tuple[float, np.ndarray]:
    """:func:`cross_entropy` with class ``weight`` (C,) as ``torch.nn.functional.cross_entropy(weight=)``."""
    return _class_loss(_float(logits, "logits"), targets, mask, weight, ignore_index, label_smoothing, True)


def _class_loss(scores, targets, mask, weight, ignore_index, label_smoothing, from_logits):
    safe, valid = _class_targets(scores, targets, mask, ignore_index, label_smoothing)
    C = scores.shape[-1]
    w = np.ones(C) if weight is None else np.asarray(weight, np.float64).reshape(-1)
    if w.shape != (C,) or (w < 0).any():
        raise ValueError(f"weight: expected {C} non-negative class weights, got {w.shape}")
    logp = _log_softmax(scores) if from_logits else scores.astype(np.float64)
    wy = np.where(valid, w[safe], 0.0)
    denom = max(float(wy.sum()), 1e-12) if valid.any() else 1.0
    eps = float(label_smoothing)
    # d(loss)/d(logp): -(1 - eps) w[y] at the target, -eps w_c / C everywhere (smoothing term
    # weighted per class and normalised by the same sum of w[y], as PyTorch)
    dlogp = np.zeros(logp.shape)
    np.put_along_axis(dlogp, safe[..., None], (-(1 - eps) * wy)[..., None], axis=-1)
    if eps:
        dlogp -= (eps / C) * w * valid[..., None]
    loss = float(np.sum(dlogp * logp) / denom)
    dlogp /= denom
    if from_logits:   # back through log_softmax: g - softmax * sum(g)
        dlogp = dlogp - np.exp(logp) * dlogp.sum(axis=-1, keepdims=True)
    return loss, dlogp.astype(scores.dtype, copy=False)


class BCELoss:
    """``BCELoss()(probs, target, mask=None)``; see :func:`bce`."""

    def __call__(self, pred: Any, target: Any, mask: Any = None) -> tuple[float, np.ndarray]:
        return bce(pred, target, mask)

    def __repr__(self) -> str:
        return "BCELoss()"


class BCEWithLogitsLoss:
    """``BCEWithLogitsLoss(pos_weight=None)(logits, target, mask=None)``; see :func:`bce_with_logits`."""

    def __init__(self, pos_weight: Any = None) -> None:
        self.pos_weight = None if pos_weight is None else np.asarray(pos_weight, np.float64)

    def __call__(self, logits: Any, target: Any, mask: Any = None) -> tuple[float, np.ndarray]:
        return bce_with_logits(logits, target, mask, self.pos_weight)

    def __repr__(self) -> str:
        return f"BCEWithLogitsLoss(pos_weight={self.pos_weight})"


class HuberLoss:
    """``HuberLoss(delta=1.0)(pred, target, mask=None)``; see :func:`huber`."""

    def __init__(self, delta: float = 1.0) -> None:
        self.delta = float(delta)

    def __call__(self, pred: Any, target: Any, mask: Any = None) -> tuple[float, np.ndarray]:
        return huber(pred, target, mask, self.delta)

    def __repr__(self) -> str:
        return f"HuberLoss(delta={self.delta})"


class L1Loss:
    """``L1Loss()(pred, target, mask=None)``; see :func:`l1`."""

    def __call__(self, pred: Any, target: Any, mask: Any = None) -> tuple[float, np.ndarray]:
        return l1(pred, target, mask)

    def __repr__(self) -> str:
        return "L1Loss()"


class NLLLoss:
    """``NLLLoss(weight=None, ignore_index=None, label_smoothing=0.0)(log_probs, targets, mask=None)``;
    with ``from_logits=True`` the inputs are logits (cross-entropy with class weights)."""

    def __init__(self, weight: Any = None, ignore_index: int | None = None, label_smoothing: float = 0.0,
                 from_logits: bool = False) -> None:
        self.weight = None if weight is None else np.asarray(weight, np.float64)
        self.ignore_index, self.label_smoothing, self.from_logits = ignore_index, float(label_smoothing), from_logits

    def __call__(self, scores: Any, targets: Any, mask: Any = None) -> tuple[float, np.ndarray]:
        return _class_loss(_float(scores, "scores"), targets, mask, self.weight, self.ignore_index,
                           self.label_smoothing, self.from_logits)

    def __repr__(self) -> str:
        return (f"NLLLoss(weight={self.weight}, ignore_index={self.ignore_index}, "
                f"label_smoothing={self.label_smoothing}, from_logits={self.from_logits})")
