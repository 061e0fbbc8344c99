"""pyrnn layers and models as ONNX graphs (opset 17, dynamic batch and time axes).

RNN, GRU and LSTM layers become ONNX's RNN, GRU and LSTM operators (one node per stacked layer,
both directions in it), with the gates reordered to ONNX's. A projected LSTM (``proj_size``)
feeds its projected state back into the recurrence, which no ONNX recurrent operator does: each
of its directions is a Scan over time whose body is the step written out in MatMul and
element-wise nodes.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ._gates import ONNX_FROM_PYRNN, operator_kind, reorder
from ._graph import GraphBuilder

OPSET = 17


class RecurrentOut:
    """Names of a recurrent stack's results: y (T, B, D*P), h_n (L*D, B, P), c_n (L*D, B, H)."""

    def __init__(self, y: str, h_n: str, c_n: str | None) -> None:
        self.y, self.h_n, self.c_n = y, h_n, c_n


def _zeros_state(g: GraphBuilder, x_tm: str, stack: int, size: int, dtype: np.dtype) -> str:
    """Zeros (stack, B, size) with B from time-major x."""
    batch = g.op("Slice", [g.op("Shape", [x_tm]), g.const([1], "i1", np.int64), g.const([2], "i2", np.int64)])
    shape = g.op("Concat", [g.const([stack], "stack", np.int64), batch, g.const([size], "size", np.int64)], axis=0)
    zero = g.onnx.numpy_helper.from_array(np.zeros(1, dtype), "zero")
    return g.op("ConstantOfShape", [shape], value=zero)


def _slice0(g: GraphBuilder, name: str, begin: int, end: int) -> str:
    return g.op("Slice", [name, g.const([begin], "b", np.int64), g.const([end], "e", np.int64),
                          g.const([0], "ax", np.int64)])


def _layer_inputs(layer: Any, layer_index: int) -> list[dict[str, np.ndarray | None]]:
    """Per direction: the natural weights of one stacked layer."""
    out = []
    for direction in range(layer.num_directions):
        w_ih, w_hh, b_ih, b_hh, w_hr, w_peep = layer._arrays(layer._params, layer_index, direction)
        out.append(dict(w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh, w_hr=w_hr, w_peep=w_peep))
    return out


def _onnx_node(g: GraphBuilder, layer: Any, weights: list[dict], x_tm: str, h0: str | None,
               c0: str | None, seq_lens: str | None):
    """One stacked layer (all directions) as ONNX's RNN / GRU / LSTM node: (Y, Y_h, Y_c)."""
    kind = operator_kind(layer.cell)
    order = ONNX_FROM_PYRNN[kind]
    W = np.stack([reorder(w["w_ih"], order) for w in weights])
    R = np.stack([reorder(w["w_hh"], order) for w in weights])
    inputs = [x_tm, g.const(W, "W"), g.const(R, "R")]
    if layer.bias:
        inputs.append(g.const(np.stack([np.concatenate([reorder(w["b_ih"], order), reorder(w["b_hh"], order)])
                                        for w in weights]), "B"))
    else:
        inputs.append("")
    inputs += [seq_lens or "", h0 or ""]
    attrs: dict[str, Any] = dict(hidden_size=layer.hidden_size,
                                 direction="bidirectional" if layer.bidirectional else "forward")
    if kind == "lstm":
        inputs.append(c0 or "")
        if layer.peepholes:
            inputs.append(g.const(np.stack([reorder(w["w_peep"], ONNX_FROM_PYRNN["peephole"]) for w in weights]), "P"))
    elif kind == "gru":
        attrs["linear_before_reset"] = 1 if layer.reset_after else 0
    elif layer.cell == "rnn_relu":
        attrs["activations"] = ["Relu"] * layer.num_directions
    while inputs and inputs[-1] == "":
        inputs.pop()
    op = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}[kind]
    outs = g.op(op, inputs, n_out=3 if kind == "lstm" else 2, **attrs)
    return outs if kind == "lstm" else (*outs, None)


