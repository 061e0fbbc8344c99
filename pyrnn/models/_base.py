"""What the architectures share: the recurrent-layer registry, state plumbing, padding, the
model base class (config for checkpoints, predict) and the batch format ``fit`` uses."""
from __future__ import annotations

from dataclasses import dataclass, field
import inspect
import warnings
from typing import Any, Callable

import numpy as np

from .. import _checks
from .._recurrent import PerformanceWarning
from ..layers import GRU, LSTM, RNN
from ..xlstm import MLSTM, SLSTM, xLSTMBlockStack
from ..nn.module import Module

# Recurrent layers by name. Any layer with the core layers' contract can be registered here:
# RECURRENT["mylayer"] = MyLayer (called with input_size, hidden_size and the keywords num_layers,
# bidirectional, dropout, batch_first=True, dtype, seed).
RECURRENT: dict[str, Callable[..., Any]] = {"rnn": RNN, "lstm": LSTM, "gru": GRU,
                                            "rnn_relu": lambda *a, **k: RNN(*a, nonlinearity="relu", **k)}
XLSTM_CELLS = ("slstm", "mlstm")


def _default_heads(hidden_size: int) -> int:
    """The head count of an xLSTM layer built by name: 4 when hidden_size allows, else 2 or 1."""
    return next(nh for nh in (4, 2, 1) if hidden_size % nh == 0)


def _xlstm_layer(cls: Any, kind: str):
    def build(input_size: int, hidden_size: int, num_layers: int = 1, bidirectional: bool = False,
              dropout: float = 0.0, batch_first: bool = True, dtype: Any = np.float32, seed: int | None = None):
        if bidirectional:
            raise ValueError(f"cell={kind!r} runs forward in time only (the xLSTM layers have no reverse "
                             "direction): use bidirectional=False, or cell='lstm', 'gru' or 'rnn'")
        return cls(input_size, hidden_size, num_heads=_default_heads(int(hidden_size)), num_layers=num_layers,
                   dropout=dropout, batch_first=batch_first, dtype=dtype, seed=seed)
    return build


RECURRENT.update(slstm=_xlstm_layer(SLSTM, "slstm"), mlstm=_xlstm_layer(MLSTM, "mlstm"))
_LAYER_CLASSES = {cls.__name__: cls for cls in (RNN, LSTM, GRU, SLSTM, MLSTM, xLSTMBlockStack)}


def cell_config(cell: Any) -> Any:
    """``cell`` as it goes into a model's JSON config: a name as is; a layer instance as a dict
    of its class and constructor arguments (which :func:`make_recurrent` accepts too)."""
    if isinstance(cell, (str, dict)):
        return cell
    cls = type(cell).__name__
    if isinstance(cell, xLSTMBlockStack):
        E = cell.embedding_dim
        return {"class": cls, "embedding_dim": E, "blocks": "".join(cell.block_types), "num_heads": cell.num_heads,
                "proj_factor": cell.proj_size / E, "ffn_factor": cell.ffn_size / E, "batch_first": cell.batch_first}
    if cls not in _LAYER_CLASSES:
        raise TypeError(f"cell must be a name ({', '.join(RECURRENT)}) or a layer instance "
                        f"({', '.join(_LAYER_CLASSES)}), got {cls}")
    args = inspect.signature(type(cell)).parameters
    config = {"class": cls}
    for name in args:
        if name in ("dtype", "seed") or not hasattr(cell, name):
            continue
        value = getattr(cell, name)
        config[name] = value.item() if isinstance(value, np.generic) else value
    return config


