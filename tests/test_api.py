"""The public API: shapes for every option, parameters and gradients, modes, dropout, errors."""
from __future__ import annotations

import numpy as np
import pytest

import pyrnn

T, B, I, H = 5, 3, 4, 6


def make(kind: str, **kw):
    if kind == "lstm":
        return pyrnn.LSTM(I, H, **kw)
    if kind == "gru":
        return pyrnn.GRU(I, H, **kw)
    if kind == "gru_reset_before":
        return pyrnn.GRU(I, H, reset_after=False, **kw)
    return pyrnn.RNN(I, H, nonlinearity=kind.split("_")[1], **kw)


KINDS = ["rnn_tanh", "rnn_relu", "lstm", "gru", "gru_reset_before"]


def run(layer, x, state=None, lengths=None):
    """Forward; returns (y, h_n, c_n or None)."""
    if isinstance(layer, pyrnn.LSTM):
        y, (h_n, c_n) = layer(x, state, lengths=lengths)
        return y, h_n, c_n
    y, h_n = layer(x, state, lengths=lengths)
    return y, h_n, None


def back(layer, dy, dstate=None):
    if isinstance(layer, pyrnn.LSTM):
        dx, (dh0, dc0) = layer.backward(dy, dstate)
        return dx, dh0, dc0
    dx, dh0 = layer.backward(dy, dstate)
    return dx, dh0, None


# -- shapes -------------------------------------------------------------------------------------


SHAPE_OPTIONS = [(1, False, False, 0), (2, True, False, 0), (3, False, True, 0)]


@pytest.mark.parametrize("kind, num_layers, bidirectional, batch_first, proj",
                         [(k, *o) for k in KINDS for o in SHAPE_OPTIONS]
                         + [("lstm", 2, True, True, 3), ("lstm", 1, False, False, 5)])
def test_shapes(kind, num_layers, bidirectional, batch_first, proj):
    kw = dict(num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first, seed=0)
    if proj:
        kw["proj_size"] = proj
    layer = make(kind, **kw)
    D, P = (2 if bidirectional else 1), (proj or H)
    x = np.zeros((B, T, I) if batch_first else (T, B, I), np.float32)
    y, h_n, c_n = run(layer, x)
    assert y.shape == ((B, T, D * P) if batch_first else (T, B, D * P))
    assert h_n.shape == (D * num_layers, B, P)
    assert c_n is None or c_n.shape == (D * num_layers, B, H)
    dx, dh0, dc0 = back(layer, np.ones_like(y))
    assert dx.shape == x.shape and dh0.shape == h_n.shape
    assert dc0 is None or dc0.shape == c_n.shape
    assert y.flags.c_contiguous and dx.flags.c_contiguous


@pytest.mark.parametrize("kind", KINDS)
def test_unbatched_equals_batch_of_one(kind):
    layer = make(kind, num_layers=2, bidirectional=True, batch_first=True, seed=1)
    x = np.random.default_rng(0).standard_normal((T, I)).astype(np.float32)
    y, h_n, c_n = run(layer, x)
    assert y.shape == (T, 2 * H) and h_n.shape == (4, H)
    dx, dh0, _ = back(layer, np.ones_like(y))
    assert dx.shape == (T, I) and dh0.shape == (4, H)
    yb, hb, cb = run(layer, x[None])  # batch_first: (1, T, I)
    np.testing.assert_allclose(y, yb[0], atol=1e-6)
    np.testing.assert_allclose(h_n, hb[:, 0], atol=1e-6)
    dxb, dh0b, _ = back(layer, np.ones_like(yb))
    np.testing.assert_allclose(dx, dxb[0], atol=1e-6)
    np.testing.assert_allclose(dh0, dh0b[:, 0], atol=1e-6)


def test_batch_first_equals_transposed_time_major():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    tm = pyrnn.GRU(I, H, bidirectional=True, seed=3)
    bf = pyrnn.GRU(I, H, bidirectional=True, batch_first=True, seed=3)
    y1, h1 = tm(x, lengths=[5, 3, 1])
    y2, h2 = bf(x.transpose(1, 0, 2), lengths=[5, 3, 1])
    np.testing.assert_allclose(y1, y2.transpose(1, 0, 2), atol=1e-6)
    np.testing.assert_allclose(h1, h2, atol=1e-6)


def test_lengths_zero_padding_and_final_states():
    lstm = pyrnn.LSTM(I, H, bidirectional=True, seed=0)
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
    y, (h_n, _) = lstm(x, lengths=np.array([5, 2, 3]))
    assert np.all(y[2:, 1] == 0) and np.all(y[3:, 2] == 0)
    # forward direction's final state is the output at each sequence's last valid step
    np.testing.assert_allclose(h_n[0, 1], y[1, 1, :H], atol=1e-6)
    # reverse direction's final state is its output at t = 0
    np.testing.assert_allclose(h_n[1], y[0, :, H:], atol=1e-6)


