"""Seq2Vec (a whole sequence to one vector) and Seq2Seq (synchronous: one output per step), with
streaming (``step``), encoding and generation on the layers' step kernels."""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .. import _checks
from .._recurrent import PerformanceWarning
from ..config import get_num_threads
from ..nn import Dropout, Embedding, Linear
from ..nn.layers import torch_free
from ._base import (Batch, Model, backward_recurrent, cell_config, child_seed, final_recurrent, is_array, is_stack,
                    make_recurrent, num_directions, output_size, pad_sequences, run_recurrent, sequence_mask,
                    step_recurrent, top_state_grad)
from .decoding import sample_next


class _Recurrent(Model):
    """Input block (float features, or token ids through an Embedding) and the recurrent encoder,
    input preparation shared by ``__call__``, ``predict``, ``collate`` and ``step``."""

    def __init__(self, config: dict[str, Any], input_size: int | None, hidden_size: int, cell: Any,
                 num_layers: int, bidirectional: bool, vocab_size: int | None, embedding_dim: int | None,
                 padding_idx: int | None, dropout: float, dtype: Any, seed: int | None) -> None:
        super().__init__(dict(config, cell=cell_config(cell)), dtype)
        if (input_size is None) == (vocab_size is None):
            raise ValueError("give exactly one of input_size (float features) or vocab_size (token ids)")
        if vocab_size is not None:
            embedding_dim = embedding_dim or hidden_size
            self.embedding = Embedding(vocab_size, embedding_dim, padding_idx=padding_idx, dtype=dtype,
                                       seed=child_seed(seed, 1))
            input_size = embedding_dim
        else:
            self.embedding = None
        self.input_size = _checks.positive_int(input_size, "input_size")
        self.rnn = make_recurrent(cell, self.input_size, hidden_size, num_layers, bidirectional,
                                  dropout if num_layers > 1 else 0.0, dtype, child_seed(seed, 2))
        if not isinstance(cell, str):   # a layer instance: its sizes win, and the config says so
            self.config.update(hidden_size=getattr(self.rnn, "hidden_size", output_size(self.rnn)),
                               num_layers=getattr(self.rnn, "num_layers", 1),
                               bidirectional=num_directions(self.rnn) == 2)
        self.drop = Dropout(dropout, dtype=dtype, seed=child_seed(seed, 3))
        self.features = num_directions(self.rnn) * output_size(self.rnn)
        self.final_state: tuple | None = None
        # Set by collate when a batch had sequences of different lengths: a later padded array
        # given without lengths is then probably a mistake (see _warn_if_padded).
        object.__setattr__(self, "_variable_lengths", False)
        object.__setattr__(self, "_warned_padding", False)
        object.__setattr__(self, "_warned_step_mode", False)

    @property
    def tokens(self) -> bool:
        return self.embedding is not None

    # -- inputs ----------------------------------------------------------------------------------

    def _check_input(self, x: np.ndarray) -> np.ndarray:
        """``x`` as the model reads it: token ids (B, T) or features (B, T, input_size); a wrong
        shape is reported with what to do."""
        if self.tokens:
            if x.dtype.kind not in "iu":
                raise TypeError(f"x: this model reads token ids (vocab_size={self.embedding.num_embeddings}); "
                                f"got dtype {x.dtype}")
            if x.ndim != 2:
                raise ValueError(f"x: expected token ids (B, T), got shape {_checks.shape_str(x.shape)}")
            return x
        if x.ndim == 2 and self.input_size == 1:
            raise ValueError(f"x: expected (B, T, 1), got {_checks.shape_str(x.shape)}: a univariate series "
                             "needs a feature axis, x[..., None]")
        if x.ndim != 3 or x.shape[2] != self.input_size:
            hint = (": a single sequence needs a batch axis, x[None]" if x.ndim == 2 and x.shape[1] == self.input_size
                    else "")
            raise ValueError(f"x: expected (B, T, input_size={self.input_size}), got "
                             f"{_checks.shape_str(x.shape)}{hint}")
        return x

    def _prepare(self, x: Any, lengths: Any) -> tuple[np.ndarray, np.ndarray | None, bool]:
        """``x`` padded, its lengths (None: all full) and whether it came as a list of sequences."""
        if is_array(x):
            arr = np.asarray(torch_free(x))
            if not self.tokens and arr.dtype.kind in "iub":
                arr = arr.astype(self.dtype)
            arr = self._check_input(arr)
            if lengths is None:
                self._warn_if_padded(arr)
            return arr, lengths, False
        if lengths is not None:
            raise ValueError("lengths: give lengths with a padded array; a list of sequences has its own lengths")
        arr, lens = pad_sequences(list(x), 0, np.int64 if self.tokens else self.dtype)
        if not self.tokens and arr.ndim == 2:
            arr = arr[..., None] if self.input_size == 1 else arr
        return self._check_input(arr), lens, True

    def _warn_if_padded(self, x: np.ndarray) -> None:
        if not self._variable_lengths or self._warned_padding or x.shape[1] < 2:
            return
        if self.tokens:
            # Token 0 (or padding_idx) may be an ordinary token: call it padding when sequences end
            # in it clearly more often than it occurs anywhere.
            pad = self.embedding.padding_idx or 0
            ends_in_padding = x[:, -1] == pad
            looks_padded = ends_in_padding.mean() > 2 * np.mean(x == pad)
        else:
            ends_in_padding = ~x[:, -1].any(axis=-1)
            looks_padded = ends_in_padding.any()
        if looks_padded:
            object.__setattr__(self, "_warned_padding", True)
            warnings.warn(f"{type(self).__name__}: x looks right-padded (sequence {int(np.argmax(ends_in_padding))} "
                          "ends in zeros) and no lengths were given, but this model was trained on sequences "
                          "of different lengths: the padding is read as data. Pass lengths=, or a list of "
                          "sequences.", stacklevel=3)

    def _collate_inputs(self, inputs: Any, lengths: Any) -> tuple[np.ndarray, np.ndarray]:
        x, lens, _ = self._prepare(inputs, lengths)
        lens = np.full(len(x), x.shape[1], np.int64) if lens is None else _checks.lengths(lens, x.shape[1], len(x), True)
        if len(lens) and lens.min() != lens.max():
            object.__setattr__(self, "_variable_lengths", True)
        return x, lens

    # -- running ---------------------------------------------------------------------------------

    def _encode(self, x: Any, lengths: Any, state: Any):
        if self.embedding is not None:
            x = self.embedding(x)
        y, st = run_recurrent(self.rnn, x, state, lengths)
        self.final_state = st
        return y, st

    def _encode_backward(self, dy: Any, dstate: tuple | None, input_grad: bool):
        if self.embedding is not None:
            dx, _ = backward_recurrent(self.rnn, dy, dstate)
            self.embedding.backward(dx)
            return None
        dx, _ = backward_recurrent(self.rnn, dy, dstate, input_grad)
        return dx

    def _step_input(self, x_t: Any) -> np.ndarray:
        """One step's input (B,) token ids or (B, input_size) features, embedded for token models."""
        if num_directions(self.rnn) == 2:
            raise ValueError(f"{type(self).__name__}.step streams forward in time; a bidirectional model "
                             "needs the whole sequence: call the model on it instead")
        if self.training and not self._warned_step_mode:
            object.__setattr__(self, "_warned_step_mode", True)
            warnings.warn(f"{type(self).__name__}.step in training mode: call .eval() first for streaming "
                          "(eval mode reuses packed weights and is several times faster)", PerformanceWarning,
                          stacklevel=3)
        x_t = np.asarray(x_t)
        if self.tokens:
            if x_t.dtype.kind not in "iu" or x_t.ndim != 1:
                raise ValueError(f"x_t: expected token ids (B,), got {x_t.dtype} {_checks.shape_str(x_t.shape)}")
            return self.embedding(x_t)
        x_t = _checks.float_array(x_t, "x_t", self.dtype)
        if x_t.ndim != 2 or x_t.shape[1] != self.input_size:
            raise ValueError(f"x_t: expected (B, input_size={self.input_size}), got {_checks.shape_str(x_t.shape)}")
        return x_t

    def _drop_caches(self) -> None:
        self._cache = None


