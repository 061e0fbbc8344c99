"""ONNX graphs of recurrent nodes run on pyrnn: each LSTM, GRU or RNN node becomes a pyrnn layer
(gates reordered to PyTorch's), and the nodes exporters put around them (shapes, slices,
transposes, the linear head, activations) are evaluated with NumPy, in the graph's order.
"""
from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np

from .._reverse import run_reversed
from ._gates import PYRNN_FROM_ONNX, reorder


class OnnxImportError(ValueError):
    """A file that is not a usable ONNX model, or a node or attribute pyrnn does not support."""


# The activations ONNX's recurrent operators default to; pyrnn computes exactly these (and Relu
# for RNN).
DEFAULT_ACTIVATIONS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"], "RNN": ["Tanh"]}


def _where(node: Any) -> str:
    return f"node {node.name or node.output[0]!r} ({node.op_type})"


# -- the recurrent nodes ----------------------------------------------------------------------------

class RecurrentNode:
    """One ONNX LSTM / GRU / RNN node on a pyrnn layer. ``layer`` is the pyrnn layer (built
    at load when the weights are initializers, else from the fed weights at every call);
    ``reverse`` marks ONNX's ``direction="reverse"``, which runs the layer backwards in time."""

    def __init__(self, node: Any, attrs: dict[str, Any], constants: dict[str, np.ndarray]) -> None:
        self.node, self.op = node, node.op_type
        where = _where(node)
        for name in ("clip", "activation_alpha", "activation_beta"):
            if name in attrs:
                raise OnnxImportError(f"{where}: attribute {name!r} is not supported by pyrnn")
        if attrs.get("input_forget", 0):
            raise OnnxImportError(f"{where}: attribute 'input_forget' (coupled input and forget gates) "
                                  "is not supported by pyrnn")
        direction = attrs.get("direction", b"forward")
        self.direction = direction.decode() if isinstance(direction, bytes) else direction
        if self.direction not in ("forward", "reverse", "bidirectional"):
            raise OnnxImportError(f"{where}: attribute 'direction' must be forward, reverse or bidirectional, "
                                  f"got {self.direction!r}")
        D = 2 if self.direction == "bidirectional" else 1
        acts = [a.decode() if isinstance(a, bytes) else a for a in attrs.get("activations", [])]
        defaults = DEFAULT_ACTIVATIONS[self.op]
        self.nonlinearity = "tanh"
        if acts:
            if len(acts) != D * len(defaults):
                raise OnnxImportError(f"{where}: attribute 'activations' needs {D * len(defaults)} names, got {acts}")
            per_direction = [acts[k * len(defaults):(k + 1) * len(defaults)] for k in range(D)]
            if self.op == "RNN" and all(p == ["Relu"] for p in per_direction):
                self.nonlinearity = "relu"
            elif any([a.lower() for a in p] != [d.lower() for d in defaults] for p in per_direction):
                raise OnnxImportError(f"{where}: attribute 'activations' {acts} is not supported by pyrnn "
                                      f"(supported: the defaults {defaults}" + (", or Relu" if self.op == "RNN" else "")
                                      + ")")
        self.layout = int(attrs.get("layout", 0))
        self.hidden_size = attrs.get("hidden_size")
        self.linear_before_reset = bool(attrs.get("linear_before_reset", 0))
        inputs = list(node.input) + [""] * (8 - len(node.input))
        self.names = dict(zip(("X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"), inputs))
        if self.op != "LSTM" and (self.names["initial_c"] or self.names["P"]):
            raise OnnxImportError(f"{where}: has more inputs than {self.op} takes")
        self.num_directions = D
        self.layer = None
        weights = [self.names[k] for k in ("W", "R", "B", "P") if self.names[k]]
        if all(w in constants for w in weights):
            self.layer = self.build({k: constants.get(self.names[k]) for k in ("W", "R", "B", "P")})

    def build(self, w: dict[str, np.ndarray | None]) -> Any:
        """The pyrnn layer holding ONNX weights W (D, G*H, I), R (D, G*H, H), B (D, 2*G*H), P (D, 3H)."""
        from ..layers import GRU, LSTM, RNN

        where = _where(self.node)
        W, R, B, P = w["W"], w["R"], w["B"], w["P"]
        if W is None or R is None:
            raise OnnxImportError(f"{where}: inputs W and R are required")
        W, R = np.asarray(W), np.asarray(R)
        if W.dtype not in (np.float32, np.float64):
            raise OnnxImportError(f"{where}: weights of dtype {W.dtype} are not supported (float32 or float64)")
        G = {"LSTM": 4, "GRU": 3, "RNN": 1}[self.op]
        D = self.num_directions
        if W.ndim != 3 or W.shape[0] != D or W.shape[1] % G:
            raise OnnxImportError(f"{where}: W must have shape ({D}, {G}*hidden_size, input_size), got {W.shape}")
        H, I = W.shape[1] // G, W.shape[2]
        if self.hidden_size is not None and self.hidden_size != H:
            raise OnnxImportError(f"{where}: hidden_size={self.hidden_size} but W has {G}*{H} rows")
        for name, arr, shape in (("R", R, (D, G * H, H)), ("B", B, (D, 2 * G * H)), ("P", P, (D, 3 * H))):
            if arr is not None and np.shape(arr) != shape:
                raise OnnxImportError(f"{where}: {name} must have shape {shape}, got {np.shape(arr)}")
        common = dict(bias=B is not None, bidirectional=D == 2, batch_first=self.layout == 1, dtype=W.dtype)
        if self.op == "LSTM":
            layer, kind = LSTM(I, H, peepholes=P is not None, **common), "lstm"
        elif self.op == "GRU":
            layer, kind = GRU(I, H, reset_after=self.linear_before_reset, **common), "gru"
        else:
            layer, kind = RNN(I, H, nonlinearity=self.nonlinearity, **common), "rnn"
        order = PYRNN_FROM_ONNX[kind]
        state = {}
        for d in range(D):
            s = f"_l0{'_reverse' if d else ''}"
            state["weight_ih" + s] = reorder(W[d], order)
            state["weight_hh" + s] = reorder(R[d], order)
            if B is not None:
                state["bias_ih" + s] = reorder(B[d][:G * H], order)
                state["bias_hh" + s] = reorder(B[d][G * H:], order)
            if P is not None:
                state["weight_peephole" + s] = reorder(P[d], PYRNN_FROM_ONNX["peephole"])
        layer.load_state_dict(state)
        return layer.eval()

    def run(self, values: dict[str, Any]) -> list[np.ndarray]:
        """ONNX's outputs (Y, Y_h[, Y_c]) of this node from the values computed so far."""
        get = (lambda k: values[self.names[k]] if self.names[k] else None)
        layer = self.layer or self.build({k: get(k) for k in ("W", "R", "B", "P")})
        x = np.asarray(get("X"))
        if x.ndim != 3 or x.shape[2] != layer.input_size:
            raise ValueError(f"{_where(self.node)}: X must have shape ({'B, T' if self.layout else 'T, B'}, "
                             f"{layer.input_size}), got {x.shape}")
        x = x.astype(layer.dtype, copy=False)
        lengths = get("sequence_lens")
        if lengths is not None:
            lengths = np.asarray(lengths).astype(np.int64)
        states = [get(k) for k in ("initial_h", "initial_c")]
        if self.layout == 1:  # states are (B, D, H) in this layout
            states = [None if s is None else np.ascontiguousarray(np.swapaxes(s, 0, 1)) for s in states]
        states = [None if s is None else np.asarray(s, layer.dtype) for s in states]
        if self.direction == "reverse":
            y, h_n, c_n = run_reversed(layer, x, states, lengths)
        elif self.op == "LSTM":
            y, (h_n, c_n) = layer(x, tuple(states), lengths=lengths)
        else:
            y, h_n = layer(x, states[0], lengths=lengths)
            c_n = None
        D, H = self.num_directions, layer.hidden_size
        y = y.reshape(y.shape[:2] + (D, H))
        if self.layout == 0:
            y = y.transpose(0, 2, 1, 3)           # (T, D, B, H)
        else:
            h_n = h_n.swapaxes(0, 1)               # (B, D, H)
            c_n = None if c_n is None else c_n.swapaxes(0, 1)
        out = [np.ascontiguousarray(y), np.ascontiguousarray(h_n)]
        if self.op == "LSTM":
            out.append(np.ascontiguousarray(c_n))
        return out