def test_dtypes():
    x64 = np.ones((T, B, I))
    assert pyrnn.GRU(I, H)(x64)[0].dtype == np.float32          # converted to the layer dtype
    assert pyrnn.GRU(I, H, dtype=np.float64)(x64)[0].dtype == np.float64
    assert pyrnn.GRU(I, H, dtype="float64")(x64.astype(np.float16))[0].dtype == np.float64
    lstm = pyrnn.LSTM(I, H, dtype=np.float64)
    assert all(p.dtype == np.float64 for p in lstm.parameters().values())
    with pytest.raises(TypeError, match="dtype"):
        pyrnn.LSTM(I, H, dtype=np.int32)
    with pytest.raises(TypeError, match="x must be a floating-point"):
        pyrnn.GRU(I, H)(np.ones((T, B, I), np.int64))


# -- parameters, state dicts, gradients -----------------------------------------------------------


def test_parameter_names_and_seeded_init():
    lstm = pyrnn.LSTM(I, H, num_layers=2, bidirectional=True, proj_size=2, seed=7)
    names = list(lstm.state_dict())
    assert names[:5] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "weight_hr_l0"]
    assert "weight_hr_l1_reverse" in names and len(names) == 20
    again = pyrnn.LSTM(I, H, num_layers=2, bidirectional=True, proj_size=2, seed=7)
    for k, v in lstm.state_dict().items():
        np.testing.assert_array_equal(v, again.state_dict()[k])
    assert np.abs(lstm.state_dict()["weight_ih_l0"]).max() <= 1 / np.sqrt(H)
    cell = pyrnn.GRUCell(I, H, bias=False)
    assert list(cell.state_dict()) == ["weight_ih", "weight_hh"]


def test_state_dict_round_trip_and_copies():
    a = pyrnn.GRU(I, H, num_layers=2, seed=0)
    b = pyrnn.GRU(I, H, num_layers=2, seed=1)
    sd = a.state_dict()
    sd["weight_ih_l0"][:] = 0  # a copy: editing it must not change the layer
    assert np.any(a.parameters()["weight_ih_l0"] != 0)
    b.load_state_dict(a.state_dict())
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
    np.testing.assert_array_equal(a(x)[0], b(x)[0])


def test_load_state_dict_accepts_lists_and_other_dtypes_and_keeps_live_arrays():
    cell = pyrnn.RNNCell(2, 3)
    live = cell.parameters()["weight_hh"]
    state = {k: v.astype(np.float64).tolist() for k, v in cell.state_dict().items()}
    state["weight_hh"] = np.eye(3)
    cell.load_state_dict(state)
    assert live is cell.parameters()["weight_hh"]
    np.testing.assert_array_equal(live, np.eye(3, dtype=np.float32))


def test_load_state_dict_reports_problems_by_name():
    lstm = pyrnn.LSTM(I, H)
    sd = lstm.state_dict()
    del sd["bias_hh_l0"]
    sd["weight_hh_l0"] = np.zeros((3, 3))
    sd["extra"] = np.zeros(1)
    before = lstm.state_dict()
    with pytest.raises(ValueError) as e:
        lstm.load_state_dict(sd)
    msg = str(e.value)
    assert "missing keys: bias_hh_l0" in msg
    assert "unexpected keys: extra" in msg
    assert "weight_hh_l0: expected (24, 6), got (3, 3)" in msg
    for k, v in lstm.state_dict().items():  # nothing was written
        np.testing.assert_array_equal(v, before[k])
    with pytest.raises(TypeError):
        lstm.load_state_dict([1, 2])


def test_parameters_are_live():
    gru = pyrnn.GRU(I, H, seed=0)
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
    y0, _ = gru(x)
    params = gru.parameters()
    for k in params:
        params[k] *= 0  # in place
    y1, h1 = gru(x)
    assert np.all(y1 == 0) and np.all(h1 == 0) and not np.all(y0 == 0)


def test_sgd_step_reduces_loss():
    rng = np.random.default_rng(0)
    lstm = pyrnn.LSTM(I, H, seed=0)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    target = rng.standard_normal((T, B, H)).astype(np.float32)
    losses = []
    for _ in range(5):
        y, _ = lstm(x)
        losses.append(float(((y - target) ** 2).mean()))
        lstm.zero_grad()
        lstm.backward(2 * (y - target) / y.size)
        params, grads = lstm.parameters(), lstm.grads
        for k in params:
            params[k] -= 0.5 * grads[k]
    assert losses[-1] < losses[0]


