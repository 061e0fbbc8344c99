"""Checkpoints: bit-exact round trips for every architecture and the core layers, the
safetensors layout (interop with the official package when installed), atomic writes, and
clean errors on truncated, corrupt and mismatched files."""
import json
import os

import numpy as np
import pytest

import pyrnn
from pyrnn.checkpoint import CheckpointError, load, load_file, read_metadata, save, save_file
from pyrnn.models import EncoderDecoder, Seq2Seq, Seq2Vec, Vec2Seq

MODELS = [
    lambda: Seq2Vec(3, 2, hidden_size=5, num_layers=2, bidirectional=True, pooling="max", seed=1),
    lambda: Seq2Vec(vocab_size=9, output_size=2, hidden_size=4, cell="gru", seed=2),
    lambda: Seq2Seq(2, 3, hidden_size=4, cell="rnn", dtype="float64", seed=3),
    lambda: Vec2Seq(4, 7, hidden_size=5, condition="input", seed=4),
    lambda: EncoderDecoder(8, 9, hidden_size=6, attention="bahdanau", attention_size=3, seed=5),
    lambda: EncoderDecoder(8, 9, hidden_size=6, cell="gru", attention=None, num_layers=2, seed=6),
    lambda: pyrnn.LSTM(3, 4, num_layers=2, proj_size=2, bidirectional=True, seed=7),
    lambda: pyrnn.GRU(3, 4, reset_after=False, batch_first=True, dtype=np.float64, seed=8),
    lambda: pyrnn.RNNCell(3, 4, nonlinearity="relu", seed=9),
]


@pytest.mark.parametrize("make", MODELS)
def test_round_trip_is_bit_exact(make, tmp_path):
    model = make()
    for p in model.parameters().values():          # not the initial values: prove they are stored
        p += np.random.default_rng(0).standard_normal(p.shape).astype(p.dtype)
    path = tmp_path / "m.safetensors"
    save(model, path)
    again = load(path)
    assert type(again) is type(model)
    a, b = model.state_dict(), again.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].tobytes() == b[k].tobytes(), k
    meta = read_metadata(path)
    assert meta["class"] == type(model).__name__ and meta["format"] == "pyrnn"
    json.loads(meta["config"])


def test_loaded_model_predicts_identically(tmp_path):
    m = EncoderDecoder(8, 9, hidden_size=6, attention="general", seed=5)
    save(m, tmp_path / "m.safetensors")
    src = [[3, 4, 5], [6, 7]]
    assert load(tmp_path / "m.safetensors").generate(src, max_len=5) == m.generate(src, max_len=5)
    into = EncoderDecoder(8, 9, hidden_size=6, attention="general", seed=99)
    load(tmp_path / "m.safetensors", into=into)
    assert into.generate(src, max_len=5) == m.generate(src, max_len=5)


def test_layout_is_safetensors(tmp_path):
    path = tmp_path / "t.safetensors"
    tensors = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([1, -2], np.int64),
               "c": np.zeros((0, 4)), "d": np.array([True, False])}
    save_file(tensors, path, {"k": "v"})
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    assert (8 + n) % 8 == 0
    header = json.loads(raw[8:8 + n])
    assert header["__metadata__"] == {"k": "v"}
    assert header["a"] == {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}
    back, meta = load_file(path)
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype and np.array_equal(back[k], v)
    assert meta == {"k": "v"}


def test_interop_with_official_safetensors(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    m = Seq2Vec(3, 2, hidden_size=5, seed=1)
    ours = tmp_path / "ours.safetensors"
    save(m, ours)
    theirs = st.load_file(str(ours))
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(theirs[k], v)
    official = tmp_path / "official.safetensors"
    st.save_file({k: v for k, v in m.state_dict().items()}, str(official),
                 metadata=dict(read_metadata(ours)))
    again = load(official)
    for k, v in m.state_dict().items():
        assert again.state_dict()[k].tobytes() == v.tobytes()


def _corrupt(tmp_path, mutate):
    path = tmp_path / "m.safetensors"
    save(Seq2Vec(3, 2, hidden_size=4, seed=0), path)
    raw = bytearray(path.read_bytes())
    path.write_bytes(bytes(mutate(raw)))
    return path


@pytest.mark.parametrize("mutate,message", [
    (lambda r: r[:5], "truncated: 5 bytes"),
    (lambda r: r[:40], "truncated: the header needs"),
    (lambda r: r[:-3], "truncated: tensor"),
    (lambda r: r + b"xx", "unexpected bytes after the last tensor"),
    (lambda r: (2**40).to_bytes(8, "little") + r[8:], "corrupt header length"),
    (lambda r: r[:8] + b"}" + r[9:], "not valid JSON"),
    (lambda r: r.replace(b'"F32"', b'"Q32"', 1), "unsupported dtype"),
    (lambda r: r.replace(b'"data_offsets":[0,', b'"data_offsets":[4,', 1), "data_offsets"),
    (lambda r: b"", "truncated: 0 bytes"),
])
def test_corrupt_files_fail_cleanly(tmp_path, mutate, message):
    path = _corrupt(tmp_path, mutate)
    with pytest.raises(CheckpointError, match=message) as info:
        load(path)
    assert str(path) in str(info.value)


def test_mismatched_files(tmp_path):
    path = tmp_path / "m.safetensors"
    save(Seq2Vec(3, 2, hidden_size=4, seed=0), path)
    with pytest.raises(CheckpointError, match="holds a Seq2Vec, cannot load it into a Seq2Seq"):
        load(path, into=Seq2Seq(3, 2, hidden_size=4))
    with pytest.raises(CheckpointError, match=r"weights do not match.*wrong shapes"):
        load(path, into=Seq2Vec(3, 2, hidden_size=5))
    tensors, meta = load_file(path)
    del tensors["head.bias"]
    save_file(tensors, path, meta)
    with pytest.raises(CheckpointError, match="missing keys: head.bias"):
        load(path)
    save_file(tensors, path)
    with pytest.raises(CheckpointError, match="not a pyrnn checkpoint"):
        load(path)
    meta["config"] = '{"input_size": 3, "bogus": 1}'
    save_file(tensors, path, meta)
    with pytest.raises(CheckpointError, match="cannot rebuild Seq2Vec"):
        load(path)


def test_atomic_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    old = Seq2Vec(3, 2, hidden_size=4, seed=0)
    save(old, path)
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("simulated crash before the rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        save(Seq2Vec(3, 2, hidden_size=4, seed=1), path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]   # no temporary left


def test_no_pickle_and_unsupported_inputs(tmp_path):
    with pytest.raises(TypeError, match="cannot store"):
        save_file({"x": np.array(["a"])}, tmp_path / "x.safetensors")
    with pytest.raises(TypeError, match="str to str"):
        save_file({"x": np.zeros(1)}, tmp_path / "x.safetensors", {"a": 1})
    with pytest.raises(TypeError, match="don't know how to rebuild"):
        save(pyrnn.nn.Linear(2, 2), tmp_path / "x.safetensors")
