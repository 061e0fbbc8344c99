"""A one-node ONNX LSTM/GRU/RNN model carrying PyTorch-layout weights, for ONNX Runtime.

ONNX stacks the gates in another order than PyTorch (LSTM i,o,f,c against PyTorch's i,f,g,o;
GRU z,r,h against r,z,n), so weight rows are permuted here. PyTorch's GRU applies the reset
gate after the recurrent matmul: that is ONNX's ``linear_before_reset=1``.
"""
from __future__ import annotations

import os

import numpy as np

# For each ONNX gate slot, the index of the PyTorch gate block that goes there.
ONNX_FROM_TORCH_GATES = {"lstm": (0, 3, 1, 2), "gru": (1, 0, 2), "rnn": (0,)}
OP_TYPE = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}
OPSET = 17
IR_VERSION = 8  # opset 17's IR version: old enough for any onnxruntime that knows opset 17


def _reorder(w: np.ndarray, cell: str, H: int) -> np.ndarray:
    blocks = [w[g * H:(g + 1) * H] for g in ONNX_FROM_TORCH_GATES[cell]]
    return np.concatenate(blocks, axis=0)


def build_model(cell: str, weights: dict[str, np.ndarray], hidden_size: int):
    """ModelProto with input ``X`` (T, B, I) and outputs ``Y`` (T, 1, B, H) and ``Y_h``
    (plus ``Y_c`` for LSTM). ``weights`` uses torch.nn layer names (``weight_ih_l0``, ...)."""
    from onnx import TensorProto, helper, numpy_helper

    H = hidden_size
    w_ih, w_hh = weights["weight_ih_l0"], weights["weight_hh_l0"]
    I = w_ih.shape[1]  # noqa: E741
    W = _reorder(w_ih, cell, H)[None].astype(np.float32)
    R = _reorder(w_hh, cell, H)[None].astype(np.float32)
    Bias = np.concatenate([_reorder(weights["bias_ih_l0"], cell, H),
                           _reorder(weights["bias_hh_l0"], cell, H)])[None].astype(np.float32)
    outputs = ["Y", "Y_h"] + (["Y_c"] if cell == "lstm" else [])
    attrs = {"hidden_size": H}
    if cell == "gru":
        attrs["linear_before_reset"] = 1
    node = helper.make_node(OP_TYPE[cell], ["X", "W", "R", "B"], outputs, **attrs)
    graph = helper.make_graph(
        [node], f"pyrnn_bench_{cell}",
        inputs=[helper.make_tensor_value_info("X", TensorProto.FLOAT, ["T", "N", I])],
        outputs=[helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["T", 1, "N", H])]
        + [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, "N", H]) for n in outputs[1:]],
        initializer=[numpy_helper.from_array(W, "W"), numpy_helper.from_array(R, "R"),
                     numpy_helper.from_array(Bias, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="pyrnn-benchmarks")
    model.ir_version = IR_VERSION
    return model


def session(cell: str, weights: dict[str, np.ndarray], hidden_size: int, threads: int,
            spinning: bool = True):
    """An ONNX Runtime CPU session for the model, with ``threads`` intra-op threads and one
    inter-op thread (one node: nothing runs in parallel across ops). ``spinning=False`` sets
    ``session.intra_op.allow_spinning`` to 0: idle workers block at once instead of spinning."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    model = build_model(cell, weights, hidden_size)
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def quantized_session(cell: str, weights: dict[str, np.ndarray], hidden_size: int, threads: int):
    """A session like :func:`session` on the model quantized by ONNX Runtime's
    ``quantize_dynamic`` (int8 weights, activations quantized at run time: an LSTM becomes its
    DynamicQuantizeLSTM; other ops stay float)."""
    import tempfile

    import onnx
    import onnxruntime as ort

    QuantType, quantize_dynamic = _ort_quantization()

    with tempfile.TemporaryDirectory() as folder:
        src, dst = os.path.join(folder, "model.onnx"), os.path.join(folder, "model.int8.onnx")
        onnx.save(build_model(cell, weights, hidden_size), src)
        quantize_dynamic(src, dst, weight_type=QuantType.QInt8)
        with open(dst, "rb") as f:
            quantized = f.read()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    return ort.InferenceSession(quantized, opts, providers=["CPUExecutionProvider"])


def _ort_quantization():
    """``onnxruntime.quantization``'s QuantType and quantize_dynamic. It imports a top-level module
    named ``onnx_model`` of its own, which this file would shadow: imported with this folder off
    the path and this module out of ``sys.modules`` meanwhile."""
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    saved_path, ours = list(sys.path), sys.modules.pop("onnx_model", None)
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    finally:
        sys.path[:] = saved_path
        if ours is not None:
            sys.modules["onnx_model"] = ours
    return QuantType, quantize_dynamic
