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
from typing import Any

import numpy as np

from . import _backend, _core
from . import reference_quant
from .checkpoint import BFLOAT16
from .cells import GRUCell, LSTMCell, RNNCell
from .layers import GRU, LSTM, RNN

DTYPES = ("int8", "bf16")
_WEIGHTS = ("weight_ih", "weight_hh", "weight_hr")


def _quantized_weights(name: str, w: np.ndarray, dtype: str, owner: str) -> dict[str, np.ndarray]:
    if not np.all(np.isfinite(w)):
        raise ValueError(f"quantize: {owner}.{name} contains NaN or Inf; a quantized copy of it would "
                         "be meaningless (fix the weights first)")
    if dtype == "bf16":
        return {name: reference_quant.to_bfloat16(w).view(BFLOAT16)}
    q, scale = reference_quant.quantize_weight(w)
    return {name: q, name + "_scale": scale}


class _Quantized:
    """What quantized layers and cells share on top of the float class they subclass: the
    quantized parameters, their packing for the active kernels (which the float class's
    streaming path then uses as it uses a float packing), memory, and the refusal to train."""

    quantization: str
    _params: dict[str, np.ndarray]
    _pack_cache: dict[int, Any] | None

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
        params: dict[str, np.ndarray] = {}
        for name, value in source._params.items():
            if name.startswith(_WEIGHTS):
                params.update(_quantized_weights(name, value, dtype, owner))
            else:
                params[name] = value.copy()
        # The float module's configuration as it is (shapes, cell, options), its own state not.
        skip = {"_params", "_grads", "_modules", *type(source)._transient_names()}
        self.__dict__.update(copy.deepcopy({k: v for k, v in source.__dict__.items() if k not in skip}))
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "_params", params)
        object.__setattr__(self, "_grads", {})
        self.quantization = dtype
        self.training = False
        self._drop_caches()
        self._mode_changed()

    # -- inference only ---------------------------------------------------------------------------

    def train(self, mode: bool = True):
        if mode:
            raise RuntimeError(f"{type(self).__name__} is a quantized, inference-only copy: it cannot "
                               "be trained (train the float model and quantize it again)")
        return self

    def backward(self, *args: Any, **kwargs: Any):
        raise RuntimeError(f"{type(self).__name__}.backward: a quantized copy is inference-only and "
                           "has no backward; train the float model instead")

    @property
    def nbytes(self) -> int:
        """Bytes of the quantized weights, their scales and the biases."""
        return int(sum(v.nbytes for v in self._params.values()))

    def _write_parameters(self, values: dict[str, np.ndarray]) -> None:
        """load_state_dict: the quantized arrays are replaced, each of exactly its dtype."""
        owner = type(self).__name__
        for name, arr in values.items():
            arr = np.asarray(arr)
            if arr.dtype != self._params[name].dtype:
                raise ValueError(f"load_state_dict for {owner}: {name} must have dtype "
                                 f"{self._params[name].dtype}, got {arr.dtype}")
            if name.endswith("_scale") and not np.all(np.isfinite(arr) & (arr >= 0)):
                raise ValueError(f"load_state_dict for {owner}: {name} must be finite and >= 0")
        for name, arr in values.items():
            self._params[name] = np.array(arr, copy=True)
            self._params[name].flags.writeable = False
        self._weights_changed()

    # -- packing --------------------------------------------------------------------------------

    def _quant_suffix(self, k: int) -> str:
        raise NotImplementedError

    def _packed(self, k: int, cell: str, arrays: Any = None) -> Any:
        """Layer-direction ``k``'s quantized weights packed for the active kernels: made once
        per instruction set and kept (the float class's steps pass it to ``layer_step``)."""
        if not _backend.native:
            raise RuntimeError(f"{type(self).__name__} runs on the native kernels only; its NumPy "
                               "reference is pyrnn.reference_quant")
        if self._pack_cache is None:
            self._forget_packing()
        packed = self._pack_cache.get(k)
        if packed is not None and packed.isa != _core.active_isa():
            self._forget_packing()
            packed = None
        if packed is None:
            suffix, p = self._quant_suffix(k), self._params

            def weight(name):  # bfloat16 as the kernels take it: its bits as uint16
                w = p.get(name + suffix)
                return w.view(np.uint16) if w is not None and w.dtype == BFLOAT16 else w
            packed = self._pack_cache[k] = _core.quant_pack_layer(
                self.quantization, self.cell, weight("weight_ih"), p.get("weight_ih" + suffix + "_scale"),
                weight("weight_hh"), p.get("weight_hh" + suffix + "_scale"), p.get("bias_ih" + suffix),
                p.get("bias_hh" + suffix), weight("weight_hr"), p.get("weight_hr" + suffix + "_scale"))
        return packed

    def _extra_repr(self) -> str:
        return super()._extra_repr() + f", quantized={self.quantization!r}"  # type: ignore[misc]


class _QuantizedLayer(_Quantized):
    """A quantized RNN, LSTM or GRU: the float layer's call, step and checks on quantized
    kernels. Built by :func:`quantize`."""

    def __init__(self, layer: Any, dtype: str) -> None:
        self._init_quantized(layer, dtype)
        self.dropout = 0.0

    def _quant_suffix(self, k: int) -> str:
        return self._suffix(k // self.num_directions, k % self.num_directions)

    def _run_layer(self, layer, x, states, finals, lengths, training, caches, outputs=True):
        # The int8 kernel always writes the outputs (outputs=False only allows skipping them).
        h0, c0 = states[0], (states[1] if len(states) > 1 else None)
        ys = []
        for direction in range(self.num_directions):
            k = layer * self.num_directions + direction
            packed = self._packed(k, self.cell)
            y, h, c = _core.quant_layer_forward(x, h0[k], None if c0 is None else c0[k],
                                                self._params.get("bias_hh" + self._quant_suffix(k)),
                                                packed, lengths, direction == 1)
            ys.append(y)
            finals[0][k] = h
            if c0 is not None:
                finals[1][k] = c
        return ys[0] if len(ys) == 1 else np.concatenate(ys, axis=2)


class QuantizedRNN(_QuantizedLayer, RNN):
    """An inference-only RNN with int8 or bfloat16 weights (see :func:`pyrnn.quantize`)."""


class QuantizedLSTM(_QuantizedLayer, LSTM):
    """An inference-only LSTM with int8 or bfloat16 weights (see :func:`pyrnn.quantize`)."""


class QuantizedGRU(_QuantizedLayer, GRU):
    """An inference-only GRU with int8 or bfloat16 weights (see :func:`pyrnn.quantize`)."""


class _QuantizedCell(_Quantized):
    """A quantized cell: the float cell's call, checks and steps on quantized kernels."""

    def __init__(self, cell: Any, dtype: str) -> None:
        self._init_quantized(cell, dtype)

    def _quant_suffix(self, k: int) -> str:
        return ""


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
    if quantized_dtype(obj):
        raise ValueError(f"quantize: the {type(obj).__name__} is quantized already ({quantized_dtype(obj)}); "
                         "quantize the float model it came from")
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
