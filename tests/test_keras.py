"""pyrnn.keras: .keras files, .weights.h5 + config and live Keras objects against Keras 3 (its
torch backend) to 1e-5; loading files without Keras; bad files and unsupported layers."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
pytest.importorskip("h5py")
keras = pytest.importorskip("keras")
import pyrnn  # noqa: E402
import pyrnn.keras as pk  # noqa: E402

# Keras's own variables warn under NumPy 2 when converted: not our concern.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

TOL = dict(rtol=1e-5, atol=1e-5)
L = keras.layers


def _token_model(recurrent):
    return keras.Sequential([keras.Input((None,), dtype="int32"), L.Embedding(20, 4, mask_zero=True), *recurrent,
                             L.Dense(3, activation="softmax")])


def _float_model(recurrent):
    return keras.Sequential([keras.Input((None, 3)), *recurrent, L.Dense(2)])


CASES = {
    "lstm-seq-gru-backwards": lambda: _token_model([L.LSTM(5, return_sequences=True),
                                                    L.GRU(4, go_backwards=True)]),
    "bidir-lstm-concat": lambda: _token_model([L.Bidirectional(L.LSTM(5, return_sequences=True)), L.SimpleRNN(3)]),
    "bidir-gru-sum": lambda: _token_model([L.Bidirectional(L.GRU(4, reset_after=False), merge_mode="sum")]),
    "gru-reset-before-seq": lambda: _token_model([L.GRU(4, reset_after=False, return_sequences=True,
                                                        go_backwards=True), L.LSTM(3)]),
    "simplernn-relu-nobias": lambda: _float_model([L.SimpleRNN(4, activation="relu", use_bias=False,
                                                                return_sequences=True), L.GRU(3)]),
    "bidir-simplernn-ave-seq": lambda: _float_model([L.Bidirectional(L.SimpleRNN(4, return_sequences=True),
                                                                     merge_mode="ave")]),
    "lstm-backwards-seq": lambda: _float_model([L.LSTM(4, go_backwards=True, return_sequences=True)]),
}


def _inputs(model, rng):
    if model.layers[0].__class__.__name__ == "Embedding":
        x = rng.integers(1, 20, size=(4, 6))
        for b, n in enumerate([6, 3, 1, 5]):
            x[b, n:] = 0
        return x
    return rng.standard_normal((4, 6, 3)).astype(np.float32)


def _randomise(model, rng):
    """Non-zero biases everywhere (Keras starts them at zero)."""
    for layer in model.layers:
        layer.set_weights([rng.standard_normal(w.shape).astype(np.float32) * 0.5 for w in layer.get_weights()])


@pytest.mark.parametrize("case", list(CASES))
def test_keras_file_and_live_model_match_keras(case, tmp_path):
    rng = np.random.default_rng(0)
    model = CASES[case]()
    _randomise(model, rng)
    x = _inputs(model, rng)
    expected = np.asarray(model.predict(x, verbose=0))
    path = tmp_path / "m.keras"
    model.save(path)
    np.testing.assert_allclose(pk.load(path)(x), expected, **TOL)
    np.testing.assert_allclose(pk.from_keras(model)(x), expected, **TOL)
    weights = tmp_path / "m.weights.h5"
    model.save_weights(weights)
    with zipfile.ZipFile(path) as z:
        (tmp_path / "config.json").write_bytes(z.read("config.json"))
    np.testing.assert_allclose(pk.load(weights, config=tmp_path / "config.json")(x), expected, **TOL)


def test_single_live_layer():
    layer = L.GRU(4, return_sequences=True)
    x = np.random.default_rng(1).standard_normal((2, 5, 3)).astype(np.float32)
    expected = np.asarray(layer(x).detach().cpu().numpy())
    converted = pk.from_keras(layer)
    assert isinstance(converted.layers[0][1], pyrnn.GRU)
    np.testing.assert_allclose(converted(x), expected, **TOL)


def test_loading_does_not_need_keras(tmp_path):
    model = CASES["bidir-lstm-concat"]()
    x = _inputs(model, np.random.default_rng(2))
    np.save(tmp_path / "expected.npy", np.asarray(model.predict(x, verbose=0)))
    np.save(tmp_path / "x.npy", x)
    model.save(tmp_path / "m.keras")
    code = ("import sys\nsys.modules['keras'] = None\n"
            "import numpy as np, pyrnn.keras\n"
            "y = pyrnn.keras.load('m.keras')(np.load('x.npy'))\n"
            "assert 'keras' not in sys.modules or sys.modules['keras'] is None\n"
            "np.testing.assert_allclose(y, np.load('expected.npy'), rtol=1e-5, atol=1e-5)\nprint('ok')\n")
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(pyrnn.__file__)))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert out.stdout.strip() == "ok", out.stderr


def test_bad_files_and_unsupported_layers(tmp_path):
    text = tmp_path / "notes.keras"
    text.write_text("not a model")
    with pytest.raises(pk.KerasImportError, match="notes.keras"):
        pk.load(text, config={"class_name": "Sequential", "config": {"layers": []}})
    with pytest.raises(pk.KerasImportError, match="needs the model's config"):
        pk.load(text)
    model = CASES["lstm-seq-gru-backwards"]()
    model.save(tmp_path / "m.keras")
    data = (tmp_path / "m.keras").read_bytes()
    (tmp_path / "cut.keras").write_bytes(data[: len(data) // 2])
    with pytest.raises(pk.KerasImportError, match="cut.keras"):
        pk.load(tmp_path / "cut.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as z:
        config = json.loads(z.read("config.json"))
    config["config"]["layers"][2]["class_name"] = "Conv1D"
    with pytest.raises(pk.KerasImportError, match=r"layer 'lstm.*' \(Conv1D\): layer type Conv1D is not supported"):
        pk.load(tmp_path / "m.keras", config=config)
    with pytest.raises(pk.KerasImportError, match="activation"):
        pk.from_keras(keras.Sequential([keras.Input((None, 3)), L.LSTM(3, activation="relu")]))
    ids = np.array([[1, 0, 2, 0]])
    with pytest.raises(ValueError, match="right padding"):
        pk.load(tmp_path / "m.keras")(ids)
