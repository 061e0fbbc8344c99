"""The streaming step API: layer.step and eval-mode cells (the native single-step kernel)."""
import copy
import warnings

import numpy as np
import pytest

import pyrnn
from pyrnn import _core

LAYERS = [
    (pyrnn.RNN, {}), (pyrnn.RNN, {"nonlinearity": "relu"}), (pyrnn.LSTM, {}),
    (pyrnn.LSTM, {"proj_size": 5}), (pyrnn.GRU, {}), (pyrnn.GRU, {"reset_after": False}),
]


def as_tuple(state):
    return state if isinstance(state, tuple) else (state,)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("cls,kwargs", LAYERS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("num_layers", [1, 2])  # one layer: the direct streaming path
def test_layer_step_equals_forward(isa, threads, cls, kwargs, dtype, num_layers):
    pyrnn.set_num_threads(threads)
    rng = np.random.default_rng(3)
    layer = cls(7, 37, num_layers=num_layers, dtype=dtype, seed=1, **kwargs).eval()
    x = rng.standard_normal((6, 3, 7)).astype(dtype)
    y_full, state_full = layer(x)
    state = None
    for t in range(x.shape[0]):
        y_t, state = layer.step(x[t], state)
        # Same products (same FMA chains) and the same cell math: equal to the last bit.
        np.testing.assert_array_equal(y_t, y_full[t])
    for got, want in zip(as_tuple(state), as_tuple(state_full)):
        np.testing.assert_array_equal(got, want)


def test_layer_step_unbatched_and_shapes():
    lstm = pyrnn.LSTM(4, 6, num_layers=3, proj_size=2, seed=0).eval()
    y, (h, c) = lstm.step(np.ones(4, np.float32))
    assert y.shape == (2,) and h.shape == (3, 2) and c.shape == (3, 6)
    y, (h, c) = lstm.step(np.ones((5, 4), np.float32), (np.zeros((3, 5, 2)), None))
    assert y.shape == (5, 2) and h.shape == (3, 5, 2) and c.shape == (3, 5, 6)


def test_layer_step_is_inference_even_in_training_mode():
    gru = pyrnn.GRU(3, 4, num_layers=2, dropout=0.5, seed=0)
    x = np.ones((2, 3), np.float32)
    with pytest.warns(pyrnn.PerformanceWarning):
        y1, _ = gru.step(x)
    y2, _ = gru.step(x)
    np.testing.assert_array_equal(y1, y2)   # no dropout
    with pytest.raises(RuntimeError):
        gru.backward(np.ones((1, 2, 4), np.float32))   # no cache


@pytest.mark.parametrize("cls", [pyrnn.RNN, pyrnn.LSTM, pyrnn.GRU])
def test_training_mode_step_warns_once_per_layer(cls):
    layer = cls(3, 4, seed=0)
    x = np.ones((2, 3), np.float32)
    with pytest.warns(pyrnn.PerformanceWarning, match=r"\.eval\(\)") as caught:
        layer.step(x)
        layer.step(x)
    assert len(caught) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layer.step(x)                       # once per object
        layer.eval().step(x)                # eval mode: the fast path, no warning
        cls(3, 4, seed=0).eval().step(x)
    with pytest.warns(pyrnn.PerformanceWarning):
        copy.deepcopy(layer.train()).step(x)   # a copy is another object


def test_model_step_warns_in_training_mode_and_generation_does_not():
    model = pyrnn.Seq2Seq(output_size=7, vocab_size=7, embedding_dim=4, hidden_size=8, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.generate([1, 2, 3], steps=4)          # switches to eval mode itself
        model.eval().step(np.array([1, 2]))
    with pytest.warns(pyrnn.PerformanceWarning, match="Seq2Seq.step") as caught:
        model.train().step(np.array([1, 2]))
        model.step(np.array([1, 2]))
    assert len(caught) == 1                         # the model's warning; its layer stays quiet


def test_bidirectional_step_refused():
    with pytest.raises(ValueError, match="bidirectional"):
        pyrnn.LSTM(3, 4, bidirectional=True).step(np.ones(3, np.float32))


@pytest.mark.parametrize("bad, exc", [
    (np.ones((2, 5), np.float32), ValueError),        # wrong input size
    (np.ones((2, 2, 3), np.float32), ValueError),     # a sequence, not a step
    (np.ones((2, 3), np.int32), TypeError),
])
def test_layer_step_bad_input(bad, exc):
    with pytest.raises(exc):
        pyrnn.RNN(3, 4).step(bad)


def test_layer_step_bad_state():
    with pytest.raises(ValueError, match="h"):
        pyrnn.RNN(3, 4, num_layers=2).step(np.ones((2, 3), np.float32), np.zeros((1, 2, 4)))


@pytest.mark.parametrize("cls", [pyrnn.RNNCell, pyrnn.LSTMCell, pyrnn.GRUCell])
def test_eval_cell_matches_training_cell(cls):
    cell = cls(5, 9, seed=2, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((4, 5))
    train_out = cell(x)
    cell.eval()
    eval_out = cell(x)
    for a, b in zip(as_tuple(train_out), as_tuple(eval_out)):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)


def test_native_step_against_reference():
    from pyrnn import reference
    rng = np.random.default_rng(0)
    for cell, G in [("rnn_tanh", 1), ("lstm", 4), ("gru", 3), ("gru_reset_before", 3)]:
        H, I, B = 19, 6, 3
        args = [rng.standard_normal((B, I)), rng.standard_normal((B, H)),
                rng.standard_normal((B, H)) if cell == "lstm" else None,
                rng.standard_normal((G * H, I)), rng.standard_normal((G * H, H)),
                rng.standard_normal(G * H), rng.standard_normal(G * H), None]
        got = _core.layer_step(*args[:3], _core.pack_layer(cell, *args[3:]))
        want = reference.layer_step(*args[:3], reference.pack_layer(cell, *args[3:]))
        for a, b in zip(got, want):
            if b is not None:
                np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
        # A one-layer layer's (1, B, n) states are taken as they are and returned so shaped.
        stacked = [args[0]] + [None if s is None else s[None] for s in args[1:3]]
        for impl in (_core, reference):
            out = impl.layer_step(*stacked, impl.pack_layer(cell, *args[3:]))
            for a, b in zip(out, got):
                if b is not None:
                    assert a.shape == (1,) + b.shape
                    np.testing.assert_allclose(a[0], b, rtol=1e-12, atol=1e-12)


def test_streaming_fast_path_falls_back_to_checked_conversions():
    """Eval-mode steps hand arrays straight to the kernel; anything else (other dtypes, shapes,
    None states) goes through the general path, which converts or names what is wrong."""
    cell = pyrnn.LSTMCell(2, 4, seed=0).eval()
    h, c = cell(np.ones((1, 2), np.float32))
    assert cell(np.ones((1, 2)), (h, c))[0].dtype == np.float32           # float64 input converted
    np.testing.assert_array_equal(cell(np.ones(2), (h[0], c[0]))[0], cell(np.ones((1, 2)), (h, c))[0][0])
    with pytest.raises(ValueError, match="input_size = 2"):
        cell(np.ones((1, 3), np.float32), (h, c))
    with pytest.raises(ValueError, match=r"h: expected shape \(B, H\) = \(1, 4\)"):
        cell(np.ones((1, 2), np.float32), (h[:, :3].copy(), c))
    gru = pyrnn.GRU(2, 4, seed=0).eval()
    _, state = gru.step(np.ones((1, 2), np.float32))
    with pytest.raises(ValueError, match=r"\(D\*num_layers, B, H_out\) = \(1, 1, 4\)"):
        gru.step(np.ones((1, 2), np.float32), np.zeros((2, 1, 4), np.float32))
    assert gru.step(np.ones((1, 2)), state)[0].dtype == np.float32


@pytest.mark.parametrize("make", [lambda: pyrnn.LSTM(3, 5, seed=0), lambda: pyrnn.GRU(3, 5, seed=0),
                                  lambda: pyrnn.LSTMCell(3, 5, seed=0), lambda: pyrnn.RNNCell(3, 5, seed=0)])
def test_streaming_fast_path_follows_weights_backend_and_isa(make, monkeypatch):
    """Once streaming, steps skip the layer's lookups: new weights, the reference backend and
    another instruction set must still reach them."""
    from pyrnn import reference
    from pyrnn.testing import use_backend
    is_layer = hasattr(make(), "num_layers")
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)

    def run(module, state=None, steps=3):
        for _ in range(steps):
            out = module.step(x, state) if is_layer else module(x, state)
            state = out[1] if is_layer else out
        return state

    module, other = make().eval(), make()
    other.load_state_dict({k: v * 0.5 for k, v in other.state_dict().items()})
    state = run(module)
    module.load_state_dict(other.state_dict())
    np.testing.assert_array_equal(np.concatenate(as_tuple(run(module, state)), axis=None),
                                  np.concatenate(as_tuple(run(other.eval(), state)), axis=None))
    calls = []
    monkeypatch.setattr(reference, "layer_step", lambda *a, _f=reference.layer_step: calls.append(1) or _f(*a))
    with use_backend("reference"):
        run(module, state)
    assert len(calls) == 3
    for name in _core.available_isas():
        _core.select_isa(name)
        try:
            state = run(module, state)  # a packing made for another instruction set is replaced
        finally:
            _core.select_isa(_core.available_isas()[-1])


def test_cell_refuses_layer_shaped_state():
    """The kernel also takes a one-layer layer's (1, B, H) states; a cell must not."""
    cell = pyrnn.GRUCell(2, 4, seed=0).eval()
    h = cell(np.ones((1, 2), np.float32))
    with pytest.raises(ValueError, match=r"h: expected shape"):
        cell(np.ones((1, 2), np.float32), h[None])
