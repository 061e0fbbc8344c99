"""Every recurrent layer in every architecture: rnn, lstm, gru, slstm and mlstm (by name or as a
layer instance) in Seq2Vec, Seq2Seq, Vec2Seq and EncoderDecoder (both attention kinds, beam
search): finite-difference gradients, training, save/load, and the errors where a cell cannot."""
import numpy as np
import pytest

import pyrnn
from pyrnn import optim
from pyrnn.models import EncoderDecoder, Seq2Seq, Seq2Vec, Vec2Seq

from _fd import check_input_grad, check_param_grads

CELLS = ["rnn", "lstm", "gru", "slstm", "mlstm"]
F64 = "float64"



def _x(B=3, T=5, F=2, seed=2):
    return np.random.default_rng(seed).standard_normal((B, T, F)), np.array([T, 3, 1][:B])


def _roundtrip(model, tmp_path, *args):
    path = tmp_path / "m.safetensors"
    pyrnn.save(model, path)
    loaded = pyrnn.load(path)
    np.testing.assert_array_equal(model.predict(*args), loaded.predict(*args))
    return loaded


@pytest.mark.parametrize("pooling", ["last", "mean"])
@pytest.mark.parametrize("cell", CELLS)
def test_seq2vec_every_cell(cell, pooling, tmp_path):
    m = Seq2Vec(2, 3, hidden_size=4, cell=cell, num_layers=2, pooling=pooling, dtype=F64, seed=0)
    x, lengths = _x()
    check_param_grads(m, lambda: m(x, lengths), n_per_param=2)
    check_input_grad(lambda xx: m(xx, lengths), m.backward, x)
    _roundtrip(m, tmp_path, x, lengths)


@pytest.mark.parametrize("cell", CELLS)
def test_seq2seq_every_cell_trains(cell, tmp_path):
    m = Seq2Seq(vocab_size=6, output_size=6, hidden_size=8, cell=cell, seed=0)
    rng = np.random.default_rng(0)
    X = [rng.integers(0, 6, int(rng.integers(3, 9))) for _ in range(32)]
    Y = [np.roll(x, 1) for x in X]
    h = pyrnn.fit(m, (X, Y), "cross_entropy", optim.Adam(m, lr=0.02), epochs=4, batch_size=8, progress=False)
    assert h["loss"][-1] < h["loss"][0]
    _roundtrip(m, tmp_path, np.stack([x[:3] for x in X]))
    assert m.generate(X[0][:3], 4).shape == (4,)


@pytest.mark.parametrize("cell", CELLS)
def test_vec2seq_every_cell(cell, tmp_path):
    condition = "input" if cell == "mlstm" else "both"
    m = Vec2Seq(3, 7, hidden_size=4, cell=cell, num_layers=2, condition=condition, dtype=F64, seed=0)
    v = np.random.default_rng(0).standard_normal((2, 3))
    tgt = np.array([[1, 4, 5, 3], [1, 6, 0, 0]])
    lengths = np.array([4, 2])
    check_param_grads(m, lambda: m(v, tgt, lengths), n_per_param=2)
    check_input_grad(lambda vv: m(vv, tgt, lengths), m.backward, v)
    loaded = _roundtrip(m, tmp_path, v, tgt, lengths)
    assert loaded.generate(v, max_len=5) == m.generate(v, max_len=5)
    assert len(m.generate(v, max_len=5, beam_width=3)) == 2


@pytest.mark.parametrize("attention", ["general", "bahdanau"])
@pytest.mark.parametrize("cell", CELLS)
def test_encoder_decoder_every_cell(cell, attention, tmp_path):
    bidirectional = cell in ("rnn", "lstm", "gru")
    m = EncoderDecoder(7, 6, hidden_size=4, embedding_dim=3, cell=cell, num_layers=2, bidirectional=bidirectional,
                       attention=attention, dtype=F64, seed=0)
    src = np.array([[3, 4, 5, 6, 3], [4, 5, 0, 0, 0]])
    src_len = np.array([5, 2])
    tgt = np.array([[1, 3, 4], [1, 5, 0]])
    tgt_len = np.array([3, 2])
    check_param_grads(m, lambda: m(src, tgt, src_len, tgt_len), n_per_param=2)
    loaded = _roundtrip(m, tmp_path, src, tgt, src_len, tgt_len)
    greedy = m.generate(src, src_len, max_len=4)
    assert loaded.generate(src, src_len, max_len=4) == greedy
    assert len(m.generate(src, src_len, max_len=4, beam_width=3)) == 2


def test_layer_instance_as_cell(tmp_path):
    layer = pyrnn.SLSTM(2, 8, num_heads=2, forget_gate="exp", batch_first=True, dtype=F64, seed=3)
    m = Seq2Vec(2, 1, cell=layer, dtype=F64, seed=0)
    assert m.rnn is layer and m.get_config()["cell"]["forget_gate"] == "exp"
    x, lengths = _x()
    loaded = _roundtrip(m, tmp_path, x, lengths)
    assert loaded.rnn.num_heads == 2 and loaded.rnn.forget_gate == "exp"
    with pytest.raises(ValueError, match="batch_first=True"):
        Seq2Vec(2, 1, cell=pyrnn.GRU(2, 4))
    with pytest.raises(ValueError, match="reads 3 features"):
        Seq2Vec(2, 1, cell=pyrnn.GRU(3, 4, batch_first=True))


@pytest.mark.parametrize("cell", ["slstm", "mlstm"])
def test_xlstm_bidirectional_is_a_clear_error(cell):
    with pytest.raises(ValueError, match="forward in time only"):
        Seq2Vec(2, 1, hidden_size=4, cell=cell, bidirectional=True)


def test_mlstm_limits_are_clear_errors():
    with pytest.raises(ValueError, match="condition='input'"):
        Vec2Seq(3, 7, hidden_size=4, cell="mlstm")
    with pytest.raises(ValueError, match="attention"):
        EncoderDecoder(7, 6, hidden_size=4, cell="mlstm", bidirectional=False, attention=None)
