"""Checkpoints: bit-exact round trips for every architecture and the core layers, the
safetensors layout (interop with the official package when installed), atomic writes, and
clean errors on truncated, corrupt and mismatched files."""
import json
import os
import signal
import stat
import subprocess
import sys

import numpy as np
import pytest

import pyrnn
from pyrnn import checkpoint
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
    assert header["__metadata__"]["k"] == "v" and len(header["__metadata__"]["pyrnn.sha256"]) == 64
    assert header["a"] == {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}
    back, meta = load_file(path)
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype and np.array_equal(back[k], v)
    assert meta["k"] == "v"


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


# -- a small file must not make load build a big model -------------------------------------------

def _with_config(tmp_path, **changes):
    path = tmp_path / "m.safetensors"
    save(Seq2Vec(3, 2, hidden_size=64, num_layers=2, seed=0), path)
    tensors, meta = load_file(path)
    meta["config"] = json.dumps(dict(json.loads(meta["config"]), **changes))
    save_file(tensors, path, meta)
    return path


@pytest.mark.parametrize("changes,message", [
    ({"hidden_size": 10**7}, "hidden_size=10000000 is larger than any tensor dimension"),
    ({"num_layers": 10**5}, "num_layers=100000 does not match the file, whose tensor names count 2 layers"),
    ({"hidden_size": 256}, "hidden_size=256 with hidden_size=256 implies a weight of 65536 elements"),
    ({"input_size": 200, "hidden_size": 100}, "input_size=200 with hidden_size=100 implies"),
    ({"output_size": -1}, "output_size=-1 is not a size"),
    ({"hidden_size": True}, "hidden_size=True is not a size"),
    ({"hidden_size": 1e300}, "is not a size"),
])
def test_config_is_checked_against_the_tensors_before_building(tmp_path, monkeypatch, changes, message):
    path = _with_config(tmp_path, **changes)

    def never(*args, **kwargs):
        raise AssertionError("the model was built before its config was checked")

    monkeypatch.setattr(Seq2Vec, "from_config", classmethod(never))
    with pytest.raises(CheckpointError, match=message) as info:
        load(path)
    assert str(path) in str(info.value)


def test_config_that_is_not_an_object(tmp_path):
    path = tmp_path / "m.safetensors"
    save(Seq2Vec(3, 2, hidden_size=4, seed=0), path)
    tensors, meta = load_file(path)
    for config in ("[1, 2]", "[" * 100_000 + "]" * 100_000, "3"):
        meta["config"] = config
        save_file(tensors, path, meta)
        with pytest.raises(CheckpointError, match="corrupt config"):
            load(path)


# -- malformed headers ---------------------------------------------------------------------------

def _raw_file(tmp_path, header, data=b""):
    raw = json.dumps(header).encode() if not isinstance(header, bytes) else header
    path = tmp_path / "h.safetensors"
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + data)
    return path


@pytest.mark.parametrize("header,data,message", [
    ({"a": {"dtype": "F32", "shape": [2**64], "data_offsets": [0, 4]}}, b"\0" * 4, "larger than an array"),
    ({"a": {"dtype": "F32", "shape": [2**32, 2**32], "data_offsets": [0, 0]}}, b"", "larger than an array"),
    ({"a": {"dtype": "F64", "shape": [0, 2**40, 2**40], "data_offsets": [0, 0]}}, b"", "larger than an array can be"),
    ({"a": {"dtype": "F32", "shape": [True, 4], "data_offsets": [0, 16]}}, b"\0" * 16, "non-negative integers"),
    ({"a": {"dtype": "F32", "shape": [1.0], "data_offsets": [0, 4]}}, b"\0" * 4, "non-negative integers"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [False, 4]}}, b"\0" * 4, "non-negative integers"),
    ({"a": {"dtype": ["F32"], "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4, "unsupported dtype"),
    ({"a": {"dtype": "BOOL", "shape": [2], "data_offsets": [0, 2]}}, b"\1\2", "BOOL bytes must be 0 or 1"),
    ({"__metadata__": [], "a": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]}}, b"\0" * 4, "__metadata__"),
    (b'{"a": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]}, "a": 1}', b"\0" * 4, "appears twice"),
    (b"[" * 200_000 + b"]" * 200_000, b"", "nested too deeply|not valid JSON"),
    (b'{"a": ' * 200_000 + b"1" + b"}" * 200_000, b"", "nested too deeply|not valid JSON"),
    (b"\xff\xfe", b"", "not valid JSON"),
])
def test_malformed_headers_raise_checkpoint_error(tmp_path, header, data, message):
    path = _raw_file(tmp_path, header, data)
    with pytest.raises(CheckpointError, match=message):
        load_file(path)
    with pytest.raises(CheckpointError):
        load(path)


def test_bool_and_integer_tensors_in_a_model_file(tmp_path):
    path = tmp_path / "m.safetensors"
    save(Seq2Vec(3, 2, hidden_size=4, seed=0), path)
    tensors, meta = load_file(path)
    tensors["head.bias"] = np.array([True, False])
    save_file(tensors, path, meta)
    with pytest.raises(CheckpointError, match=r"head.bias \(bool\)"):
        load(path)
    with pytest.raises(CheckpointError, match="not numeric"):
        load(path, convert=True)


