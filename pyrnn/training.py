"""``pyrnn.fit``: mini-batch training of any model with the ``collate``/``__call__``/``backward``
contract (the architectures in ``pyrnn.models``), with seeded shuffling, variable-length
batches, validation metrics, truncated BPTT, gradient clipping, callbacks, a progress bar and
a returned :class:`History`; ``pyrnn.plot_history`` draws it."""
from __future__ import annotations

import functools
import inspect
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from . import distributed as _distributed
from . import losses as _losses
from . import metrics as _metrics
from . import optim as _optim
from .distributed import is_main_process

LOSSES: dict[str, Callable[..., Any]] = {
    "mse": _losses.mse, "cross_entropy": _losses.cross_entropy, "bce": _losses.bce,
    "bce_with_logits": _losses.bce_with_logits, "huber": _losses.huber, "l1": _losses.l1, "nll": _losses.nll}


class History:
    """Per-epoch logs: ``history["loss"]``, ``history["val_loss"]``, metrics, ``"lr"``, ``"time"``."""

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {}
        self.epochs: list[int] = []
        self.stopped_early = False

    def append(self, epoch: int, logs: Mapping[str, float]) -> None:
        self.epochs.append(epoch)
        for k, v in logs.items():
            self.history.setdefault(k, []).append(float(v))

    def __getitem__(self, key: str) -> list[float]:
        return self.history[key]

    def __contains__(self, key: str) -> bool:
        return key in self.history

    def keys(self):
        return self.history.keys()

    def __repr__(self) -> str:
        last = {k: round(v[-1], 6) for k, v in self.history.items() if v}
        return f"History(epochs={len(self.epochs)}, last={last})"


# ---------------------------------------------------------------------------------------------
# callbacks


class Callback:
    """Hooks called by ``fit``; ``on_epoch_end`` returning True stops training."""

    def on_train_begin(self, model: Any, history: History) -> None:
        pass

    def on_epoch_end(self, epoch: int, logs: dict[str, float], model: Any) -> bool | None:
        return None

    def on_train_end(self, model: Any, history: History) -> None:
        pass


def _better(mode: str, value: float, best: float, min_delta: float) -> bool:
    return value < best - min_delta if mode == "min" else value > best + min_delta


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs; with
    ``restore_best`` put back the best epoch's weights at the end."""

    def __init__(self, monitor: str = "val_loss", patience: int = 5, min_delta: float = 0.0,
                 mode: str = "min", restore_best: bool = True) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.monitor, self.patience, self.min_delta, self.mode = monitor, int(patience), float(min_delta), mode
        self.restore_best = restore_best

    def on_train_begin(self, model, history):
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch, self.wait, self.best_state = -1, 0, None

    def on_epoch_end(self, epoch, logs, model):
        if self.monitor not in logs:
            raise KeyError(f"EarlyStopping monitors {self.monitor!r}, which is not in the logs "
                           f"({', '.join(logs)}); give validation_data or monitor 'loss'")
        value = logs[self.monitor]
        if _better(self.mode, value, self.best, self.min_delta):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best:
                self.best_state = model.state_dict()
            return False
        self.wait += 1
        return self.wait >= self.patience

    def on_train_end(self, model, history):
        if self.restore_best and self.best_state is not None:
            model.load_state_dict(self.best_state)


class ModelCheckpoint(Callback):
    """Save the model (``pyrnn.save``: safetensors, atomic) after each epoch, or only when
    ``monitor`` improves with ``save_best_only``. Given the ``optimizer`` (and ``scheduler``)
    that ``fit`` uses, the file also holds their states, so that training can resume from it
    (``pyrnn.load(path, into=model, optimizer=..., scheduler=...)``)."""

    def __init__(self, path: str, monitor: str = "val_loss", mode: str = "min", save_best_only: bool = True,
                 optimizer: Any = None, scheduler: Any = None) -> None:
        self.path, self.monitor, self.mode, self.save_best_only = str(path), monitor, mode, save_best_only
        self.optimizer, self.scheduler = optimizer, scheduler

    def on_train_begin(self, model, history):
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = -1

    def on_epoch_end(self, epoch, logs, model):
        from .checkpoint import save

        if self.save_best_only:
            if self.monitor not in logs:
                raise KeyError(f"ModelCheckpoint monitors {self.monitor!r}, which is not in the logs ({', '.join(logs)})")
            if not _better(self.mode, logs[self.monitor], self.best, 0.0):
                return False
            self.best, self.best_epoch = logs[self.monitor], epoch
        if is_main_process():
            save(model, self.path, metadata={"epoch": str(epoch)}, optimizer=self.optimizer,
                 scheduler=self.scheduler)
        return False


