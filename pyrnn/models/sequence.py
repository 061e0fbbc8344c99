"""Seq2Vec (a whole sequence to one vector) and Seq2Seq (synchronous: one output per step)."""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import _checks
from ..nn import Dropout, Embedding, Linear
from ._base import (Batch, Model, backward_recurrent, child_seed, make_recurrent,
                    pad_sequences, run_recurrent, sequence_mask)


class _Recurrent(Model):
    """Input block (float features, or token ids through an Embedding) and the recurrent encoder."""

    def __init__(self, config: dict[str, Any], input_size: int | None, hidden_size: int, cell: str,
                 num_layers: int, bidirectional: bool, vocab_size: int | None, embedding_dim: int | None,
                 padding_idx: int | None, dropout: float, dtype: Any, seed: int | None) -> None:
        super().__init__(config, dtype)
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
        self.drop = Dropout(dropout, dtype=dtype, seed=child_seed(seed, 3))
        self.features = self.rnn.num_directions * self.rnn.output_size
        self.final_state: tuple | None = None

    def _encode(self, x: Any, lengths: Any, state: Any):
        if self.embedding is not None:
            x = self.embedding(x)
        self._lengths = None if lengths is None else np.asarray(lengths)
        y, st = run_recurrent(self.rnn, x, state, lengths)
        self.final_state = st
        return y, st

    def _encode_backward(self, dy: Any, dstate: tuple | None):
        dx, _ = backward_recurrent(self.rnn, dy, dstate)
        if self.embedding is not None:
            self.embedding.backward(dx)
            return None
        return dx

    @staticmethod
    def _pad_inputs(X: Any, tokens: bool, dtype: np.dtype):
        x, lengths = pad_sequences(X, 0, np.int64 if tokens else dtype)
        return x, lengths