def _projected_direction(g: GraphBuilder, layer: Any, w: dict, x_tm: str, h0: str, c0: str,
                         seq_lens: str | None, reverse: bool, dtype: np.dtype):
    """One direction of a projected LSTM as a Scan: (y (T, B, P), h_n (B, P), c_n (B, H))."""
    H = layer.hidden_size
    onnx = g.onnx
    xg = g.op("MatMul", [x_tm, g.const(w["w_ih"].T, "WihT")])
    if w["b_ih"] is not None:
        xg = g.op("Add", [xg, g.const(w["b_ih"] + w["b_hh"], "bias")])
    T = g.op("Squeeze", [_slice0(g, g.op("Shape", [x_tm]), 0, 1), g.const([0], "ax", np.int64)])
    steps = g.op("Range", [g.const(np.int64(0), "zero"), T, g.const(np.int64(1), "one")])

    body = GraphBuilder(onnx, prefix=g.name("body") + "_")
    h_in, c_in = body.input(body.name("h"), dtype, ["B", layer.output_size]), body.input(body.name("c"), dtype, ["B", H])
    xg_t, t = body.input(body.name("xg"), dtype, ["B", 4 * H]), body.input(body.name("t"), np.int64, [])
    a = body.op("Add", [xg_t, body.op("MatMul", [h_in, body.const(w["w_hh"].T, "WhhT")])])
    gi, gf, gg, go = body.op("Split", [a, body.const([H] * 4, "split", np.int64)], n_out=4, axis=1)
    if w["w_peep"] is not None:
        p_i, p_f, p_o = (body.const(p, "peep") for p in np.split(w["w_peep"], 3))
        gi = body.op("Add", [gi, body.op("Mul", [p_i, c_in])])
        gf = body.op("Add", [gf, body.op("Mul", [p_f, c_in])])
    c_new = body.op("Add", [body.op("Mul", [body.op("Sigmoid", [gf]), c_in]),
                            body.op("Mul", [body.op("Sigmoid", [gi]), body.op("Tanh", [gg])])])
    if w["w_peep"] is not None:
        go = body.op("Add", [go, body.op("Mul", [p_o, c_new])])
    m = body.op("Mul", [body.op("Sigmoid", [go]), body.op("Tanh", [c_new])])
    h_new = body.op("MatMul", [m, body.const(w["w_hr"].T, "WhrT")])
    y_t = h_new
    if seq_lens is not None:  # padding steps keep the state and output zeros (outer-scope lengths)
        valid = body.op("Unsqueeze", [body.op("Less", [t, seq_lens]), body.const([1], "ax", np.int64)])
        h_new = body.op("Where", [valid, h_new, h_in])
        c_new = body.op("Where", [valid, c_new, c_in])
        y_t = body.op("Where", [valid, y_t, body.const(np.zeros((), dtype), "zero")])
    for source, hint, shape in ((h_new, "h_out", ["B", layer.output_size]), (c_new, "c_out", ["B", H]),
                                (y_t, "y_out", ["B", layer.output_size])):
        body.output(source, body.name(hint), dtype, shape)
    direction = 1 if reverse else 0
    h_n, c_n, y = g.op("Scan", [h0, c0, xg, steps], n_out=3, body=body.graph(g.name("lstm_step")),
                       num_scan_inputs=2, scan_input_directions=[direction, direction],
                       scan_output_directions=[direction])
    return y, h_n, c_n