# -- the other nodes, in NumPy ----------------------------------------------------------------------

def _axes(node_inputs: list, attrs: dict, index: int = 1) -> Any:
    """Axes from the attribute (older opsets) or the optional input (opset 13+ / 18+)."""
    if "axes" in attrs:
        return tuple(attrs["axes"])
    if len(node_inputs) > index and node_inputs[index] is not None:
        return tuple(int(a) for a in np.asarray(node_inputs[index]).reshape(-1))
    return None


def _slice(x, starts, ends, axes=None, steps=None):
    axes = range(len(starts)) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    index = [slice(None)] * x.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        index[int(a)] = slice(int(s), int(e), int(st))
    return x[tuple(index)]


def _reshape(x, shape, allowzero=0):
    shape = [int(s) for s in shape]
    if not allowzero:
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return x.reshape(shape)


def _gemm(a, b, c=None, alpha=1.0, beta=1.0, transA=0, transB=0):
    y = alpha * ((a.T if transA else a) @ (b.T if transB else b))
    return (y if c is None else y + beta * c).astype(a.dtype, copy=False)


def _softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _split(x, split=None, axis=0, num_outputs=None, n_out=1):
    if split is None:
        count = num_outputs or n_out
        size = -(-x.shape[axis] // count)
        split = [size] * (count - 1) + [x.shape[axis] - size * (count - 1)]
    return np.split(x, np.cumsum([int(s) for s in split])[:-1], axis=axis)


def _reduce(fn):
    def run(x, axes, keepdims=1, noop_with_empty_axes=0):
        if axes is None and noop_with_empty_axes:
            return x
        return fn(x, axis=axes, keepdims=bool(keepdims))
    return run


# Each entry: (inputs as a list with None for absent ones, attributes, number of outputs,
# onnx module) -> list of outputs.
OpFn = Callable[[list, dict, int, Any], list]


def _unary(fn: Callable) -> OpFn:
    return lambda i, a, n, onnx: [fn(i[0])]


def _binary(fn: Callable) -> OpFn:
    return lambda i, a, n, onnx: [fn(i[0], i[1])]


def _constant(i, a, n, onnx):
    for key, conv in (("value", np.asarray), ("value_float", np.float32), ("value_floats", lambda v: np.array(v, np.float32)),
                      ("value_int", np.int64), ("value_ints", lambda v: np.array(v, np.int64))):
        if key in a:
            return [np.asarray(conv(a[key]))]
    raise OnnxImportError("Constant: only value, value_float(s) and value_int(s) are supported")


def _sigmoid(x):
    return (1 / (1 + np.exp(-x))).astype(x.dtype, copy=False)


OPS: dict[str, OpFn] = {
    "Identity": _unary(lambda x: x),
    "Constant": _constant,
    "Shape": lambda i, a, n, onnx: [np.array(i[0].shape[a.get("start", 0):a.get("end", None)], np.int64)],
    "Gather": lambda i, a, n, onnx: [np.take(i[0], i[1], axis=a.get("axis", 0))],
    "Unsqueeze": lambda i, a, n, onnx: [np.expand_dims(i[0], _axes(i, a))],
    "Squeeze": lambda i, a, n, onnx: [np.squeeze(i[0], _axes(i, a))],
    "Concat": lambda i, a, n, onnx: [np.concatenate([v for v in i if v is not None], axis=a["axis"])],
    "ConstantOfShape": lambda i, a, n, onnx: [np.full(tuple(int(s) for s in i[0]),
                                                      a["value"][0] if "value" in a else np.float32(0))],
    "Transpose": lambda i, a, n, onnx: [np.transpose(i[0], a.get("perm"))],
    "Slice": lambda i, a, n, onnx: [_slice(i[0], *(None if v is None else np.asarray(v).tolist() for v in i[1:]))
                                    if len(i) > 1 else _slice(i[0], a["starts"], a["ends"], a.get("axes"))],
    "Reshape": lambda i, a, n, onnx: [_reshape(i[0], i[1], a.get("allowzero", 0))],
    "Flatten": lambda i, a, n, onnx: [i[0].reshape(int(np.prod(i[0].shape[:a.get("axis", 1)])), -1)],
    "Expand": lambda i, a, n, onnx: [i[0] * np.ones(tuple(int(s) for s in i[1]), i[0].dtype)],
    "MatMul": _binary(np.matmul),
    "Gemm": lambda i, a, n, onnx: [_gemm(*i, **a)],
    "Add": _binary(np.add), "Sub": _binary(np.subtract), "Mul": _binary(np.multiply),
    "Div": _binary(lambda x, y: (x // y) if x.dtype.kind in "iu" else x / y),
    "Neg": _unary(np.negative), "Exp": _unary(np.exp), "Tanh": _unary(np.tanh), "Sigmoid": _unary(_sigmoid),
    "Relu": _unary(lambda x: np.maximum(x, 0)),
    "Softmax": lambda i, a, n, onnx: [_softmax(i[0], a.get("axis", -1))],
    "LogSoftmax": lambda i, a, n, onnx: [np.log(_softmax(i[0], a.get("axis", -1)))],
    "Cast": lambda i, a, n, onnx: [i[0].astype(onnx.helper.tensor_dtype_to_np_dtype(a["to"]))],
    "Where": lambda i, a, n, onnx: [np.where(*i)],
    "Less": _binary(np.less), "Greater": _binary(np.greater), "Equal": _binary(np.equal),
    "Not": _unary(np.logical_not),
    "Range": lambda i, a, n, onnx: [np.arange(i[0], i[1], i[2]).astype(np.asarray(i[0]).dtype)],
    "ReduceSum": lambda i, a, n, onnx: [_reduce(np.sum)(i[0], _axes(i, a), a.get("keepdims", 1),
                                                        a.get("noop_with_empty_axes", 0))],
    "ReduceMean": lambda i, a, n, onnx: [_reduce(np.mean)(i[0], _axes(i, a), a.get("keepdims", 1))],
    "ReduceMax": lambda i, a, n, onnx: [_reduce(np.max)(i[0], _axes(i, a), a.get("keepdims", 1))],
    "Split": lambda i, a, n, onnx: _split(i[0], i[1] if len(i) > 1 else a.get("split"), a.get("axis", 0),
                                          a.get("num_outputs"), n),
}
RECURRENT_OPS = ("LSTM", "GRU", "RNN")


# -- the model --------------------------------------------------------------------------------------

def _read_model(path: str, onnx: Any) -> Any:
    """The ModelProto of ``path``, with every problem reported as an OnnxImportError naming it."""
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise OnnxImportError(f"{path}: cannot read the file ({e.strerror})") from None
    if size == 0:
        raise OnnxImportError(f"{path}: the file is empty, not an ONNX model")
    with open(path, "rb") as f:
        data = f.read()
    try:
        model = onnx.load_model_from_string(data)
    except Exception as e:  # protobuf's DecodeError and friends
        raise OnnxImportError(f"{path}: not an ONNX model, or a truncated one (protobuf: {e})") from None
    if not model.graph.node and not model.graph.output:
        raise OnnxImportError(f"{path}: not an ONNX model (no graph in the file)")
    try:
        onnx.checker.check_model(model)
    except Exception as e:
        raise OnnxImportError(f"{path}: not a valid ONNX model ({e})") from None
    return model


class OnnxModel:
    """An ONNX graph of recurrent nodes run on pyrnn.

    ``model(x, ...)`` takes the graph's inputs in order (or by name: ``model(x=..., lengths=...)``)
    and returns its output, or a tuple of outputs; ``model.run(feeds)`` returns ``{name: array}``.
    ``model.layers`` maps each recurrent node's name to its pyrnn layer (None when its weights
    are graph inputs, fed at every call); ``input_names`` / ``output_names`` list the graph's.
    """

    def __init__(self, model: Any, onnx: Any, source: str = "<model>") -> None:
        self._onnx = onnx
        self.source = source
        graph = model.graph
        self._constants = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
        self.input_names = [v.name for v in graph.input if v.name not in self._constants]
        self.output_names = [v.name for v in graph.output]
        self._input_info = {v.name: v for v in graph.input if v.name not in self._constants}
        self._steps: list[tuple[Any, dict, Any]] = []
        self.layers: dict[str, Any] = {}
        for node in graph.node:
            if node.domain not in ("", "ai.onnx"):
                raise OnnxImportError(f"{source}: {_where(node)}: operators of domain {node.domain!r} are not supported")
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            if "value" in attrs and hasattr(attrs["value"], "dims"):
                attrs["value"] = onnx.numpy_helper.to_array(attrs["value"])
            if node.op_type in RECURRENT_OPS:
                try:
                    recurrent = RecurrentNode(node, attrs, self._constants)
                except OnnxImportError as e:
                    raise OnnxImportError(f"{source}: {e}") from None
                self.layers[node.name or node.output[0]] = recurrent.layer
                self._steps.append((node, attrs, recurrent))
            elif node.op_type in OPS:
                if node.op_type == "Constant":   # fold now: recurrent weights may come from Constants
                    self._constants[node.output[0]] = OPS["Constant"]([], attrs, 1, onnx)[0]
                self._steps.append((node, attrs, None))
            else:
                raise OnnxImportError(f"{source}: {_where(node)}: operator {node.op_type} is not supported by "
                                      f"pyrnn.onnx (supported: {', '.join(sorted((*OPS, *RECURRENT_OPS)))})")

    def _check_input(self, name: str, value: Any) -> np.ndarray:
        info = self._input_info[name].type.tensor_type
        arr = np.asarray(value)
        want = self._onnx.helper.tensor_dtype_to_np_dtype(info.elem_type)
        dims = [d.dim_value if d.HasField("dim_value") else None for d in info.shape.dim]
        if info.HasField("shape") and (arr.ndim != len(dims) or any(d is not None and d != s for d, s in zip(dims, arr.shape))):
            legend = "(" + ", ".join("?" if d is None else str(d) for d in dims) + ")"
            raise ValueError(f"input {name!r}: expected shape {legend}, got {arr.shape}")
        if arr.dtype != want:
            if arr.dtype.kind != np.dtype(want).kind and not (arr.dtype.kind in "iu" and np.dtype(want).kind in "iu"):
                raise TypeError(f"input {name!r}: expected dtype {np.dtype(want)}, got {arr.dtype}")
            arr = arr.astype(want)
        return arr

    def run(self, feeds: dict[str, Any]) -> dict[str, np.ndarray]:
        unknown = [k for k in feeds if k not in self._input_info]
        missing = [k for k in self.input_names if k not in feeds]
        if unknown or missing:
            raise ValueError(f"inputs: expected {self.input_names}" + (f"; missing {missing}" if missing else "")
                             + (f"; unknown {unknown}" if unknown else ""))
        values: dict[str, Any] = dict(self._constants)
        values[""] = None
        values.update({k: self._check_input(k, v) for k, v in feeds.items()})
        for node, attrs, recurrent in self._steps:
            try:
                if recurrent is not None:
                    outs = recurrent.run(values)
                else:
                    outs = OPS[node.op_type]([values[k] if k else None for k in node.input], attrs,
                                             len(node.output), self._onnx)
            except (OnnxImportError, ValueError, TypeError, IndexError) as e:
                if str(e).startswith("node "):
                    raise
                raise ValueError(f"{_where(node)}: {e}") from None
            for name, value in zip(node.output, outs):
                if name:
                    values[name] = np.asarray(value)
        return {name: values[name] for name in self.output_names}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if len(args) > len(self.input_names):
            raise TypeError(f"the graph takes {len(self.input_names)} inputs {self.input_names}, got {len(args)}")
        feeds = dict(zip(self.input_names, args))
        for k, v in kwargs.items():
            if k in feeds:
                raise TypeError(f"input {k!r} given twice")
            feeds[k] = v
        out = self.run(feeds)
        values = [out[name] for name in self.output_names]
        return values[0] if len(values) == 1 else tuple(values)

    def __repr__(self) -> str:
        return (f"OnnxModel({self.source!r}, inputs={self.input_names}, outputs={self.output_names}, "
                f"recurrent={list(self.layers)})")


def load(path: str | os.PathLike) -> OnnxModel:
    """Read an ONNX file and return an :class:`OnnxModel` that runs it on pyrnn's layers."""
    from . import require_onnx

    onnx = require_onnx("pyrnn.onnx.load")
    path = os.fspath(path)
    return OnnxModel(_read_model(path, onnx), onnx, path)
