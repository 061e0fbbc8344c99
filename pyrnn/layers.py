"""Multi-layer, optionally bidirectional RNN, LSTM and GRU layers with PyTorch's API and shapes.

Each layer and direction is one call of the backend's ``layer_forward`` over the whole
sequence (see ``pyrnn._backend``); this module only stacks layers, concatenates directions,
applies inter-layer dropout and converts between the user's layout and time-major arrays.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import _backend, _checks, _core
from ._module import GATES
from ._recurrent import PackedKernels, RecurrentLayer


class _CoreLayer(PackedKernels, RecurrentLayer):
    """Shared implementation of RNN, LSTM and GRU (use those classes)."""

    def __init__(self, cell: str, input_size: int, hidden_size: int, num_layers: int, bias: bool,
                 batch_first: bool, dropout: float, bidirectional: bool, proj_size: int,
                 dtype: Any, seed: int | None, peepholes: bool = False) -> None:
        self.cell = cell
        self.peepholes = bool(peepholes)
        is_lstm = cell == "lstm"
        self.state_names = ("h0", "c0") if is_lstm else ("h0",)
        self.grad_state_names = ("dh_n", "dc_n") if is_lstm else ("dh_n",)
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         proj_size, dtype, seed)
        # Parameter names of each (layer, direction) in the kernels' argument order ("" where
        # the layer has no such parameter), so hot paths look them up without formatting.
        kinds = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr", "weight_peephole")
        self._names = [tuple(n if n in self._params else "" for n in
                             (kind + self._suffix(layer, direction) for kind in kinds))
                       for layer in range(self.num_layers) for direction in range(self.num_directions)]

    # -- structure -----------------------------------------------------------------------------

    @staticmethod
    def _suffix(layer: int, direction: int) -> str:
        return f"_l{layer}" + ("_reverse" if direction else "")

    def _layer_shapes(self, layer: int, layer_input: int) -> dict[str, tuple[int, ...]]:
        gh = GATES[self.cell] * self.hidden_size
        shapes: dict[str, tuple[int, ...]] = {}
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

    def _state_shapes(self):
        stack = self.num_layers * self.num_directions
        return ((stack, (self.output_size,), "(D*num_layers, B, H_out)"),
                (stack, (self.hidden_size,), "(D*num_layers, B, H)"))[:len(self.state_names)]

    def _arrays(self, store: dict[str, np.ndarray], layer: int, direction: int):
        """(w_ih, w_hh, b_ih, b_hh, w_hr, w_peep) of one layer and direction from params or grads."""
        return tuple(store.get(name) for name in self._names[layer * self.num_directions + direction])

    def _memory_estimate(self, T: int, B: int) -> int:
        # Outputs, concatenations and the training caches: a generous per-step estimate.
        gh = GATES[self.cell] * self.hidden_size
        per_step = self.num_directions * (3 * gh + 4 * self.hidden_size + 3 * self.output_size)
        return T * B * self.num_layers * per_step

    # -- one layer, both directions ------------------------------------------------------------

    def _run_layer(self, layer, x, states, finals, lengths, training, caches, outputs=True):
        ops = _backend.ops()
        h0, c0 = states[0], (states[1] if len(states) > 1 else None)
        ys = []
        for direction in range(self.num_directions):
            k = layer * self.num_directions + direction
            arrays = self._arrays(self._params, layer, direction)
            # Training packs per call (the weights change every step); eval reuses a packing.
            packed = None if training else self._packed(k, self.cell, lambda: arrays)
            y, h, c, cache = ops.layer_forward(self.cell, x, h0[k], None if c0 is None else c0[k], *arrays[:5],
                                               lengths, direction == 1, training, packed, w_peep=arrays[5],
                                               outputs=outputs)
            ys.append(y)
            finals[0][k] = h
            if c0 is not None:
                finals[1][k] = c
            caches.append(cache)
        if not outputs:
            return None
        return ys[0] if len(ys) == 1 else np.concatenate(ys, axis=2)

    def _backprop_layer(self, layer, caches, dy, dfinal, d0, input_grad):
        ops = _backend.ops()
        D, P = self.num_directions, self.output_size
        dh_n, dc_n = dfinal[0], (dfinal[1] if len(dfinal) > 1 else None)
        d_input = None
        for direction in range(D):
            k = layer * D + direction
            dy_k = dy
            if dy is not None and D == 2:
                dy_k = np.ascontiguousarray(dy[:, :, direction * P:(direction + 1) * P])
            w_ih, w_hh, _, _, w_hr, w_peep = self._arrays(self._params, layer, direction)
            *grads, dw_peep = self._arrays(self._grads, layer, direction)
            dx, dh, dc = ops.layer_backward(
                self.cell, caches[k], dy_k, dh_n[k], None if dc_n is None else dc_n[k],
                w_ih, w_hh, w_hr, *grads, w_peep=w_peep, dw_peep=dw_peep, input_grad=input_grad)
            d0[0][k] = dh
            if dc_n is not None:
                d0[1][k] = dc
            if input_grad:
                d_input = dx if d_input is None else d_input + dx
        return d_input

    # -- streaming -----------------------------------------------------------------------------

    def _checked_step(self, x: Any, h: Any, c: Any):
        """One time step of every layer, arguments converted and checked (see ``_stream_step``):
        ``(h_n, c_n or None)``."""
        if self.bidirectional:
            raise ValueError(f"{type(self).__name__}.step streams forward in time; a bidirectional "
                             "layer needs the whole sequence: call the layer on it instead")
        is_lstm = self.cell == "lstm"
        xt, batched = _checks.step_input(x, self.input_size, self.dtype)
        B = xt.shape[1]
        h, *rest = self._initial_states([h, c], B, batched, ("h", "c")[:len(self.state_names)])
        c = rest[0] if is_lstm else None
        if B == 0:
            return self._state_out(h.copy(), batched), (self._state_out(c.copy(), batched) if is_lstm else None)
        ops = _backend.ops()
        layer_input = xt[0]
        hs: list[np.ndarray] = []
        cs: list[np.ndarray] = []
        for layer in range(self.num_layers):
            packed = self._packed(layer, self.cell, lambda layer=layer: self._arrays(self._params, layer, 0))
            h_new, c_new = ops.layer_step(layer_input, h[layer], c[layer] if is_lstm else None, packed)
            hs.append(h_new)
            cs.append(c_new)
            layer_input = h_new
        if self.num_layers == 1 and not self.training and ops is _core:
            self._step_packing = self._pack_cache[0]
        h_n = hs[0][None] if len(hs) == 1 else np.stack(hs)
        c_n = (cs[0][None] if len(cs) == 1 else np.stack(cs)) if is_lstm else None
        return self._state_out(h_n, batched), (self._state_out(c_n, batched) if is_lstm else None)

    # -- conversion ----------------------------------------------------------------------------

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


class _SingleStateLayer(_CoreLayer):
    """The call, backward and step of layers whose state is one array (RNN, GRU)."""

    def __call__(self, x: Any, h0: Any = None, lengths: Any = None):
        y, (h_n,) = self._forward(x, [h0], lengths)
        return y, h_n

    def backward(self, dy: Any, dh_n: Any = None, input_grad: bool = True):
        """BPTT through the last training-mode forward: returns ``(dx, dh0)``; dx is None with
        ``input_grad=False``, which skips the product that computes it (for a model's data,
        whose gradient nothing reads)."""
        dx, (dh0,) = self._backward(dy, [dh_n], input_grad)
        return dx, dh0

    def step(self, x_t: Any, h: Any = None):
        """One time step for streaming inference: ``y_t, h = layer.step(x_t, h)`` with ``x_t``
        ``(B, I)`` or ``(I,)`` and ``h`` shaped like ``h_n`` (None: zeros). Keeps no cache and
        applies no dropout, in either mode; equals the full forward run one step at a time.
        Eval mode is the fast path (training mode warns once, see ``PerformanceWarning``)."""
        h_n, _ = self._stream_step(x_t, h, None)
        if self.training:
            self._warn_if_training_step()
        return h_n[-1], h_n


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

    def _options(self) -> list[str]:
        return [] if self.nonlinearity == "tanh" else [f"nonlinearity={self.nonlinearity!r}"]

    @classmethod
    def from_torch(cls, module: Any) -> RNN:
        """The equivalent layer of a ``torch.nn.RNN`` (same weights and configuration)."""
        _expect_torch_type(module, "RNN")
        layer = cls(nonlinearity=module.nonlinearity, dtype=cls._dtype_of_torch(module),
                    **cls._torch_layer_kwargs(module))
        layer._load_from_torch(module)
        return layer


class LSTM(_CoreLayer):
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

    def _options(self) -> list[str]:
        return ["peepholes=True"] if self.peepholes else []

    def __call__(self, x: Any, hx: Any = None, lengths: Any = None):
        h0, c0 = _checks.pair(hx, "hx", ("h0", "c0"))
        y, (h_n, c_n) = self._forward(x, [h0, c0], lengths)
        return y, (h_n, c_n)

    def backward(self, dy: Any, dstate: Any = None, input_grad: bool = True):
        """BPTT through the last training-mode forward: returns ``(dx, (dh0, dc0))``; dx is None
        with ``input_grad=False``, which skips the product that computes it."""
        dh_n, dc_n = _checks.pair(dstate, "dstate", ("dh_n", "dc_n"))
        dx, (dh0, dc0) = self._backward(dy, [dh_n, dc_n], input_grad)
        return dx, (dh0, dc0)

    def step(self, x_t: Any, state: Any = None):
        """One time step for streaming inference: ``y_t, (h, c) = lstm.step(x_t, (h, c))`` with
        ``x_t`` ``(B, I)`` or ``(I,)`` and states shaped like ``(h_n, c_n)`` (None: zeros). Keeps
        no cache and applies no dropout, in either mode; equals the full forward one step at a time.
        Eval mode is the fast path (training mode warns once, see ``PerformanceWarning``)."""
        h, c = state if type(state) is tuple and len(state) == 2 else _checks.pair(state, "state", ("h", "c"))
        h_n, c_n = self._stream_step(x_t, h, c)
        if self.training:
            self._warn_if_training_step()
        return h_n[-1], (h_n, c_n)

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

    def _options(self) -> list[str]:
        return [] if self.reset_after else ["reset_after=False"]

    @classmethod
    def from_torch(cls, module: Any) -> GRU:
        """The equivalent layer of a ``torch.nn.GRU`` (which is always ``reset_after=True``)."""
        _expect_torch_type(module, "GRU")
        layer = cls(dtype=cls._dtype_of_torch(module), **cls._torch_layer_kwargs(module))
        layer._load_from_torch(module)
        return layer