class Seq2Vec(_Recurrent):
    """A recurrent encoder over a sequence, pooled to one vector, then a linear head: sequence
    classification (logits) or regression.

    ``pooling``: ``"last"`` (the top layer's output at each sequence's last valid step; for a
    bidirectional encoder joined with the reverse direction's output at step 0, i.e. both
    directions' final states), ``"mean"`` or ``"max"`` over the valid steps.
    ``y = model(x, lengths=None)`` with x (B, T, input_size) floats or (B, T) token ids, or a list
    of variable-length sequences; y (B, output_size). ``model.encode(x)`` gives the pooled
    features (B, features); ``model.step(x_t, state)`` streams one step at a time.
    ``padding_idx`` (token models): that token's embedding is zero and never trained (None: no
    such token, as PyTorch's default).
    """

    def __init__(self, input_size: int | None = None, output_size: int = 1, hidden_size: int = 64,
                 cell: Any = "lstm", num_layers: int = 1, bidirectional: bool = False,
                 pooling: str = "last", vocab_size: int | None = None, embedding_dim: int | None = None,
                 padding_idx: int | None = None, dropout: float = 0.0, dtype: Any = "float32",
                 seed: int | None = None) -> None:
        config = dict(input_size=input_size, output_size=output_size, hidden_size=hidden_size, cell=cell,
                      num_layers=num_layers, bidirectional=bidirectional, pooling=pooling,
                      vocab_size=vocab_size, embedding_dim=embedding_dim, padding_idx=padding_idx,
                      dropout=dropout, seed=seed)
        super().__init__(config, input_size, hidden_size, cell, num_layers, bidirectional, vocab_size,
                         embedding_dim, padding_idx, dropout, dtype, seed)
        self.pooling = _checks.choice(pooling, "pooling", ("last", "mean", "max"))
        self.output_size = _checks.positive_int(output_size, "output_size")
        self.head = Linear(self.features, self.output_size, dtype=dtype, seed=child_seed(seed, 4))
        self._cache = None

    def _pool(self, x: Any, lengths: Any, state: Any) -> np.ndarray:
        x, lengths, _ = self._prepare(x, lengths)
        if self.pooling == "last" and not self.training:
            pooled = self._last_states(x, lengths, state)
            if pooled is not None:
                return pooled
        y, _ = self._encode(x, lengths, state)
        B, T, F = y.shape
        lengths_arr = np.full(B, T, np.int64) if lengths is None else np.array(lengths, np.int64).reshape(B)
        cache: dict[str, Any] = {"shape": y.shape, "lengths": lengths_arr}
        if self.pooling == "last":
            H = F // num_directions(self.rnn)
            pooled = y[np.arange(B), lengths_arr - 1].copy()
            if num_directions(self.rnn) == 2:
                pooled[:, H:] = y[:, 0, H:]
        elif self.pooling == "mean":
            pooled = y.sum(axis=1) / lengths_arr[:, None].astype(self.dtype)
        else:
            masked = np.where(sequence_mask(lengths_arr, T)[..., None], y, -np.inf)
            idx = masked.argmax(axis=1)                          # (B, F)
            pooled = np.take_along_axis(y, idx[:, None, :], axis=1)[:, 0]
            cache["argmax"] = idx
        self._cache = cache if self.training else None
        return np.ascontiguousarray(pooled, dtype=self.dtype)

    def _last_states(self, x: Any, lengths: Any, state: Any) -> np.ndarray | None:
        """'last' pooling in eval mode from the top layer's final states: a sequence's state
        carries through its padding, so the forward direction's final state is its output at
        its last step and the backward direction's is its output at step 0. The recurrent
        layers then write no per-step output. None for layers without that path."""
        if self.embedding is not None:
            x = self.embedding(x)
        st = final_recurrent(self.rnn, x, state, lengths)
        if st is None:
            return None
        self.final_state, self._cache = st, None
        D = num_directions(self.rnn)
        top = st[0][-D:]                                             # (D, B, H_out)
        return np.ascontiguousarray(np.concatenate(list(top), axis=-1), dtype=self.dtype)

    def __call__(self, x: Any, lengths: Any = None, state: Any = None) -> np.ndarray:
        return self.head(self.drop(self._pool(x, lengths, state)))

    def encode(self, x: Any, lengths: Any = None) -> np.ndarray:
        """The pooled features (B, features) the head reads, in eval mode: a sequence embedding."""
        return self._in_eval(lambda: self._pool(x, lengths, None))

    def backward(self, dout: Any, input_grad: bool = True) -> np.ndarray | None:
        """Backpropagate ``dL/dy`` (B, output_size); returns dL/dx (None for token inputs, and
        with ``input_grad=False``, which skips computing it: ``fit`` does)."""
        cache = self._need_cache(self._cache)
        self._cache = None
        dpooled = self.drop.backward(self.head.backward(dout))
        if self.pooling == "last":
            # The pooled features are the top layer's final states (see _last_states): their
            # gradient enters there, with no (B, T, features) output gradient to build and read.
            dstate = top_state_grad(self.rnn, dpooled)
            if dstate is not None:
                return self._encode_backward(None, dstate, input_grad)
        B, T, F = cache["shape"]
        dy = np.zeros((B, T, F), self.dtype)
        if self.pooling == "last":
            H = F // num_directions(self.rnn)
            dy[np.arange(B), cache["lengths"] - 1, :H] = dpooled[:, :H]
            if num_directions(self.rnn) == 2:
                dy[:, 0, H:] += dpooled[:, H:]
        elif self.pooling == "mean":
            mask = sequence_mask(cache["lengths"], T)
            dy = (mask[..., None] * (dpooled / cache["lengths"][:, None])[:, None, :]).astype(self.dtype)
        else:
            np.put_along_axis(dy, cache["argmax"][:, None, :], dpooled[:, None, :], axis=1)
        return self._encode_backward(dy, None, input_grad)

    def step(self, x_t: Any, state: Any = None) -> tuple[np.ndarray, Any]:
        """Stream one step: ``y, state = model.step(x_t, state)`` with x_t (B,) token ids or
        (B, input_size) features and state None at the start; y (B, output_size) is what the model
        gives for the sequence read so far (running mean or max for those poolings). Use eval mode."""
        e = self._step_input(x_t)
        rnn_state, acc, steps = (None, None, 0) if state is None else state
        y, rnn_state = step_recurrent(self.rnn, e, rnn_state)
        steps += 1
        if self.pooling == "last" or acc is None:
            acc = y.copy()
        elif self.pooling == "mean":
            acc = acc + y
        else:
            acc = np.maximum(acc, y)
        pooled = acc / self.dtype.type(steps) if self.pooling == "mean" else acc
        return self.head(self.drop(pooled)), (rnn_state, acc, steps)

    def collate(self, inputs: Any, targets: Any, lengths: Any = None) -> Batch:
        x, lens = self._collate_inputs(inputs, lengths)
        t = np.asarray(targets)
        if t.dtype.kind == "f":
            t = t.astype(self.dtype).reshape(len(t), -1)
        elif t.ndim == 2 and t.shape[1] == 1:
            t = t[:, 0]                      # (N, 1) class labels read as (N,)
        return Batch({"x": x, "lengths": lens}, t, None, len(x))

    def predict(self, x: Any, lengths: Any = None, batch_size: int | None = None) -> np.ndarray:
        """Outputs (B, output_size) in eval mode for the same inputs as ``fit``: a padded array (with
        ``lengths``) or a list of variable-length sequences; in chunks of ``batch_size`` rows
        (default: 64 rows per thread, more for small models, see ``_chunk_rows``; the result is
        the same)."""
        return self._in_eval(lambda: _batched(self, x, lengths, batch_size, False))


