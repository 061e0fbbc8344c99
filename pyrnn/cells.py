"""Single-step cells RNNCell, LSTMCell and GRUCell with PyTorch's API and shapes.

A cell step is a one-step (T = 1) call of the backend's ``layer_forward``, so cells and layers
share the same kernels and numerics.

Backpropagation: each training-mode call keeps its cache on a stack; ``backward`` consumes
the most recent one. So after a single call, ``backward`` goes through that call; after
unrolling ``t = 0..T-1`` by hand, calling ``backward`` T times walks back through the steps
in reverse order (BPTT). ``eval()`` discards kept caches.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import _backend, _checks, _core
from ._module import GATES, Module
from ._recurrent import PackedKernels


class _Cell(PackedKernels, Module):
    """Shared implementation of the cells (use RNNCell, LSTMCell, GRUCell)."""

    _transient = ("_caches",)
    _stacked_state = False

    def __init__(self, cell: str, input_size: int, hidden_size: int, bias: bool, dtype: Any,
                 seed: int | None) -> None:
        Module.__init__(self, dtype)
        self.cell = cell
        self.input_size = _checks.positive_int(input_size, "input_size")
        self.hidden_size = _checks.positive_int(hidden_size, "hidden_size")
        self.bias = bool(bias)
        self.seed = seed
        gh = GATES[cell] * self.hidden_size
        shapes: dict[str, tuple[int, ...]] = {"weight_ih": (gh, self.input_size),
                                              "weight_hh": (gh, self.hidden_size)}
        if self.bias:
            shapes["bias_ih"] = (gh,)
            shapes["bias_hh"] = (gh,)
        self._create_parameters(shapes, self.hidden_size, np.random.default_rng(seed))
        self._caches: list[tuple[Any, bool, int]] = []   # (layer_forward cache, batched, B) per call

    def _weights(self) -> tuple:
        """(w_ih, w_hh, b_ih, b_hh, w_hr) as the layer kernels take them."""
        p = self._params
        return p["weight_ih"], p["weight_hh"], p.get("bias_ih"), p.get("bias_hh"), None

    def _checked_step(self, x: Any, h: Any, c: Any):
        """One step, arguments converted and checked (see ``_stream_step``); in training mode
        its cache is kept for ``backward``. Returns ``(h_new, c_new or None)``."""
        xt, batched = _checks.step_input(x, self.input_size, self.dtype, kept=self.training)
        B = xt.shape[1]
        shape, legend = ((B, self.hidden_size), "(B, H)") if batched else ((self.hidden_size,), "(H,)")
        h = _checks.state(h, "h", shape, legend, self.dtype).reshape(B, self.hidden_size)
        if self.cell == "lstm":
            c = _checks.state(c, "c", shape, legend, self.dtype).reshape(B, self.hidden_size)
        ops = _backend.ops()
        if B == 0:
            h_new, c_new, cache = h.copy(), (c.copy() if self.cell == "lstm" else None), None
        elif not self.training:  # streaming inference: the single-step kernel, nothing kept
            packed = self._packed(0, self.cell, self._weights)
            h_new, c_new = ops.layer_step(xt[0], h, c, packed)
            if ops is _core:
                self._step_packing = packed
            cache = None
        else:
            _, h_new, c_new, cache = ops.layer_forward(self.cell, xt, h, c, *self._weights(), None, False, True, None)
        if self.training:
            self._caches.append((cache, batched, B))
        shape_out = (B, self.hidden_size) if batched else (self.hidden_size,)
        return h_new.reshape(shape_out), (c_new.reshape(shape_out) if c_new is not None else None)

    def _step_backward(self, dh: Any, dc: Any):
        cache, batched, B = self._need_cache(self._caches[-1] if self._caches else None, "call")
        self._caches.pop()
        shape, legend = ((B, self.hidden_size), "(B, H)") if batched else ((self.hidden_size,), "(H,)")
        is_lstm = self.cell == "lstm"
        dh = _checks.state(dh, "dh", shape, legend, self.dtype).reshape(B, self.hidden_size)
        dc = (_checks.state(dc, "dc", shape, legend, self.dtype).reshape(B, self.hidden_size)
              if is_lstm else None)
        if B == 0:
            dx = np.zeros((1, 0, self.input_size), self.dtype)
            dh_prev, dc_prev = dh.copy(), (dc.copy() if is_lstm else None)
        else:
            g = self._grads
            dx, dh_prev, dc_prev = _backend.ops().layer_backward(
                self.cell, cache, None, dh, dc, self._params["weight_ih"], self._params["weight_hh"],
                None, g["weight_ih"], g["weight_hh"], g.get("bias_ih"), g.get("bias_hh"), None)
        x_shape = (B, self.input_size) if batched else (self.input_size,)
        shape_out = (B, self.hidden_size) if batched else (self.hidden_size,)
        return (dx.reshape(x_shape), dh_prev.reshape(shape_out),
                dc_prev.reshape(shape_out) if dc_prev is not None else None)

    def _drop_caches(self) -> None:
        self._caches = []

    def _options(self) -> list[str]:
        return []

    def _extra_repr(self) -> str:
        parts = [str(self.input_size), str(self.hidden_size)] + self._options()
        if not self.bias:
            parts.append("bias=False")
        parts.append(f"dtype={self.dtype.name}")
        return ", ".join(parts)

    @classmethod
    def _from_torch_module(cls, module: Any, class_name: str, **kwargs: Any):
        import torch  # only ever imported by from_torch

        if not isinstance(module, getattr(torch.nn, class_name)):
            raise TypeError(f"from_torch expects a torch.nn.{class_name}, got {type(module).__name__}")
        cell = cls(module.input_size, module.hidden_size, bias=module.bias,
                   dtype=cls._dtype_of_torch(module), **kwargs)
        cell._load_from_torch(module)
        return cell


class RNNCell(_Cell):
    """One Elman RNN step: ``h = cell(x_t, h)``; ``dx, dh_prev = cell.backward(dh)``."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", dtype: Any = np.float32, seed: int | None = None) -> None:
        self.nonlinearity = _checks.choice(nonlinearity, "nonlinearity", ("tanh", "relu"))
        super().__init__("rnn_" + nonlinearity, input_size, hidden_size, bias, dtype, seed)

    def __call__(self, x: Any, h: Any = None) -> np.ndarray:
        return self._stream_step(x, h, None)[0]

    def backward(self, dh: Any):
        """Backward through the most recent training-mode call: ``(dx, dh_prev)``."""
        dx, dh_prev, _ = self._step_backward(dh, None)
        return dx, dh_prev

    def _options(self) -> list[str]:
        return [] if self.nonlinearity == "tanh" else [f"nonlinearity={self.nonlinearity!r}"]

    @classmethod
    def from_torch(cls, module: Any) -> RNNCell:
        return cls._from_torch_module(module, "RNNCell", nonlinearity=module.nonlinearity)


