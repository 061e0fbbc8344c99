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
from ._module import GATES, ParameterModule


class _Cell(ParameterModule):
    """Shared implementation of the cells (use RNNCell, LSTMCell, GRUCell)."""

    _packs_weights = True

    def __init__(self, cell: str, input_size: int, hidden_size: int, bias: bool, dtype: Any,
                 seed: int | None, peepholes: bool = False) -> None:
        self.cell = cell
        self.peepholes = bool(peepholes)
        self.input_size = _checks.positive_int(input_size, "input_size")
        self.hidden_size = _checks.positive_int(hidden_size, "hidden_size")
        self.bias = bool(bias)
        self.dtype = _checks.layer_dtype(dtype)
        self.seed = seed
        gh = GATES[cell] * self.hidden_size
        shapes: dict[str, tuple[int, ...]] = {"weight_ih": (gh, self.input_size),
                                              "weight_hh": (gh, self.hidden_size)}
        if self.bias:
            shapes["bias_ih"] = (gh,)
            shapes["bias_hh"] = (gh,)
        if self.peepholes:
            shapes["weight_peephole"] = (3 * self.hidden_size,)
        self._create_parameters(shapes, self.hidden_size, np.random.default_rng(seed))
        self._caches: list[tuple[Any, bool]] = []   # (layer_forward cache, batched) per call

    def _weights(self) -> tuple:
        """(w_ih, w_hh, b_ih, b_hh, w_hr, w_peep) as the layer kernels take them."""
        p = self._params
        return (p["weight_ih"], p["weight_hh"], p.get("bias_ih"), p.get("bias_hh"), None,
                p.get("weight_peephole"))

    def _step(self, x: Any, h: Any, c: Any):
        # Streaming inference is a few microseconds of native work: when the arrays are already
        # what the kernel takes (a loop feeding back the returned state), hand them over as they
        # are; the kernel checks them and anything else takes the general path below.
        # After the first such step, only `_step_packing` is looked up. The kernel also takes
        # (1, B, H) states, which are not a cell's: those take the checked path.
        if (not self.training and _backend.native_active() and type(h) is np.ndarray and h.ndim == 2
                and (c is None or (type(c) is np.ndarray and c.ndim == 2))):
            try:
                packed = self._step_packing
                if packed is None:
                    packed = self._packed(0, self.cell, self._weights)
                h_new, c_new = _core.layer_step(x, h, c, packed)
                self._step_packing = packed
                return h_new, c_new
            except (TypeError, ValueError):
                pass  # converted, checked (with a clear message) or repacked below
        xt, batched = _checks.step_input(x, self.input_size, self.dtype)
        B = xt.shape[1]
        shape, legend = ((B, self.hidden_size), "(B, H)") if batched else ((self.hidden_size,), "(H,)")
        h = _checks.state(h, "h", shape, legend, self.dtype).reshape(B, self.hidden_size)
        if self.cell == "lstm":
            c = _checks.state(c, "c", shape, legend, self.dtype).reshape(B, self.hidden_size)
        if self.training and isinstance(x, np.ndarray) and np.may_share_memory(xt, x):
            xt = xt.copy()  # the cache keeps the input: later edits by the caller must not reach it
        if B == 0:
            h_new, c_new, cache = h.copy(), (c.copy() if self.cell == "lstm" else None), None
        elif not self.training:  # streaming inference: the single-step kernel, nothing kept
            ops = _backend.ops()
            h_new, c_new = self._run_packed(0, self.cell, self._weights,
                                            lambda packed: ops.layer_step(xt[0], h, c, packed))
            cache = None
        else:
            *weights, w_peep = self._weights()
            _, h_new, c_new, cache = _backend.ops().layer_forward(
                self.cell, xt, h, c, *weights, None, False, True, None, w_peep=w_peep)
        if self.training:
            self._caches.append((cache, batched, B))
        shape_out = (B, self.hidden_size) if batched else (self.hidden_size,)
        return h_new.reshape(shape_out), (c_new.reshape(shape_out) if c_new is not None else None)

    def _step_backward(self, dh: Any, dc: Any):
        if not self._caches:
            if not self.training:
                raise RuntimeError(
                    f"{type(self).__name__}.backward: the cell is in eval mode, where a call keeps "
                    "no cache for backpropagation; call .train() and run the step again")
            raise RuntimeError(
                f"{type(self).__name__}.backward needs a training-mode call first (each call "
                "supports one backward; none is left)")
        cache, batched, B = self._caches.pop()
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
                None, g["weight_ih"], g["weight_hh"], g.get("bias_ih"), g.get("bias_hh"), None,
                w_peep=self._params.get("weight_peephole"), dw_peep=g.get("weight_peephole"))
        x_shape = (B, self.input_size) if batched else (self.input_size,)
        shape_out = (B, self.hidden_size) if batched else (self.hidden_size,)
        return (dx.reshape(x_shape), dh_prev.reshape(shape_out),
                dc_prev.reshape(shape_out) if dc_prev is not None else None)

    def _drop_caches(self) -> None:
        self._caches.clear()

    def _extra_repr(self) -> list[str]:
        return []

    def __repr__(self) -> str:
        parts = [str(self.input_size), str(self.hidden_size)] + self._extra_repr()
        if not self.bias:
            parts.append("bias=False")
        if self.peepholes:
            parts.append("peepholes=True")
        parts.append(f"dtype={self.dtype.name}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def to_torch(self) -> Any:
        """The equivalent ``torch.nn`` cell with the same weights (see :mod:`pyrnn.torch_convert`)."""
        from .torch_convert import to_torch

        return to_torch(self)

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
        return self._step(x, h, None)[0]

    def backward(self, dh: Any):
        """Backward through the most recent training-mode call: ``(dx, dh_prev)``."""
        dx, dh_prev, _ = self._step_backward(dh, None)
        return dx, dh_prev

    def _extra_repr(self) -> list[str]:
        return [] if self.nonlinearity == "tanh" else [f"nonlinearity={self.nonlinearity!r}"]

    @classmethod
    def from_torch(cls, module: Any) -> RNNCell:
        return cls._from_torch_module(module, "RNNCell", nonlinearity=module.nonlinearity)


class LSTMCell(_Cell):
    """One LSTM step: ``h, c = cell(x_t, (h, c))``; ``dx, (dh_prev, dc_prev) = cell.backward((dh, dc))``.
    ``peepholes=True`` adds ``weight_peephole`` ``(3*H,)`` as for ``pyrnn.LSTM``."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, peepholes: bool = False,
                 dtype: Any = np.float32, seed: int | None = None) -> None:
        super().__init__("lstm", input_size, hidden_size, bias, dtype, seed, peepholes)

    def __call__(self, x: Any, state: Any = None) -> tuple[np.ndarray, np.ndarray]:
        h, c = state if type(state) is tuple and len(state) == 2 else _checks.pair(state, "state", ("h", "c"))
        return self._step(x, h, c)

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
        return self._step(x, h, None)[0]

    def backward(self, dh: Any):
        """Backward through the most recent training-mode call: ``(dx, dh_prev)``."""
        dx, dh_prev, _ = self._step_backward(dh, None)
        return dx, dh_prev

    def _extra_repr(self) -> list[str]:
        return [] if self.reset_after else ["reset_after=False"]

    @classmethod
    def from_torch(cls, module: Any) -> GRUCell:
        return cls._from_torch_module(module, "GRUCell")