class Seq2Seq(_Recurrent):
    """Synchronous sequence to sequence: a linear head on every step's output (tagging,
    next-value forecasting, language models). ``y = model(x, lengths=None, state=None)``:
    y (B, T, output_size); ``model.final_state`` is the recurrent state after the last step
    (carried across chunks by truncated BPTT and across batches by stateful training).

    Streaming and generation run the layers' step kernels (one step per token, no recompute):
    ``y_t, state = model.step(x_t, state)``; ``model.generate(prefix, steps, temperature=,
    top_k=, top_p=, seed=)`` continues a token prefix (greedy at temperature 0, else sampled) or
    a float series (each prediction fed back as the next input).
    """

    supports_tbptt = True

    def __init__(self, input_size: int | None = None, output_size: int = 1, hidden_size: int = 64,
                 cell: Any = "lstm", num_layers: int = 1, bidirectional: bool = False,
                 vocab_size: int | None = None, embedding_dim: int | None = None, padding_idx: int | None = None,
                 dropout: float = 0.0, dtype: Any = "float32", seed: int | None = None) -> None:
        config = dict(input_size=input_size, output_size=output_size, hidden_size=hidden_size, cell=cell,
                      num_layers=num_layers, bidirectional=bidirectional, vocab_size=vocab_size,
                      embedding_dim=embedding_dim, padding_idx=padding_idx, dropout=dropout, seed=seed)
        super().__init__(config, input_size, hidden_size, cell, num_layers, bidirectional, vocab_size,
                         embedding_dim, padding_idx, dropout, dtype, seed)
        self.output_size = _checks.positive_int(output_size, "output_size")
        self.head = Linear(self.features, self.output_size, dtype=dtype, seed=child_seed(seed, 4))
        self._cache = None
        self._stream_state: tuple | None = None

    @property
    def supports_stateful(self) -> bool:
        return num_directions(self.rnn) == 1 and not is_stack(self.rnn)

    def __call__(self, x: Any, lengths: Any = None, state: Any = None) -> np.ndarray:
        x, lengths, _ = self._prepare(x, lengths)
        y, _ = self._encode(x, lengths, state)
        return self.head(self.drop(y))

    def backward(self, dout: Any, input_grad: bool = True) -> np.ndarray | None:
        """Backpropagate ``dL/dy`` (B, T, output_size); returns dL/dx (None for token inputs, and
        with ``input_grad=False``, which skips computing it: ``fit`` does). The initial state
        gets no gradient (truncated BPTT cuts there)."""
        dy = self.drop.backward(self.head.backward(dout))
        return self._encode_backward(dy, None, input_grad)

    def collate(self, inputs: Any, targets: Any, lengths: Any = None) -> Batch:
        x, lens = self._collate_inputs(inputs, lengths)
        if is_array(targets):
            t = np.asarray(torch_free(targets))
            if t.shape[:2] != x.shape[:2]:
                raise ValueError(f"Seq2Seq: targets {_checks.shape_str(t.shape)} must be as long as the inputs "
                                 f"{_checks.shape_str(x.shape[:2])} (B, T)")
        else:
            t, t_lengths = pad_sequences(targets, 0)
            if not np.array_equal(lens, t_lengths):
                raise ValueError("Seq2Seq: each target sequence must be as long as its input sequence")
        if t.dtype.kind == "f":
            t = t.astype(self.dtype)
            if t.ndim == 2:
                t = t[..., None]
        elif t.ndim == 3 and t.shape[2] == 1:
            t = t[..., 0]                    # (B, T, 1) class labels read as (B, T)
        return Batch({"x": x, "lengths": lens}, t, sequence_mask(lens, x.shape[1]), len(x),
                     extra={"time_axis": 1})

    def predict(self, x: Any, lengths: Any = None, batch_size: int | None = None) -> Any:
        """Outputs in eval mode for the same inputs as ``fit``: a padded array (with ``lengths``)
        gives (B, T, output_size); a list of variable-length sequences gives a list of (T_i,
        output_size) arrays. In chunks of ``batch_size`` rows (default: 64 rows per thread, more
        for small models, see ``_chunk_rows``; the result is the same)."""
        return self._in_eval(lambda: _batched(self, x, lengths, batch_size, True))

    # -- stateful training ------------------------------------------------------------------------

    def reset_states(self) -> None:
        """Forget the state that stateful training carries from one batch to the next."""
        self._stream_state = None

    # -- streaming and generation -----------------------------------------------------------------

    def step(self, x_t: Any, state: Any = None) -> tuple[np.ndarray, tuple]:
        """Stream one step: ``y_t, state = model.step(x_t, state)`` with x_t (B,) token ids or
        (B, input_size) features, state None at the start; y_t (B, output_size). Use eval mode."""
        y, state = step_recurrent(self.rnn, self._step_input(x_t), state)
        return self.head(y), state

    def generate(self, prefix: Any, steps: int, temperature: float = 0.0, top_k: int | None = None,
                 top_p: float | None = None, seed: int | None = None) -> np.ndarray:
        """Continue ``prefix`` by ``steps`` outputs on the streaming step kernels.

        Token models (output_size = vocab_size): ``prefix`` token ids (T0,) or (B, T0); returns
        the new tokens (steps,) or (B, steps). ``temperature`` 0 picks the most likely token
        (greedy); above 0 samples from softmax(logits / temperature), restricted to the ``top_k``
        most likely tokens and/or the smallest set whose probability reaches ``top_p``, from
        ``np.random.default_rng(seed)``. Float models (output_size = input_size): ``prefix``
        (T0, F) or (B, T0, F); each prediction is fed back as the next input; returns (steps, F)
        or (B, steps, F), greedy only.
        """
        steps = int(steps)
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        if num_directions(self.rnn) == 2:
            raise ValueError("generate runs forward in time; a bidirectional Seq2Seq cannot generate")
        rng = np.random.default_rng(seed)
        if self.tokens:
            if self.output_size != self.embedding.num_embeddings:
                raise ValueError(f"generate feeds outputs back as tokens: needs output_size == vocab_size, got "
                                 f"{self.output_size} and {self.embedding.num_embeddings}")
            p = np.asarray(prefix)
            single = p.ndim == 1
            p = p[None] if single else p
        else:
            if self.output_size != self.input_size:
                raise ValueError(f"generate feeds predictions back as inputs: needs output_size == input_size, "
                                 f"got {self.output_size} and {self.input_size}")
            if temperature or top_k is not None or top_p is not None:
                raise ValueError("temperature, top_k and top_p sample tokens; a float model generates greedily")
            p = _checks.float_array(prefix, "prefix", self.dtype)
            single = p.ndim == 2
            p = p[None] if single else p
        if p.shape[1] < 1:
            raise ValueError("prefix must have at least one step")

        def run():
            logits = self(p)[:, -1]                           # the prefix in one call
            state = self.final_state
            out = []
            for _ in range(steps):
                if self.tokens:
                    nxt = sample_next(logits, temperature, top_k, top_p, rng)
                else:
                    nxt = logits
                out.append(nxt)
                if len(out) < steps:
                    logits, state = self.step(nxt, state)
            if not out:
                shape = (p.shape[0], 0) + (() if self.tokens else (self.input_size,))
                res = np.zeros(shape, np.int64 if self.tokens else self.dtype)
            else:
                res = np.stack(out, axis=1)
            return res[0] if single else res
        return self._in_eval(run)