class LSTMCell(_Cell):
    """One LSTM step: ``h, c = cell(x_t, (h, c))``; ``dx, (dh_prev, dc_prev) = cell.backward((dh, dc))``."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 dtype: Any = np.float32, seed: int | None = None) -> None:
        super().__init__("lstm", input_size, hidden_size, bias, dtype, seed)

    def __call__(self, x: Any, state: Any = None) -> tuple[np.ndarray, np.ndarray]:
        h, c = state if type(state) is tuple and len(state) == 2 else _checks.pair(state, "state", ("h", "c"))
        return self._stream_step(x, h, c)

    def backward(self, dstate: Any):
        """Backward through the most recent training-mode call: ``(dx, (dh_prev, dc_prev))``."""
        dh, dc = _checks.pair(dstate, "dstate", ("dh", "dc"))
        dx, dh_prev, dc_prev = self._step_backward(dh, dc)
        return dx, (dh_prev, dc_prev)

    @classmethod
    def from_torch(cls, module: Any) -> LSTMCell:
        return cls._from_torch_module(module, "LSTMCell")


class GRUCell(_Cell):
    """One GRU step: ``h = cell(x_t, h)``; ``dx, dh_prev = cell.backward(dh)``.
    ``reset_after`` as for ``pyrnn.GRU``."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 reset_after: bool = True, dtype: Any = np.float32, seed: int | None = None) -> None:
        self.reset_after = bool(reset_after)
        super().__init__("gru" if self.reset_after else "gru_reset_before", input_size, hidden_size,
                         bias, dtype, seed)

    def __call__(self, x: Any, h: Any = None) -> np.ndarray:
        return self._stream_step(x, h, None)[0]

    def backward(self, dh: Any):
        """Backward through the most recent training-mode call: ``(dx, dh_prev)``."""
        dx, dh_prev, _ = self._step_backward(dh, None)
        return dx, dh_prev

    def _options(self) -> list[str]:
        return [] if self.reset_after else ["reset_after=False"]

    @classmethod
    def from_torch(cls, module: Any) -> GRUCell:
        return cls._from_torch_module(module, "GRUCell")

