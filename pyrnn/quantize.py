"""Quantized inference: ``pyrnn.quantize(obj, dtype="int8" | "bf16")`` returns an inference-only
copy of a layer (RNN, LSTM, GRU), a cell (RNNCell, LSTMCell, GRUCell) or a model containing them,
whose weights are int8 (per-output-channel scales) or bfloat16. Calls, streaming ``step`` and
results keep their float32 shapes and signatures; ``backward`` and ``train()`` raise.

The scheme (docs/quantization.md, pyrnn/reference_quant.py): int8 weights with one scale per
output row; the activations (each x_t row and each h_{t-1} row, every step) quantized per row
at run time; products exact in int32, scaled back to float32; bias, gates and states float32.
bf16: weights and each product's activations in bfloat16, sums in float32.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np

from . import _backend, _checks, _core
from . import reference_quant
from .cells import GRUCell, LSTMCell, RNNCell, _Cell
from .layers import GRU, LSTM, RNN, _RecurrentLayer

DTYPES = ("int8", "bf16")
_WEIGHTS = ("weight_ih", "weight_hh", "weight_hr")
_BIASES = ("bias_ih", "bias_hh")


def _quantized_weights(name: str, w: np.ndarray, dtype: str, owner: str) -> dict[str, np.ndarray]:
    if not np.all(np.isfinite(w)):
        raise ValueError(f"quantize: {owner}.{name} contains NaN or Inf; a quantized copy of it would "
                         "be meaningless (fix the weights first)")
    if dtype == "bf16":
        return {name: reference_quant.to_bfloat16(w)}
    q, scale = reference_quant.quantize_weight(w)
    return {name: q, name + "_scale": scale}


class _Quantized:
    """What quantized layers and cells share: the quantized parameters (state_dict), their
    packing for the active kernels, memory, and the refusal to train."""

    quantization: str
    _qparams: dict[str, np.ndarray]

    def _init_quantized(self, source: Any, dtype: str) -> None:
        owner = type(source).__name__
        if dtype not in DTYPES:
            raise ValueError(f"quantize: dtype must be one of {DTYPES}, got {dtype!r}")
        if source.training:
            raise ValueError(f"quantize: the {owner} is in training mode; quantized copies are for "
                             "inference only: call .eval() on it first")
        if source.dtype != np.float32:
            raise TypeError(f"quantize: the {owner} has {source.dtype} weights; quantization starts "
                            "from float32 (build or convert the layer with dtype=np.float32)")
        self.quantization = dtype
        self._qparams = {}
        for name, value in source._params.items():
            if name.startswith(_WEIGHTS):
                self._qparams.update(_quantized_weights(name, value, dtype, owner))
            else:
                self._qparams[name] = value.copy()
        self.training = False
        self._quant_cache: dict[int, Any] = {}

    # -- the module contract, inference only ------------------------------------------------------

    def parameters(self) -> dict[str, np.ndarray]:
        """The quantized arrays (int8 weights and their ``*_scale``, or bfloat16 bits as uint16;
        float32 biases) by name. Read-only: a quantized copy is not trained."""
        return dict(self._qparams)

    @property
    def grads(self) -> dict[str, np.ndarray]:
        return {}

    def zero_grad(self) -> None:
        pass

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the quantized arrays (what ``pyrnn.save`` stores)."""
        return {k: v.copy() for k, v in self._qparams.items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Replace the quantized arrays: every name, shape and dtype must match."""
        if not isinstance(state, Mapping):
            raise TypeError(f"load_state_dict expects a mapping of name -> array, got {type(state).__name__}")
        problems = [f"missing {k}" for k in self._qparams if k not in state]
        problems += [f"unexpected {k}" for k in state if k not in self._qparams]
        values = {}
        for name, current in self._qparams.items():
            if name in state:
                arr = np.asarray(state[name])
                if arr.shape != current.shape or arr.dtype != current.dtype:
                    problems.append(f"{name}: expected {current.dtype}{_checks.shape_str(current.shape)}, "
                                    f"got {arr.dtype}{_checks.shape_str(arr.shape)}")
                values[name] = arr
        if problems:
            raise ValueError(f"load_state_dict for {type(self).__name__}: " + "; ".join(problems))
        for name, arr in values.items():
            if name.endswith("_scale") and not np.all(np.isfinite(arr) & (arr >= 0)):
                raise ValueError(f"load_state_dict for {type(self).__name__}: {name} must be finite and >= 0")
            self._qparams[name] = np.array(arr, copy=True)
        self._quant_cache = {}

    def train(self, mode: bool = True):
        if mode:
            raise RuntimeError(f"{type(self).__name__} is a quantized, inference-only copy: it cannot "
                               "be trained (train the float model and quantize it again)")
        return self

    def eval(self):
        return self

    @property
    def nbytes(self) -> int:
        """Bytes of the quantized weights, their scales and the biases."""
        return int(sum(v.nbytes for v in self._qparams.values()))

    def _no_backward(self, *args: Any, **kwargs: Any):
        raise RuntimeError(f"{type(self).__name__}.backward: a quantized copy is inference-only and "
                           "has no backward; train the float model instead")

    # -- packing --------------------------------------------------------------------------------

    def _quant_arrays(self, suffix: str) -> tuple:
        """(w_ih, s_ih, w_hh, s_hh, b_ih, b_hh, w_hr, s_hr) of the weights named ``*suffix``."""
        p = self._qparams
        get = p.get
        return (p["weight_ih" + suffix], get("weight_ih" + suffix + "_scale"),
                p["weight_hh" + suffix], get("weight_hh" + suffix + "_scale"),
                get("bias_ih" + suffix), get("bias_hh" + suffix),
                get("weight_hr" + suffix), get("weight_hr" + suffix + "_scale"))

    def _quant_packed(self, k: int, suffix: str) -> Any:
        """Layer-direction ``k`` packed for the active kernels (again when the ISA changed)."""
        packed = self._quant_cache.get(k)
        if packed is None or packed.isa != _core.active_isa():
            packed = self._quant_cache[k] = _core.quant_pack_layer(
                self.quantization, self.cell, *self._quant_arrays(suffix))
        return packed

    def _check_native(self) -> None:
        if not _backend.native_active():
            raise RuntimeError(f"{type(self).__name__} runs on the native kernels only; its NumPy "
                               "reference is pyrnn.reference_quant")

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_quant_cache"] = {}
        state["_pack_cache"] = {}
        state["_step_packing"] = None
        return state

    def _extra_repr(self) -> list[str]:
        return super()._extra_repr() + [f"quantized={self.quantization!r}"]  # type: ignore[misc]


class _QuantizedLayer(_Quantized):
    """A quantized RNN, LSTM or GRU: the float layer's call, step and checks, on quantized
    kernels. Built by :func:`quantize`."""

    def __init__(self, layer: _RecurrentLayer, dtype: str) -> None:
        self._init_quantized(layer, dtype)
        for name in ("cell", "input_size", "hidden_size", "num_layers", "bias", "batch_first",
                     "bidirectional", "proj_size", "seed", "num_directions", "output_size",
                     "nonlinearity", "reset_after"):
            if hasattr(layer, name):
                setattr(self, name, getattr(layer, name))
        self.dropout = 0.0
        self.dtype = np.dtype(np.float32)
        self._params, self._grads = {}, {}
        self._tape = None
        self._pack_cache, self._step_packing = {}, None

    backward = _Quantized._no_backward

    def _run_layers(self, x, h0, c0, lengths, training):
        self._check_native()
        D = self.num_directions
        h_n = np.empty_like(h0)
        c_n = np.empty_like(c0) if c0 is not None else None
        layer_input = x
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(D):
                k = layer * D + direction
                packed = self._quant_packed(k, self._suffix(layer, direction))
                y, h, c = _core.quant_layer_forward(layer_input, h0[k], None if c0 is None else c0[k],
                                                    packed, lengths, direction == 1)
                outputs.append(y)
                h_n[k] = h
                if c_n is not None:
                    c_n[k] = c
            layer_input = outputs[0] if D == 1 else np.concatenate(outputs, axis=2)
        return layer_input, h_n, c_n, [], []

    def _step(self, x: Any, h: Any, c: Any):
        if self.bidirectional:
            raise ValueError(f"{type(self).__name__}.step streams forward in time; a bidirectional "
                             "layer needs the whole sequence: call the layer on it instead")
        self._check_native()
        is_lstm = self.cell == "lstm"
        if (self.num_layers == 1 and type(h) is np.ndarray and h.ndim == 3
                and (not is_lstm or (type(c) is np.ndarray and c.ndim == 3))):
            try:  # the usual streaming loop: arrays as the kernel takes them (it checks them)
                h_n, c_n = _core.quant_layer_step(x, h, c if is_lstm else None, self._quant_packed(0, "_l0"))
                return h_n[0], h_n, c_n
            except (TypeError, ValueError):
                pass  # converted and checked with a clear message below
        xt, batched = _checks.step_input(x, self.input_size, self.dtype)
        B = xt.shape[1]
        h = self._initial_state(h, "h", B, self.output_size, batched)
        c = self._initial_state(c, "c", B, self.hidden_size, batched) if is_lstm else None
        if B == 0:
            return np.zeros((0, self.output_size), self.dtype), h.copy(), (c.copy() if is_lstm else None)
        layer_input = xt[0]
        hs, cs = [], []
        for layer in range(self.num_layers):
            h_new, c_new = _core.quant_layer_step(layer_input, h[layer], c[layer] if is_lstm else None,
                                                  self._quant_packed(layer, self._suffix(layer, 0)))
            hs.append(h_new)
            cs.append(c_new)
            layer_input = h_new
        h_n = np.stack(hs)
        c_n = np.stack(cs) if is_lstm else None
        y = layer_input if batched else layer_input[0]
        return y, self._state_out(h_n, batched), (self._state_out(c_n, batched) if is_lstm else None)


class QuantizedRNN(_QuantizedLayer, RNN):
    """An inference-only RNN with int8 or bfloat16 weights (see :func:`pyrnn.quantize`)."""


class QuantizedLSTM(_QuantizedLayer, LSTM):
    """An inference-only LSTM with int8 or bfloat16 weights (see :func:`pyrnn.quantize`)."""


class QuantizedGRU(_QuantizedLayer, GRU):
    """An inference-only GRU with int8 or bfloat16 weights (see :func:`pyrnn.quantize`)."""


class _QuantizedCell(_Quantized):
    """A quantized cell: the float cell's call and checks, one quantized step per call."""

    def __init__(self, cell: _Cell, dtype: str) -> None:
        self._init_quantized(cell, dtype)
        for name in ("cell", "input_size", "hidden_size", "bias", "seed", "nonlinearity", "reset_after"):
            if hasattr(cell, name):
                setattr(self, name, getattr(cell, name))
        self.dtype = np.dtype(np.float32)
        self._params, self._grads = {}, {}
        self._caches = []
        self._pack_cache, self._step_packing = {}, None

    backward = _Quantized._no_backward

    def _step(self, x: Any, h: Any, c: Any):
        self._check_native()
        if type(h) is np.ndarray and h.ndim == 2 and (c is None or (type(c) is np.ndarray and c.ndim == 2)):
            try:  # a loop feeding back the returned state: the kernel checks the arrays
                return _core.quant_layer_step(x, h, c, self._quant_packed(0, ""))
            except (TypeError, ValueError):
                pass  # converted and checked with a clear message below
        xt, batched = _checks.step_input(x, self.input_size, self.dtype)
        B = xt.shape[1]
        shape, legend = ((B, self.hidden_size), "(B, H)") if batched else ((self.hidden_size,), "(H,)")
        h = _checks.state(h, "h", shape, legend, self.dtype).reshape(B, self.hidden_size)
        if self.cell == "lstm":
            c = _checks.state(c, "c", shape, legend, self.dtype).reshape(B, self.hidden_size)
        if B == 0:
            h_new, c_new = h.copy(), (c.copy() if self.cell == "lstm" else None)
        else:
            h_new, c_new = _core.quant_layer_step(xt[0], h, c, self._quant_packed(0, ""))
        shape_out = (B, self.hidden_size) if batched else (self.hidden_size,)
        return h_new.reshape(shape_out), (c_new.reshape(shape_out) if c_new is not None else None)


class QuantizedRNNCell(_QuantizedCell, RNNCell):
    """An inference-only RNNCell with int8 or bfloat16 weights (see :func:`pyrnn.quantize`)."""


class QuantizedLSTMCell(_QuantizedCell, LSTMCell):
    """An inference-only LSTMCell with int8 or bfloat16 weights (see :func:`pyrnn.quantize`)."""


class QuantizedGRUCell(_QuantizedCell, GRUCell):
    """An inference-only GRUCell with int8 or bfloat16 weights (see :func:`pyrnn.quantize`)."""


_QUANTIZED = {RNN: QuantizedRNN, LSTM: QuantizedLSTM, GRU: QuantizedGRU,
              RNNCell: QuantizedRNNCell, LSTMCell: QuantizedLSTMCell, GRUCell: QuantizedGRUCell}


def _quantizable(obj: Any) -> type | None:
    return _QUANTIZED.get(type(obj))


def _recurrent_children(module: Any) -> list[Any]:
    """Every core layer and cell in a module tree (each once)."""
    found: dict[int, Any] = {}

    def walk(m: Any) -> None:
        if _quantizable(m) is not None:
            found.setdefault(id(m), m)
            return
        for child in getattr(m, "_modules", {}).values():
            walk(child)

    walk(module)
    return list(found.values())


def quantize(obj: Any, dtype: str = "int8") -> Any:
    """An inference-only copy of ``obj`` with quantized weights (``obj`` is unchanged).

    ``obj``: an ``RNN``, ``LSTM``, ``GRU`` (any options), an ``RNNCell``, ``LSTMCell``,
    ``GRUCell``, or a model (``pyrnn.models``, ``pyrnn.nn`` modules) whose recurrent layers and
    cells are quantized while everything else is copied as it is. It must be in eval mode and
    float32. ``dtype``: ``"int8"`` (per-output-channel weight scales, activations quantized per
    row at run time) or ``"bf16"``.

    The copy is called like the original (same signature, shapes and output types, ``step``
    included) and saves and loads with ``pyrnn.save`` / ``pyrnn.load``; ``backward`` and
    ``train()`` raise. ``nbytes`` is the memory of a quantized layer's weights.
    """
    cls = _quantizable(obj)
    if cls is not None:
        return cls(obj, dtype)
    if not hasattr(obj, "_modules"):
        raise TypeError(f"quantize: expected a pyrnn layer, cell or model, got {type(obj).__name__}")
    if getattr(obj, "training", False):
        raise ValueError(f"quantize: the {type(obj).__name__} is in training mode; quantized copies "
                         "are for inference only: call .eval() on it first")
    layers = _recurrent_children(obj)
    if not layers:
        raise TypeError(f"quantize: the {type(obj).__name__} has no RNN, LSTM, GRU layer or cell to quantize")
    # deepcopy substitutes each layer's quantized copy wherever the model refers to it.
    memo = {id(layer): _QUANTIZED[type(layer)](layer, dtype) for layer in layers}
    model = copy.deepcopy(obj, memo)
    object.__setattr__(model, "quantization", dtype)
    return model


def quantized_dtype(obj: Any) -> str | None:
    """``"int8"`` / ``"bf16"`` for what :func:`quantize` returned, else None."""
    return getattr(obj, "quantization", None)


def float_class_name(obj: Any) -> str:
    """The name of the float class ``obj`` (or what it was quantized from) is an instance of."""
    if isinstance(obj, _Quantized):
        return next(base.__name__ for base in type(obj).__mro__ if base in _QUANTIZED)
    return type(obj).__name__
