"""Multi-layer, optionally bidirectional RNN, LSTM and GRU layers with PyTorch's API and shapes.

Each layer and direction is one call of the backend's ``layer_forward`` over the whole
sequence (see ``pyrnn._backend``); this module only stacks layers, concatenates directions,
applies inter-layer dropout and converts between the user's layout and time-major arrays.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import _backend, _checks, _core
from ._module import GATES, ParameterModule, Tape


class _RecurrentLayer(ParameterModule):
    """Shared implementation of RNN, LSTM and GRU (use those classes)."""

    _packs_weights = True

    def __init__(self, cell: str, input_size: int, hidden_size: int, num_layers: int, bias: bool,
                 batch_first: bool, dropout: float, bidirectional: bool, proj_size: int,
                 dtype: Any, seed: int | None, peepholes: bool = False) -> None:
        self.cell = cell
        self.peepholes = bool(peepholes)
        self.input_size = _checks.positive_int(input_size, "input_size")
        self.hidden_size = _checks.positive_int(hidden_size, "hidden_size")
        self.num_layers = _checks.positive_int(num_layers, "num_layers")
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dropout = _checks.dropout(dropout)
        self.bidirectional = bool(bidirectional)
        self.proj_size = _checks.proj_size(proj_size, self.hidden_size)
        self.dtype = _checks.layer_dtype(dtype)
        self.seed = seed
        self.num_directions = 2 if self.bidirectional else 1
        self.output_size = self.proj_size or self.hidden_size      # H_out
        # One generator: parameters are drawn first, dropout masks continue the stream.
        self._rng = np.random.default_rng(seed)
        self._create_parameters(self._parameter_shapes(), self.hidden_size, self._rng)
        # Parameter names of each (layer, direction) in the kernels' argument order ("" where
        # the layer has no such parameter), so hot paths look them up without formatting.
        kinds = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr", "weight_peephole")
        self._names = [tuple(n if n in self._params else "" for n in
                             (kind + self._suffix(layer, direction) for kind in kinds))
                       for layer in range(self.num_layers) for direction in range(self.num_directions)]
        self._tape: Tape | None = None

    # -- structure -----------------------------------------------------------------------------

    @staticmethod
    def _suffix(layer: int, direction: int) -> str:
        return f"_l{layer}" + ("_reverse" if direction else "")

    def _parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        gh = GATES[self.cell] * self.hidden_size
        shapes: dict[str, tuple[int, ...]] = {}
        for layer in range(self.num_layers):
            layer_input = self.input_size if layer == 0 else self.num_directions * self.output_size
            for direction in range(self.num_directions):
                s = self._suffix(layer, direction)
                shapes["weight_ih" + s] = (gh, layer_input)
                shapes["weight_hh" + s] = (gh, self.output_size)
                if self.bias:
                    shapes["bias_ih" + s] = (gh,)
                    shapes["bias_hh" + s] = (gh,)
                if self.proj_size:
                    shapes["weight_hr" + s] = (self.proj_size, self.hidden_size)
                if self.peepholes:
                    shapes["weight_peephole" + s] = (3 * self.hidden_size,)
        return shapes

    def _arrays(self, store: dict[str, np.ndarray], layer: int, direction: int):
        """(w_ih, w_hh, b_ih, b_hh, w_hr, w_peep) of one layer and direction from params or grads."""
        return tuple(store.get(name) for name in self._names[layer * self.num_directions + direction])

    def _layer0_arrays(self):
        return self._arrays(self._params, 0, 0)

    def _state_shape(self, B: int, size: int, batched: bool) -> tuple[tuple[int, ...], str]:
        stack = self.num_layers * self.num_directions
        if batched:
            return (stack, B, size), "(D*num_layers, B, " + ("H_out)" if size == self.output_size else "H)")
        return (stack, size), "(D*num_layers, " + ("H_out)" if size == self.output_size else "H)")

    # -- forward -------------------------------------------------------------------------------

    def _forward(self, x: Any, h0: Any, c0: Any, lengths: Any):
        is_lstm = self.cell == "lstm"
        xt, batched = _checks.sequence(x, self.input_size, self.batch_first, self.dtype)
        T, B, _ = xt.shape
        h0 = self._initial_state(h0, "h0", B, self.output_size, batched)
        c0 = self._initial_state(c0, "c0", B, self.hidden_size, batched) if is_lstm else None
        lengths = _checks.lengths(lengths, T, B, batched)
        training = self.training
        self._check_memory(T, B)
        if training and isinstance(x, np.ndarray) and np.may_share_memory(xt, x):
            xt = xt.copy()  # the cache keeps the input: later edits by the caller must not reach it

        if T == 0 or B == 0:  # nothing to compute: the states pass through unchanged
            y = np.zeros((T, B, self.num_directions * self.output_size), self.dtype)
            h_n, c_n = h0.copy(), (c0.copy() if is_lstm else None)
            caches: list[Any] = []
            masks: list[np.ndarray | None] = []
        else:
            y, h_n, c_n, caches, masks = self._run_layers(xt, h0, c0, lengths, training)
        self._tape = Tape(T, B, batched, caches, masks) if training else None
        return self._to_user_layout(y, batched), self._state_out(h_n, batched), (
            self._state_out(c_n, batched) if is_lstm else None)

    def _run_layers(self, x, h0, c0, lengths, training):
        ops = _backend.ops()
        D = self.num_directions
        h_n = np.empty_like(h0)
        c_n = np.empty_like(c0) if c0 is not None else None
        caches, masks = [], []
        layer_input = x
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(D):
                k = layer * D + direction
                arrays = self._arrays(self._params, layer, direction)

                def run(packed, x=layer_input, k=k, arrays=arrays, reverse=direction == 1):
                    return ops.layer_forward(self.cell, x, h0[k], None if c0 is None else c0[k], *arrays[:5],
                                             lengths, reverse, training, packed, w_peep=arrays[5])
                # Training packs per call (the weights change every step); eval reuses a packing.
                y, h, c, cache = run(None) if training else self._run_packed(k, self.cell, lambda: arrays, run)
                outputs.append(y)
                h_n[k] = h
                if c_n is not None:
                    c_n[k] = c
                caches.append(cache)
            layer_input = outputs[0] if D == 1 else np.concatenate(outputs, axis=2)
            mask = None
            if training and self.dropout > 0 and layer < self.num_layers - 1:
                mask = self._dropout_mask(layer_input.shape)
                with np.errstate(invalid="ignore"):  # a dropped inf is NaN, as IEEE (and torch) say
                    layer_input = layer_input * mask
            masks.append(mask)
        return layer_input, h_n, c_n, caches, masks

    def _dropout_mask(self, shape: tuple[int, ...]) -> np.ndarray:
        if self.dropout >= 1.0:
            return np.zeros(shape, self.dtype)
        keep = self._rng.random(shape) >= self.dropout
        return keep.astype(self.dtype) / self.dtype.type(1.0 - self.dropout)

    def _initial_state(self, value: Any, name: str, B: int, size: int, batched: bool) -> np.ndarray:
        shape, legend = self._state_shape(B, size, batched)
        arr = _checks.state(value, name, shape, legend, self.dtype)
        return arr if batched else arr[:, None, :]

    def _check_memory(self, T: int, B: int) -> None:
        # Outputs, concatenations and the training caches: a generous per-step estimate.
        gh = GATES[self.cell] * self.hidden_size
        per_step = self.num_directions * (3 * gh + 4 * self.hidden_size + 3 * self.output_size)
        _checks.fits_in_memory(T * B * self.num_layers * per_step, self.dtype,
                               f"{type(self).__name__} forward over T={T}, B={B}")

    def _to_user_layout(self, y: np.ndarray, batched: bool) -> np.ndarray:
        if not batched:
            return y[:, 0, :]
        return np.ascontiguousarray(y.transpose(1, 0, 2)) if self.batch_first else y

    @staticmethod
    def _state_out(state: np.ndarray, batched: bool) -> np.ndarray:
        return state if batched else state[:, 0, :]

    # -- streaming -----------------------------------------------------------------------------

    def _step(self, x: Any, h: Any, c: Any):
        """One time step of every layer for streaming inference (no cache, no dropout)."""
        if self.bidirectional:
            raise ValueError(f"{type(self).__name__}.step streams forward in time; a bidirectional "
                             "layer needs the whole sequence: call the layer on it instead")
        is_lstm = self.cell == "lstm"
        # Streaming calls are a few microseconds of native work: when the arrays are already
        # what the kernel takes (the usual loop feeding back the returned state), hand them over
        # as they are; the kernel checks them and anything else takes the general path below.
        # After the first such step, `step` itself takes this path through `_step_packing`.
        if (not self.training and self.num_layers == 1 and _backend.native_active()
                and type(h) is np.ndarray and h.ndim == 3
                and (not is_lstm or (type(c) is np.ndarray and c.ndim == 3))):
            try:
                packed = self._packed(0, self.cell, self._layer0_arrays)
                h_n, c_n = _core.layer_step(x, h, c if is_lstm else None, packed)
                self._step_packing = packed
                return h_n[0], h_n, c_n
            except (TypeError, ValueError):
                pass  # converted, checked (with a clear message) or repacked below
        xt, batched = _checks.step_input(x, self.input_size, self.dtype)
        B = xt.shape[1]
        h = self._initial_state(h, "h", B, self.output_size, batched)
        c = self._initial_state(c, "c", B, self.hidden_size, batched) if is_lstm else None
        if B == 0:
            return np.zeros((0, self.output_size), self.dtype), h.copy(), (c.copy() if is_lstm else None)
        ops = _backend.ops()
        layer_input = xt[0]
        hs, cs = [], []
        for layer in range(self.num_layers):
            h_new, c_new = self._run_packed(
                layer, self.cell, lambda layer=layer: self._arrays(self._params, layer, 0),
                lambda packed, x=layer_input, layer=layer: ops.layer_step(
                    x, h[layer], c[layer] if is_lstm else None, packed))
            hs.append(h_new)
            cs.append(c_new)
            layer_input = h_new
        h_n = hs[0][None] if len(hs) == 1 else np.stack(hs)
        c_n = (cs[0][None] if len(cs) == 1 else np.stack(cs)) if is_lstm else None
        y = layer_input if batched else layer_input[0]
        return y, self._state_out(h_n, batched), (self._state_out(c_n, batched) if is_lstm else None)

    # -- backward ------------------------------------------------------------------------------

    def _backward(self, dy: Any, dh_n: Any, dc_n: Any):
        tape = self._take_tape()
        is_lstm = self.cell == "lstm"
        T, B, P = tape.T, tape.B, self.output_size
        dy_tm = self._output_grad(dy, tape)
        dh_n = self._initial_state(dh_n, "dh_n", B, P, tape.batched)
        dc_n = self._initial_state(dc_n, "dc_n", B, self.hidden_size, tape.batched) if is_lstm else None

        if T == 0 or B == 0:
            dx = np.zeros((T, B, self.input_size), self.dtype)
            dh0, dc0 = dh_n.copy(), (dc_n.copy() if is_lstm else None)
        else:
            dx, dh0, dc0 = self._backprop_layers(tape, dy_tm, dh_n, dc_n)
        dx = self._to_user_layout(dx, tape.batched)
        return dx, self._state_out(dh0, tape.batched), (
            self._state_out(dc0, tape.batched) if is_lstm else None)

    def _backprop_layers(self, tape: Tape, d_output, dh_n, dc_n):
        ops = _backend.ops()
        D, P = self.num_directions, self.output_size
        dh0 = np.empty_like(dh_n)
        dc0 = np.empty_like(dc_n) if dc_n is not None else None
        for layer in reversed(range(self.num_layers)):
            d_input = None
            for direction in range(D):
                k = layer * D + direction
                dy_k = d_output
                if d_output is not None and D == 2:
                    dy_k = np.ascontiguousarray(d_output[:, :, direction * P:(direction + 1) * P])
                w_ih, w_hh, _, _, w_hr, w_peep = self._arrays(self._params, layer, direction)
                *grads, dw_peep = self._arrays(self._grads, layer, direction)
                dx, dh, dc = ops.layer_backward(
                    self.cell, tape.caches[k], dy_k, dh_n[k], None if dc_n is None else dc_n[k],
                    w_ih, w_hh, w_hr, *grads, w_peep=w_peep, dw_peep=dw_peep)
                dh0[k] = dh
                if dc0 is not None:
                    dc0[k] = dc
                d_input = dx if d_input is None else d_input + dx
            if layer > 0 and tape.masks[layer - 1] is not None:
                with np.errstate(invalid="ignore"):
                    d_input = d_input * tape.masks[layer - 1]
            d_output = d_input
        return d_output, dh0, dc0

    def _output_grad(self, dy: Any, tape: Tape) -> np.ndarray | None:
        if dy is None:
            return None
        width = self.num_directions * self.output_size
        arr = _checks.float_array(dy, "dy", self.dtype)
        if not tape.batched:
            _checks.expect_shape(arr, "dy", (tape.T, width), "(T, D*H_out) like y")
            return arr[:, None, :]
        if self.batch_first:
            _checks.expect_shape(arr, "dy", (tape.B, tape.T, width), "(B, T, D*H_out) like y")
            return np.ascontiguousarray(arr.transpose(1, 0, 2))
        _checks.expect_shape(arr, "dy", (tape.T, tape.B, width), "(T, B, D*H_out) like y")
        return arr

    def _drop_caches(self) -> None:
        self._tape = None

    # -- presentation and conversion -------------------------------------------------------------

    def _extra_repr(self) -> list[str]:
        return []

    def __repr__(self) -> str:
        parts = [str(self.input_size), str(self.hidden_size)]
        if self.num_layers != 1:
            parts.append(f"num_layers={self.num_layers}")
        parts += self._extra_repr()
        for name, default in (("bias", True), ("batch_first", False), ("dropout", 0.0),
                              ("bidirectional", False)):
            if getattr(self, name) != default:
                parts.append(f"{name}={getattr(self, name)}")
        if self.proj_size:
            parts.append(f"proj_size={self.proj_size}")
        if self.peepholes:
            parts.append("peepholes=True")
        parts.append(f"dtype={self.dtype.name}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def to_torch(self) -> Any:
        """The equivalent ``torch.nn`` layer with the same weights (see :mod:`pyrnn.torch_convert`)."""
        from .torch_convert import to_torch

        return to_torch(self)

    @staticmethod
    def _torch_layer_kwargs(module: Any) -> dict[str, Any]:
        return dict(input_size=module.input_size, hidden_size=module.hidden_size,
                    num_layers=module.num_layers, bias=module.bias, batch_first=module.batch_first,
                    dropout=float(module.dropout), bidirectional=module.bidirectional)


def _expect_torch_type(module: Any, class_name: str) -> None:
    import torch  # only ever imported by from_torch

    expected = getattr(torch.nn, class_name)
    if not isinstance(module, expected):
        raise TypeError(f"from_torch expects a torch.nn.{class_name}, got {type(module).__name__}")


class _SingleStateLayer(_RecurrentLayer):
    """The call, backward and step of layers whose state is one array (RNN, GRU)."""

    def __call__(self, x: Any, h0: Any = None, lengths: Any = None):
        y, h_n, _ = self._forward(x, h0, None, lengths)
        return y, h_n

    def backward(self, dy: Any, dh_n: Any = None):
        """BPTT through the last training-mode forward: returns ``(dx, dh0)``."""
        dx, dh0, _ = self._backward(dy, dh_n, None)
        return dx, dh0

    def step(self, x_t: Any, h: Any = None):
        """One time step for streaming inference: ``y_t, h = layer.step(x_t, h)`` with ``x_t``
        ``(B, I)`` or ``(I,)`` and ``h`` shaped like ``h_n`` (None: zeros). Keeps no cache and
        applies no dropout, in either mode; equals the full forward run one step at a time."""
        packed = self._step_packing  # the usual streaming loop: see _step
        if packed is not None and _backend.native_active() and type(h) is np.ndarray and h.ndim == 3:
            try:
                h_n, _ = _core.layer_step(x_t, h, None, packed)
                return h_n[0], h_n
            except (TypeError, ValueError):
                pass
        y, h_n, _ = self._step(x_t, h, None)
        return y, h_n


class RNN(_SingleStateLayer):
    """Elman RNN, h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh) with act tanh or relu.

    ``y, h_n = rnn(x, h0=None, lengths=None)``; ``dx, dh0 = rnn.backward(dy, dh_n=None)``.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, dtype: Any = np.float32,
                 seed: int | None = None) -> None:
        self.nonlinearity = _checks.choice(nonlinearity, "nonlinearity", ("tanh", "relu"))
        super().__init__("rnn_" + nonlinearity, input_size, hidden_size, num_layers, bias,
                         batch_first, dropout, bidirectional, 0, dtype, seed)

    def _extra_repr(self) -> list[str]:
        return [] if self.nonlinearity == "tanh" else [f"nonlinearity={self.nonlinearity!r}"]

    @classmethod
    def from_torch(cls, module: Any) -> RNN:
        """The equivalent layer of a ``torch.nn.RNN`` (same weights and configuration)."""
        _expect_torch_type(module, "RNN")
        layer = cls(nonlinearity=module.nonlinearity, dtype=cls._dtype_of_torch(module),
                    **cls._torch_layer_kwargs(module))
        layer._load_from_torch(module)
        return layer