def make_recurrent(cell: Any, input_size: int, hidden_size: int, num_layers: int = 1,
                   bidirectional: bool = False, dropout: float = 0.0, dtype: Any = np.float32,
                   seed: int | None = None):
    """A batch-first recurrent layer for a model: ``cell`` a registered name (rnn, lstm, gru,
    slstm, mlstm, ...), a layer instance (used as it is: its sizes win; it must be batch_first
    and read ``input_size`` features), or the dict :func:`cell_config` makes of one."""
    if isinstance(cell, str):
        _checks.choice(cell, "cell", tuple(RECURRENT))
        return RECURRENT[cell](input_size, hidden_size, num_layers=num_layers, bidirectional=bidirectional,
                               dropout=dropout, batch_first=True, dtype=dtype, seed=seed)
    if isinstance(cell, dict):
        spec = dict(cell)
        cls = _LAYER_CLASSES.get(spec.pop("class", None))
        if cls is None:
            raise ValueError(f"cell: a layer description needs 'class' in {', '.join(_LAYER_CLASSES)}, got {cell!r}")
        return cls(**spec, dtype=dtype, seed=seed)
    cell_config(cell)  # checks the type
    if not getattr(cell, "batch_first", False):
        raise ValueError(f"cell: the models feed (B, T, features) batches; build the layer with batch_first=True "
                         f"({type(cell).__name__}(..., batch_first=True))")
    reads = cell.embedding_dim if is_stack(cell) else cell.input_size
    if reads != input_size:
        raise ValueError(f"cell: the layer reads {reads} features but the model feeds it {input_size}")
    if bidirectional and num_directions(cell) == 1:
        raise ValueError("bidirectional=True but the given layer is unidirectional")
    if np.dtype(cell.dtype) != np.dtype(dtype):
        raise ValueError(f"cell: the layer is {np.dtype(cell.dtype).name} but the model is {np.dtype(dtype).name}")
    return cell


def num_directions(layer: Any) -> int:
    return int(getattr(layer, "num_directions", 1))


def output_size(layer: Any) -> int:
    """The width of one direction's output."""
    if is_stack(layer):
        return layer.embedding_dim
    return int(getattr(layer, "output_size", None) or layer.hidden_size)


def is_stack(layer: Any) -> bool:
    """An xLSTM block stack: a sequence encoder without a state the models can carry or step."""
    return isinstance(layer, xLSTMBlockStack)


def is_xlstm(layer: Any) -> bool:
    return isinstance(layer, (SLSTM, MLSTM))


def has_cell_state(layer: Any) -> bool:
    """Whether the layer's state is a pair (h, c) like LSTM's."""
    return isinstance(layer, LSTM) or bool(getattr(layer, "state_is_pair", False))


def has_hidden_state(layer: Any) -> bool:
    """Whether the first part of the layer's state is the hidden state h (all but mLSTM, whose
    state is a matrix memory)."""
    return not isinstance(layer, (MLSTM, xLSTMBlockStack))


def zero_state(layer: Any, batch_size: int) -> tuple:
    """The all-zeros state of ``layer`` for a batch, as a tuple like :func:`run_recurrent`'s."""
    dtype = layer.dtype
    if is_stack(layer):
        return ()
    if is_xlstm(layer):
        return tuple(np.zeros((layer.num_layers, batch_size) + shape, dtype) for shape in _xlstm_state_shapes(layer))
    stack = layer.num_layers * num_directions(layer)
    h = np.zeros((stack, batch_size, output_size(layer)), dtype)
    return (h, np.zeros((stack, batch_size, layer.hidden_size), dtype)) if has_cell_state(layer) else (h,)


def _xlstm_state_shapes(layer: Any) -> tuple[tuple[int, ...], ...]:
    if isinstance(layer, SLSTM):
        return ((layer.hidden_size,),) * 4
    NH, DH = layer.num_heads, layer.head_dim
    return ((NH, DH, DH), (NH, DH), (NH,))


def state_from_hidden(layer: Any, h0: np.ndarray, c0: np.ndarray | None = None) -> tuple:
    """A full initial state whose hidden state is ``h0`` (and cell state ``c0`` for LSTM; zeros if
    None); the other parts of an sLSTM state start at zero. mLSTM has no hidden state."""
    if not has_hidden_state(layer):
        raise ValueError("an mLSTM layer's state is a matrix memory, which a vector cannot initialise")
    rest = zero_state(layer, h0.shape[1])[1:]
    if c0 is not None:
        rest = (c0,) + rest[1:]
    return (h0,) + rest


