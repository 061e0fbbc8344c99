"""xLSTM layers and cells (Beck et al. 2024): sLSTM (scalar memory, exponential gating, memory
mixing within heads) and mLSTM (matrix memory, covariance update), with the core layers'
conventions: time-major (or ``batch_first``) input, unbatched sequences, initial states
(``None`` means zeros), ``lengths``, train/eval, ``backward``, ``grads``, ``zero_grad``,
``parameters``, ``state_dict``/``load_state_dict``, float32/float64 and ``seed``.

Each layer is one native call per layer over the whole sequence (``_core.slstm_forward`` /
``_core.mlstm_forward`` and their backwards); the NumPy reference ``pyrnn.reference_xlstm``
states the maths and replaces the native kernels under ``pyrnn.testing.use_backend("reference")``.

Parameters (per layer ``l``):

* SLSTM: ``weight_ih_l{l}`` (4H, I) with gates i, f, z, o; ``weight_hh_l{l}`` (4H, DH), the
  block-diagonal recurrent matrix stored compactly (row ``g*H + h*DH + j`` holds head h's
  weights of unit j of gate g over the DH units of head h); ``bias_l{l}`` (4H).
* MLSTM: ``weight_ih_l{l}`` (3H + 2NH [+ H], I) with rows q, k, v (H each), i, f (NH each:
  one scalar gate per head) and o (H, with ``output_gate=True``); ``bias_l{l}`` likewise.

States: SLSTM ``(h, c, n, m)``, each (num_layers, B, H); MLSTM ``(C, n, m)``, shaped
(num_layers, B, NH, DH, DH), (num_layers, B, NH, DH), (num_layers, B, NH). Unbatched input
drops the B axis everywhere.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import _backend, _checks, _core, reference_xlstm
from ._module import Module, PerThread
from ._recurrent import RecurrentLayer

__all__ = ["SLSTM", "MLSTM", "SLSTMCell", "MLSTMCell", "xLSTMBlockStack", "from_official"]


def _ops():
    """The module computing the xLSTM kernels: native, or the reference under use_backend."""
    return _core if _backend.name() == "native" else reference_xlstm


def _heads(hidden_size: int, num_heads: Any) -> int:
    nh = _checks.positive_int(num_heads, "num_heads")
    if hidden_size % nh:
        raise ValueError(f"hidden_size = {hidden_size} must be a multiple of num_heads = {nh}")
    return nh


class _XLayer(RecurrentLayer):
    """What SLSTM and MLSTM add to the recurrent-layer base: heads, gate-bias initialisation,
    states as tuples (use those classes)."""

    kind: str
    _y_width_legend = "H"

    def __init__(self, input_size, hidden_size, num_heads, num_layers, bias, batch_first, dropout,
                 dtype, seed) -> None:
        self.num_heads = _heads(_checks.positive_int(hidden_size, "hidden_size"), num_heads)
        self.head_dim = hidden_size // self.num_heads
        self.grad_state_names = tuple("d" + name for name in self.state_names)
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, False, 0, dtype, seed)
        self._init_gate_biases()

    # -- hooks -----------------------------------------------------------------------------------
    def _state_component_shapes(self) -> tuple[tuple[int, ...], ...]:
        """Per-sequence shape of each state component (without the layer and batch axes)."""
        raise NotImplementedError

    def _init_gate_biases(self) -> None:
        pass

    def _state_shapes(self):
        return tuple((self.num_layers, shape, "(num_layers, B, " + ", ".join(map(str, shape)) + ")")
                     for shape in self._state_component_shapes())

    def _state_parts(self, state: Any, name: str) -> list[Any]:
        names = self.state_names if name == "state" else self.grad_state_names
        if state is None:
            return [None] * len(names)
        if isinstance(state, (tuple, list)) and len(state) == len(names):
            return list(state)
        raise TypeError(f"{name} must be None or a tuple ({', '.join(names)}) of arrays or Nones, "
                        f"got {type(state).__name__}"
                        + (f" of length {len(state)}" if isinstance(state, (tuple, list)) else ""))

    # -- forward and backward --------------------------------------------------------------------
    def __call__(self, x: Any, state: Any = None, lengths: Any = None):
        y, finals = self._forward(x, self._state_parts(state, "state"), lengths)
        return y, tuple(finals)

    def backward(self, dy: Any, dstate: Any = None, input_grad: bool = True):
        """BPTT through the last training-mode forward: ``(dx, initial-state gradients)``; dx is
        None with ``input_grad=False``."""
        dx, d0 = self._backward(dy, self._state_parts(dstate, "dstate"), input_grad)
        return dx, tuple(d0)

    def _run_layer(self, layer, x, states, finals, lengths, training, caches, outputs=True):
        y, *new_states, cache = self._layer_forward(_ops(), layer, x, [s[layer] for s in states], lengths,
                                                    training)
        for f, s in zip(finals, new_states):
            f[layer] = s
        caches.append(cache)
        return y

    def _backprop_layer(self, layer, caches, dy, dfinal, d0, input_grad):
        dx, *dstates = self._layer_backward(_ops(), layer, caches[layer], dy, [d[layer] for d in dfinal])
        for acc, s in zip(d0, dstates):
            acc[layer] = s
        return dx

    def _memory_estimate(self, T: int, B: int) -> int:
        return T * B * self.num_layers * 16 * self.hidden_size

    def _shape_options(self) -> list[str]:
        return [f"num_heads={self.num_heads}"]


class SLSTM(_XLayer):
    """sLSTM layers: scalar memory with exponential input gate, sigmoid (or exponential)
    forget gate, normaliser and stabiliser state, recurrent matrix block-diagonal over heads.

    ``y, (h_n, c_n, n_n, m_n) = slstm(x, state=None, lengths=None)``;
    ``dx, (dh0, dc0, dn0, dm0) = slstm.backward(dy, dstate=None)``.
    ``forget_gate``: "sigmoid" (default; log f = logsigmoid(f~)) or "exp" (log f = f~).
    ``input_projection``: "dense" (default; ``weight_ih`` (4H, I): every gate sees the whole
    input) or "headwise" (``weight_ih`` (4H, I/num_heads), rows laid out as ``weight_hh``: head
    h's gates see only the h-th of num_heads equal slices of the input, as the official
    package's headwise gate projections; num_heads times fewer weights and FLOPs).
    The forget-gate biases start at linspace(3, 6) per head (an open forget gate, as the
    official package's "small_init"); everything else as the core layers, U(+-1/sqrt(H)).
    """

    kind = "slstm"
    state_names = ("h", "c", "n", "m")

    def __init__(self, input_size: int, hidden_size: int, num_heads: int = 4, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 forget_gate: str = "sigmoid", input_projection: str = "dense", dtype: Any = np.float32,
                 seed: int | None = None) -> None:
        self.forget_gate = _checks.choice(forget_gate, "forget_gate", ("sigmoid", "exp"))
        self.input_projection = _checks.choice(input_projection, "input_projection", ("dense", "headwise"))
        super().__init__(input_size, hidden_size, num_heads, num_layers, bias, batch_first, dropout,
                         dtype, seed)

    @property
    def headwise(self) -> bool:
        return self.input_projection == "headwise"

    def _layer_shapes(self, layer, layer_input):
        H, NH = self.hidden_size, self.num_heads
        if self.headwise and layer_input % NH != 0:
            raise ValueError(f"input_projection='headwise' splits the input among the heads: input_size "
                             f"{layer_input} must be a multiple of num_heads = {NH}")
        columns = layer_input // NH if self.headwise else layer_input
        shapes = {f"weight_ih_l{layer}": (4 * H, columns), f"weight_hh_l{layer}": (4 * H, self.head_dim)}
        if self.bias:
            shapes[f"bias_l{layer}"] = (4 * H,)
        return shapes

    def _state_component_shapes(self):
        return ((self.hidden_size,),) * 4

    def _init_gate_biases(self):
        if self.bias and self.forget_gate == "sigmoid":
            H = self.hidden_size
            for layer in range(self.num_layers):
                self._params[f"bias_l{layer}"][H:2 * H] = np.tile(
                    np.linspace(3.0, 6.0, self.head_dim), self.num_heads)

    def _layer_forward(self, ops, layer, x, states, lengths, training):
        p = self._params
        return ops.slstm_forward(x, *states, p[f"weight_ih_l{layer}"], p[f"weight_hh_l{layer}"],
                                 p.get(f"bias_l{layer}"), self.num_heads, self.forget_gate == "exp",
                                 self.headwise, lengths, training)

    def _layer_backward(self, ops, layer, cache, dy, dstates):
        p, g = self._params, self._grads
        return ops.slstm_backward(cache, dy, *dstates, p[f"weight_ih_l{layer}"], p[f"weight_hh_l{layer}"],
                                  g[f"weight_ih_l{layer}"], g[f"weight_hh_l{layer}"], g.get(f"bias_l{layer}"))

    def _options(self):
        return ([] if self.forget_gate == "sigmoid" else ["forget_gate='exp'"]) + (
            ["input_projection='headwise'"] if self.headwise else [])


class MLSTM(_XLayer):
    """mLSTM layers: per-head matrix memory C (DH x DH) with covariance update, scalar
    exponential input and sigmoid forget gates per head, no recurrent weights.

    ``y, (C_n, n_n, m_n) = mlstm(x, state=None, lengths=None)``;
    ``dx, (dC0, dn0, dm0) = mlstm.backward(dy, dstate=None)``.
    ``output_gate``: h = sigmoid(o~) * h~ (default) or h = h~. ``eps`` is added to the
    denominator max(|n.q|, exp(-m)) as in the official package (0 gives the paper's formula).
    Forget-gate biases start at linspace(3, 6) over the heads (as the official package).
    """

    kind = "mlstm"
    state_names = ("C", "n", "m")

    def __init__(self, input_size: int, hidden_size: int, num_heads: int = 4, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 output_gate: bool = True, eps: float = 1e-6, dtype: Any = np.float32,
                 seed: int | None = None) -> None:
        self.output_gate = bool(output_gate)
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps >= 0:
            raise ValueError(f"eps must be a number >= 0, got {eps!r}")
        self.eps = float(eps)
        super().__init__(input_size, hidden_size, num_heads, num_layers, bias, batch_first, dropout,
                         dtype, seed)

    @property
    def rows(self) -> int:
        return reference_xlstm.mlstm_rows(self.hidden_size, self.num_heads, self.output_gate)

    def _layer_shapes(self, layer, layer_input):
        shapes = {f"weight_ih_l{layer}": (self.rows, layer_input)}
        if self.bias:
            shapes[f"bias_l{layer}"] = (self.rows,)
        return shapes

    def _state_component_shapes(self):
        NH, DH = self.num_heads, self.head_dim
        return ((NH, DH, DH), (NH, DH), (NH,))

    def _init_gate_biases(self):
        if self.bias:
            H, NH = self.hidden_size, self.num_heads
            for layer in range(self.num_layers):
                self._params[f"bias_l{layer}"][3 * H + NH:3 * H + 2 * NH] = np.linspace(3.0, 6.0, NH)

    def _memory_estimate(self, T, B):
        return T * B * self.num_layers * 2 * (self.rows + self.hidden_size) + \
            B * self.num_layers * self.num_heads * self.head_dim ** 2 * (T // 16 + 4)

    def _layer_forward(self, ops, layer, x, states, lengths, training):
        p = self._params
        return ops.mlstm_forward(x, *states, p[f"weight_ih_l{layer}"], p.get(f"bias_l{layer}"),
                                 self.num_heads, self.eps, self.output_gate, lengths, training)

    def _layer_backward(self, ops, layer, cache, dy, dstates):
        p, g = self._params, self._grads
        return ops.mlstm_backward(cache, dy, *dstates, p[f"weight_ih_l{layer}"], g[f"weight_ih_l{layer}"],
                                  g.get(f"bias_l{layer}"))

    def _options(self):
        out = [] if self.output_gate else ["output_gate=False"]
        if self.eps != 1e-6:
            out.append(f"eps={self.eps}")
        return out


# ---------------------------------------------------------------------------------------------
# cells: one step, the layers' kernels with T = 1


class _XCell(Module):
    """One step of a one-layer SLSTM/MLSTM; parameters named without the ``_l0`` suffix.

    The cell runs a private one-layer layer whose parameter and gradient arrays it shares
    (the cell's ``weight_ih`` is the layer's ``weight_ih_l0``). Each training-mode call keeps
    its tape on a stack; ``backward`` consumes the latest."""

    _layer_class: type
    _caches = PerThread(list)     # (tape, batched) of this thread's training-mode calls, newest last
    # The configuration the cell shows, as the layer's.
    _config = ("input_size", "hidden_size", "num_heads", "head_dim", "bias", "seed", "kind", "state_names")

    def __init__(self, **kwargs) -> None:
        layer = self._layer_class(num_layers=1, **kwargs)
        Module.__init__(self, layer.dtype)
        self._layer = layer
        for name in self._config:
            setattr(self, name, getattr(layer, name))
        for name in layer._params:
            self._params[name[:-len("_l0")]] = layer._params[name]
            self._grads[name[:-len("_l0")]] = layer._grads[name]

    def _mode_changed(self) -> None:
        self._layer.train(self.training)

    def _drop_caches(self) -> None:
        self._caches = []

    def _step(self, x: Any, state: Any):
        layer = self._layer
        arr = _checks.float_array(x, "x", layer.dtype)
        if arr.ndim not in (1, 2) or arr.shape[-1] != layer.input_size:
            raise ValueError(f"x: expected shape (B, I) or unbatched (I,) with I = input_size = "
                             f"{layer.input_size}, got shape {_checks.shape_str(arr.shape)}")
        batched = arr.ndim == 2
        if state is not None:
            if not isinstance(state, (tuple, list)) or len(state) != len(layer.state_names):
                raise TypeError(f"state must be None or a tuple ({', '.join(layer.state_names)})")
            state = tuple(None if s is None else np.asarray(_checks.float_array(s, n, layer.dtype))[None]
                          for s, n in zip(state, layer.state_names))
        out, new_state = layer(arr[None], state)  # a sequence of one step
        if layer.training:
            self._caches.append((layer._tape, batched))
            layer._tape = None
        return out[0], tuple(s[0] for s in new_state)

    def _step_backward(self, dh: Any, dstate: Any):
        layer = self._layer
        tape, batched = self._need_cache(self._caches[-1] if self._caches else None, "call")
        self._caches.pop()
        layer._tape = tape
        dy = None if dh is None else _checks.float_array(dh, "dh", layer.dtype)[None]
        if dstate is not None:
            if not isinstance(dstate, (tuple, list)) or len(dstate) != len(layer.state_names):
                raise TypeError(f"dstate must be None or a tuple ({', '.join(layer.state_names)})")
            dstate = tuple(None if s is None else _checks.float_array(s, "d" + n, layer.dtype)[None]
                           for s, n in zip(dstate, layer.state_names))
        dx, d0 = layer.backward(dy, dstate)
        return dx[0], tuple(d[0] for d in d0)

    def _extra_repr(self) -> str:
        return self._layer._extra_repr()


class SLSTMCell(_XCell):
    """One sLSTM step: ``h, c, n, m = cell(x_t, (h, c, n, m))`` (state None means zeros);
    ``dx, (dh, dc, dn, dm) = cell.backward((dh, dc, dn, dm))`` through the latest call."""

    _layer_class = SLSTM
    _config = _XCell._config + ("forget_gate", "input_projection", "headwise")

    def __init__(self, input_size: int, hidden_size: int, num_heads: int = 4, bias: bool = True,
                 forget_gate: str = "sigmoid", input_projection: str = "dense", dtype: Any = np.float32,
                 seed: int | None = None) -> None:
        super().__init__(input_size=input_size, hidden_size=hidden_size, num_heads=num_heads, bias=bias,
                         forget_gate=forget_gate, input_projection=input_projection, dtype=dtype, seed=seed)

    def __call__(self, x: Any, state: Any = None):
        _, new_state = self._step(x, state)
        return new_state

    def backward(self, dstate: Any):
        """``(dx, (dh_prev, dc_prev, dn_prev, dm_prev))`` for the gradient of the new state."""
        if dstate is not None and (not isinstance(dstate, (tuple, list)) or len(dstate) != 4):
            raise TypeError("dstate must be None or a tuple (dh, dc, dn, dm)")
        return self._step_backward(None, dstate)


class MLSTMCell(_XCell):
    """One mLSTM step: ``h, (C, n, m) = cell(x_t, (C, n, m))`` (state None means zeros);
    ``dx, (dC, dn, dm) = cell.backward(dh, (dC, dn, dm))`` through the latest call."""

    _layer_class = MLSTM
    _config = _XCell._config + ("output_gate", "eps", "rows")

    def __init__(self, input_size: int, hidden_size: int, num_heads: int = 4, bias: bool = True,
                 output_gate: bool = True, eps: float = 1e-6, dtype: Any = np.float32,
                 seed: int | None = None) -> None:
        super().__init__(input_size=input_size, hidden_size=hidden_size, num_heads=num_heads, bias=bias,
                         output_gate=output_gate, eps=eps, dtype=dtype, seed=seed)

    def __call__(self, x: Any, state: Any = None):
        return self._step(x, state)

    def backward(self, dh: Any, dstate: Any = None):
        return self._step_backward(dh, dstate)


from .xlstm_blocks import xLSTMBlockStack, from_official  # noqa: E402  (uses the classes above)
