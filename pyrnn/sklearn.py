"""scikit-learn estimators on pyrnn's ``Seq2Vec``: :class:`SequenceClassifier`,
:class:`SequenceRegressor` and :class:`SequenceEncoder` (a transformer whose output is the
encoder's pooled features), for ``Pipeline``, ``GridSearchCV``, ``cross_validate`` and the rest.

Input ``X``, read the way ``np.asarray`` reads it when it is regular:

- a 3-D array ``(n_samples, T, n_features)``: sequences of one length T;
- a list of arrays ``(T_i, n_features)`` of varying lengths (a ragged list; a univariate
  series is ``(T_i, 1)``);
- a 2-D array ``(n_samples, n_features)`` (tabular data, as every scikit-learn estimator takes
  it): one step per sample. A batch of univariate series is therefore ``(n_samples, T, 1)``,
  not ``(n_samples, T)``.

``n_features_in_`` is the number of features per step in every form. Needs the optional extra:
``pip install "pyrnn[sklearn]"``.
"""
from __future__ import annotations

import contextlib
import numbers
from typing import Any

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, TransformerMixin
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import LabelEncoder
    from sklearn.utils import assert_all_finite, check_random_state
    from sklearn.utils.multiclass import check_classification_targets, type_of_target
    from sklearn.utils.validation import (check_array, check_consistent_length, check_is_fitted, column_or_1d,
                                          validate_data)
except ImportError as e:
    raise ImportError('pyrnn.sklearn needs scikit-learn >= 1.6: pip install "pyrnn[sklearn]"') from e

from . import optim
from ._threads import limit_threads
from .models import Seq2Vec
from .training import EarlyStopping, fit

OPTIMIZERS = {"adam": optim.Adam, "adamw": optim.AdamW, "sgd": optim.SGD, "rmsprop": optim.RMSprop,
              "adagrad": optim.Adagrad}
_FLOATS = (np.float64, np.float32)
_PREDICT_BATCH = 256


# ---------------------------------------------------------------------------------------------
# input


def _is_ragged(X: Any) -> bool:
    """Whether X is a list (or 1-D object array) of sequences of different shapes."""
    if isinstance(X, np.ndarray):
        if X.dtype != object or X.ndim != 1 or not len(X):
            return False
    elif not isinstance(X, (list, tuple)) or not X:
        return False
    first = np.shape(X[0])
    return any(np.shape(s) != first for s in X)


def _sequences(est: BaseEstimator, X: Any, reset: bool) -> np.ndarray | list[np.ndarray]:
    """X as float32 sequences: an array (N, T, F) or a list of (T_i, F) arrays. Sets (reset) or
    checks ``n_features_in_``."""
    name = type(est).__name__
    if _is_ragged(X):
        seqs = [_one_sequence(s, i, name) for i, s in enumerate(X)]
        widths = {s.shape[1] for s in seqs}
        if len(widths) > 1:
            raise ValueError(f"{name}: the sequences in X have different numbers of features {sorted(widths)}")
        _set_or_check_features(est, seqs[0].shape[1], reset)
        return seqs
    ndim = np.asarray(X).ndim       # a sparse matrix: 0, and validate_data below says it needs dense data
    if ndim == 3:
        arr = check_array(X, dtype=_FLOATS, allow_nd=True, input_name="X")
        if arr.shape[1] < 1 or arr.shape[2] < 1:
            raise ValueError(f"{name}: X has shape {arr.shape}: sequences need length >= 1 and >= 1 feature")
        _set_or_check_features(est, arr.shape[2], reset)
        return _float32(arr, f"{name}: X")
    if ndim > 3:
        raise ValueError(f"{name}: X has {ndim} dimensions; expected (n_samples, n_features), "
                         "(n_samples, T, n_features) or a list of (T_i, n_features) arrays")
    if reset and hasattr(est, "n_features_in_"):
        del est.n_features_in_          # validate_data sets it afresh, and the feature names with it
    try:
        arr = validate_data(est, X, reset=reset, dtype=_FLOATS)
    except ValueError as e:
        if "features, but" in str(e):
            raise ValueError(f"{e} A 2-D X is read as (n_samples, n_features), one step per sample; a batch "
                             "of univariate series is (n_samples, T, 1).") from e
        raise
    return _float32(arr, f"{name}: X")[:, None, :]