class Seq2Vec(_Recurrent):
    """A recurrent encoder over a sequence, pooled to one vector, then a linear head: sequence
    classification (logits) or regression.

    ``pooling``: ``"last"`` (the final state of the top layer; both directions' final states
    for a bidirectional encoder), ``"mean"`` or ``"max"`` over the valid steps.
    ``y = model(x, lengths=None)`` with x (B, T, input_size) floats or (B, T) token ids; y (B, output_size).
    """

    def __init__(self, input_size: int | None = None, output_size: int = 1, hidden_size: int = 64,
                 cell: str = "lstm", num_layers: int = 1, bidirectional: bool = False,
                 pooling: str = "last", vocab_size: int | None = None, embedding_dim: int | None = None,
                 padding_idx: int | None = 0, dropout: float = 0.0, dtype: Any = "float32",
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

    def __call__(self, x: Any, lengths: Any = None, state: Any = None) -> np.ndarray:
        y, st = self._encode(x, lengths, state)
        B, T, F = y.shape
        lengths_arr = np.full(B, T, np.int64) if lengths is None else np.asarray(lengths, np.int64).reshape(B)
        mask = sequence_mask(lengths_arr, T)
        cache: dict[str, Any] = {"shape": y.shape, "lengths": lengths_arr, "state": st}
        if self.pooling == "last":
            D = self.rnn.num_directions
            h_top = st[0][-D:]                                   # (D, B, H)
            pooled = np.concatenate(list(h_top), axis=1) if D == 2 else h_top[0]
        elif self.pooling == "mean":
            pooled = y.sum(axis=1) / lengths_arr[:, None].astype(self.dtype)
        else:
            masked = np.where(mask[..., None], y, -np.inf)
            idx = masked.argmax(axis=1)                          # (B, F)
            pooled = np.take_along_axis(y, idx[:, None, :], axis=1)[:, 0]
            cache["argmax"] = idx
        pooled = np.ascontiguousarray(pooled, dtype=self.dtype)
        self._cache = cache if self.training else None
        return self.head(self.drop(pooled))

    def backward(self, dout: Any) -> np.ndarray | None:
        """Backpropagate ``dL/dy`` (B, output_size); returns dL/dx (None for token inputs)."""
        cache = self._need_cache(self._cache)
        self._cache = None
        dpooled = self.drop.backward(self.head.backward(dout))
        B, T, F = cache["shape"]
        st = cache["state"]
        dy, dstate = None, None   # "last" pooling: the per-step outputs get no gradient
        if self.pooling == "last":
            D, H = self.rnn.num_directions, self.rnn.output_size
            dh = np.zeros_like(st[0])
            for d in range(D):
                dh[dh.shape[0] - D + d] = dpooled[:, d * H:(d + 1) * H]
            dstate = (dh,) + tuple(np.zeros_like(s) for s in st[1:])
        elif self.pooling == "mean":
            mask = sequence_mask(cache["lengths"], T)
            dy = (mask[..., None] * (dpooled / cache["lengths"][:, None])[:, None, :]).astype(self.dtype)
        else:
            dy = np.zeros((B, T, F), self.dtype)
            np.put_along_axis(dy, cache["argmax"][:, None, :], dpooled[:, None, :], axis=1)
        return self._encode_backward(dy, dstate)

    def collate(self, inputs: Any, targets: Any) -> Batch:
        x, lengths = self._pad_inputs(inputs, self.embedding is not None, self.dtype)
        t = np.asarray(targets)
        if t.dtype.kind == "f":
            t = t.astype(self.dtype).reshape(len(t), -1)
        return Batch({"x": x, "lengths": lengths}, t, None, len(x))

    def _drop_caches(self) -> None:
        self._cache = None


class Seq2Seq(_Recurrent):
    """Synchronous sequence to sequence: a linear head on every step's output (tagging,
    next-value forecasting). ``y = model(x, lengths=None, state=None)``: y (B, T, output_size);
    ``model.final_state`` is the recurrent state after the last step (carried across chunks
    by truncated BPTT)."""

    supports_tbptt = True

    def __init__(self, input_size: int | None = None, output_size: int = 1, hidden_size: int = 64,
                 cell: str = "lstm", num_layers: int = 1, bidirectional: bool = False,
                 vocab_size: int | None = None, embedding_dim: int | None = None, padding_idx: int | None = 0,
                 dropout: float = 0.0, dtype: Any = "float32", seed: int | None = None) -> None:
        config = dict(input_size=input_size, output_size=output_size, hidden_size=hidden_size, cell=cell,
                      num_layers=num_layers, bidirectional=bidirectional, vocab_size=vocab_size,
                      embedding_dim=embedding_dim, padding_idx=padding_idx, dropout=dropout, seed=seed)
        super().__init__(config, input_size, hidden_size, cell, num_layers, bidirectional, vocab_size,
                         embedding_dim, padding_idx, dropout, dtype, seed)
        self.output_size = _checks.positive_int(output_size, "output_size")
        self.head = Linear(self.features, self.output_size, dtype=dtype, seed=child_seed(seed, 4))

    def __call__(self, x: Any, lengths: Any = None, state: Any = None) -> np.ndarray:
        y, _ = self._encode(x, lengths, state)
        return self.head(self.drop(y))

    def backward(self, dout: Any) -> np.ndarray | None:
        """Backpropagate ``dL/dy`` (B, T, output_size); returns dL/dx (None for token inputs).
        The initial state gets no gradient (truncated BPTT cuts there)."""
        dy = self.drop.backward(self.head.backward(dout))
        return self._encode_backward(dy, None)

    def collate(self, inputs: Any, targets: Any) -> Batch:
        x, lengths = self._pad_inputs(inputs, self.embedding is not None, self.dtype)
        t, t_lengths = pad_sequences(targets, 0)
        if not np.array_equal(lengths, t_lengths):
            raise ValueError("Seq2Seq: each target sequence must be as long as its input sequence")
        if t.dtype.kind == "f":
            t = t.astype(self.dtype)
            if t.ndim == 2:
                t = t[..., None]
        return Batch({"x": x, "lengths": lengths}, t, sequence_mask(lengths, x.shape[1]), len(x),
                     extra={"time_axis": 1})

    def initial_state_like(self, batch_size: int) -> None:
        return None
