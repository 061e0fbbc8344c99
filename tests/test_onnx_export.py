"""pyrnn.onnx.export: ONNX Runtime runs every exported file and matches pyrnn within 1e-5
(float32) over a pairwise grid of the layer options, for the models and the encoder-decoder."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import pyrnn

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
import pyrnn.onnx  # noqa: E402

TOL = dict(rtol=1e-5, atol=1e-5)
T, B, I, H = 6, 3, 4, 5

#        layers bidir  batch_first bias   lengths initial proj peep
GRID = [
    (1, False, False, True, False, False, 0, False),
    (2, True, False, False, True, True, 0, True),
    (3, False, True, True, True, False, 3, False),
    (2, True, True, True, False, True, 3, True),
    (1, True, False, False, True, False, 2, False),
    (2, False, True, True, True, True, 0, False),
    (1, False, False, True, True, True, 2, True),
]
FIELDS = ("num_layers", "bidirectional", "batch_first", "bias", "lengths", "initial_states", "proj", "peep")
KINDS = ["rnn_tanh", "rnn_relu", "gru", "gru_reset_before", "lstm"]


def _layer(kind, o):
    common = dict(num_layers=o["num_layers"], bidirectional=o["bidirectional"], batch_first=o["batch_first"],
                  bias=o["bias"], dropout=0.2 if o["num_layers"] > 1 else 0.0, seed=11)
    if kind == "lstm":
        return pyrnn.LSTM(I, H, proj_size=o["proj"], peepholes=o["peep"], **common)
    if kind.startswith("gru"):
        return pyrnn.GRU(I, H, reset_after=kind == "gru", **common)
    return pyrnn.RNN(I, H, nonlinearity=kind[4:], **common)


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("row", GRID, ids=[",".join(f"{f}={v}" for f, v in zip(FIELDS, r) if v) for r in GRID])
@pytest.mark.parametrize("kind", KINDS)
def test_layer_matches_onnxruntime(kind, row, tmp_path):
    o = dict(zip(FIELDS, row))
    if kind != "lstm" and (o["proj"] or o["peep"]):
        o.update(proj=0, peep=False)
    layer = _layer(kind, o).eval()
    is_lstm = kind == "lstm"
    rng = np.random.default_rng(3)
    path = tmp_path / "layer.onnx"
    assert pyrnn.onnx.export(layer, path, lengths=o["lengths"], initial_states=o["initial_states"]) == {"layer": str(path)}
    sess = _session(path)
    stack = layer.num_layers * layer.num_directions
    for batch, steps in ((B, T), (1, 2), (5, 9)):                       # dynamic batch and time
        x = rng.standard_normal((batch, steps, I) if o["batch_first"] else (steps, batch, I)).astype(np.float32)
        feeds = {"x": x}
        lengths = None
        if o["lengths"]:
            lengths = rng.integers(1, steps + 1, size=batch)
            lengths[0] = steps
            feeds["lengths"] = lengths
        h0 = c0 = None
        if o["initial_states"]:
            h0 = feeds["h0"] = rng.standard_normal((stack, batch, layer.output_size)).astype(np.float32)
            if is_lstm:
                c0 = feeds["c0"] = rng.standard_normal((stack, batch, H)).astype(np.float32)
        got = sess.run(None, feeds)
        if is_lstm:
            y, (h_n, c_n) = layer(x, (h0, c0), lengths=lengths)
            expected = [y, h_n, c_n]
        else:
            y, h_n = layer(x, h0, lengths=lengths)
            expected = [y, h_n]
        assert len(got) == len(expected)
        for name, a, b in zip(("y", "h_n", "c_n"), got, expected):
            np.testing.assert_allclose(a, b, **TOL, err_msg=f"{name} at B={batch}, T={steps}")


def _seq_inputs(tokens, rng, batch=4, steps=7):
    if tokens:
        x = rng.integers(1, 20, size=(batch, steps))
    else:
        x = rng.standard_normal((batch, steps, 3)).astype(np.float32)
    lengths = rng.integers(1, steps + 1, size=batch)
    lengths[0] = steps
    return x, lengths


@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
@pytest.mark.parametrize("cell,bidirectional,tokens,lengths", [
    ("lstm", True, False, True), ("gru", False, True, True), ("rnn", True, True, False), ("lstm", False, False, False),
])
def test_seq2vec(cell, bidirectional, tokens, lengths, pooling, tmp_path):
    kw = dict(vocab_size=20) if tokens else dict(input_size=3)
    model = pyrnn.Seq2Vec(output_size=2, hidden_size=6, cell=cell, num_layers=2, bidirectional=bidirectional,
                          pooling=pooling, seed=1, **kw).eval()
    x, lens = _seq_inputs(tokens, np.random.default_rng(0))
    pyrnn.onnx.export(model, tmp_path / "m.onnx", lengths=lengths)
    feeds = {"x": x, **({"lengths": lens} if lengths else {})}
    got = _session(tmp_path / "m.onnx").run(None, feeds)[0]
    np.testing.assert_allclose(got, model(x, lengths=lens if lengths else None), **TOL)


@pytest.mark.parametrize("cell,tokens,lengths", [("lstm", False, True), ("gru", True, False), ("rnn_relu", False, True)])
def test_seq2seq(cell, tokens, lengths, tmp_path):
    kw = dict(vocab_size=20) if tokens else dict(input_size=3)
    model = pyrnn.Seq2Seq(output_size=3, hidden_size=5, cell=cell, bidirectional=True, seed=2, **kw).eval()
    x, lens = _seq_inputs(tokens, np.random.default_rng(1))
    pyrnn.onnx.export(model, tmp_path / "m.onnx", lengths=lengths)
    feeds = {"x": x, **({"lengths": lens} if lengths else {})}
    got = _session(tmp_path / "m.onnx").run(None, feeds)[0]
    np.testing.assert_allclose(got, model(x, lengths=lens if lengths else None), **TOL)


@pytest.mark.parametrize("cell,attention,bidirectional", [
    ("lstm", "general", True), ("gru", "dot", False), ("lstm", "bahdanau", True), ("rnn", None, False),
])
def test_encoder_decoder_greedy_steps(cell, attention, bidirectional, tmp_path):
    model = pyrnn.EncoderDecoder(12, 9, hidden_size=6, cell=cell, num_layers=2, bidirectional=bidirectional,
                                 attention=attention, seed=3).eval()
    files = pyrnn.onnx.export(model, tmp_path / "ed", lengths=True)
    enc, dec = _session(files["encoder"]), _session(files["decoder_step"])
    rng = np.random.default_rng(4)
    src = rng.integers(3, 12, size=(3, 5))
    src_lengths = np.array([5, 3, 4])
    src[1, 3:] = src[2, 4:] = 0
    enc_out = dict(zip([o.name for o in enc.get_outputs()], enc.run(None, {"src": src, "src_lengths": src_lengths})))
    state, B = model._start(src, src_lengths)
    np.testing.assert_allclose(enc_out["keys"], state["keys"], **TOL)
    np.testing.assert_allclose(enc_out["h0"], state["rnn"][0], **TOL)
    tokens = np.full(3, model.bos_id, np.int64)
    rnn_state = tuple(enc_out[k] for k in ("h0", "c0") if k in enc_out)
    for _ in range(4):
        logp, state, weights = model._decoder_step(tokens, state)
        feeds = {"token": tokens, "h": rnn_state[0], "keys": enc_out["keys"], "src_mask": state["mask"]}
        if cell == "lstm":
            feeds["c"] = rnn_state[1]
        out = dict(zip([o.name for o in dec.get_outputs()], dec.run(None, feeds)))
        logits = out["logits"]
        np.testing.assert_allclose(logits - np.log(np.exp(logits).sum(-1, keepdims=True)), logp, **TOL)
        if attention:
            np.testing.assert_allclose(out["attention"], weights, **TOL)
        rnn_state = tuple(out[k] for k in ("h_n", "c_n") if k in out)
        np.testing.assert_allclose(rnn_state[0], state["rnn"][0], **TOL)
        tokens = np.argmax(logp, axis=-1)


def test_opset_and_dynamic_axes(tmp_path):
    pyrnn.onnx.export(pyrnn.GRU(3, 4, batch_first=True), tmp_path / "g.onnx")
    model = onnx.load(tmp_path / "g.onnx")
    assert model.opset_import[0].version >= 17
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims[:2]] == ["batch", "time"]


def test_bad_objects_and_atomic_writes(tmp_path):
    with pytest.raises(TypeError, match="supports RNN, LSTM, GRU"):
        pyrnn.onnx.export(pyrnn.nn.Linear(2, 3), tmp_path / "x.onnx")
    with pytest.raises(ValueError, match="initial_states"):
        pyrnn.onnx.export(pyrnn.Seq2Vec(input_size=2), tmp_path / "x.onnx", initial_states=True)
    target = tmp_path / "keep.onnx"
    target.write_bytes(b"old")
    layer = pyrnn.LSTM(2, 3)
    layer._params["weight_ih_l0"] = np.zeros((5, 5), np.float32)   # a broken layer fails mid-export
    with pytest.raises(Exception):
        pyrnn.onnx.export(layer, target)
    assert target.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["keep.onnx"]        # no temporary file left behind


def test_without_onnx_the_error_names_the_package(tmp_path):
    code = ("import sys; sys.modules['onnx'] = None\n"
            "import pyrnn, pyrnn.onnx\n"
            "try:\n    pyrnn.onnx.export(pyrnn.GRU(2, 3), 'x.onnx')\n"
            "except ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env=dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(pyrnn.__file__))))
    assert "pip install 'pyrnn[onnx]'" in out.stdout, out.stderr