def _one_sequence(s: Any, i: int, name: str) -> np.ndarray:
    """Sequence ``i`` of a ragged list as float32 (T_i, F), checked here rather than by
    check_array, whose per-call overhead would dominate on lists of many short sequences."""
    where = f"{name}: X is a list of sequences of different lengths; sequence {i}"
    a = np.asarray(s)
    if a.dtype.kind == "c":
        raise ValueError(f"{where} is complex; expected real numbers")
    if a.dtype.kind not in "biuf":
        try:
            a = a.astype(np.float64)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where} cannot be read as numbers: {e}") from e
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"{where} has shape {a.shape}; expected (T_i, n_features) with T_i >= 1 "
                         "(a univariate sequence is x[:, None])")
    return _float32(a, where)


def _float32(a: np.ndarray, where: str) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):   # overflow becomes inf, refused below
        out = a.astype(np.float32, copy=False)
    if not np.isfinite(out).all():
        raise ValueError(f"{where} contains NaN, infinity or a value too large for float32")
    return out


def _set_or_check_features(est: BaseEstimator, n_features: int, reset: bool) -> None:
    if reset:
        est.n_features_in_ = n_features
        if hasattr(est, "feature_names_in_"):
            del est.feature_names_in_
    elif n_features != est.n_features_in_:
        raise ValueError(f"X has {n_features} features, but {type(est).__name__} is expecting "
                         f"{est.n_features_in_} features as input.")


def _fit_data(seqs: Any, targets: np.ndarray) -> tuple:
    """``pyrnn.fit``'s data: a ragged list with its targets; an array also with its lengths (all
    T), so that nothing in it is taken for padding."""
    if isinstance(seqs, np.ndarray):
        return seqs, targets, np.full(len(seqs), seqs.shape[1], np.int64)
    return seqs, targets


def _run(model: Seq2Vec, seqs: Any, method: str) -> np.ndarray:
    """``model.predict`` or ``model.encode`` over all of ``seqs``, in chunks; a ragged list is
    sorted by length first so that each chunk pads little."""
    fn = getattr(model, method)
    if isinstance(seqs, np.ndarray):
        chunks = [seqs[s:s + _PREDICT_BATCH] for s in range(0, len(seqs), _PREDICT_BATCH)]
        return np.concatenate([fn(c, np.full(len(c), c.shape[1], np.int64)) for c in chunks])
    order = np.argsort([len(s) for s in seqs], kind="stable")
    parts = [fn([seqs[i] for i in order[s:s + _PREDICT_BATCH]]) for s in range(0, len(order), _PREDICT_BATCH)]
    out = np.empty((len(seqs),) + parts[0].shape[1:], parts[0].dtype)
    out[order] = np.concatenate(parts)
    return out


# ---------------------------------------------------------------------------------------------
# the shared estimator