# A predict given no batch_size runs chunks of rows (rows are independent: the result is the
# same): at most about this many bytes of one layer's per-step outputs (T, rows, features) ...
_CHUNK_BYTES = 8 << 20
# ... and at least this much work, which keeps a call's Python overhead (tens of microseconds)
# a few percent of it.
_CHUNK_FLOPS = 50e6


def _chunk_rows(model: _Recurrent, steps: int) -> int:
    """Rows per call of a predict given no batch_size: the fewest that carry _CHUNK_FLOPS of
    work, at least 64 per thread (the kernels' products stay efficient), at most _CHUNK_BYTES
    of per-step outputs per layer unless that is below the minimum. The whole batch's
    intermediates would be hundreds of MB for ten thousand sequences: fresh pages that every
    call faults in (about 10 us each on a VM) and streams through memory, 2-3x slower at hidden
    256. Small chunks reuse freed memory and stay in cache; under a low malloc trim threshold
    (Dask's workers set MALLOC_TRIM_THRESHOLD_=65536) their buffers stay below glibc's mmap
    threshold too."""
    steps = max(1, steps)
    flops_per_row = 2.0 * steps * max(1, model.rnn.num_parameters())
    by_bytes = _CHUNK_BYTES // (steps * model.features * np.dtype(model.dtype).itemsize)
    return max(64 * get_num_threads(), min(by_bytes, int(np.ceil(_CHUNK_FLOPS / flops_per_row))))


def _batched(model: _Recurrent, x: Any, lengths: Any, batch_size: int | None, per_step: bool) -> Any:
    """``model(x, lengths)`` over chunks of rows; a list of sequences in gives (for per-step
    outputs) a list of unpadded outputs back."""
    is_list = not is_array(x)
    if is_list:
        x, lengths = pad_sequences(list(x), 0, np.int64 if model.tokens else model.dtype)
        if not model.tokens and x.ndim == 2 and model.input_size == 1:
            x = x[..., None]
    n = len(x)
    size = _chunk_rows(model, x.shape[1]) if batch_size is None else _checks.positive_int(batch_size, "batch_size")
    parts = [model(x[s:s + size], None if lengths is None else np.asarray(lengths)[s:s + size])
             for s in range(0, n, max(size, 1))]
    out = np.concatenate(parts) if parts else model(x, lengths)
    if per_step and is_list:
        return [out[b, :int(lengths[b])] for b in range(n)]
    return out
