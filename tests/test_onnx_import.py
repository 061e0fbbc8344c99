"""pyrnn.onnx.load: ONNX's own node test cases for LSTM, GRU and RNN, a grid of recurrent nodes
against ONNX Runtime, what torch.onnx.export writes, round trips of pyrnn's exports, and
clear errors for bad files, unsupported operators and attributes and mismatched shapes."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import pyrnn

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
import pyrnn.onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

TOL = dict(rtol=1e-5, atol=1e-5)


def _node_cases():
    """The cases ONNX's LSTM, GRU and RNN test modules register when imported (only those: the
    whole collection runs every operator's generator)."""
    import importlib

    from onnx.backend.test.case import node

    for name in ("lstm", "gru", "rnn"):
        importlib.import_module(f"onnx.backend.test.case.node.{name}")
    return [c for c in node._NodeTestCases if c.model.graph.node[0].op_type in ("LSTM", "GRU", "RNN")]


NODE_CASES = _node_cases()


def test_the_node_cases_cover_every_operator_and_peepholes():
    names = {c.name for c in NODE_CASES}
    assert {"test_lstm_with_peepholes", "test_gru_seq_length", "test_rnn_seq_length"} <= names
    assert len(NODE_CASES) >= 15


@pytest.mark.parametrize("case", NODE_CASES, ids=[c.name for c in NODE_CASES])
def test_onnx_node_test_cases(case):
    model = pyrnn.onnx.OnnxModel(case.model, onnx, case.name)
    names = [i.name for i in case.model.graph.input]
    for inputs, outputs in case.data_sets:
        got = model.run(dict(zip(names, inputs)))
        for info, expected in zip(case.model.graph.output, outputs):
            np.testing.assert_allclose(got[info.name], expected, rtol=1e-5, atol=1e-6, err_msg=info.name)


# -- recurrent nodes with every attribute, against ONNX Runtime -------------------------------------

def _node_model(op, direction, layout, bias, seq_lens, initial, peep, lbr, rng, I=3, H=4):
    G = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    D = 2 if direction == "bidirectional" else 1
    inits = [numpy_helper.from_array(rng.standard_normal((D, G * H, I)).astype(np.float32), "W"),
             numpy_helper.from_array(rng.standard_normal((D, G * H, H)).astype(np.float32), "R")]
    names = ["X", "W", "R", "", "", "", "", ""]
    graph_inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["b", "t", I] if layout else ["t", "b", I])]
    if bias:
        inits.append(numpy_helper.from_array(rng.standard_normal((D, 2 * G * H)).astype(np.float32), "B"))
        names[3] = "B"
    if seq_lens:
        names[4] = "sequence_lens"
        graph_inputs.append(helper.make_tensor_value_info("sequence_lens", TensorProto.INT32, ["b"]))
    state_shape = ["b", D, H] if layout else [D, "b", H]
    if initial:
        names[5] = "initial_h"
        graph_inputs.append(helper.make_tensor_value_info("initial_h", TensorProto.FLOAT, state_shape))
        if op == "LSTM":
            names[6] = "initial_c"
            graph_inputs.append(helper.make_tensor_value_info("initial_c", TensorProto.FLOAT, state_shape))
    if peep:
        inits.append(numpy_helper.from_array(rng.standard_normal((D, 3 * H)).astype(np.float32), "P"))
        names[7] = "P"
    while names[-1] == "":
        names.pop()
    attrs = dict(hidden_size=H, direction=direction, layout=layout)
    if op == "GRU":
        attrs["linear_before_reset"] = lbr
    outs = ["Y", "Y_h"] + (["Y_c"] if op == "LSTM" else [])
    node = helper.make_node(op, names, outs, name="rnn0", **attrs)
    y_shape = ["b", "t", D, H] if layout else ["t", D, "b", H]
    outputs = [helper.make_tensor_value_info("Y", TensorProto.FLOAT, y_shape)]
    outputs += [helper.make_tensor_value_info(n, TensorProto.FLOAT, state_shape) for n in outs[1:]]
    graph = helper.make_graph([node], "g", graph_inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])


GRID = [  # op, direction, layout, bias, seq_lens, initial, peep, linear_before_reset
    ("LSTM", "forward", 0, True, True, True, True, 0),
    ("LSTM", "reverse", 0, False, True, False, False, 0),
    ("LSTM", "bidirectional", 0, True, False, True, True, 0),
    ("LSTM", "reverse", 0, True, False, True, True, 0),
    ("GRU", "forward", 0, True, True, False, False, 1),
    ("GRU", "reverse", 0, True, True, True, False, 0),
    ("GRU", "bidirectional", 0, False, True, True, False, 1),
    ("GRU", "bidirectional", 0, True, False, False, False, 0),
    ("RNN", "forward", 0, False, False, True, False, 0),
    ("RNN", "reverse", 0, True, True, True, False, 0),
    ("RNN", "bidirectional", 0, True, True, False, False, 0),
]


