"""Metrics over model outputs and targets, accumulated batch by batch (``fit`` and ``evaluate``
use them by name) or computed at once with the functions.

Each metric reads the outputs ``(..., C)`` (logits or scores), integer targets ``(...)`` and an
optional mask of valid positions (padding excluded), like the losses:

* ``"accuracy"``: argmax equals the target;
* ``"top5_accuracy"`` (any ``"top{k}_accuracy"``): the target is among the k highest scores;
* ``"f1"``: macro-averaged F1 over the classes that occur in targets or predictions (as
  scikit-learn's ``f1_score(average="macro")``); ``"f1_micro"`` the micro average; an output
  of width 1 is a binary logit (positive when > 0);
* ``"perplexity"``: exp of the mean cross-entropy (nats) of the logits;
* ``"bpc"``: bits per character (token), the mean cross-entropy in bits.
"""
from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from .losses import log_softmax


def _valid(targets: np.ndarray, mask: Any) -> np.ndarray:
    if mask is None:
        return np.ones(targets.shape, bool)
    m = np.asarray(mask, bool)
    return np.broadcast_to(m.reshape(m.shape + (1,) * (targets.ndim - m.ndim)), targets.shape)


def _labels(outputs: np.ndarray, targets: Any) -> tuple[np.ndarray, np.ndarray]:
    targets = np.asarray(targets)
    if targets.shape == outputs.shape and outputs.shape[-1] == 1:       # (N, 1) labels for (N, 1) logits
        targets = targets[..., 0]
    if targets.shape != outputs.shape[:-1]:
        targets = targets.reshape(outputs.shape[:-1])
    return outputs, targets.astype(np.int64)


class Metric:
    """Accumulates over batches: ``reset()``, ``update(outputs, targets, mask=None)``, ``result()``."""

    name = "metric"
    counters: tuple[str, ...] = ("total", "count")   # what ``reset`` zeroes; summed by ``merge_all``

    def __init__(self) -> None:
        self.reset()

    def merge_all(self, parts: list[Metric]) -> None:
        """Become the sum of ``parts``: the same metric accumulated over disjoint shards of the
        data (distributed evaluation gathers every rank's)."""
        self.reset()
        for part in parts:
            for key in self.counters:
                mine, theirs = getattr(self, key), getattr(part, key)
                if isinstance(mine, dict):
                    for k, v in theirs.items():
                        mine[k] = mine.get(k, 0.0) + v
                else:
                    setattr(self, key, mine + theirs)

    def reset(self) -> None:
        self.total, self.count = 0.0, 0.0

    def update(self, outputs: Any, targets: Any, mask: Any = None) -> None:
        raise NotImplementedError

    def result(self) -> float:
        return self.total / self.count if self.count else float("nan")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class TopKAccuracy(Metric):
    """The share of valid positions whose target is among the ``k`` highest outputs."""

    def __init__(self, k: int = 5) -> None:
        if not (isinstance(k, int) and k >= 1):
            raise ValueError(f"k must be an int >= 1, got {k!r}")
        self.k = k
        self.name = "accuracy" if k == 1 else f"top{k}_accuracy"
        super().__init__()

    def update(self, outputs, targets, mask=None):
        outputs, targets = _labels(np.asarray(outputs), targets)
        if self.k == 1:
            hit = outputs.argmax(axis=-1) == targets
        else:
            target_score = np.take_along_axis(outputs, np.clip(targets, 0, outputs.shape[-1] - 1)[..., None], -1)
            hit = (outputs > target_score).sum(axis=-1) < self.k     # fewer than k strictly higher
        valid = _valid(targets, mask)
        self.total += float(hit[valid].sum())
        self.count += float(valid.sum())

    def __repr__(self) -> str:
        return f"TopKAccuracy(k={self.k})"


class Accuracy(TopKAccuracy):
    def __init__(self) -> None:
        super().__init__(1)

    def __repr__(self) -> str:
        return "Accuracy()"


