"""Fuzz of checkpoint files: whatever a header, its config or the bytes hold, loading either
works or raises CheckpointError (never another exception, never a hang or a huge allocation).
``PYRNN_FUZZ_EXAMPLES`` raises the number of examples (CI runs more)."""
import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from pyrnn.checkpoint import CheckpointError, load, load_file, save
from pyrnn.models import EncoderDecoder, Seq2Vec

EXAMPLES = int(os.environ.get("PYRNN_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=False, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=8)
    | st.sampled_from([0, 1, 2, 2**31, 2**32, 2**63, 2**64, -1, "F32", "BOOL", "F16", "I64", [], {}]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12)


def _model_file(tmp_path_factory, make):
    path = tmp_path_factory.mktemp("ck") / "m.safetensors"
    save(make(), path)
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8:8 + n]), raw[8 + n:]


@pytest.fixture(scope="module", params=["seq2vec", "encdec"])
def original(request, tmp_path_factory):
    make = {"seq2vec": lambda: Seq2Vec(3, 2, hidden_size=4, num_layers=2, seed=0),
            "encdec": lambda: EncoderDecoder(6, 7, hidden_size=4, attention="bahdanau", attention_size=3, seed=0)}
    return _model_file(tmp_path_factory, make[request.param])


def _write(tmp_path, header, data):
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path = tmp_path / "fuzz.safetensors"
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + data)
    return path


def _loads_or_refuses(path):
    for read in (load_file, load):
        try:
            read(path)
        except CheckpointError as e:
            assert str(path) in str(e)


@st.composite
def header_mutations(draw, header):
    header = json.loads(json.dumps(header))
    names = [k for k in header if k != "__metadata__"]
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["field", "entry", "drop", "add", "metadata", "config"]))
        name = draw(st.sampled_from(names))
        meta = header.get("__metadata__")
        if kind == "field" and isinstance(header.get(name), dict):
            header[name][draw(st.sampled_from(["dtype", "shape", "data_offsets"]))] = draw(json_values)
        elif kind == "entry":
            header[name] = draw(json_values)
        elif kind == "drop":
            header.pop(name, None)
        elif kind == "add":
            header[draw(st.text(max_size=6))] = draw(json_values)
        elif kind == "metadata" and isinstance(meta, dict):
            meta[draw(st.sampled_from(["format", "class", "config", "x"]))] = draw(json_values)
        elif kind == "config" and isinstance(meta, dict) and str(meta.get("config", "")).startswith("{\""):
            config = json.loads(meta["config"])
            config[draw(st.sampled_from(sorted(config)))] = draw(json_values)
            meta["config"] = json.dumps(config)
    return header


@seed(20261203)
@FUZZ
@given(data=st.data())
def test_header_mutations_load_or_raise_checkpoint_error(original, tmp_path, data):
    header, body = original
    _loads_or_refuses(_write(tmp_path, data.draw(header_mutations(header)), body))


@seed(20261203)
@FUZZ
@given(data=st.data())
def test_byte_mutations_load_or_raise_checkpoint_error(original, tmp_path, data):
    header, body = original
    raw = bytearray(len(json.dumps(header).encode()).to_bytes(8, "little") + json.dumps(header).encode() + body)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.none() | st.integers(0, len(raw)))
    path = tmp_path / "fuzz.safetensors"
    path.write_bytes(bytes(raw[:cut]))
    _loads_or_refuses(path)


@seed(20261203)
@FUZZ
@given(shape=st.lists(st.integers(0, 2**66) | st.booleans(), max_size=4),
       offsets=st.lists(st.integers(-2, 2**66), min_size=2, max_size=2),
       code=st.sampled_from(["F32", "F64", "F16", "BOOL", "U8", "I64"]),
       data=st.binary(max_size=64))
def test_tensor_entries_load_or_raise_checkpoint_error(tmp_path, shape, offsets, code, data):
    path = _write(tmp_path, {"t": {"dtype": code, "shape": shape, "data_offsets": offsets}}, data)
    try:
        tensors, _ = load_file(path)
    except CheckpointError:
        return
    assert tensors["t"].shape == tuple(shape) and tensors["t"].nbytes == len(data)
    assert np.asarray(tensors["t"]).dtype.isnative