def recurrent(g: GraphBuilder, layer: Any, x_tm: str, h0: str | None, c0: str | None,
              lengths: str | None) -> RecurrentOut:
    """The stacked layer on time-major ``x_tm`` (T, B, I); states (L*D, B, ·) or None; lengths
    int64 (B,) or None."""
    D, L, dtype = layer.num_directions, layer.num_layers, layer.dtype
    is_lstm = layer.cell == "lstm"
    projected = bool(getattr(layer, "proj_size", 0))
    seq_lens = None
    if lengths is not None:
        seq_lens = lengths if projected else g.op("Cast", [lengths], to=g.onnx.TensorProto.INT32)
    if projected:  # the Scan needs explicit states
        h0 = h0 or _zeros_state(g, x_tm, L * D, layer.output_size, dtype)
        c0 = c0 or _zeros_state(g, x_tm, L * D, layer.hidden_size, dtype)
    h_parts, c_parts, layer_input = [], [], x_tm
    for k in range(L):
        h0_k = _slice0(g, h0, k * D, (k + 1) * D) if h0 else None
        c0_k = _slice0(g, c0, k * D, (k + 1) * D) if (c0 and is_lstm) else None
        weights = _layer_inputs(layer, k)
        if projected:
            ys, hs, cs = [], [], []
            for d in range(D):
                sq = g.const([0], "ax", np.int64)
                y, h, c = _projected_direction(
                    g, layer, weights[d], layer_input, g.op("Squeeze", [_slice0(g, h0_k, d, d + 1), sq]),
                    g.op("Squeeze", [_slice0(g, c0_k, d, d + 1), sq]), seq_lens, d == 1, dtype)
                ys.append(y)
                hs.append(g.op("Unsqueeze", [h, sq]))
                cs.append(g.op("Unsqueeze", [c, sq]))
            layer_input = ys[0] if D == 1 else g.op("Concat", ys, axis=2)
            h_parts.append(hs[0] if D == 1 else g.op("Concat", hs, axis=0))
            c_parts.append(cs[0] if D == 1 else g.op("Concat", cs, axis=0))
            continue
        Y, Y_h, Y_c = _onnx_node(g, layer, weights, layer_input, h0_k, c0_k, seq_lens)
        # Y (T, D, B, H) -> (T, B, D*H)
        layer_input = g.op("Reshape", [g.op("Transpose", [Y], perm=[0, 2, 1, 3]),
                                       g.const([0, 0, -1], "shape", np.int64)])
        h_parts.append(Y_h)
        if Y_c is not None:
            c_parts.append(Y_c)
    join = (lambda parts: parts[0] if len(parts) == 1 else g.op("Concat", parts, axis=0))
    return RecurrentOut(layer_input, join(h_parts), join(c_parts) if is_lstm else None)


def linear(g: GraphBuilder, module: Any, x: str) -> str:
    """``x @ W^T + b`` of a pyrnn.nn.Linear (any leading axes)."""
    y = g.op("MatMul", [x, g.const(np.ascontiguousarray(module.weight.T), "WT")])
    return y if module.bias is None else g.op("Add", [y, g.const(module.bias, "b")])


def _state_axes(layer: Any, size: int) -> list[Any]:
    return [layer.num_layers * layer.num_directions, "batch", size]


def layer_graph(layer: Any, lengths: bool, initial_states: bool) -> GraphBuilder:
    """Inputs x, [lengths], [h0, [c0]]; outputs y, h_n, [c_n] as the layer's call returns them."""
    import onnx

    g = GraphBuilder(onnx)
    dtype, is_lstm = layer.dtype, layer.cell == "lstm"
    x_axes = ["batch", "time", layer.input_size] if layer.batch_first else ["time", "batch", layer.input_size]
    x = g.input("x", dtype, x_axes)
    lens = g.input("lengths", np.int64, ["batch"]) if lengths else None
    h0 = c0 = None
    if initial_states:
        h0 = g.input("h0", dtype, _state_axes(layer, layer.output_size))
        if is_lstm:
            c0 = g.input("c0", dtype, _state_axes(layer, layer.hidden_size))
    x_tm = g.op("Transpose", [x], perm=[1, 0, 2]) if layer.batch_first else x
    out = recurrent(g, layer, x_tm, h0, c0, lens)
    y = g.op("Transpose", [out.y], perm=[1, 0, 2]) if layer.batch_first else out.y
    width = layer.num_directions * layer.output_size
    g.output(y, "y", dtype, (["batch", "time", width] if layer.batch_first else ["time", "batch", width]))
    g.output(out.h_n, "h_n", dtype, _state_axes(layer, layer.output_size))
    if is_lstm:
        g.output(out.c_n, "c_n", dtype, _state_axes(layer, layer.hidden_size))
    return g