# ---------------------------------------------------------------------------------------------
# progress


def _tqdm():
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm


def _fmt(logs: Mapping[str, float]) -> str:
    return "  ".join(f"{k} {v:.4g}" for k, v in logs.items() if k not in ("time",))


# ---------------------------------------------------------------------------------------------
# fit


def _take(data: Any, index: np.ndarray) -> Any:
    if data is None:
        return None
    if isinstance(data, np.ndarray) or (hasattr(data, "detach") and hasattr(data, "numpy")):
        return data[index]
    return [data[i] for i in index]


def _resolve_loss(loss: Any) -> Callable[..., Any]:
    if isinstance(loss, str):
        if loss not in LOSSES:
            raise ValueError(f"loss must be a callable or one of {', '.join(LOSSES)}; got {loss!r}")
        return LOSSES[loss]
    if not callable(loss):
        raise TypeError(f"loss must be callable (outputs, targets, mask=None) -> (loss, doutputs), got {type(loss).__name__}")
    return loss


def _backward_of(model: Any) -> Callable[[Any], Any]:
    """``model.backward``, told to skip the gradient of the model's input where it takes
    ``input_grad`` (fit never reads that gradient, and for a recurrent model's data it is a
    product as large as the input projection's)."""
    try:
        takes_flag = "input_grad" in inspect.signature(model.backward).parameters
    except (TypeError, ValueError):
        takes_flag = False
    return functools.partial(model.backward, input_grad=False) if takes_flag else model.backward


def _split(data: Any, name: str) -> tuple[Any, Any, Any]:
    """``(inputs, targets, lengths)`` of a data pair ``(inputs, targets)`` or triple ``(inputs,
    targets, lengths)`` (padded inputs with their lengths)."""
    if not (isinstance(data, (tuple, list)) and len(data) in (2, 3)):
        raise TypeError(f"{name} must be a pair (inputs, targets) or a triple (inputs, targets, lengths)")
    inputs, targets, lengths = (*data, None) if len(data) == 2 else data
    if len(inputs) != len(targets):
        raise ValueError(f"{name}: {len(inputs)} inputs but {len(targets)} targets")
    if lengths is not None and len(lengths) != len(inputs):
        raise ValueError(f"{name}: {len(inputs)} inputs but {len(lengths)} lengths")
    if len(inputs) == 0:
        raise ValueError(f"{name} is empty")
    return inputs, targets, lengths


def _collate(model: Any, inputs: Any, targets: Any, lengths: Any, idx: np.ndarray):
    x, t, lens = _take(inputs, idx), _take(targets, idx), _take(lengths, idx)
    return model.collate(x, t) if lens is None else model.collate(x, t, lens)


def _metric_dict(metrics: Any) -> dict[str, Any]:
    """``name -> Metric`` (built-in, accumulated over batches) or ``name -> fn(model, inputs, targets)``."""
    if metrics is None:
        return {}
    if isinstance(metrics, (str, _metrics.Metric)):
        metrics = [metrics]
    if isinstance(metrics, Mapping):
        return {k: (_metrics.get(v) if isinstance(v, (str, _metrics.Metric)) else v) for k, v in metrics.items()}
    out = {}
    for m in metrics:
        metric = _metrics.get(m)
        out[metric.name] = metric
    return out


def _check_stateful(model: Any, batch_size: int, n: int, name: str) -> None:
    if not getattr(model, "supports_stateful", False):
        raise ValueError(f"stateful: {type(model).__name__} cannot carry its state across batches "
                         "(a unidirectional Seq2Seq can)")
    if n % batch_size:
        raise ValueError(f"stateful: {name} has {n} segments, not a multiple of batch_size = {batch_size} "
                         "(batch k holds segment k of each of batch_size streams; see make_streams)")


def _carry(model: Any) -> tuple:
    """The model's final state, detached (copied) for the next batch of the same streams."""
    return tuple(np.array(s, copy=True) for s in model.final_state)


