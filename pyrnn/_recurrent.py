"""What the recurrent layers and cells share on top of :class:`pyrnn._module.Module`.

* :class:`PackedKernels`: weights packed once for the native kernels in eval mode, and the one
  streaming path (``layer_step`` on those packed weights) of the core layers and cells.
* :class:`PerformanceWarning`: given once per layer whose ``step`` is called in training mode.
* :class:`RecurrentLayer`: the one base of the core layers (RNN, LSTM, GRU) and the xLSTM
  layers (SLSTM, MLSTM): configuration, stacking with inter-layer dropout, initial states,
  layouts, the training tape and backward, and repr. Subclasses supply one layer's forward and
  backward and the shapes of their parameters and states.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from . import _backend, _checks, _core
from ._module import Module, PerThread, Tape


class PerformanceWarning(UserWarning):
    """A call that works but takes a slow path; the message names the fast one."""


class PackedKernels:
    """Mixin for modules whose kernels multiply with packed weight panels (core layers, cells).

    In eval mode the parameter arrays are read-only and each layer-direction is packed once,
    at its first call, and reused; in training mode weights are packed per call.
    """

    _transient = ("_pack_cache", "_pack_ops", "_step_packing", "_warned_training_step")
    _pack_cache: dict[int, Any] | None = None
    _pack_ops: Any = None
    # The eval-mode packing of layer 0 that the streaming fast path hands to the kernel (set by
    # the first checked step that can use it; dropped with the pack cache).
    _step_packing: Any = None
    # Whether streaming states carry a leading layer axis: (1, B, n) for layers, (B, n) for cells.
    _stacked_state = True
    # Whether this object has given its PerformanceWarning for a training-mode ``step``.
    _warned_training_step = False

    _params: dict[str, np.ndarray]
    training: bool

    def _forget_packing(self) -> None:
        self._pack_cache, self._step_packing = {}, None

    def _weights_changed(self) -> None:
        self._forget_packing()

    def _mode_changed(self) -> None:
        self._forget_packing()
        for p in self._params.values():
            p.flags.writeable = self.training

    def _packed(self, k: int, cell: str, arrays: Callable[[], tuple]) -> Any:
        """Layer-direction ``k``'s weights (``arrays()`` gives w_ih, w_hh, b_ih, b_hh, w_hr)
        packed by the backend's ``pack_layer``: in eval mode made once per backend and
        instruction set and kept; in training mode made afresh."""
        ops = _backend.ops()
        if self.training:
            return ops.pack_layer(cell, *arrays())
        if self._pack_ops is not ops or self._pack_cache is None:
            self._forget_packing()
            self._pack_ops = ops
        packed = self._pack_cache.get(k)
        if packed is not None and ops is _core and packed.isa != _core.active_isa():
            self._forget_packing()      # the instruction set was switched: its panel layout differs
            packed = None
        if packed is None:
            packed = self._pack_cache[k] = ops.pack_layer(cell, *arrays())
        return packed

    def _warn_if_training_step(self) -> None:
        """Warns once per object that ``step`` runs in training mode: there the weights are
        packed afresh at every call (several times slower than eval mode's packed weights)."""
        if self.training and not self._warned_training_step:
            self._warned_training_step = True
            warnings.warn(f"{type(self).__name__}.step in training mode packs the weights at every call, "
                          "several times slower than in eval mode: call .eval() first for the fast "
                          "streaming path", PerformanceWarning, stacklevel=3)

    def _stream_step(self, x: Any, h: Any, c: Any):
        """The one streaming path: ``(h_new, c_new)`` after one time step, no cache kept. The
        new state of the last layer is the step's output: ``h_new[-1]`` for a layer.

        A step is a few microseconds of native work, so the usual loop (eval mode, arrays that
        are already what the kernel takes, typically the state it returned last time) goes
        straight to ``layer_step_if_ready``; anything else (conversions, checks with clear
        messages, training mode, several layers) goes through ``_checked_step``, which also
        sets up ``_step_packing`` for the next call when the fast path applies."""
        packed = self._step_packing
        if packed is not None and _backend.native:
            out = _core.layer_step_if_ready(x, h, c, packed, self._stacked_state)
            if out is not None:
                return out
        return self._checked_step(x, h, c)

    def _checked_step(self, x: Any, h: Any, c: Any):  # pragma: no cover - per subclass
        raise NotImplementedError


class RecurrentLayer(Module):
    """The one base of the multi-layer recurrent layers, core and xLSTM (use those classes).

    Subclasses define ``state_names``, ``_layer_shapes``, ``_state_shapes``, ``_run_layer`` and
    ``_backprop_layer``; states are arrays (num_layers * num_directions, B, ...) internally.
    """

    # Names of the state components in messages: of the initial states, of their gradients.
    state_names: tuple[str, ...]
    grad_state_names: tuple[str, ...]
    _tape = PerThread()        # this thread's last training-mode forward, for its backward
    # The width of y in messages: core layers "D*H_out", xLSTM layers "H".
    _y_width_legend = "D*H_out"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, bias: bool, batch_first: bool,
                 dropout: float, bidirectional: bool, proj_size: int, dtype: Any, seed: int | None) -> None:
        Module.__init__(self, dtype)
        self.input_size = _checks.positive_int(input_size, "input_size")
        self.hidden_size = _checks.positive_int(hidden_size, "hidden_size")
        self.num_layers = _checks.positive_int(num_layers, "num_layers")
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dropout = _checks.dropout(dropout)
        self.bidirectional = bool(bidirectional)
        self.proj_size = _checks.proj_size(proj_size, self.hidden_size)
        self.seed = seed
        self.num_directions = 2 if self.bidirectional else 1
        self.output_size = self.proj_size or self.hidden_size      # H_out
        # One generator: parameters are drawn first, dropout masks continue the stream.
        self._rng = np.random.default_rng(seed)
        shapes: dict[str, tuple[int, ...]] = {}
        for layer in range(self.num_layers):
            layer_input = self.input_size if layer == 0 else self.num_directions * self.output_size
            shapes.update(self._layer_shapes(layer, layer_input))
        self._create_parameters(shapes, self.hidden_size, self._rng)
        self._tape = None

    # -- hooks -------------------------------------------------------------------------------------

    def _layer_shapes(self, layer: int, layer_input: int) -> dict[str, tuple[int, ...]]:
        raise NotImplementedError

    def _state_shapes(self) -> tuple[tuple[int, tuple[int, ...], str], ...]:
        """Per state component: (stack size, shape after the batch axis, legend of that shape)."""
        raise NotImplementedError

    def _run_layer(self, layer: int, x: np.ndarray, states: list[np.ndarray], finals: list[np.ndarray],
                   lengths: Any, training: bool, caches: list[Any], outputs: bool = True) -> np.ndarray | None:
        """Layer ``layer``'s forward over the whole sequence: writes its final states into
        ``finals``, appends its caches, returns its output (T, B, width). With ``outputs=False``
        (inference) a layer may skip its output and return None."""
        raise NotImplementedError

    def _backprop_layer(self, layer: int, caches: list[Any], dy: np.ndarray | None,
                        dfinal: list[np.ndarray], d0: list[np.ndarray], input_grad: bool) -> np.ndarray | None:
        """BPTT through layer ``layer``: writes the initial-state gradients into ``d0``,
        accumulates the weight gradients, returns the gradient of the layer's input (a layer
        may skip it and return None when ``input_grad`` is False)."""
        raise NotImplementedError

    def _memory_estimate(self, T: int, B: int) -> int:
        """Elements a forward over (T, B) allocates, generously."""
        raise NotImplementedError

    # -- forward -----------------------------------------------------------------------------------

    def _forward(self, x: Any, states: list[Any], lengths: Any, outputs: bool = True):
        """``(y, final states)`` in the user's layout; keeps the tape in training mode. With
        ``outputs=False`` (eval mode) y is None: the last layer may skip writing it."""
        xt, batched = _checks.sequence(x, self.input_size, self.batch_first, self.dtype, kept=self.training)
        T, B, _ = xt.shape
        initial = self._initial_states(states, B, batched, self.state_names)
        lengths = _checks.lengths(lengths, T, B, batched)
        training = self.training
        _checks.fits_in_memory(self._memory_estimate(T, B), self.dtype,
                               f"{type(self).__name__} forward over T={T}, B={B}")
        if T == 0 or B == 0:  # nothing to compute: the states pass through unchanged
            y = np.zeros((T, B, self.num_directions * self.output_size), self.dtype)
            finals, caches, masks = [s.copy() for s in initial], [], []
        else:
            y, finals, caches, masks = self._run_layers(xt, initial, lengths, training, outputs)
        self._tape = Tape(T, B, batched, caches, masks) if training else None
        finals = [self._state_out(f, batched) for f in finals]
        return (self._to_user_layout(y, batched) if outputs else None), finals

    def _final_states(self, x: Any, states: list[Any], lengths: Any) -> list[np.ndarray]:
        """The final states of an eval-mode forward, without its per-step outputs (a
        sequence-to-vector model reading only the last state allocates and writes no (T, B, ...)
        output of the last layer)."""
        if self.training:
            raise RuntimeError("_final_states is for eval mode")
        return self._forward(x, states, lengths, outputs=False)[1]

    def _run_layers(self, x, states, lengths, training, outputs=True):
        finals = [np.empty_like(s) for s in states]
        caches: list[Any] = []
        masks: list[np.ndarray | None] = []
        layer_input = x
        for layer in range(self.num_layers):
            last = layer == self.num_layers - 1
            layer_input = self._run_layer(layer, layer_input, states, finals, lengths, training, caches,
                                          outputs or not last)
            mask = None
            if training and self.dropout > 0 and layer < self.num_layers - 1:
                mask = self._dropout_mask(layer_input.shape)
                with np.errstate(invalid="ignore"):  # a dropped inf is NaN, as IEEE (and torch) say
                    layer_input = layer_input * mask
            masks.append(mask)
        return layer_input, finals, caches, masks

    def _dropout_mask(self, shape: tuple[int, ...]) -> np.ndarray:
        if self.dropout >= 1.0:
            return np.zeros(shape, self.dtype)
        keep = self._rng.random(shape) >= self.dropout
        return keep.astype(self.dtype) / self.dtype.type(1.0 - self.dropout)

    def _initial_states(self, parts: list[Any], B: int, batched: bool, names: tuple[str, ...]) -> list[np.ndarray]:
        """The state components (None: zeros) checked and shaped (stack, B, ...)."""
        out = []
        for part, name, (stack, shape, legend) in zip(parts, names, self._state_shapes()):
            full = (stack, B, *shape) if batched else (stack, *shape)
            arr = _checks.state(part, name, full, legend if batched else legend.replace("B, ", ""), self.dtype)
            out.append(arr if batched else arr[:, None])
        return out

    def _to_user_layout(self, y: np.ndarray, batched: bool) -> np.ndarray:
        if not batched:
            return y[:, 0]
        return np.ascontiguousarray(y.transpose(1, 0, 2)) if self.batch_first else y

    @staticmethod
    def _state_out(state: np.ndarray, batched: bool) -> np.ndarray:
        return state if batched else state[:, 0]

    # -- backward ----------------------------------------------------------------------------------

    def _backward(self, dy: Any, dstates: list[Any], input_grad: bool = True):
        """``(dx, initial-state gradients)`` through the last training-mode forward; dx is None
        with ``input_grad=False``."""
        tape = self._need_cache(self._tape)
        self._tape = None
        T, B = tape.T, tape.B
        d_out = self._output_grad(dy, tape)
        dfinal = self._initial_states(dstates, B, tape.batched, self.grad_state_names)
        if T == 0 or B == 0:
            dx = np.zeros((T, B, self.input_size), self.dtype)
            d0 = [d.copy() for d in dfinal]
        else:
            d0 = [np.empty_like(d) for d in dfinal]
            for layer in reversed(range(self.num_layers)):
                d_input = self._backprop_layer(layer, tape.caches, d_out, dfinal, d0, layer > 0 or input_grad)
                if layer > 0 and tape.masks[layer - 1] is not None:
                    with np.errstate(invalid="ignore"):
                        d_input = d_input * tape.masks[layer - 1]
                d_out = d_input
            dx = d_out
        dx = self._to_user_layout(dx, tape.batched) if input_grad else None
        return dx, [self._state_out(d, tape.batched) for d in d0]

    def _output_grad(self, dy: Any, tape: Tape) -> np.ndarray | None:
        if dy is None:
            return None
        width, legend = self.num_directions * self.output_size, self._y_width_legend
        arr = _checks.float_array(dy, "dy", self.dtype)
        if not tape.batched:
            _checks.expect_shape(arr, "dy", (tape.T, width), f"(T, {legend}) like y")
            return arr[:, None, :]
        if self.batch_first:
            _checks.expect_shape(arr, "dy", (tape.B, tape.T, width), f"(B, T, {legend}) like y")
            return np.ascontiguousarray(arr.transpose(1, 0, 2))
        _checks.expect_shape(arr, "dy", (tape.T, tape.B, width), f"(T, B, {legend}) like y")
        return arr

    def _drop_caches(self) -> None:
        self._tape = None

    # -- presentation ------------------------------------------------------------------------------

    def _shape_options(self) -> list[str]:
        """Options shown before ``num_layers`` in the repr."""
        return []

    def _options(self) -> list[str]:
        """Class-specific options shown after ``num_layers`` in the repr (non-defaults only)."""
        return []

    def _extra_repr(self) -> str:
        parts = [str(self.input_size), str(self.hidden_size)] + self._shape_options()
        if self.num_layers != 1:
            parts.append(f"num_layers={self.num_layers}")
        parts += self._options()
        for name, default in (("bias", True), ("batch_first", False), ("dropout", 0.0),
                              ("bidirectional", False), ("proj_size", 0)):
            if getattr(self, name) != default:
                parts.append(f"{name}={getattr(self, name)}")
        parts.append(f"dtype={self.dtype.name}")
        return ", ".join(parts)