def test_grads_accumulate_and_zero_grad():
    rnn = pyrnn.RNN(I, H, num_layers=2, seed=0)
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
    assert set(rnn.grads) == set(rnn.state_dict())
    assert all(g.shape == rnn.state_dict()[k].shape for k, g in rnn.grads.items())
    y, _ = rnn(x)
    rnn.backward(np.ones_like(y))
    once = {k: g.copy() for k, g in rnn.grads.items()}
    y, _ = rnn(x)
    rnn.backward(np.ones_like(y))
    for k, g in rnn.grads.items():
        np.testing.assert_allclose(g, 2 * once[k], rtol=1e-5, atol=1e-6)
    rnn.zero_grad()
    assert all(np.all(g == 0) for g in rnn.grads.values())


def test_backward_accepts_none_gradients():
    lstm = pyrnn.LSTM(I, H, seed=0)
    x = np.ones((T, B, I), np.float32)
    y, (h_n, c_n) = lstm(x)
    dx, (dh0, dc0) = lstm.backward(None, (np.ones_like(h_n), None))
    assert np.any(dx != 0)
    y, _ = lstm(x)
    dx, (dh0, dc0) = lstm.backward(None)
    assert np.all(dx == 0) and np.all(dh0 == 0) and np.all(dc0 == 0)


# -- modes, dropout, backward errors ---------------------------------------------------------------


def test_train_eval_modes():
    gru = pyrnn.GRU(I, H, seed=0)
    assert gru.training
    assert gru.eval() is gru and not gru.training
    x = np.ones((T, B, I), np.float32)
    y, _ = gru(x)
    with pytest.raises(RuntimeError, match="eval mode"):
        gru.backward(np.ones_like(y))
    gru.train()
    y2, _ = gru(x)
    np.testing.assert_array_equal(y, y2)
    gru.backward(np.ones_like(y))


def test_backward_errors_explain_why():
    lstm = pyrnn.LSTM(I, H)
    with pytest.raises(RuntimeError, match="training-mode forward"):
        lstm.backward(np.zeros((T, B, H), np.float32))
    y, _ = lstm(np.ones((T, B, I), np.float32))
    lstm.backward(np.ones_like(y))
    with pytest.raises(RuntimeError, match="already ran"):
        lstm.backward(np.ones_like(y))
    y, _ = lstm(np.ones((T, B, I), np.float32))
    with pytest.raises(ValueError, match=r"dy: expected shape .* = \(5, 3, 6\), got \(5, 3, 7\)"):
        lstm.backward(np.ones((T, B, H + 1), np.float32))
    with pytest.raises(TypeError, match="dstate must be a pair"):
        lstm.backward(np.ones_like(y), np.ones((1, B, H)))


def test_eval_after_training_forward_discards_the_cache():
    gru = pyrnn.GRU(I, H)
    y, _ = gru(np.ones((T, B, I), np.float32))
    gru.eval()
    with pytest.raises(RuntimeError, match="eval mode"):
        gru.backward(np.ones_like(y))


def _dropout_run(seed, training=True):
    lstm = pyrnn.LSTM(I, H, num_layers=3, dropout=0.5, seed=seed).train(training)
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
    y, _ = lstm(x)
    dx = lstm.backward(np.ones_like(y))[0] if training else None
    return lstm, y, dx


def test_dropout_is_reproducible_from_seed():
    _, y1, dx1 = _dropout_run(seed=5)
    _, y2, dx2 = _dropout_run(seed=5)
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(dx1, dx2)
    lstm, y3, _ = _dropout_run(seed=5)
    y4, _ = lstm(np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32))
    assert not np.array_equal(y3, y4)  # fresh masks on each call


def test_dropout_only_in_training_mode():
    lstm, _, _ = _dropout_run(seed=5)
    no_dropout = pyrnn.LSTM(I, H, num_layers=3, seed=6)
    no_dropout.load_state_dict(lstm.state_dict())
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
    y_eval, _ = lstm.eval()(x)
    y_plain, _ = no_dropout(x)
    np.testing.assert_array_equal(y_eval, y_plain)
    y_train, _ = lstm.train()(x)
    assert not np.allclose(y_train, y_plain)


def test_dropout_gradient_uses_the_forward_mask():
    """With dropout the gradient is still the derivative of the function that ran: check
    d(sum y)/dx against a finite difference using the same mask (fixed through the seed)."""
    x = np.random.default_rng(0).standard_normal((3, 2, I))
    def loss(x_):
        layer = pyrnn.GRU(I, 3, num_layers=2, dropout=0.4, dtype=np.float64, seed=11)
        y, _ = layer(x_)
        return y.sum(), layer, y
    f0, layer, y = loss(x)
    dx, _ = layer.backward(np.ones_like(y))
    eps = 1e-6
    e = np.zeros_like(x)
    e[1, 1, 2] = eps
    numeric = (loss(x + e)[0] - loss(x - e)[0]) / (2 * eps)
    np.testing.assert_allclose(dx[1, 1, 2], numeric, rtol=1e-6)