def run_recurrent(layer: Any, x: np.ndarray, state: tuple | None, lengths: Any):
    """``y, state`` with the state always a tuple: ``(h,)``, ``(h, c)``, the xLSTM states, or
    ``()`` for a block stack."""
    if is_stack(layer):
        if state:
            raise ValueError("an xLSTMBlockStack starts every sequence from zeros: it takes no state")
        return layer(x, lengths=lengths), ()
    if is_xlstm(layer) or has_cell_state(layer):
        y, st = layer(x, None if state is None else tuple(state), lengths=lengths)
        return y, tuple(st)
    y, h = layer(x, None if state is None else state[0], lengths=lengths)
    return y, (h,)


def is_core(layer: Any) -> bool:
    """A core layer (RNN, LSTM, GRU): its top layer's outputs are its final states where the
    sequences end, which the models read directly."""
    return hasattr(layer, "_final_states") and not is_xlstm(layer) and not is_stack(layer)


def final_recurrent(layer: Any, x: np.ndarray, state: tuple | None, lengths: Any) -> tuple | None:
    """The final state tuple of an eval-mode :func:`run_recurrent` without its per-step outputs,
    for the core layers (RNN, LSTM, GRU; None for the others: call run_recurrent)."""
    if not is_core(layer):
        return None
    if has_cell_state(layer):
        h0, c0 = (None, None) if state is None else tuple(state)
        return tuple(layer._final_states(x, [h0, c0], lengths))
    return tuple(layer._final_states(x, [None if state is None else state[0]], lengths))


def top_state_grad(layer: Any, dtop: np.ndarray) -> tuple | None:
    """The final-state gradients of a core layer (RNN, LSTM, GRU) whose loss reads only its top
    layer's final states, ``dtop`` (B, D * H_out) with the directions side by side: dh_n zero
    below the top layer, and no dc_n. None for the other layers."""
    if not is_core(layer):
        return None
    D, P, B = num_directions(layer), output_size(layer), dtop.shape[0]
    dh_n = np.zeros((layer.num_layers * D, B, P), layer.dtype)
    dh_n[-D:] = dtop.reshape(B, D, P).transpose(1, 0, 2)
    return (dh_n, None) if has_cell_state(layer) else (dh_n,)


def backward_recurrent(layer: Any, dy: Any, dstate: tuple | None, input_grad: bool = True):
    """``dx, dstate0`` with the state gradients as a tuple like :func:`run_recurrent`'s state;
    dx is None with ``input_grad=False`` (except from an xLSTM block stack)."""
    if is_stack(layer):
        return layer.backward(dy), ()
    if is_xlstm(layer) or has_cell_state(layer):
        dx, d0 = layer.backward(dy, None if dstate is None else tuple(dstate), input_grad=input_grad)
        return dx, tuple(d0)
    dx, dh = layer.backward(dy, None if dstate is None else dstate[0], input_grad=input_grad)
    return dx, (dh,)


def step_recurrent(layer: Any, x_t: np.ndarray, state: tuple | None):
    """One time step of every layer (no cache): ``y_t`` (B, output) and the new state tuple. The
    core layers use their streaming ``step`` kernel; the xLSTM layers a one-step sequence call."""
    if is_stack(layer):
        raise ValueError("an xLSTMBlockStack reads whole sequences (it keeps no streaming state): call the "
                         "model on the sequence; for streaming, use cell='slstm' or 'mlstm'")
    if state is None:
        state = zero_state(layer, x_t.shape[0])
    if is_xlstm(layer):
        y, st = layer(x_t[:, None], tuple(state))
        return y[:, 0], tuple(st)
    if layer.training:
        # the model's own step has said once that eval mode is the fast path; the layer stays quiet
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PerformanceWarning)
            return _step_core_layer(layer, x_t, state)
    return _step_core_layer(layer, x_t, state)


def _step_core_layer(layer: Any, x_t: np.ndarray, state: tuple) -> tuple[np.ndarray, tuple]:
    if has_cell_state(layer):
        y, st = layer.step(x_t, tuple(state))
        return y, tuple(st)
    y, h = layer.step(x_t, state[0])
    return y, (h,)


def child_seed(seed: int | None, k: int) -> int | None:
    return None if seed is None else int(seed) * 1000 + k


def is_array(value: Any) -> bool:
    """Whether ``value`` is one regular array (NumPy, or a torch tensor) rather than a list of
    sequences."""
    if isinstance(value, np.ndarray):
        return value.dtype != object
    return hasattr(value, "detach") and hasattr(value, "numpy")


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
