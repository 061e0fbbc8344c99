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
from ._module import ParameterModule, Tape

__all__ = ["SLSTM", "MLSTM", "SLSTMCell", "MLSTMCell", "xLSTMBlockStack", "from_official"]


def _ops():
    """The module computing the xLSTM kernels: native, or the reference under use_backend."""
    return _core if _backend.name() == "native" else reference_xlstm


def _heads(hidden_size: int, num_heads: Any) -> int:
    nh = _checks.positive_int(num_heads, "num_heads")
    if hidden_size % nh:
        raise ValueError(f"hidden_size = {hidden_size} must be a multiple of num_heads = {nh}")
    return nh


class _XLayer(ParameterModule):
    """What SLSTM and MLSTM share: stacking, states, dropout, backward (use those classes)."""

    kind: str
    state_names: tuple[str, ...]

    def __init__(self, input_size, hidden_size, num_heads, num_layers, bias, batch_first, dropout,
                 dtype, seed) -> None:
        self.input_size = _checks.positive_int(input_size, "input_size")
        self.hidden_size = _checks.positive_int(hidden_size, "hidden_size")
        self.num_heads = _heads(self.hidden_size, num_heads)
        self.head_dim = self.hidden_size // self.num_heads
        self.num_layers = _checks.positive_int(num_layers, "num_layers")
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dropout = _checks.dropout(dropout)
        self.dtype = _checks.layer_dtype(dtype)
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        shapes = {}
        for layer in range(self.num_layers):
            shapes.update(self._layer_shapes(layer, self.input_size if layer == 0 else self.hidden_size))
        self._create_parameters(shapes, self.hidden_size, self._rng)
        self._init_gate_biases()
        self._tape: Tape | None = None

    # -- hooks -----------------------------------------------------------------------------------
    def _layer_shapes(self, layer: int, layer_input: int) -> dict[str, tuple[int, ...]]:
        raise NotImplementedError

    def _state_shapes(self) -> tuple[tuple[int, ...], ...]:
        """Per-sequence shape of each state component (without the layer and batch axes)."""
        raise NotImplementedError

    def _init_gate_biases(self) -> None:
        pass

    # -- forward ---------------------------------------------------------------------------------
    def _forward(self, x: Any, state: Any, lengths: Any):
        xt, batched = _checks.sequence(x, self.input_size, self.batch_first, self.dtype, kept=self.training)
        T, B, _ = xt.shape
        states = self._initial_states(state, B, batched, "state")
        lengths = _checks.lengths(lengths, T, B, batched)
        training = self.training
        _checks.fits_in_memory(self._memory_estimate(T, B), self.dtype,
                               f"{type(self).__name__} forward over T={T}, B={B}")
        if T == 0 or B == 0:
            y = np.zeros((T, B, self.hidden_size), self.dtype)
            finals, caches, masks = [s.copy() for s in states], [], []
        else:
            y, finals, caches, masks = self._run_layers(xt, states, lengths, training)
        self._tape = Tape(T, B, batched, caches, masks) if training else None
        if not batched:
            y = y[:, 0]
            finals = [f[:, 0] for f in finals]
        elif self.batch_first:
            y = np.ascontiguousarray(y.transpose(1, 0, 2))
        return y, tuple(finals)

    def _run_layers(self, x, states, lengths, training):
        ops = _ops()
        finals = [np.empty_like(s) for s in states]
        caches, masks = [], []
        layer_input = x
        for layer in range(self.num_layers):
            out = self._layer_forward(ops, layer, layer_input, [s[layer] for s in states], lengths, training)
            y, *new_states, cache = out
            for f, s in zip(finals, new_states):
                f[layer] = s
            caches.append(cache)
            layer_input = y
            mask = None
            if training and self.dropout > 0 and layer < self.num_layers - 1:
                mask = self._dropout_mask(y.shape)
                layer_input = y * mask
            masks.append(mask)
        return layer_input, finals, caches, masks

    def _dropout_mask(self, shape):
        if self.dropout >= 1.0:
            return np.zeros(shape, self.dtype)
        keep = self._rng.random(shape) >= self.dropout
        return keep.astype(self.dtype) / self.dtype.type(1.0 - self.dropout)

    def _initial_states(self, state: Any, B: int, batched: bool, name: str) -> list[np.ndarray]:
        names = self.state_names
        if state is None:
            parts = [None] * len(names)
        elif isinstance(state, (tuple, list)) and len(state) == len(names):
            parts = list(state)
        else:
            raise TypeError(f"{name} must be None or a tuple ({', '.join(names)}) of arrays or Nones, "
                            f"got {type(state).__name__}"
                            + (f" of length {len(state)}" if isinstance(state, (tuple, list)) else ""))
        out = []
        for part, pname, shape in zip(parts, names, self._state_shapes()):
            full = (self.num_layers, B, *shape) if batched else (self.num_layers, *shape)
            legend = "(num_layers, " + ("B, " if batched else "") + ", ".join(map(str, shape)) + ")"
            arr = _checks.state(part, pname if name == "state" else "d" + pname, full, legend, self.dtype)
            out.append(arr if batched else arr[:, None])
        return out

    def _memory_estimate(self, T: int, B: int) -> int:
        return T * B * self.num_layers * 16 * self.hidden_size

    # -- backward --------------------------------------------------------------------------------
    def _backward(self, dy: Any, dstate: Any):
        tape = self._take_tape()
        T, B = tape.T, tape.B
        d_out = self._output_grad(dy, tape)
        dfinal = self._initial_states(dstate, B, tape.batched, "dstate")
        if T == 0 or B == 0:
            dx = np.zeros((T, B, self.input_size), self.dtype)
            d0 = [d.copy() for d in dfinal]
        else:
            ops = _ops()
            d0 = [np.empty_like(d) for d in dfinal]
            for layer in reversed(range(self.num_layers)):
                dx, *dstates = self._layer_backward(ops, layer, tape.caches[layer], d_out,
                                                    [d[layer] for d in dfinal])
                for acc, s in zip(d0, dstates):
                    acc[layer] = s
                if layer > 0 and tape.masks[layer - 1] is not None:
                    dx = dx * tape.masks[layer - 1]
                d_out = dx
            dx = d_out
        if not tape.batched:
            return dx[:, 0], tuple(d[:, 0] for d in d0)
        if self.batch_first:
            dx = np.ascontiguousarray(dx.transpose(1, 0, 2))
        return dx, tuple(d0)

    def _output_grad(self, dy: Any, tape: Tape):
        if dy is None:
            return None
        arr = _checks.float_array(dy, "dy", self.dtype)
        H = self.hidden_size
        if not tape.batched:
            _checks.expect_shape(arr, "dy", (tape.T, H), "(T, H) like y")
            return arr[:, None, :]
        if self.batch_first:
            _checks.expect_shape(arr, "dy", (tape.B, tape.T, H), "(B, T, H) like y")
            return np.ascontiguousarray(arr.transpose(1, 0, 2))
        _checks.expect_shape(arr, "dy", (tape.T, tape.B, H), "(T, B, H) like y")
        return arr

    def _drop_caches(self) -> None:
        self._tape = None

    def __repr__(self) -> str:
        parts = [str(self.input_size), str(self.hidden_size), f"num_heads={self.num_heads}"]
        if self.num_layers != 1:
            parts.append(f"num_layers={self.num_layers}")
        parts += self._extra_repr()
        for name, default in (("bias", True), ("batch_first", False), ("dropout", 0.0)):
            if getattr(self, name) != default:
                parts.append(f"{name}={getattr(self, name)}")
        parts.append(f"dtype={self.dtype.name}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def _extra_repr(self) -> list[str]:
        return []


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

    def _state_shapes(self):
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

    def __call__(self, x: Any, state: Any = None, lengths: Any = None):
        return self._forward(x, state, lengths)

    def backward(self, dy: Any, dstate: Any = None):
        """BPTT through the last training-mode forward: ``(dx, (dh0, dc0, dn0, dm0))``."""
        return self._backward(dy, dstate)

    def _extra_repr(self):
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

    def _state_shapes(self):
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

    def __call__(self, x: Any, state: Any = None, lengths: Any = None):
        return self._forward(x, state, lengths)

    def backward(self, dy: Any, dstate: Any = None):
        """BPTT through the last training-mode forward: ``(dx, (dC0, dn0, dm0))``."""
        return self._backward(dy, dstate)

    def _extra_repr(self):
        out = [] if self.output_gate else ["output_gate=False"]
        if self.eps != 1e-6:
            out.append(f"eps={self.eps}")
        return out


# ---------------------------------------------------------------------------------------------
# cells: one step, the layers' kernels with T = 1


class _XCell:
    """One step of a one-layer SLSTM/MLSTM; parameters named without the ``_l0`` suffix.
    Each training-mode call keeps its cache on a stack; ``backward`` consumes the latest."""

    _layer_class: type

    def __init__(self, **kwargs) -> None:
        self._layer = self._layer_class(num_layers=1, **kwargs)
        self._caches: list[tuple[Any, bool]] = []

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._layer, name)

    # parameters under cell names (weight_ih, weight_hh, bias)
    @staticmethod
    def _cell_name(name: str) -> str:
        return name[:-3]

    def parameters(self):
        return {self._cell_name(k): v for k, v in self._layer._params.items()}

    @property
    def grads(self):
        return {self._cell_name(k): v for k, v in self._layer._grads.items()}

    def zero_grad(self):
        self._layer.zero_grad()

    def state_dict(self):
        return {self._cell_name(k): v.copy() for k, v in self._layer._params.items()}

    def load_state_dict(self, state):
        from collections.abc import Mapping
        if not isinstance(state, Mapping):
            raise TypeError(f"load_state_dict expects a mapping of name -> array, got {type(state).__name__}")
        self._layer.load_state_dict({(k + "_l0" if isinstance(k, str) else k): v for k, v in state.items()})

    @property
    def training(self):
        return self._layer.training

    def train(self, mode: bool = True):
        self._layer.train(mode)
        if not mode:
            self._caches.clear()
        return self

    def eval(self):
        return self.train(False)

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
        out, new_state = layer._forward(arr[None], state, None)  # a sequence of one step
        if layer.training:
            self._caches.append((layer._tape, batched))
            layer._tape = None
        return out[0], tuple(s[0] for s in new_state)

    def _step_backward(self, dh: Any, dstate: Any):
        layer = self._layer
        if not self._caches:
            if not layer.training:
                raise RuntimeError(f"{type(self).__name__}.backward: the cell is in eval mode, where a call "
                                   "keeps no cache for backpropagation; call .train() and run the step again")
            raise RuntimeError(f"{type(self).__name__}.backward needs a training-mode call first "
                               "(each call supports one backward; none is left)")
        tape, batched = self._caches.pop()
        layer._tape = tape
        dy = None if dh is None else _checks.float_array(dh, "dh", layer.dtype)[None]
        if dstate is not None:
            if not isinstance(dstate, (tuple, list)) or len(dstate) != len(layer.state_names):
                raise TypeError(f"dstate must be None or a tuple ({', '.join(layer.state_names)})")
            dstate = tuple(None if s is None else _checks.float_array(s, "d" + n, layer.dtype)[None]
                           for s, n in zip(dstate, layer.state_names))
        dx, d0 = layer._backward(dy, dstate)
        return dx[0], tuple(d[0] for d in d0)

    def __repr__(self):
        return repr(self._layer).replace(type(self._layer).__name__, type(self).__name__, 1)


class SLSTMCell(_XCell):
    """One sLSTM step: ``h, c, n, m = cell(x_t, (h, c, n, m))`` (state None means zeros);
    ``dx, (dh, dc, dn, dm) = cell.backward((dh, dc, dn, dm))`` through the latest call."""

    _layer_class = SLSTM

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