def evaluate(model: Any, data: Any, loss: Any = None, batch_size: int = 256, metrics: Any = None,
             stateful: bool = False, _dp: Any = None) -> dict[str, float]:
    """Loss (mean over valid positions, like training) and metrics on ``data`` in eval mode.

    ``data`` as ``fit`` takes it: ``(inputs, targets)`` with inputs a list of variable-length
    sequences or an array, or ``(inputs, targets, lengths)`` with padded inputs. ``loss``: as
    ``fit`` (None: metrics only). ``metrics``: names (``"accuracy"``, ``"top5_accuracy"``,
    ``"f1"``, ``"perplexity"``, ``"bpc"``; see ``pyrnn.metrics``), ``Metric`` instances, or
    ``{name: fn(model, inputs, targets) -> float}``. ``stateful``: the rows are consecutive
    segments of ``batch_size`` streams (as ``fit(stateful=True)``), the state carried across.
    In distributed training each rank evaluates its share of every batch and the loss and
    metrics are reduced over ranks (a function metric: the ranks' values weighted by their
    numbers of examples)."""
    loss_fn = None if loss is None else _resolve_loss(loss)
    inputs, targets, lengths = _split(data, "data")
    metrics = _metric_dict(metrics)
    if stateful:
        _check_stateful(model, batch_size, len(inputs), "data")
    accumulated = {k: m for k, m in metrics.items() if isinstance(m, _metrics.Metric)}
    for m in accumulated.values():
        m.reset()
    was_training = model.training
    model.eval()
    try:
        total, weight, state, own = 0.0, 0.0, None, []
        for start in range(0, len(inputs), batch_size):
            idx = np.arange(start, min(start + batch_size, len(inputs)))
            if _dp is not None:
                idx = _dp.shard(idx)
                if not len(idx):
                    continue
            own.append(idx)
            batch = _collate(model, inputs, targets, lengths, idx)
            out = model(**batch.inputs, state=state) if stateful else model(**batch.inputs)
            if stateful:
                state = _carry(model)
            if loss_fn is not None:
                value, _ = loss_fn(out, batch.targets, mask=batch.mask)
                w = float(np.sum(batch.mask)) if batch.mask is not None else float(batch.size)
                total, weight = total + value * w, weight + w
            for m in accumulated.values():
                m.update(out, batch.targets, batch.mask)
        own = np.concatenate(own) if own else np.arange(0)
        functions = {name: fn for name, fn in metrics.items() if not isinstance(fn, _metrics.Metric)}
        values = {name: float(fn(model, _take(inputs, own), _take(targets, own))) if len(own) else 0.0
                  for name, fn in functions.items()}
        if _dp is not None:
            sums = _dp.allreduce_sum(np.array([total, weight, float(len(own))] + [v * len(own) for v in values.values()]),
                                     "the validation loss")
            total, weight, examples = sums[:3]
            values = {name: float(v) / max(examples, 1) for name, v in zip(values, sums[3:])}
            for name, m in accumulated.items():
                m.merge_all(_dp.allgather_object(m, f"the validation metric {name}"))
        logs = {} if loss_fn is None else {"loss": total / max(weight, 1e-12)}
        for name, fn in metrics.items():
            logs[name] = fn.result() if isinstance(fn, _metrics.Metric) else values[name]
    finally:
        model.train(was_training)
    return logs