class LSTM(_RecurrentLayer):
    """Long short-term memory, gates (i, f, g, o) as PyTorch, optional projection ``proj_size``.

    ``peepholes=True`` adds ``weight_peephole_l{k}`` ``(3*H,)``: the connections p_i, p_f, p_o of
    the cell state to the gates (ONNX's ``P``): i and f see c_{t-1}, o sees c_t.

    ``y, (h_n, c_n) = lstm(x, (h0, c0), lengths=None)``;
    ``dx, (dh0, dc0) = lstm.backward(dy, (dh_n, dc_n))``.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, peepholes: bool = False, dtype: Any = np.float32,
                 seed: int | None = None) -> None:
        super().__init__("lstm", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, proj_size, dtype, seed, peepholes)

    def __call__(self, x: Any, hx: Any = None, lengths: Any = None):
        h0, c0 = _checks.pair(hx, "hx", ("h0", "c0"))
        y, h_n, c_n = self._forward(x, h0, c0, lengths)
        return y, (h_n, c_n)

    def backward(self, dy: Any, dstate: Any = None):
        """BPTT through the last training-mode forward: returns ``(dx, (dh0, dc0))``."""
        dh_n, dc_n = _checks.pair(dstate, "dstate", ("dh_n", "dc_n"))
        dx, dh0, dc0 = self._backward(dy, dh_n, dc_n)
        return dx, (dh0, dc0)

    def step(self, x_t: Any, state: Any = None):
        """One time step for streaming inference: ``y_t, (h, c) = lstm.step(x_t, (h, c))`` with
        ``x_t`` ``(B, I)`` or ``(I,)`` and states shaped like ``(h_n, c_n)`` (None: zeros). Keeps
        no cache and applies no dropout, in either mode; equals the full forward one step at a time."""
        if type(state) is tuple and len(state) == 2:
            h, c = state
            packed = self._step_packing  # the usual streaming loop: see _step
            if (packed is not None and _backend.native_active() and type(h) is np.ndarray
                    and h.ndim == 3 and type(c) is np.ndarray and c.ndim == 3):
                try:
                    h_n, c_n = _core.layer_step(x_t, h, c, packed)
                    return h_n[0], (h_n, c_n)
                except (TypeError, ValueError):
                    pass
        else:
            h, c = _checks.pair(state, "state", ("h", "c"))
        y, h_n, c_n = self._step(x_t, h, c)
        return y, (h_n, c_n)

    @classmethod
    def from_torch(cls, module: Any) -> LSTM:
        """The equivalent layer of a ``torch.nn.LSTM`` (same weights and configuration)."""
        _expect_torch_type(module, "LSTM")
        layer = cls(proj_size=module.proj_size, dtype=cls._dtype_of_torch(module),
                    **cls._torch_layer_kwargs(module))
        layer._load_from_torch(module)
        return layer


class GRU(_SingleStateLayer):
    """Gated recurrent unit, gates (r, z, n) as PyTorch.

    ``reset_after=True`` (PyTorch, cuDNN): n = tanh(W_in x + b_in + r * (W_hn h + b_hn)).
    ``reset_after=False`` (original GRU, ONNX linear_before_reset=0, Keras reset_after=False):
    n = tanh(W_in x + b_in + W_hn (r * h) + b_hn).
    ``y, h_n = gru(x, h0=None, lengths=None)``; ``dx, dh0 = gru.backward(dy, dh_n=None)``.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 reset_after: bool = True, dtype: Any = np.float32, seed: int | None = None) -> None:
        self.reset_after = bool(reset_after)
        super().__init__("gru" if self.reset_after else "gru_reset_before", input_size, hidden_size,
                         num_layers, bias, batch_first, dropout, bidirectional, 0, dtype, seed)

    def _extra_repr(self) -> list[str]:
        return [] if self.reset_after else ["reset_after=False"]

    @classmethod
    def from_torch(cls, module: Any) -> GRU:
        """The equivalent layer of a ``torch.nn.GRU`` (which is always ``reset_after=True``)."""
        _expect_torch_type(module, "GRU")
        layer = cls(dtype=cls._dtype_of_torch(module), **cls._torch_layer_kwargs(module))
        layer._load_from_torch(module)
        return layer