def _model_input(g: GraphBuilder, model: Any) -> str:
    """The model's input (B, T, F) floats or (B, T) token ids, time-major and embedded."""
    if model.embedding is not None:
        ids = g.input("x", np.int64, ["batch", "time"])
        x = g.op("Gather", [g.const(model.embedding.weight, "embedding"), ids], axis=0)
    else:
        x = g.input("x", model.dtype, ["batch", "time", model.input_size])
    return g.op("Transpose", [x], perm=[1, 0, 2])


def seq2vec_graph(model: Any, lengths: bool) -> GraphBuilder:
    import onnx

    g = GraphBuilder(onnx)
    x_tm = _model_input(g, model)
    lens = g.input("lengths", np.int64, ["batch"]) if lengths else None
    rnn = model.rnn
    out = recurrent(g, rnn, x_tm, None, None, lens)
    D = rnn.num_directions
    if model.pooling == "last":
        top = _slice0(g, out.h_n, (rnn.num_layers - 1) * D, rnn.num_layers * D)      # (D, B, P)
        pooled = g.op("Reshape", [g.op("Transpose", [top], perm=[1, 0, 2]), g.const([0, -1], "shape", np.int64)])
    elif model.pooling == "mean":
        total = g.op("ReduceSum", [out.y, g.const([0], "ax", np.int64)], keepdims=0)   # padding rows are 0
        if lens is None:
            count = _slice0(g, g.op("Shape", [out.y]), 0, 1)
        else:
            count = g.op("Unsqueeze", [lens, g.const([1], "ax", np.int64)])
        pooled = g.op("Div", [total, g.op("Cast", [count], to=g.helper.np_dtype_to_tensor_dtype(model.dtype))])
    else:
        y = out.y
        if lens is not None:
            T = g.op("Squeeze", [_slice0(g, g.op("Shape", [y]), 0, 1), g.const([0], "ax", np.int64)])
            steps = g.op("Range", [g.const(np.int64(0), "zero"), T, g.const(np.int64(1), "one")])
            mask = g.op("Less", [g.op("Unsqueeze", [steps, g.const([1], "ax", np.int64)]),
                                 g.op("Unsqueeze", [lens, g.const([0], "ax", np.int64)])])          # (T, B)
            mask = g.op("Unsqueeze", [mask, g.const([2], "ax", np.int64)])
            y = g.op("Where", [mask, y, g.const(np.array(-np.inf, model.dtype), "neg_inf")])
        pooled = g.op("ReduceMax", [y], axes=[0], keepdims=0)
    g.output(linear(g, model.head, pooled), "y", model.dtype, ["batch", model.output_size])
    return g


def seq2seq_graph(model: Any, lengths: bool) -> GraphBuilder:
    import onnx

    g = GraphBuilder(onnx)
    x_tm = _model_input(g, model)
    lens = g.input("lengths", np.int64, ["batch"]) if lengths else None
    out = recurrent(g, model.rnn, x_tm, None, None, lens)
    y = linear(g, model.head, g.op("Transpose", [out.y], perm=[1, 0, 2]))
    g.output(y, "y", model.dtype, ["batch", "time", model.output_size])
    return g