@pytest.mark.parametrize("row", GRID, ids=["-".join(map(str, r)) for r in GRID])
def test_recurrent_nodes_match_onnxruntime(row, tmp_path):
    op, direction, layout, bias, seq_lens, initial, peep, lbr = row
    rng = np.random.default_rng(len(str(row)))
    model = _node_model(op, direction, layout, bias, seq_lens, initial, peep, lbr, rng)
    path = tmp_path / "node.onnx"
    onnx.save(model, path)
    ours, theirs = pyrnn.onnx.load(path), ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert list(ours.layers) == ["rnn0"]
    T, B, D = 5, 3, 2 if direction == "bidirectional" else 1
    feeds = {"X": rng.standard_normal((B, T, 3) if layout else (T, B, 3)).astype(np.float32)}
    if seq_lens:
        feeds["sequence_lens"] = np.array([5, 2, 4], np.int32)
    if initial:
        feeds["initial_h"] = rng.standard_normal((D, B, 4)).astype(np.float32)
        if op == "LSTM":
            feeds["initial_c"] = rng.standard_normal((D, B, 4)).astype(np.float32)
    expected = theirs.run(None, feeds)
    got = ours(**feeds)
    for name, a, b in zip(("Y", "Y_h", "Y_c"), got, expected):
        np.testing.assert_allclose(a, b, **TOL, err_msg=name)


def test_batch_major_layout_against_the_layer(tmp_path):
    """layout=1 (ONNX Runtime's CPU kernels do not run it): against the time-major node."""
    rng = np.random.default_rng(0)
    model = _node_model("LSTM", "bidirectional", 1, True, True, True, True, 0, rng)
    onnx.save(model, tmp_path / "m.onnx")
    time_major = _node_model("LSTM", "bidirectional", 0, True, True, True, True, 0, np.random.default_rng(0))
    onnx.save(time_major, tmp_path / "t.onnx")
    x = rng.standard_normal((3, 5, 3)).astype(np.float32)
    h0, c0 = rng.standard_normal((3, 2, 4)).astype(np.float32), rng.standard_normal((3, 2, 4)).astype(np.float32)
    lens = np.array([5, 1, 3], np.int32)
    y, h, c = pyrnn.onnx.load(tmp_path / "m.onnx")(x, lens, h0, c0)
    y_t, h_t, c_t = pyrnn.onnx.load(tmp_path / "t.onnx")(x.transpose(1, 0, 2), lens, h0.transpose(1, 0, 2),
                                                        c0.transpose(1, 0, 2))
    np.testing.assert_allclose(y, y_t.transpose(2, 0, 1, 3), **TOL)
    np.testing.assert_allclose(h, h_t.transpose(1, 0, 2), **TOL)
    np.testing.assert_allclose(c, c_t.transpose(1, 0, 2), **TOL)


# -- what torch.onnx.export writes --------------------------------------------------------------

class _Net:
    @staticmethod
    def make(kind, head, **kw):
        import torch

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.rnn = getattr(torch.nn, kind)(3, 5, **kw)
                width = 5 * (2 if kw.get("bidirectional") else 1)
                self.head = torch.nn.Linear(width, 2) if head else None

            def forward(self, x):
                y, _ = self.rnn(x)
                return self.head(y) if self.head is not None else y

        return Net().eval()


@pytest.mark.parametrize("head", [False, True])
@pytest.mark.parametrize("kind,kw", [
    ("LSTM", dict(num_layers=2, bidirectional=True, batch_first=True)),
    ("LSTM", dict()),
    ("GRU", dict(num_layers=2)),
    ("GRU", dict(bidirectional=True, batch_first=True)),
    ("RNN", dict(nonlinearity="relu", num_layers=2, bidirectional=True)),
    ("RNN", dict()),
])
def test_torch_onnx_export(kind, kw, head, tmp_path):
    torch = pytest.importorskip("torch")
    net = _Net.make(kind, head, **kw)
    x = torch.randn(4, 6, 3)
    path = tmp_path / "torch.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), str(path), dynamo=False, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "d0", 1: "d1"}}, opset_version=17)
    model = pyrnn.onnx.load(path)
    assert all(layer is not None for layer in model.layers.values()) and model.layers
    for shape in ((4, 6, 3), (2, 9, 3)):
        xs = torch.randn(*shape)
        with torch.no_grad():
            expected = net(xs).numpy()
        np.testing.assert_allclose(model(xs.numpy()), expected, **TOL)


# -- round trips of pyrnn's own exports ---------------------------------------------------------

