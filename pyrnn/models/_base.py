"""What the architectures share: the recurrent-layer registry, state plumbing, padding, the
model base class (config for checkpoints, predict) and the batch format ``fit`` uses."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .. import _checks
from ..layers import GRU, LSTM, RNN
from ..nn.module import Module

# Recurrent layers by name. Any layer with the core layers' contract can be registered here
# (e.g. the xLSTM layers once they exist): RECURRENT["mylayer"] = MyLayer.
RECURRENT: dict[str, Callable[..., Any]] = {"rnn": RNN, "lstm": LSTM, "gru": GRU,
                                            "rnn_relu": lambda *a, **k: RNN(*a, nonlinearity="relu", **k)}


def make_recurrent(cell: str, input_size: int, hidden_size: int, num_layers: int = 1,
                   bidirectional: bool = False, dropout: float = 0.0, dtype: Any = np.float32,
                   seed: int | None = None):
    """A batch-first recurrent layer of the registered kind ``cell``."""
    _checks.choice(cell, "cell", tuple(RECURRENT))
    return RECURRENT[cell](input_size, hidden_size, num_layers=num_layers, bidirectional=bidirectional,
                           dropout=dropout, batch_first=True, dtype=dtype, seed=seed)


def has_cell_state(layer: Any) -> bool:
    """Whether the layer's state is a pair (h, c) like LSTM's, rather than one array."""
    return getattr(layer, "cell", None) == "lstm" or bool(getattr(layer, "state_is_pair", False))


def run_recurrent(layer: Any, x: np.ndarray, state: tuple | None, lengths: Any):
    """``y, state`` with the state always a tuple: ``(h,)`` or ``(h, c)``."""
    if has_cell_state(layer):
        y, (h, c) = layer(x, None if state is None else tuple(state), lengths=lengths)
        return y, (h, c)
    y, h = layer(x, None if state is None else state[0], lengths=lengths)
    return y, (h,)


def backward_recurrent(layer: Any, dy: Any, dstate: tuple | None):
    """``dx, dstate0`` with the state gradients as a tuple like :func:`run_recurrent`'s state."""
    if has_cell_state(layer):
        dx, (dh, dc) = layer.backward(dy, None if dstate is None else tuple(dstate))
        return dx, (dh, dc)
    dx, dh = layer.backward(dy, None if dstate is None else dstate[0])
    return dx, (dh,)


def child_seed(seed: int | None, k: int) -> int | None:
    return None if seed is None else int(seed) * 1000 + k


def sequence_mask(lengths: np.ndarray, T: int) -> np.ndarray:
    """(B, T) bool: True at valid positions t < lengths[b]."""
    return np.arange(T)[None, :] < np.asarray(lengths)[:, None]


def pad_sequences(seqs: Any, pad_value: Any = 0, dtype: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """A list of sequences (arrays (T_i, ...) or lists of tokens) as a right-padded array
    (B, T_max, ...) and their lengths (B,). A regular array (B, T, ...) passes through with
    lengths all T."""
    if isinstance(seqs, np.ndarray) and seqs.dtype != object:
        return seqs if dtype is None else seqs.astype(dtype, copy=False), np.full(len(seqs), seqs.shape[1], np.int64)
    arrays = [np.asarray(s) if dtype is None else np.asarray(s, dtype=dtype) for s in seqs]
    if not arrays:
        raise ValueError("pad_sequences: no sequences given")
    lengths = np.array([len(a) for a in arrays], np.int64)
    if lengths.min() < 1:
        raise ValueError(f"pad_sequences: sequence {int(np.argmin(lengths))} is empty (each needs length >= 1)")
    tail = arrays[0].shape[1:]
    for i, a in enumerate(arrays):
        if a.shape[1:] != tail:
            raise ValueError(f"pad_sequences: sequence {i} has feature shape {a.shape[1:]}, sequence 0 has {tail}")
    out = np.full((len(arrays), int(lengths.max())) + tail, pad_value, dtype=arrays[0].dtype)
    for i, a in enumerate(arrays):
        out[i, :len(a)] = a
    return out, lengths


@dataclass
class Batch:
    """One mini-batch as ``fit`` uses it: ``model(**inputs)`` gives the outputs that
    ``loss(outputs, targets, mask=mask)`` compares. ``time_axis``: the axis of ``inputs`` and
    ``targets`` that truncated BPTT may cut (None: not cuttable)."""

    inputs: dict[str, Any]
    targets: Any
    mask: Any = None
    size: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class Model(Module):
    """Base class of the architectures: a Module with a JSON config (for checkpoints), a
    ``predict`` in eval mode and a ``collate`` that turns raw examples into a :class:`Batch`."""

    supports_tbptt = False

    def __init__(self, config: dict[str, Any], dtype: Any) -> None:
        super().__init__(dtype)
        object.__setattr__(self, "config", dict(config, dtype=np.dtype(dtype).name))

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments (JSON-serialisable): ``type(m)(**m.get_config())`` rebuilds
        the architecture."""
        return dict(self.config)

    @classmethod
    def from_config(cls, config: dict[str, Any]):
        return cls(**config)

    def _in_eval(self, fn: Callable[[], Any]) -> Any:
        was_training = self.training
        self.eval()
        try:
            return fn()
        finally:
            self.train(was_training)

    def predict(self, *args: Any, **kwargs: Any) -> Any:
        """The forward pass in eval mode (no dropout, no caches); the mode is restored after."""
        return self._in_eval(lambda: self(*args, **kwargs))

    def collate(self, inputs: Any, targets: Any) -> Batch:  # pragma: no cover - per architecture
        raise NotImplementedError

    def _extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.config.items() if v is not None)