def _check_param(ok: bool, name: str, value: Any, expected: str) -> None:
    if not ok:
        raise ValueError(f"{name} must be {expected}, got {value!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


class _SequenceEstimator(BaseEstimator):
    """Hyper-parameters, fitting and prediction shared by the three estimators; the subclasses
    turn targets into the model's outputs and back."""

    def __init__(self, cell: str = "lstm", hidden_size: int = 32, num_layers: int = 1, bidirectional: bool = False,
                 pooling: str = "last", dropout: float = 0.0, epochs: int = 50, batch_size: int = 32,
                 lr: float = 0.01, optimizer: str = "adam", weight_decay: float = 0.0,
                 clip_grad_norm: float | None = 1.0, early_stopping: bool = False,
                 validation_fraction: float = 0.1, n_iter_no_change: int = 10, random_state: Any = None,
                 n_threads: int | None = None, verbose: bool = False) -> None:
        self.cell = cell
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.pooling = pooling
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.optimizer = optimizer
        self.weight_decay = weight_decay
        self.clip_grad_norm = clip_grad_norm
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.random_state = random_state
        self.n_threads = n_threads
        self.verbose = verbose

    def _check_params(self) -> None:
        """The training hyper-parameters (the model's own are checked by ``Seq2Vec``)."""
        _check_param(_is_int(self.epochs) and self.epochs >= 1, "epochs", self.epochs, "an int >= 1")
        _check_param(_is_int(self.batch_size) and self.batch_size >= 1, "batch_size", self.batch_size, "an int >= 1")
        _check_param(isinstance(self.lr, numbers.Real) and self.lr > 0, "lr", self.lr, "a number > 0")
        _check_param(self.optimizer in OPTIMIZERS, "optimizer", self.optimizer, f"one of {', '.join(OPTIMIZERS)}")
        _check_param(isinstance(self.weight_decay, numbers.Real) and self.weight_decay >= 0, "weight_decay",
                     self.weight_decay, "a number >= 0")
        _check_param(self.clip_grad_norm is None or (isinstance(self.clip_grad_norm, numbers.Real)
                                                     and self.clip_grad_norm > 0),
                     "clip_grad_norm", self.clip_grad_norm, "None or a number > 0")
        _check_param(isinstance(self.validation_fraction, numbers.Real) and 0 < self.validation_fraction < 1,
                     "validation_fraction", self.validation_fraction, "a number in (0, 1)")
        _check_param(_is_int(self.n_iter_no_change) and self.n_iter_no_change >= 1, "n_iter_no_change",
                     self.n_iter_no_change, "an int >= 1")
        _check_param(self.n_threads is None or (_is_int(self.n_threads) and self.n_threads >= 1), "n_threads",
                     self.n_threads, "None or an int >= 1")

    def _threads(self):
        return contextlib.nullcontext() if self.n_threads is None else limit_threads(self.n_threads)

    def _fit_model(self, seqs: Any, targets: np.ndarray, output_size: int, loss: str,
                   stratify: np.ndarray | None) -> None:
        """Build ``model_`` and train it on (seqs, targets); sets ``history_`` and ``n_iter_``."""
        self._check_params()
        rng = check_random_state(self.random_state)
        model_seed, fit_seed, split_seed = (int(s) for s in rng.randint(0, 2**31 - 1, size=3))
        model = Seq2Vec(input_size=self.n_features_in_, output_size=output_size, hidden_size=self.hidden_size,
                        cell=self.cell, num_layers=self.num_layers, bidirectional=self.bidirectional,
                        pooling=self.pooling, dropout=self.dropout, seed=model_seed)
        opt = OPTIMIZERS[self.optimizer](model, lr=self.lr, weight_decay=self.weight_decay)
        train, validation, callbacks = _fit_data(seqs, targets), None, []
        if self.early_stopping:
            if stratify is not None:
                n_val, counts = int(np.ceil(self.validation_fraction * len(targets))), np.bincount(stratify)
                if counts.min() < 2 or min(n_val, len(targets) - n_val) < len(counts):
                    stratify = None      # too few examples to give every class a place on both sides
            x_tr, x_val, y_tr, y_val = train_test_split(seqs, targets, test_size=self.validation_fraction,
                                                        random_state=split_seed, stratify=stratify)
            train, validation = _fit_data(x_tr, y_tr), _fit_data(x_val, y_val)
            callbacks = [EarlyStopping("val_loss", patience=self.n_iter_no_change, restore_best=True)]
        with self._threads():
            history = fit(model, train, loss, opt, epochs=self.epochs, batch_size=self.batch_size,
                          validation_data=validation, seed=fit_seed, clip_grad_norm=self.clip_grad_norm,
                          callbacks=callbacks, progress=bool(self.verbose))
        model.eval()
        self.model_, self.history_, self.n_iter_ = model, history, len(history.epochs)

    def _outputs(self, X: Any, method: str = "predict") -> np.ndarray:
        check_is_fitted(self, "model_")
        seqs = _sequences(self, X, reset=False)
        with self._threads():
            return _run(self.model_, seqs, method)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        return tags


def _require_y(est: BaseEstimator, y: Any) -> None:
    if y is None:
        raise ValueError(f"{type(est).__name__} requires y to be passed, but the target y is None.")


def _class_targets(est: BaseEstimator, y: Any, n: int) -> np.ndarray:
    """Class labels: sets ``classes_``, returns their codes 0..n_classes-1."""
    y = column_or_1d(y, warn=True)
    check_consistent_length(np.empty(n), y)
    if y.dtype.kind in "fc":
        assert_all_finite(y, input_name="y")   # before the label checks, which cast it
    check_classification_targets(y)
    encoder = LabelEncoder().fit(y)
    if len(encoder.classes_) < 2:
        raise ValueError(f"{type(est).__name__} needs samples of at least 2 classes in the data, but the data "
                         f"contains only one class: {encoder.classes_[0]!r}")
    est.classes_ = encoder.classes_
    return encoder.transform(y).astype(np.int64)


def _regression_targets(est: BaseEstimator, y: Any, n: int) -> np.ndarray:
    """Real targets (n,) or (n, k), standardised per column for training (``_y_mean``,
    ``_y_scale`` undo it); sets ``n_outputs_``."""
    y = check_array(y, ensure_2d=False, dtype=_FLOATS, input_name="y")
    if y.ndim not in (1, 2):
        raise ValueError(f"y must be (n_samples,) or (n_samples, n_outputs), got shape {y.shape}")
    check_consistent_length(np.empty(n), y)
    y2 = y.reshape(n, -1).astype(np.float64)
    scale = y2.std(axis=0)
    est._y_mean, est._y_scale = y2.mean(axis=0), np.where(scale > 0, scale, 1.0)
    est._y_1d, est.n_outputs_ = y.ndim == 1, y2.shape[1]
    return ((y2 - est._y_mean) / est._y_scale).astype(np.float32)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    return z / z.sum(axis=1, keepdims=True)


_PARAMS_DOC = """
    Parameters
    ----------
    cell : "lstm", "gru", "rnn", "rnn_relu", "slstm" or "mlstm" (default "lstm")
    hidden_size, num_layers, bidirectional, dropout : the recurrent encoder (``Seq2Vec``);
        dropout is on the pooled features (and between stacked layers).
    pooling : "last", "mean" or "max" over each sequence's valid steps.
    epochs, batch_size, lr : training (``pyrnn.fit``), ``epochs`` at most with early stopping.
    optimizer : "adam" (default), "adamw", "sgd", "rmsprop" or "adagrad", with ``weight_decay``.
    clip_grad_norm : the gradient norm is clipped to this before each step (None: no clipping).
    early_stopping : hold out ``validation_fraction`` of the training data (stratified for
        classes) and stop when its loss has not improved for ``n_iter_no_change`` epochs,
        keeping the best epoch's weights.
    random_state : None, an int or a RandomState: seeds the weights, the shuffling and the
        validation split; an int makes ``fit`` reproducible bit for bit.
    n_threads : pyrnn's kernel threads during fit/predict (None: pyrnn's current setting,
        by default the cores this process may use; in joblib's worker processes, its share).
    verbose : print one line (or a progress bar) per epoch.

    Fitted attributes: ``model_`` (the trained ``pyrnn.Seq2Vec``, in eval mode), ``history_``
    (``pyrnn.History``), ``n_iter_`` (epochs run), ``n_features_in_`` (features per step).
"""


class SequenceClassifier(ClassifierMixin, _SequenceEstimator):
    __doc__ = ("""A recurrent sequence classifier: ``Seq2Vec`` trained with cross-entropy on labels of any
    kind (``classes_`` as ``LabelEncoder`` sorts them); ``predict_proba`` is the softmax of the
    logits, ``score`` the accuracy. X: see :mod:`pyrnn.sklearn`.
""" + _PARAMS_DOC + """    ``classes_``: the class labels.
""")

    def fit(self, X: Any, y: Any) -> SequenceClassifier:
        _require_y(self, y)
        seqs = _sequences(self, X, reset=True)
        codes = _class_targets(self, y, len(seqs))
        self._fit_model(seqs, codes, len(self.classes_), "cross_entropy", stratify=codes)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (n_samples, n_classes), columns in the order of ``classes_``."""
        return _softmax(self._outputs(X))

    def predict_log_proba(self, X: Any) -> np.ndarray:
        return np.log(self.predict_proba(X))

    def predict(self, X: Any) -> np.ndarray:
        logits = self._outputs(X)
        return self.classes_[np.argmax(logits, axis=1)]


class SequenceRegressor(RegressorMixin, _SequenceEstimator):
    __doc__ = ("""A recurrent sequence regressor: ``Seq2Vec`` trained with the squared error on targets
    standardised per column (predictions are mapped back). y (n_samples,) or (n_samples,
    n_outputs); ``predict`` returns the same shape. ``score`` is R^2. X: see :mod:`pyrnn.sklearn`.
""" + _PARAMS_DOC + """    ``n_outputs_``: the number of targets.
""")

    def fit(self, X: Any, y: Any) -> SequenceRegressor:
        _require_y(self, y)
        seqs = _sequences(self, X, reset=True)
        targets = _regression_targets(self, y, len(seqs))
        self._fit_model(seqs, targets, self.n_outputs_, "mse", stratify=None)
        return self

    def predict(self, X: Any) -> np.ndarray:
        y = self._outputs(X).astype(np.float64) * self._y_scale + self._y_mean
        return y[:, 0] if self._y_1d else y

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


class SequenceEncoder(TransformerMixin, _SequenceEstimator):
    __doc__ = ("""Sequence features for downstream scikit-learn estimators: ``fit(X, y)`` trains a ``Seq2Vec``
    on the targets, ``transform(X)`` returns its pooled encoder features (n_samples,
    hidden_size * directions), float64, e.g. ``make_pipeline(SequenceEncoder(),
    LogisticRegression())``. The encoder is supervised: y is required.

    objective : "auto" (default: classification for binary or multiclass labels as
        ``type_of_target`` sees them, else regression), "classification" or "regression".
""" + _PARAMS_DOC + """    ``objective_``: the objective used.
""")

    def __init__(self, objective: str = "auto", cell: str = "lstm", hidden_size: int = 32, num_layers: int = 1,
                 bidirectional: bool = False, pooling: str = "last", dropout: float = 0.0, epochs: int = 50,
                 batch_size: int = 32, lr: float = 0.01, optimizer: str = "adam", weight_decay: float = 0.0,
                 clip_grad_norm: float | None = 1.0, early_stopping: bool = False, validation_fraction: float = 0.1,
                 n_iter_no_change: int = 10, random_state: Any = None, n_threads: int | None = None,
                 verbose: bool = False) -> None:
        super().__init__(cell=cell, hidden_size=hidden_size, num_layers=num_layers, bidirectional=bidirectional,
                         pooling=pooling, dropout=dropout, epochs=epochs, batch_size=batch_size, lr=lr,
                         optimizer=optimizer, weight_decay=weight_decay, clip_grad_norm=clip_grad_norm,
                         early_stopping=early_stopping, validation_fraction=validation_fraction,
                         n_iter_no_change=n_iter_no_change, random_state=random_state, n_threads=n_threads,
                         verbose=verbose)
        self.objective = objective

    def fit(self, X: Any, y: Any = None) -> SequenceEncoder:
        _require_y(self, y)
        _check_param(self.objective in ("auto", "classification", "regression"), "objective", self.objective,
                     "'auto', 'classification' or 'regression'")
        seqs = _sequences(self, X, reset=True)
        objective = self.objective
        if objective == "auto":
            objective = "classification" if type_of_target(y) in ("binary", "multiclass") else "regression"
        if objective == "classification":
            codes = _class_targets(self, y, len(seqs))
            self._fit_model(seqs, codes, len(self.classes_), "cross_entropy", stratify=codes)
        else:
            targets = _regression_targets(self, y, len(seqs))
            self._fit_model(seqs, targets, self.n_outputs_, "mse", stratify=None)
        self.objective_ = objective
        return self

    def transform(self, X: Any) -> np.ndarray:
        """The pooled encoder features (n_samples, n_features_out), float64."""
        return self._outputs(X, "encode").astype(np.float64)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self, "model_")
        return np.array([f"sequenceencoder{i}" for i in range(self.model_.features)], dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        return tags


__all__ = ["SequenceClassifier", "SequenceRegressor", "SequenceEncoder", "OPTIMIZERS"]
