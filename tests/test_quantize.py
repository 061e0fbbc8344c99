"""Quantized inference (pyrnn.quantize): the products against pyrnn/reference_quant.py bit for
bit on every ISA, whole layers against the reference and against float32, thread splits and
streaming bitwise, the API (layers, cells, models, save/load, pickling) and bad input."""
from __future__ import annotations

import copy
import os
import pickle
import sys

import numpy as np
import pytest

import pyrnn
from pyrnn import _core
from pyrnn import reference_quant as rq
from pyrnn.checkpoint import BFLOAT16, CheckpointError
from pyrnn.testing import use_backend

DTYPES = ("int8", "bf16")


def _random(shape, seed=0, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


# ---- the products ----------------------------------------------------------------------------

# (M, N, K): remainders of every tile size, of the 16-column panels and of the k groups.
PRODUCT_SHAPES = [(1, 1, 1), (1, 130, 67), (3, 17, 5), (5, 48, 64), (9, 33, 203), (13, 129, 255)]


@pytest.mark.parametrize("M,N,K", PRODUCT_SHAPES)
def test_int8_product_is_the_reference_bit_for_bit(isa, M, N, K):
    a = _random((M, K), seed=M)
    a[0, 0] = 0.0
    w = _random((N, K), seed=N, scale=0.3)
    q, s = rq.quantize_weight(w)
    got = _core._quant_matmul("int8", a, q, s)
    np.testing.assert_array_equal(got, rq.int8_product(a, q, s))


@pytest.mark.parametrize("M,N,K", PRODUCT_SHAPES)
def test_bf16_product_is_the_reference_bit_for_bit(isa, M, N, K):
    a = _random((M, K), seed=M)
    bits = rq.to_bfloat16(_random((N, K), seed=N, scale=0.3))
    np.testing.assert_array_equal(_core._quant_matmul("bf16", a, bits, None), rq.bf16_product(a, bits))


def test_int8_product_of_extreme_rows(isa):
    """A row with NaN or Inf gives NaN, a zero or tiny row zeros, a huge one no overflow."""
    w = _random((20, 9), scale=0.3)
    q, s = rq.quantize_weight(w)
    a = _random((6, 9), seed=1)
    a[0, 3], a[1, 0], a[2] = np.nan, -np.inf, 0.0
    a[3] = 1e-35
    a[4] *= 1e30
    got = _core._quant_matmul("int8", a, q, s)
    np.testing.assert_array_equal(got, rq.int8_product(a, q, s))
    assert np.isnan(got[:2]).all() and (got[2:4] == 0).all() and np.isfinite(got[4:]).all()
    np.testing.assert_allclose(got[4], a[4] @ w.T, rtol=0.05, atol=1e28)


def test_weight_quantization_bounds():
    """|w - s*q| <= s/2 per element, with s = max|row| / 127 (docs/quantization.md)."""
    w = _random((50, 40), scale=0.2)
    w[3] = 0.0
    q, s = rq.quantize_weight(w)
    assert q.dtype == np.int8 and np.abs(q).max() <= 127 and s[3] == 0 and (q[3] == 0).all()
    np.testing.assert_allclose(s, np.abs(w).max(axis=1) / 127, rtol=1e-6)
    assert np.all(np.abs(w - s[:, None] * q) <= s[:, None] / 2 * (1 + 1e-5))


def test_bfloat16_rounding():
    x = np.array([1.0, 1 + 2**-8, 1 + 3 * 2**-8, -2.5, np.inf, np.nan, 3.0e38], np.float32)
    back = rq.from_bfloat16(rq.to_bfloat16(x))
    np.testing.assert_array_equal(back[:5], np.array([1.0, 1.0, 1 + 2**-6, -2.5, np.inf], np.float32))
    assert np.isnan(back[5]) and np.isfinite(back[6])


# ---- layers against the reference ------------------------------------------------------------

CELLS = ["rnn_tanh", "rnn_relu", "lstm", "gru", "gru_reset_before"]


def _float_layer(cell, I, H, *, proj=0, bias=True, num_layers=1, bidirectional=False, batch_first=False,
                 seed=3):
    common = dict(num_layers=num_layers, bias=bias, bidirectional=bidirectional, batch_first=batch_first,
                  seed=seed)
    if cell == "lstm":
        return pyrnn.LSTM(I, H, proj_size=proj, **common).eval()
    if cell.startswith("gru"):
        return pyrnn.GRU(I, H, reset_after=cell == "gru", **common).eval()
    return pyrnn.RNN(I, H, nonlinearity=cell[4:], **common).eval()


def _reference_layer(q, x, h0, c0, lengths):
    """The reference of a one-layer, one-direction quantized layer, time-major."""
    p = q.parameters()

    def matrix(name):
        if name not in p:
            return None
        w = p[name]
        return rq.QuantizedMatrix(w.view(np.uint16) if w.dtype == BFLOAT16 else w, p.get(name + "_scale"))
    return rq.layer_forward(q.cell, x, h0, c0, matrix("weight_ih_l0"), matrix("weight_hh_l0"),
                            p.get("bias_ih_l0"), p.get("bias_hh_l0"), matrix("weight_hr_l0"), lengths, False)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", CELLS)
def test_layer_matches_reference(isa, cell, dtype):
    """One step (products exact, the rest to float tolerance) and a sequence with lengths (a
    one-ulp difference of a state can move its quantized value by one step: looser)."""
    I, H, B = 19, 21, 3
    proj = 6 if cell == "lstm" else 0
    q = pyrnn.quantize(_float_layer(cell, I, H, proj=proj), dtype)
    P = proj or H
    for T, lengths, tol in ((1, None, 2e-5), (7, np.array([7, 3, 5]), 2e-3)):
        x = _random((T, B, I), seed=T)
        h0 = _random((1, B, P), seed=11, scale=0.5)
        c0 = _random((1, B, H), seed=12, scale=0.5)
        state = (h0, c0) if cell == "lstm" else h0
        y, _ = q(x, state, lengths=lengths)
        y_ref, _, _ = _reference_layer(q, x, h0[0], c0[0] if cell == "lstm" else None, lengths)
        np.testing.assert_allclose(y, y_ref, atol=tol, rtol=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", CELLS)
def test_quantized_layer_is_close_to_float(cell, dtype):
    """Every option; the error bound of docs/quantization.md at this scale."""
    I, H = 12, 16
    for opts in (dict(num_layers=2, bidirectional=True, batch_first=True),
                 dict(bias=False, proj=5 if cell == "lstm" else 0)):
        layer = _float_layer(cell, I, H, **opts)
        q = pyrnn.quantize(layer, dtype)
        x = _random((4, 9, I)) if opts.get("batch_first") else _random((9, 4, I))
        lengths = np.array([9, 2, 5, 7])
        y, _ = q(x, lengths=lengths)
        y_f, _ = layer(x, lengths=lengths)
        assert y.shape == y_f.shape and y.dtype == np.float32
        assert np.abs(y - y_f).max() < (0.05 if dtype == "int8" else 0.02)
        assert np.abs(y - y_f).max() > 0  # it is quantized


# ---- threads, chunks and streaming: bitwise ----------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", ["lstm", "gru", "gru_reset_before"])
def test_results_do_not_depend_on_threads_or_chunks(isa, cell, dtype, restore_native_settings):
    """(B, H) = (8, 64) splits a step's work by batch rows, (2, 128) by hidden units (see
    layer_plan.h); a small input chunk projects the input in several pieces."""
    for B, H in ((8, 64), (2, 128)):
        q = pyrnn.quantize(_float_layer(cell, 24, H, proj=16 if cell == "lstm" else 0), dtype)
        x = _random((6, B, 24))
        lengths = np.arange(B) % 6 + 1
        outputs = []
        saved = _core._input_chunk_bytes()
        for threads, chunk in ((1, saved), (2, saved), (2, 1), (1, 1)):
            _core.set_num_threads(threads)
            _core._set_input_chunk_bytes(chunk)
            try:
                outputs.append(q(x, lengths=lengths)[0])
            finally:
                _core._set_input_chunk_bytes(saved)
        for other in outputs[1:]:
            np.testing.assert_array_equal(other, outputs[0])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cls", [pyrnn.LSTM, pyrnn.GRU, pyrnn.RNN])
def test_streaming_step_equals_the_sequence(cls, dtype):
    layer = cls(6, 32, num_layers=2, seed=1).eval()
    q = pyrnn.quantize(layer, dtype)
    x = _random((5, 3, 6))
    y, _ = q(x)
    state, steps = None, []
    for t in range(5):
        y_t, state = q.step(x[t], state)
        steps.append(y_t)
    np.testing.assert_array_equal(np.stack(steps), y)
    one = pyrnn.quantize(cls(6, 32, seed=2).eval(), dtype)  # one layer: the direct path
    state, steps = None, []
    for t in range(5):
        y_t, state = one.step(x[t], state)
        steps.append(y_t)
    np.testing.assert_array_equal(np.stack(steps), one(x)[0])
    y_1, _ = one.step(x[0, 0])  # unbatched
    assert y_1.shape == (32,)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cls", [pyrnn.LSTMCell, pyrnn.GRUCell, pyrnn.RNNCell])
def test_cells(cls, dtype):
    cell = cls(7, 10, seed=0).eval()
    q = pyrnn.quantize(cell, dtype)
    x = _random((4, 7))
    out_q, out_f = q(x), cell(x)
    for a, b in zip(out_q if isinstance(out_q, tuple) else (out_q,), out_f if isinstance(out_f, tuple) else (out_f,)):
        assert a.shape == b.shape and 0 < np.abs(a - b).max() < 0.03
    unbatched = q(x[0])
    assert (unbatched[0] if isinstance(unbatched, tuple) else unbatched).shape == (10,)


# ---- API -------------------------------------------------------------------------------------

def test_inference_only():
    q = pyrnn.quantize(pyrnn.LSTM(4, 8).eval())
    y, (h, c) = q(_random((3, 2, 4)))
    with pytest.raises(RuntimeError, match="inference-only"):
        q.backward(y)
    with pytest.raises(RuntimeError, match="inference-only"):
        q.train()
    assert q.eval() is q and q.training is False and q.grads == {}
    cell = pyrnn.quantize(pyrnn.GRUCell(4, 8).eval(), "bf16")
    with pytest.raises(RuntimeError, match="inference-only"):
        cell.backward(np.zeros((2, 8), np.float32))
    with use_backend("reference"), pytest.raises(RuntimeError, match="reference_quant"):
        q(_random((3, 2, 4)))


def test_memory_is_a_quarter_or_half():
    layer = pyrnn.LSTM(256, 256, num_layers=2).eval()
    float_bytes = sum(p.nbytes for p in layer.parameters().values())
    weights = sum(p.nbytes for k, p in layer.parameters().items() if k.startswith("weight"))
    q8, q16 = pyrnn.quantize(layer), pyrnn.quantize(layer, "bf16")
    assert q8.nbytes < (float_bytes - weights) + weights / 4 * 1.02
    assert q16.nbytes == float_bytes - weights // 2
    assert "weight_ih_l0_scale" in q8.state_dict() and q8.state_dict()["weight_ih_l0"].dtype == np.int8
    assert q16.state_dict()["weight_ih_l0"].dtype == BFLOAT16


@pytest.mark.parametrize("dtype", DTYPES)
def test_pickle_deepcopy_save_load(tmp_path, dtype):
    layer = pyrnn.LSTM(5, 12, num_layers=2, bidirectional=True, proj_size=4, batch_first=True).eval()
    q = pyrnn.quantize(layer, dtype)
    x = _random((2, 6, 5))
    y, _ = q(x)
    for other in (pickle.loads(pickle.dumps(q)), copy.deepcopy(q)):
        np.testing.assert_array_equal(other(x)[0], y)
    path = tmp_path / "q.safetensors"
    pyrnn.save(q, path)
    loaded = pyrnn.load(path)
    assert type(loaded) is type(q) and loaded.quantization == dtype
    np.testing.assert_array_equal(loaded(x)[0], y)
    into = pyrnn.quantize(pyrnn.LSTM(5, 12, num_layers=2, bidirectional=True, proj_size=4,
                                      batch_first=True, seed=9).eval(), dtype)
    pyrnn.load(path, into=into)
    np.testing.assert_array_equal(into(x)[0], y)
    with pytest.raises(CheckpointError, match="cannot load"):
        pyrnn.load(path, into=layer)
    pyrnn.save(layer, tmp_path / "f.safetensors")
    with pytest.raises(CheckpointError, match="cannot load"):
        pyrnn.load(tmp_path / "f.safetensors", into=q)


def test_model_quantization_and_checkpoint(tmp_path):
    model = pyrnn.Seq2Vec(input_size=4, output_size=3, hidden_size=16, cell="lstm", num_layers=2,
                          bidirectional=True).eval()
    X = _random((5, 9, 4))
    q = pyrnn.quantize(model)
    assert q is not model and isinstance(q.rnn, pyrnn.LSTM) and q.rnn.quantization == "int8"
    assert not hasattr(model.rnn, "quantization")  # the original is unchanged
    out, ref = q(X, lengths=np.array([9, 3, 4, 9, 1])), model(X, lengths=np.array([9, 3, 4, 9, 1]))
    assert out.shape == ref.shape and np.abs(out - ref).max() < 0.05
    np.testing.assert_array_equal(q.predict(X), q(X))
    pyrnn.save(q, tmp_path / "m.safetensors")
    np.testing.assert_array_equal(pyrnn.load(tmp_path / "m.safetensors")(X), q(X))
    with pytest.raises(RuntimeError, match="inference-only"):
        q.train()


def test_bad_input():
    with pytest.raises(ValueError, match="training mode.*eval"):
        pyrnn.quantize(pyrnn.LSTM(3, 4))
    with pytest.raises(ValueError, match="training mode"):
        pyrnn.quantize(pyrnn.Seq2Vec(input_size=3, output_size=2, hidden_size=4))
    with pytest.raises(TypeError, match="float64"):
        pyrnn.quantize(pyrnn.GRU(3, 4, dtype=np.float64).eval())
    layer = pyrnn.RNN(3, 4).eval()
    layer.load_state_dict({**layer.state_dict(), "weight_hh_l0": np.full((4, 4), np.inf)})
    with pytest.raises(ValueError, match="NaN or Inf"):
        pyrnn.quantize(layer)
    with pytest.raises(ValueError, match="dtype must be one of"):
        pyrnn.quantize(pyrnn.RNN(3, 4).eval(), "int4")
    with pytest.raises(TypeError, match="layer, cell or model"):
        pyrnn.quantize(np.zeros(3))
    with pytest.raises(ValueError, match="quantized already"):
        pyrnn.quantize(pyrnn.quantize(pyrnn.GRU(3, 4).eval()), "bf16")
    q = pyrnn.quantize(pyrnn.LSTM(3, 4).eval())
    with pytest.raises(ValueError, match="x"):
        q(_random((2, 2, 5)))
    with pytest.raises(TypeError):
        q(_random((2, 2, 3)).astype(np.float64).astype(object))
    with pytest.raises(ValueError, match="weight_ih_l0"):
        q.load_state_dict({**q.state_dict(), "weight_ih_l0": np.zeros((16, 3), np.float32)})
    with pytest.raises(ValueError, match="scale"):
        q.load_state_dict({**q.state_dict(), "weight_ih_l0_scale": np.full(16, np.nan, np.float32)})


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_activations(dtype, bad):
    """NaN propagates as in float32; an Inf that int8 cannot represent makes its row NaN, while
    bf16 (which has Inf) follows float32 (a saturated gate can turn Inf into a finite value)."""
    layer = pyrnn.LSTM(4, 8).eval()
    q = pyrnn.quantize(layer, dtype)
    x = _random((3, 2, 4))
    x[1, 0, 2] = bad
    y, (h, c) = q(x)
    assert np.isfinite(y[:, 1]).all() and np.isfinite(y[0]).all()
    if np.isnan(bad) or dtype == "int8":
        assert np.isnan(y[1:, 0]).all() and np.isnan(h[0, 0]).all()
    else:
        np.testing.assert_array_equal(np.isfinite(y), np.isfinite(layer(x)[0]))


def test_info_reports_the_int8_kernel(capsys):
    from pyrnn.__main__ import main

    assert main(["info"]) == 0
    printed = capsys.readouterr().out
    assert "int8 kernel" in printed and _core.quant_kernels()["int8"] in printed
    assert "quantized self-check" in printed and "PASS" in printed


# ---- accuracy against ONNX Runtime's quantized LSTM ---------------------------------------------

@pytest.mark.parametrize("H", [64, 256])
def test_int8_error_is_at_most_onnxruntimes(H):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
    try:
        from onnx_model import quantized_session, session
        from peers import make_weights
    finally:
        sys.path.pop(0)
    weights = make_weights("lstm", H, H, seed=1)
    x = _random((20, 4, H))
    y_ort = quantized_session("lstm", weights, H, 1).run(["Y"], {"X": x})[0][:, 0]
    y_ref = session("lstm", weights, H, 1).run(["Y"], {"X": x})[0][:, 0]
    layer = pyrnn.LSTM(H, H)
    layer.load_state_dict(weights)
    y_q, _ = pyrnn.quantize(layer.eval())(x)
    ours, theirs = np.abs(y_q - y_ref), np.abs(y_ort - y_ref)
    assert ours.max() <= theirs.max() and ours.mean() <= theirs.mean()


def test_trained_classifier_keeps_its_accuracy():
    """A Seq2Vec LSTM classifier trained for a few seconds (benchmarks/quant_accuracy.py trains
    longer): the int8 and bf16 copies score within half a point of float32 on held-out data."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
    try:
        from quant_accuracy import sine_bands
    finally:
        sys.path.pop(0)
    rng = np.random.default_rng(0)
    X, y = sine_bands(2000, 40, rng)
    Xt, yt = sine_bands(2000, 40, rng)
    model = pyrnn.Seq2Vec(input_size=1, output_size=4, hidden_size=32, cell="lstm", seed=0)
    pyrnn.fit(model, (X, y), "cross_entropy", pyrnn.optim.Adam(model, lr=1e-2), epochs=3, batch_size=64,
              progress=False)
    model.eval()
    scores = {name: float(np.mean(np.argmax(m.predict(Xt), axis=1) == yt))
              for name, m in (("float32", model), ("int8", pyrnn.quantize(model)),
                              ("bf16", pyrnn.quantize(model, "bf16")))}
    assert scores["float32"] > 0.6, scores  # it learned something
    assert abs(scores["int8"] - scores["float32"]) <= 0.005 and abs(scores["bf16"] - scores["float32"]) <= 0.005, scores


def test_bf16_checkpoint_is_bfloat16_for_torch(tmp_path):
    st = pytest.importorskip("safetensors.torch")
    torch = pytest.importorskip("torch")
    layer = pyrnn.GRU(3, 5).eval()
    pyrnn.save(pyrnn.quantize(layer, "bf16"), tmp_path / "g.safetensors")
    tensors = st.load_file(str(tmp_path / "g.safetensors"))
    assert tensors["weight_ih_l0"].dtype == torch.bfloat16 and tensors["bias_ih_l0"].dtype == torch.float32
    np.testing.assert_allclose(tensors["weight_ih_l0"].float().numpy(), layer.parameters()["weight_ih_l0"],
                               rtol=2**-8)


@pytest.mark.parametrize("name", _core.available_isas())
def test_pyrnn_isa_forces_the_quantized_kernels(name):
    import subprocess

    code = ("import pyrnn; from pyrnn import _core; print(_core.active_isa()); "
            "print(_core.quant_kernels()['int8'])")
    env = {**os.environ, "PYRNN_ISA": name}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    isa, kernel = proc.stdout.splitlines()
    assert isa == name
    expected = {"baseline": "scalar", "avx2": "vpmaddubsw", "avx_vnni": "AVX-VNNI", "avx512": "vpmaddubsw",
                "avx512_vnni": "AVX-512 VNNI"}[name]
    assert expected in kernel