@pytest.mark.parametrize("layer", [
    pyrnn.LSTM(3, 4, num_layers=2, bidirectional=True, peepholes=True, seed=1),
    pyrnn.GRU(3, 4, reset_after=False, batch_first=True, seed=2),
    pyrnn.RNN(3, 4, nonlinearity="relu", num_layers=2, seed=3),
], ids=["lstm", "gru", "rnn"])
def test_round_trip_of_pyrnn_exports(layer, tmp_path):
    layer.eval()
    pyrnn.onnx.export(layer, tmp_path / "l.onnx", lengths=True)
    model = pyrnn.onnx.load(tmp_path / "l.onnx")
    x = np.random.default_rng(0).standard_normal((5, 2, 3) if not layer.batch_first else (2, 5, 3)).astype(np.float32)
    lens = np.array([5, 3])
    got = model(x, lens)
    expected = layer(x, lengths=lens)
    np.testing.assert_allclose(got[0], expected[0], **TOL)


def test_seq2vec_round_trip(tmp_path):
    m = pyrnn.Seq2Vec(vocab_size=10, output_size=3, hidden_size=4, bidirectional=True, pooling="max", seed=0).eval()
    pyrnn.onnx.export(m, tmp_path / "m.onnx", lengths=True)
    x = np.random.default_rng(1).integers(1, 10, size=(3, 6))
    lens = np.array([6, 2, 4])
    np.testing.assert_allclose(pyrnn.onnx.load(tmp_path / "m.onnx")(x, lens), m(x, lengths=lens), **TOL)


# -- bad input -----------------------------------------------------------------------------------

def test_files_that_are_not_onnx(tmp_path):
    text = tmp_path / "notes.onnx"
    text.write_text("this is not a model\n" * 10)
    with pytest.raises(pyrnn.onnx.OnnxImportError, match="notes.onnx"):
        pyrnn.onnx.load(text)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(pyrnn.onnx.OnnxImportError, match="empty"):
        pyrnn.onnx.load(empty)
    with pytest.raises(pyrnn.onnx.OnnxImportError, match="cannot read"):
        pyrnn.onnx.load(tmp_path / "missing.onnx")
    pyrnn.onnx.export(pyrnn.LSTM(3, 4), tmp_path / "good.onnx")
    data = (tmp_path / "good.onnx").read_bytes()
    for cut in (len(data) // 2, len(data) - 7):
        (tmp_path / "cut.onnx").write_bytes(data[:cut])
        with pytest.raises(pyrnn.onnx.OnnxImportError, match="cut.onnx"):
            pyrnn.onnx.load(tmp_path / "cut.onnx")


@pytest.mark.parametrize("attrs,match", [
    (dict(clip=3.0), "'clip'"),
    (dict(input_forget=1), "'input_forget'"),
    (dict(activations=["Relu", "Tanh", "Tanh"]), "'activations'"),
    (dict(activation_alpha=[0.5]), "'activation_alpha'"),
])
def test_unsupported_attributes_name_node_and_attribute(attrs, match, tmp_path):
    model = _node_model("LSTM", "forward", 0, True, False, False, False, 0, np.random.default_rng(0))
    model.graph.node[0].attribute.extend(helper.make_attribute(k, v) for k, v in attrs.items())
    onnx.save(model, tmp_path / "m.onnx")
    with pytest.raises(pyrnn.onnx.OnnxImportError, match=match) as info:
        pyrnn.onnx.load(tmp_path / "m.onnx")
    assert "'rnn0' (LSTM)" in str(info.value)


def test_unsupported_operator_is_named(tmp_path):
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv1")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 3, 3])],
                              [numpy_helper.from_array(np.ones((1, 1, 2, 2), np.float32), "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "c.onnx")
    with pytest.raises(pyrnn.onnx.OnnxImportError, match=r"'conv1' \(Conv\): operator Conv is not supported"):
        pyrnn.onnx.load(tmp_path / "c.onnx")


def test_mismatched_shapes_and_inputs(tmp_path):
    pyrnn.onnx.export(pyrnn.GRU(3, 4), tmp_path / "g.onnx", lengths=True)
    model = pyrnn.onnx.load(tmp_path / "g.onnx")
    x = np.zeros((5, 2, 3), np.float32)
    with pytest.raises(ValueError, match=r"input 'x': expected shape \(\?, \?, 3\), got \(5, 2, 7\)"):
        model(np.zeros((5, 2, 7), np.float32), np.array([5, 5]))
    with pytest.raises(ValueError, match="missing"):
        model(x)
    with pytest.raises(ValueError, match="lengths"):
        model(x, np.array([5, 9]))
    with pytest.raises(TypeError, match="dtype"):
        model(x.astype(np.int64), np.array([5, 5]))
    model_w = _node_model("GRU", "forward", 0, True, False, False, False, 1, np.random.default_rng(0))
    model_w.graph.initializer[1].CopyFrom(numpy_helper.from_array(np.zeros((1, 12, 5), np.float32), "R"))
    with pytest.raises(Exception, match="R"):
        pyrnn.onnx.OnnxModel(model_w, onnx, "bad-R")
