"""Eval mode packs a layer's weights once: the packing is reused, never stale, and the
parameters are read-only meanwhile."""
import numpy as np
import pytest

import pyrnn
from pyrnn import _core, reference

CASES = [
    (pyrnn.LSTM, {}), (pyrnn.LSTM, {"proj_size": 4}), (pyrnn.GRU, {}),
    (pyrnn.GRU, {"reset_after": False}), (pyrnn.RNN, {"nonlinearity": "relu"}),
]


@pytest.mark.parametrize("cls,kwargs", CASES)
def test_eval_forward_equals_training_forward_bitwise(isa, cls, kwargs):
    layer = cls(6, 21, num_layers=2, bidirectional=True, seed=0, **kwargs)
    x = np.random.default_rng(1).standard_normal((9, 3, 6)).astype(np.float32)
    lengths = np.array([9, 4, 1])
    y_train, _ = layer(x, lengths=lengths)
    layer.eval()
    y_eval, _ = layer(x, lengths=lengths)       # packs and keeps the packing
    y_again, _ = layer(x, lengths=lengths)      # reuses it
    np.testing.assert_array_equal(y_eval, y_train)
    np.testing.assert_array_equal(y_again, y_train)


def _states(state):
    return state if isinstance(state, tuple) else (state,)


@pytest.fixture
def restore_input_chunk():
    saved = _core._input_chunk_bytes()
    yield
    _core._set_input_chunk_bytes(saved)


# (T, B, H): batch 3 splits a step by hidden units on 2 threads, batch 16 by batch rows.
@pytest.mark.parametrize("sizes", [(7, 3, 150), (11, 16, 21)], ids=["units split", "rows split"])
@pytest.mark.parametrize("cls,kwargs", CASES)
def test_eval_forward_in_input_chunks_equals_training_forward_bitwise(
        isa, cls, kwargs, sizes, restore_native_settings, restore_input_chunk):
    """Inference projects the input a chunk of steps at a time (16 MB by default, more than
    these sizes need): chunks of one and of two steps, in both directions, with padding."""
    T, B, H = sizes
    layer = cls(6, H, bidirectional=True, seed=0, **kwargs)
    x = np.random.default_rng(1).standard_normal((T, B, 6)).astype(np.float32)
    lengths = np.arange(B) % T + 1
    step_bytes = B * {"LSTM": 4, "GRU": 3, "RNN": 1}[cls.__name__] * H * 4
    for threads in (1, 2):
        _core.set_num_threads(threads)
        layer.train()
        y_train, h_train = layer(x, lengths=lengths)
        layer.eval()
        for chunk in (step_bytes, 2 * step_bytes + 1):
            _core._set_input_chunk_bytes(chunk)
            y_eval, h_eval = layer(x, lengths=lengths)
            np.testing.assert_array_equal(y_eval, y_train)
            for got, want in zip(_states(h_eval), _states(h_train)):
                np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match=">= 1 byte"):
        _core._set_input_chunk_bytes(0)


def test_eval_parameters_are_read_only_until_train():
    lstm = pyrnn.LSTM(3, 5).eval()
    w = lstm.parameters()["weight_hh_l0"]
    with pytest.raises(ValueError, match="read-only"):
        w += 1.0
    lstm.train()
    w += 1.0  # writable again


def test_load_state_dict_in_eval_mode_repacks():
    x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
    a, b = pyrnn.GRU(3, 8, seed=1).eval(), pyrnn.GRU(3, 8, seed=2).eval()
    a(x)                                   # a's weights are packed now
    a.load_state_dict(b.state_dict())
    np.testing.assert_array_equal(a(x)[0], b(x)[0])
    assert not a.parameters()["weight_ih_l0"].flags.writeable   # still frozen after loading
    cell_a, cell_b = pyrnn.LSTMCell(3, 4, seed=1).eval(), pyrnn.LSTMCell(3, 4, seed=2).eval()
    cell_a(x[0])
    cell_a.load_state_dict(cell_b.state_dict())
    np.testing.assert_array_equal(cell_a(x[0])[0], cell_b(x[0])[0])