def encoder_graph(model: Any, lengths: bool) -> GraphBuilder:
    """EncoderDecoder's encoder: src (B, T_src) [, src_lengths] -> keys (B, T_src, D*H) and the
    decoder's initial states h0 [, c0] (L, B, H) through the bridge."""
    import onnx

    g = GraphBuilder(onnx)
    src = g.input("src", np.int64, ["batch", "src_time"])
    lens = g.input("src_lengths", np.int64, ["batch"]) if lengths else None
    emb = g.op("Gather", [g.const(model.src_embedding.weight, "src_embedding"), src], axis=0)
    enc = model.encoder
    out = recurrent(g, enc, g.op("Transpose", [emb], perm=[1, 0, 2]), None, None, lens)
    L, D, H = model.num_layers, enc.num_directions, model.hidden_size
    g.output(g.op("Transpose", [out.y], perm=[1, 0, 2]), "keys", model.dtype, ["batch", "src_time", D * H])

    def bridged(state: str) -> str:  # (L*D, B, H) -> (L, B, D*H)
        s = g.op("Reshape", [state, g.const([L, D, -1, H], "shape", np.int64)])
        s = g.op("Transpose", [s], perm=[0, 2, 1, 3])
        return g.op("Reshape", [s, g.const([0, 0, D * H], "shape", np.int64)])

    g.output(g.op("Tanh", [linear(g, model.bridge_h, bridged(out.h_n))]), "h0", model.dtype, [L, "batch", H])
    if model.bridge_c is not None:
        g.output(linear(g, model.bridge_c, bridged(out.c_n)), "c0", model.dtype, [L, "batch", H])
    return g


def decoder_step_graph(model: Any) -> GraphBuilder:
    """EncoderDecoder's decoder, one step: token (B,), h [, c] (L, B, H), keys (B, T_src, D*H),
    src_mask (B, T_src) bool -> logits (B, V), h_n [, c_n] and (with attention) attention (B, T_src)."""
    import onnx

    g = GraphBuilder(onnx)
    dec, dtype, H, L = model.decoder, model.dtype, model.hidden_size, model.num_layers
    token = g.input("token", np.int64, ["batch"])
    h = g.input("h", dtype, [L, "batch", H])
    c = g.input("c", dtype, [L, "batch", H]) if dec.cell == "lstm" else None
    keys = g.input("keys", dtype, ["batch", "src_time", model.key_size])
    mask = g.input("src_mask", np.bool_, ["batch", "src_time"])
    emb = g.op("Gather", [g.const(model.tgt_embedding.weight, "tgt_embedding"),
                          g.op("Unsqueeze", [token, g.const([0], "ax", np.int64)])], axis=0)   # (1, B, E)
    out = recurrent(g, dec, emb, h, c, None)
    s = g.op("Transpose", [out.y], perm=[1, 0, 2])                                           # (B, 1, H)
    head_in = s
    if model.attention is not None:
        att, p = model.attention, model.attention._params
        keys_t = g.op("Transpose", [keys], perm=[0, 2, 1])
        if att.kind == "dot":
            scores = g.op("MatMul", [s, keys_t])
        elif att.kind == "general":
            scores = g.op("MatMul", [g.op("MatMul", [s, g.const(p["weight"], "Wa")]), keys_t])
        else:
            u = g.op("MatMul", [s, g.const(p["query_weight"].T, "WqT")])                   # (B, 1, A)
            w = g.op("MatMul", [keys, g.const(p["key_weight"].T, "WkT")])                  # (B, Ts, A)
            e = g.op("Tanh", [g.op("Add", [u, w])])
            scores = g.op("Unsqueeze", [g.op("MatMul", [e, g.const(p["v"], "v")]), g.const([1], "ax", np.int64)])
        mask3 = g.op("Unsqueeze", [mask, g.const([1], "ax", np.int64)])
        scores = g.op("Where", [mask3, scores, g.const(np.array(-np.inf, dtype), "neg_inf")])
        weights = g.op("Softmax", [scores], axis=-1)                                          # (B, 1, Ts)
        ctx = g.op("MatMul", [weights, keys])
        head_in = g.op("Tanh", [linear(g, model.combine, g.op("Concat", [ctx, s], axis=-1))])
        g.output(g.op("Squeeze", [weights, g.const([1], "ax", np.int64)]), "attention", dtype,
                 ["batch", "src_time"])
    logits = g.op("Squeeze", [linear(g, model.out, head_in), g.const([1], "ax", np.int64)])
    g.output(logits, "logits", dtype, ["batch", model.tgt_vocab_size])
    g.output(out.h_n, "h_n", dtype, [L, "batch", H])
    if c is not None:
        g.output(out.c_n, "c_n", dtype, [L, "batch", H])
    return g