# -- integrity -----------------------------------------------------------------------------------

def test_a_flipped_bit_in_the_data_is_caught(tmp_path):
    path = tmp_path / "m.safetensors"
    save(Seq2Vec(3, 2, hidden_size=4, seed=0), path)
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0x10                                       # inside the last tensor's bytes
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="does not match its SHA-256"):
        load_file(path)


def test_files_without_a_checksum_still_load(tmp_path):
    path = tmp_path / "m.safetensors"
    m = Seq2Vec(3, 2, hidden_size=4, seed=0)
    save(m, path)
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    del header["__metadata__"][checkpoint.DIGEST_KEY]
    new = json.dumps(header).encode()
    new += b" " * (-len(new) % 8)
    path.write_bytes(len(new).to_bytes(8, "little") + new + raw[8 + n:])
    assert checkpoint.DIGEST_KEY not in read_metadata(path)
    again = load(path)
    for k, v in m.state_dict().items():
        assert again.state_dict()[k].tobytes() == v.tobytes()


# -- dtypes --------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float16, np.int64, np.uint8, np.float64])
def test_tensors_of_another_dtype_are_refused_unless_converted(tmp_path, dtype):
    path = tmp_path / "m.safetensors"
    m = Seq2Vec(3, 2, hidden_size=4, seed=0)
    save(m, path)
    tensors, meta = load_file(path)
    cast = {k: (v * 10).astype(dtype) for k, v in tensors.items()}
    save_file(cast, path, meta)
    with pytest.raises(CheckpointError, match=rf"not float32, the model's dtype: .*\({np.dtype(dtype).name}\)"):
        load(path)
    with pytest.raises(CheckpointError, match="convert=True"):
        load(path, into=Seq2Vec(3, 2, hidden_size=4))
    again = load(path, convert=True)
    for k, v in cast.items():
        np.testing.assert_array_equal(again.state_dict()[k], v.astype(np.float32))
        assert again.state_dict()[k].dtype == np.float32


# -- atomic writes: temporaries, links, permissions -----------------------------------------------

_KILLED_SAVE = """
import os, signal, sys
sys.path.insert(0, {root!r})
import pyrnn
os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)     # die just before the rename
pyrnn.save(pyrnn.Seq2Vec(3, 2, hidden_size=8, seed=0), {path!r})
"""


def test_a_killed_save_leaves_a_temporary_that_the_next_save_removes(tmp_path):
    path = tmp_path / "m.safetensors"
    save(Seq2Vec(3, 2, hidden_size=4, seed=0), path)
    before = path.read_bytes()
    root = os.path.dirname(os.path.dirname(pyrnn.__file__))
    done = subprocess.run([sys.executable, "-c", _KILLED_SAVE.format(root=root, path=str(path))])
    assert done.returncode == -signal.SIGKILL
    assert path.read_bytes() == before
    stale = [p.name for p in tmp_path.iterdir() if p.name != "m.safetensors"]
    assert len(stale) == 1 and stale[0].startswith(".tmp-m.safetensors-")
    save(Seq2Vec(3, 2, hidden_size=4, seed=1), path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_only_stale_temporaries_of_the_same_target_are_removed(tmp_path):
    path = tmp_path / "m.safetensors"
    host = checkpoint._host_tag()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    keep = [f".tmp-m.safetensors-{host}-{os.getpid()}-abc123",      # a save in progress here
            f".tmp-m.safetensors-0badf00d-{dead.pid}-abc123",       # another host's
            f".tmp-other.safetensors-{host}-{dead.pid}-abc123",     # another target's
            "m.safetensors.bak"]
    gone = f".tmp-m.safetensors-{host}-{dead.pid}-abc123"
    for name in keep + [gone]:
        (tmp_path / name).write_bytes(b"x")
    save(Seq2Vec(3, 2, hidden_size=4, seed=0), path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keep + ["m.safetensors"])


def test_saving_through_a_symlink_replaces_its_target(tmp_path):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "m.safetensors"
    save(Seq2Vec(3, 2, hidden_size=4, seed=0), target)
    link = tmp_path / "link.safetensors"
    link.symlink_to(target)
    new = Seq2Vec(3, 2, hidden_size=4, seed=1)
    save(new, link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert load(target).state_dict()["head.bias"].tobytes() == new.state_dict()["head.bias"].tobytes()
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["m.safetensors"]


def test_saving_over_a_file_keeps_its_permissions(tmp_path):
    path = tmp_path / "m.safetensors"
    save(Seq2Vec(3, 2, hidden_size=4, seed=0), path)
    os.chmod(path, 0o600)
    save(Seq2Vec(3, 2, hidden_size=4, seed=1), path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    fresh = tmp_path / "fresh.safetensors"
    save(Seq2Vec(3, 2, hidden_size=4, seed=1), fresh)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(fresh).st_mode) == 0o666 & ~umask