def test_model_load_state_dict_reaches_frozen_layers():
    model = pyrnn.models.Seq2Vec(3, 2, hidden_size=6, seed=0).eval()
    other = pyrnn.models.Seq2Vec(3, 2, hidden_size=6, seed=5).eval()
    x = np.random.default_rng(0).standard_normal((2, 7, 3)).astype(np.float32)
    model(x)
    model.load_state_dict(other.state_dict())
    np.testing.assert_array_equal(model(x), other(x))


def test_optimizer_step_in_eval_mode_is_a_clear_error():
    lstm = pyrnn.LSTM(3, 5)
    opt = pyrnn.optim.SGD(lstm, lr=0.1)
    lstm.eval()
    with pytest.raises(RuntimeError, match="eval mode"):
        opt.step()


def test_packed_weights_are_a_snapshot_and_checked():
    rng = np.random.default_rng(0)
    w_ih, w_hh = rng.standard_normal((12, 3)), rng.standard_normal((12, 4))   # H = 4
    packed = _core.pack_layer("gru", w_ih, w_hh, None, None, None)
    x, h = rng.standard_normal((2, 3)), rng.standard_normal((2, 4))
    before = _core.layer_step(x, h, None, packed)[0]
    w_hh += 1.0                           # the packing is a copy
    np.testing.assert_array_equal(_core.layer_step(x, h, None, packed)[0], before)
    np.testing.assert_allclose(before, reference.layer_step(x, h, None, reference.pack_layer(
        "gru", w_ih, w_hh - 1.0, None, None, None))[0], rtol=1e-12)
    with pytest.raises(ValueError, match="different layer"):
        _core.layer_forward("gru", x[None], h, None, w_ih, w_hh, None, None, None, None, False,
                            False, _core.pack_layer("gru", w_ih[:, :2].copy(), w_hh, None, None, None))
    with pytest.raises(TypeError, match="dtype"):
        _core.layer_step(x.astype(np.float32), h.astype(np.float32), None, packed)
    with pytest.raises(ValueError, match=r"x: expected shape \(B, 3\)"):
        _core.layer_step(x[:, :2].copy(), h, None, packed)
    with pytest.raises(TypeError, match="PackedWeights"):
        _core.layer_step(x, h, None, (w_ih, w_hh))


def test_packed_weights_belong_to_their_isa(restore_native_settings):
    isas = _core.available_isas()
    if len(isas) < 2:
        pytest.skip("one instruction set on this machine")
    _core.select_isa(isas[0])
    packed = _core.pack_layer("rnn_tanh", np.ones((4, 2)), np.ones((4, 4)), None, None, None)
    _core.select_isa(isas[-1])
    with pytest.raises(ValueError, match="pack them again"):
        _core.layer_step(np.ones((1, 2)), np.ones((1, 4)), None, packed)
    # Layers and cells repack by themselves when the instruction set changes, also on the
    # streaming fast path (a state fed back from the previous step).
    layer = pyrnn.RNN(2, 4, dtype=np.float64, seed=0).eval()
    cell = pyrnn.LSTMCell(2, 4, dtype=np.float64, seed=0).eval()
    x = np.ones((1, 2))
    _core.select_isa(isas[0])
    y0, state = layer.step(x)
    h0, c0 = cell(x)
    y1, _ = layer.step(x, state)
    h1, _ = cell(x, (h0, c0))
    _core.select_isa(isas[-1])
    np.testing.assert_allclose(layer.step(x)[0], y0, rtol=1e-12)
    np.testing.assert_allclose(layer.step(x, state)[0], y1, rtol=1e-12)
    np.testing.assert_allclose(cell(x, (h0, c0))[0], h1, rtol=1e-12)
    assert issubclass(_core.StalePackedWeights, ValueError)
    with pytest.raises(_core.StalePackedWeights):    # packed above for isas[0]
        _core.layer_step(np.ones((1, 2)), np.ones((1, 4)), None, packed)