def test_dropout_one_zeroes_between_layers():
    lstm = pyrnn.LSTM(I, H, num_layers=2, dropout=1.0, bias=False, seed=0)
    y, _ = lstm(np.ones((T, B, I), np.float32))
    assert np.all(y == 0)


# -- cells ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls, kw", [(pyrnn.RNNCell, {}), (pyrnn.RNNCell, dict(nonlinearity="relu")),
                                     (pyrnn.GRUCell, {}), (pyrnn.GRUCell, dict(reset_after=False))])
def test_single_state_cells(cls, kw):
    cell = cls(I, H, seed=0, **kw)
    x = np.random.default_rng(0).standard_normal((B, I)).astype(np.float32)
    h = cell(x)
    assert h.shape == (B, H)
    h2 = cell(x, h)
    dx, dh = cell.backward(np.ones_like(h2))
    assert dx.shape == (B, I) and dh.shape == (B, H)
    dx, dh = cell.backward(dh)  # second call goes through the first step
    assert dx.shape == (B, I)
    with pytest.raises(RuntimeError, match="training-mode call"):
        cell.backward(dh)
    assert cell(x[0]).shape == (H,)  # unbatched


def test_lstm_cell_and_layer_agree():
    lstm = pyrnn.LSTM(I, H, seed=0)
    cell = pyrnn.LSTMCell(I, H)
    cell.load_state_dict({k[:-3]: v for k, v in lstm.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
    y, (h_n, c_n) = lstm(x)
    state = None
    for t in range(T):
        state = cell(x[t], state)
        np.testing.assert_allclose(state[0], y[t], atol=1e-6)
    np.testing.assert_allclose(state[1], c_n[0], atol=1e-6)
    dx, (dh, dc) = cell.backward((np.ones((B, H)), None))
    assert dx.shape == (B, I) and dh.shape == dc.shape == (B, H)


def test_cell_eval_mode():
    cell = pyrnn.GRUCell(I, H).eval()
    h = cell(np.ones((B, I), np.float32))
    with pytest.raises(RuntimeError, match="eval mode"):
        cell.backward(h)


# -- presentation and configuration ----------------------------------------------------------------


def test_repr():
    assert repr(pyrnn.LSTM(4, 8)) == "LSTM(4, 8, dtype=float32)"
    assert (repr(pyrnn.LSTM(4, 8, num_layers=2, batch_first=True, bidirectional=True, proj_size=3,
                            dtype=np.float64))
            == "LSTM(4, 8, num_layers=2, batch_first=True, bidirectional=True, proj_size=3, dtype=float64)")
    assert repr(pyrnn.RNN(4, 8, nonlinearity="relu")) == "RNN(4, 8, nonlinearity='relu', dtype=float32)"
    assert repr(pyrnn.GRU(4, 8, reset_after=False, dropout=0.5)) == \
        "GRU(4, 8, reset_after=False, dropout=0.5, dtype=float32)"
    assert repr(pyrnn.GRUCell(4, 8, bias=False)) == "GRUCell(4, 8, bias=False, dtype=float32)"


def test_threads_and_config(capsys):
    before = pyrnn.get_num_threads()
    try:
        pyrnn.set_num_threads(1)
        assert pyrnn.get_num_threads() == 1
    finally:
        pyrnn.set_num_threads(before)
    with pytest.raises(ValueError):
        pyrnn.set_num_threads(0)
    with pytest.raises(TypeError):
        pyrnn.set_num_threads(1.5)
    info = pyrnn.show_config()
    printed = capsys.readouterr().out
    assert info["isa"] in info["available_isas"] and info["isa"] in printed
    assert {"pyrnn", "compiler", "openmp", "num_threads", "numpy"} <= set(info)


def test_info_command_passes(capsys):
    from pyrnn.__main__ import main

    assert main(["info"]) == 0
    assert "PASS" in capsys.readouterr().out


def test_backend_switch():
    from pyrnn import _backend
    from pyrnn.testing import backend_name, use_backend

    assert backend_name() == "native"
    with use_backend("reference"):
        assert backend_name() == "reference"
        assert _backend.ops().__name__ == "pyrnn.reference"
    assert backend_name() == "native"
    with pytest.raises(ValueError):
        with use_backend("gpu"):
            pass


def test_unbatched_lengths_may_be_a_scalar():
    gru = pyrnn.GRU(I, H, seed=0)
    x = np.random.default_rng(0).standard_normal((T, I)).astype(np.float32)
    y1, h1 = gru(x, lengths=3)
    y2, h2 = gru(x, lengths=[3])
    y3, h3 = gru(x[:3])
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_allclose(y1[:3], y3, atol=1e-6)
    np.testing.assert_allclose(h1, h3, atol=1e-6)
    assert np.all(y1[3:] == 0)