def make_streams(data: Any, batch_size: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut a long sequence (tokens (N,) or features (N, F)) into inputs and next-step targets for
    stateful training: ``batch_size`` contiguous streams, each cut into segments of ``steps``,
    ordered so that batch k (rows k*batch_size ... ) holds segment k of every stream. Returns
    ``(X, Y)`` with X, Y (n_batches * batch_size, steps[, F]); Y is X shifted by one step."""
    arr = np.asarray(data)
    batch_size, steps = int(batch_size), int(steps)
    if batch_size < 1 or steps < 1:
        raise ValueError(f"batch_size and steps must be >= 1, got {batch_size} and {steps}")
    per_stream = (len(arr) - 1) // batch_size
    n_batches = per_stream // steps
    if n_batches < 1:
        raise ValueError(f"make_streams: {len(arr)} steps are too few for {batch_size} streams of at least "
                         f"{steps + 1} steps")
    starts = np.arange(batch_size) * per_stream
    rows = starts[None, :, None] + np.arange(n_batches)[:, None, None] * steps + np.arange(steps)  # (K, B, T)
    rows = rows.reshape(n_batches * batch_size, steps)
    return arr[rows], arr[rows + 1]


def _batch_pieces(batch: Any, tbptt: int | None, dp: Any) -> list[Any]:
    """The (inputs, targets, mask) pieces of one batch, each with an optimizer step: the whole
    batch, or its truncated-BPTT chunks. In distributed training every rank takes as many
    steps as the rank with the most pieces (None: this rank has nothing for that step, and its
    gradient is given weight 0)."""
    if batch is None:
        pieces = []
    elif tbptt:
        pieces = list(_tbptt_chunks(batch, tbptt))
    else:
        pieces = [(batch.inputs, batch.targets, batch.mask)]
    if dp and tbptt:
        pieces += [None] * (dp.allreduce_max(len(pieces), "the step count") - len(pieces))
    elif dp and not pieces:
        pieces = [None]     # an empty shard of the ragged last batch still joins the step
    return pieces


def _tbptt_chunks(batch: Any, k: int):
    """Cut a batch along time into chunks of ``k`` steps (lengths clipped per chunk)."""
    x, lengths = batch.inputs["x"], batch.inputs["lengths"]
    T = x.shape[1]
    for start in range(0, T, k):
        stop = min(start + k, T)
        chunk_len = np.clip(lengths - start, 0, stop - start)
        mask = batch.mask[:, start:stop] & (chunk_len > 0)[:, None] if batch.mask is not None else None
        inputs = dict(batch.inputs, x=x[:, start:stop], lengths=np.maximum(chunk_len, 1))
        yield inputs, batch.targets[:, start:stop], mask


def fit(model: Any, train_data: Any, loss: Any, optimizer: Any, epochs: int = 10, batch_size: int = 32,
        validation_data: Any = None, shuffle: bool | None = None, seed: int | None = 0,
        clip_grad_norm: float | None = None, clip_grad_value: float | None = None, tbptt: int | None = None,
        stateful: bool = False, callbacks: Sequence[Callback] = (), metrics: Any = None, scheduler: Any = None,
        progress: bool = True, file: Any = None, distributed: Any = False) -> History:
    """Train ``model`` and return its :class:`History`.

    - ``train_data`` / ``validation_data``: ``(inputs, targets)`` with inputs a list of
      variable-length sequences or an array, or ``(inputs, targets, lengths)`` with padded
      arrays; the model's ``collate`` pads each mini-batch and masks the padding. ``predict``
      and ``evaluate`` take the same inputs.
    - ``loss``: a name (``"mse"``, ``"cross_entropy"``, ``"bce"``, ``"bce_with_logits"``,
      ``"huber"``, ``"l1"``, ``"nll"``) or a callable ``(outputs, targets, mask=None) -> (loss,
      doutputs)`` (see ``pyrnn.losses``); ``optimizer``: a ``pyrnn.optim`` optimizer of this model.
    - ``shuffle`` (default: True unless stateful) with ``seed``: the order of examples each
      epoch is reproducible.
    - ``tbptt=k``: truncated BPTT for models that support it (``Seq2Seq``): each batch is cut
      into chunks of k steps, with an optimizer step per chunk and the recurrent state carried
      forward (without gradient) from one chunk to the next.
    - ``stateful=True`` (``Seq2Seq``): the rows are consecutive segments of ``batch_size``
      parallel streams (batch k holds segment k of each; :func:`make_streams` builds them) and
      each stream's final state starts its next segment (detached: no gradient flows back
      across batches); no shuffling; ``model.reset_states()`` at every epoch's start.
      Validation data is evaluated the same way.
    - ``clip_grad_norm`` / ``clip_grad_value`` before every optimizer step.
    - ``scheduler``: ``step()`` after every batch if its ``interval`` is ``"batch"``
      (``WarmupCosineLR``, ``OneCycleLR``), else after every epoch (``StepLR``, ``CosineLR``;
      ``ReduceLROnPlateau`` gets its monitored log).
    - ``metrics``: names (``"accuracy"``, ``"top5_accuracy"``, ``"f1"``, ``"perplexity"``,
      ``"bpc"``), ``pyrnn.metrics.Metric`` instances or ``{name: fn(model, inputs, targets)}``,
      computed on the validation data each epoch (logged as ``val_<name>``).
    - ``callbacks``: e.g. :class:`EarlyStopping`, :class:`ModelCheckpoint`.
    - ``progress``: a tqdm bar per epoch with the running loss (tqdm from the ``demo`` extra);
      without tqdm, one plain line per epoch.
    - ``distributed``: ``True`` for synchronous data-parallel training over MPI when launched
      with ``mpiexec -n N`` (``batch_size`` is then per rank; see :mod:`pyrnn.distributed`),
      ``"auto"`` for that only under an MPI launcher with several ranks, or a
      ``pyrnn.distributed.DataParallel``. With ``stateful``, the streams are split among the
      ranks: build them for the global batch, ``make_streams(data, batch_size * ranks, steps)``.
    """
    args = (model, train_data, loss, optimizer, epochs, batch_size, validation_data, shuffle, seed, clip_grad_norm,
            clip_grad_value, tbptt, stateful, callbacks, metrics, scheduler, progress, file)
    dp = _distributed.data_parallel(distributed)
    if dp is None:
        return _fit(*args, None)
    with dp.abort_on_error(), dp.active():
        return _fit(*args, dp)


def _fit(model, train_data, loss, optimizer, epochs, batch_size, validation_data, shuffle, seed, clip_grad_norm,
         clip_grad_value, tbptt, stateful, callbacks, metrics, scheduler, progress, file, dp) -> History:
    loss_fn = _resolve_loss(loss)
    backward = _backward_of(model)
    inputs, targets, lengths = _split(train_data, "train_data")
    if validation_data is not None:
        _split(validation_data, "validation_data")
    if not isinstance(optimizer, _optim.Optimizer):
        raise TypeError(f"optimizer must be a pyrnn.optim optimizer, got {type(optimizer).__name__}")
    if epochs < 0 or batch_size < 1:
        raise ValueError(f"need epochs >= 0 and batch_size >= 1, got {epochs} and {batch_size}")
    if tbptt is not None:
        if not getattr(model, "supports_tbptt", False):
            raise ValueError(f"tbptt: {type(model).__name__} does not support truncated BPTT (Seq2Seq does)")
        if tbptt < 1:
            raise ValueError(f"tbptt must be >= 1 steps, got {tbptt}")
    global_batch = batch_size * (dp.size if dp else 1)
    if stateful:
        if shuffle:
            raise ValueError("stateful training reads the batches in order: shuffle must be False")
        _check_stateful(model, global_batch, len(inputs), "train_data")
        if validation_data is not None:
            _check_stateful(model, global_batch, len(validation_data[0]), "validation_data")
    shuffle = (not stateful) if shuffle is None else bool(shuffle)
    per_batch = getattr(scheduler, "interval", "epoch") == "batch"
    metric_fns = _metric_dict(metrics)
    rng = np.random.default_rng(seed)
    history = History()
    main = dp is None or dp.is_main
    out = file if file is not None else sys.stderr
    tqdm = _tqdm() if progress and main else None
    n = len(inputs)
    n_batches = math.ceil(n / global_batch)
    if dp:
        dp.start(model, optimizer)
    for cb in callbacks:
        cb.on_train_begin(model, history)
    model.train()
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        order = rng.permutation(n) if shuffle else np.arange(n)
        bar = tqdm(total=n_batches, desc=f"epoch {epoch}/{epochs}", file=out, leave=True,
                   dynamic_ncols=True) if tqdm else None
        total, weight = 0.0, 0.0
        if stateful:
            model.reset_states()
        for b in range(n_batches):
            idx = order[b * global_batch:(b + 1) * global_batch]
            if dp:
                idx = dp.shard(idx)
            batch = _collate(model, inputs, targets, lengths, idx) if len(idx) else None
            state = model._stream_state if stateful else None
            for piece in _batch_pieces(batch, tbptt, dp):
                model.zero_grad()
                value, w = 0.0, 0.0
                if piece is not None:
                    chunk_inputs, chunk_targets, mask = piece
                    if tbptt or stateful:
                        chunk_inputs = dict(chunk_inputs, state=state)
                    outputs = model(**chunk_inputs)
                    value, dout = loss_fn(outputs, chunk_targets, mask=mask)
                    if not math.isfinite(value):
                        if bar:
                            bar.close()
                        raise FloatingPointError(f"epoch {epoch}, batch {b}: the loss is {value}; lower the "
                                                 "learning rate or clip the gradients")
                    backward(dout)
                    w = float(np.sum(mask)) if mask is not None else float(len(idx))
                if dp:
                    dp.average_gradients(model, w)
                if clip_grad_norm:
                    _optim.clip_grad_norm(model, clip_grad_norm)
                if clip_grad_value:
                    _optim.clip_grad_value(model, clip_grad_value)
                optimizer.step()
                if per_batch:
                    scheduler.step()
                if (tbptt or stateful) and piece is not None:
                    state = _carry(model)
                total, weight = total + value * w, weight + w
            if stateful:
                model._stream_state = state
            if bar:
                bar.update(1)
                bar.set_postfix(loss=f"{total / max(weight, 1e-12):.4f}")
        if dp:
            total, weight = dp.allreduce_sum(np.array([total, weight]), "the epoch's loss")
        logs = {"loss": total / max(weight, 1e-12)}
        if validation_data is not None:
            val = evaluate(model, validation_data, loss_fn, global_batch if stateful else max(global_batch, 64),
                           metric_fns, stateful=stateful, _dp=dp)
            logs.update({f"val_{k}": v for k, v in val.items()})
        if dp and dp.check_every_epoch:
            dp.check_same_weights(model, epoch)
        logs["lr"] = optimizer.lr
        if scheduler is not None and not per_batch:
            monitor = getattr(scheduler, "monitor", None)
            if monitor is not None:
                if monitor not in logs:
                    raise KeyError(f"{type(scheduler).__name__} monitors {monitor!r}, which is not in the logs "
                                   f"({', '.join(logs)}); give validation_data or monitor 'loss'")
                scheduler.step(logs[monitor])
            else:
                scheduler.step()
        logs["time"] = time.perf_counter() - t0
        history.append(epoch, logs)
        if bar:
            bar.set_postfix_str(_fmt({k: v for k, v in logs.items() if k != "lr"}))
            bar.close()
        elif progress and main:
            print(f"epoch {epoch}/{epochs}  {_fmt(logs)}  ({logs['time']:.1f}s)", file=out, flush=True)
        stop = False
        for cb in callbacks:
            stop = bool(cb.on_epoch_end(epoch, logs, model)) or stop
        if dp:
            stop = dp.broadcast_object(stop, "the stop decision")   # rank 0's callbacks decide
        if stop:
            history.stopped_early = True
            break
    for cb in callbacks:
        cb.on_train_end(model, history)
    return history


def plot_history(history: History | Mapping[str, Sequence[float]], path: str, title: str | None = None) -> str:
    """Draw the loss curves (and any metrics, on a second panel) to a PNG at ``path``.
    Needs matplotlib: ``pip install "pyrnn[demo]"``."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError("plot_history needs matplotlib, which comes with the optional 'demo' extra: "
                          'pip install "pyrnn[demo]" (or pip install matplotlib)') from e
    logs = history.history if isinstance(history, History) else dict(history)
    loss_keys = [k for k in logs if k.endswith("loss")]
    other = [k for k in logs if k not in loss_keys and k not in ("lr", "time")]
    fig, axes = plt.subplots(1, 2 if other else 1, figsize=(10 if other else 6, 4), squeeze=False)
    epochs = np.arange(1, len(next(iter(logs.values()), [])) + 1)
    for k in loss_keys:
        axes[0, 0].plot(epochs, logs[k], marker=".", label=k)
    axes[0, 0].set_xlabel("epoch")
    axes[0, 0].set_ylabel("loss")
    if loss_keys and min(min(logs[k]) for k in loss_keys) > 0:
        axes[0, 0].set_yscale("log")
    axes[0, 0].legend()
    axes[0, 0].grid(alpha=0.3)
    if other:
        for k in other:
            axes[0, 1].plot(epochs, logs[k], marker=".", label=k)
        axes[0, 1].set_xlabel("epoch")
        axes[0, 1].legend()
        axes[0, 1].grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)