class F1(Metric):
    """F1 score from a confusion count: ``average="macro"`` (the unweighted mean over the classes
    seen in targets or predictions) or ``"micro"`` (equal to accuracy for single-label data)."""

    def __init__(self, average: str = "macro") -> None:
        if average not in ("macro", "micro"):
            raise ValueError(f"average must be 'macro' or 'micro', got {average!r}")
        self.average = average
        self.name = "f1" if average == "macro" else "f1_micro"
        super().__init__()

    counters = ("tp", "fp", "fn")

    def reset(self) -> None:
        self.tp: dict[int, float] = {}
        self.fp: dict[int, float] = {}
        self.fn: dict[int, float] = {}

    def update(self, outputs, targets, mask=None):
        outputs, targets = _labels(np.asarray(outputs), targets)
        pred = (outputs[..., 0] > 0).astype(np.int64) if outputs.shape[-1] == 1 else outputs.argmax(axis=-1)
        valid = _valid(targets, mask)
        p, t = pred[valid], targets[valid]
        for c in np.union1d(p, t).tolist():
            self.tp[c] = self.tp.get(c, 0.0) + float(np.sum((p == c) & (t == c)))
            self.fp[c] = self.fp.get(c, 0.0) + float(np.sum((p == c) & (t != c)))
            self.fn[c] = self.fn.get(c, 0.0) + float(np.sum((p != c) & (t == c)))

    def result(self) -> float:
        if not self.tp:
            return float("nan")
        if self.average == "micro":
            tp, fp, fn = sum(self.tp.values()), sum(self.fp.values()), sum(self.fn.values())
            return 2 * tp / max(2 * tp + fp + fn, 1e-300)
        scores = [2 * self.tp[c] / max(2 * self.tp[c] + self.fp[c] + self.fn[c], 1e-300) for c in self.tp]
        return float(np.mean(scores))

    def __repr__(self) -> str:
        return f"F1(average={self.average!r})"


class CrossEntropyMetric(Metric):
    """Mean cross-entropy of the logits over valid positions, reported as perplexity
    (``exp``) or bits per character (``/ ln 2``)."""

    def __init__(self, unit: str = "perplexity") -> None:
        if unit not in ("perplexity", "bpc", "nats"):
            raise ValueError(f"unit must be 'perplexity', 'bpc' or 'nats', got {unit!r}")
        self.unit = self.name = unit
        super().__init__()

    def update(self, outputs, targets, mask=None):
        outputs, targets = _labels(np.asarray(outputs), targets)
        logp = log_softmax(outputs)
        nll = -np.take_along_axis(logp, np.clip(targets, 0, outputs.shape[-1] - 1)[..., None], -1)[..., 0]
        valid = _valid(targets, mask)
        self.total += float(nll[valid].sum(dtype=np.float64))
        self.count += float(valid.sum())

    def result(self) -> float:
        mean = super().result()
        if self.unit == "perplexity":
            return math.exp(mean)
        return mean / math.log(2) if self.unit == "bpc" else mean

    def __repr__(self) -> str:
        return f"CrossEntropyMetric(unit={self.unit!r})"


def get(name: Any) -> Metric:
    """A fresh metric by name (see the module's docstring) or a :class:`Metric` instance as is."""
    if isinstance(name, Metric):
        return name
    if name == "accuracy":
        return Accuracy()
    top = re.fullmatch(r"top(\d+)_accuracy", str(name))
    if top:
        return TopKAccuracy(int(top.group(1)))
    if name in ("f1", "f1_macro"):
        return F1("macro")
    if name == "f1_micro":
        return F1("micro")
    if name in ("perplexity", "bpc"):
        return CrossEntropyMetric(name)
    raise ValueError(f"unknown metric {name!r}: use accuracy, top<k>_accuracy, f1, f1_micro, perplexity, bpc, "
                     "a pyrnn.metrics.Metric, or name: fn(model, inputs, targets)")


def _once(metric: Metric, outputs: Any, targets: Any, mask: Any) -> float:
    metric.update(outputs, targets, mask)
    return metric.result()


def accuracy(outputs: Any, targets: Any, mask: Any = None) -> float:
    return _once(Accuracy(), outputs, targets, mask)


def top_k_accuracy(outputs: Any, targets: Any, k: int = 5, mask: Any = None) -> float:
    return _once(TopKAccuracy(k), outputs, targets, mask)


def f1_score(outputs: Any, targets: Any, average: str = "macro", mask: Any = None) -> float:
    return _once(F1(average), outputs, targets, mask)


def perplexity(logits: Any, targets: Any, mask: Any = None) -> float:
    return _once(CrossEntropyMetric("perplexity"), logits, targets, mask)


def bits_per_character(logits: Any, targets: Any, mask: Any = None) -> float:
    return _once(CrossEntropyMetric("bpc"), logits, targets, mask)
