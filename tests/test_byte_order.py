"""Arrays in the other byte order ('>f4', '>f8', '>i8' on this little-endian machine) give the same
results as native ones at every native entry point: they are converted, never read as native
bytes. Gradient accumulators (written in place) must be native and are refused otherwise."""
from __future__ import annotations

import numpy as np
import pytest

import pyrnn
from pyrnn import _core

T, B, I, H = 4, 3, 5, 6


def swapped(a):
    """The same values stored in the other byte order."""
    if not isinstance(a, np.ndarray):
        return a
    out = a.astype(a.dtype.newbyteorder())
    assert not out.dtype.isnative and np.array_equal(out, a, equal_nan=True)
    return out


def swap_all(args):
    return [swapped(a) for a in args]


def randn(*shape, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def assert_same(a, b):
    if isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b)
        for u, v in zip(a, b):
            assert_same(u, v)
    else:
        assert (a is None) == (b is None)


# -- the kernels' bindings ---------------------------------------------------------------------------

CELLS = {"lstm": 4, "gru": 3, "gru_reset_before": 3, "rnn_tanh": 1, "rnn_relu": 1}


def core_layer_args(cell, dtype):
    G = CELLS[cell]
    h0 = randn(B, H, dtype=dtype, seed=1)
    c0 = randn(B, H, dtype=dtype, seed=2) if cell == "lstm" else None
    weights = [randn(G * H, I, dtype=dtype, seed=3) * 0.3, randn(G * H, H, dtype=dtype, seed=4) * 0.3,
               randn(G * H, dtype=dtype, seed=5), randn(G * H, dtype=dtype, seed=6), None]
    return randn(T, B, I, dtype=dtype), h0, c0, weights, np.array([4, 2, 3], np.int64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cell", list(CELLS))
def test_core_layer_forward_backward_and_step(cell, dtype):
    x, h0, c0, weights, lengths = core_layer_args(cell, dtype)

    def run(x, h0, c0, weights, lengths, dy):
        out = {}
        packed = _core.pack_layer(cell, *weights)
        out["eval"] = _core.layer_forward(cell, x, h0, c0, *weights, lengths, False, False, packed)[:3]
        out["step"] = _core.layer_step(x[0], h0, c0, packed)
        y, h_n, c_n, cache = _core.layer_forward(cell, x, h0, c0, *weights, lengths, True, True, None)
        out["train"] = y, h_n, c_n
        grads = [np.zeros(w.shape, dtype) for w in weights[:4]] + [None]  # native: written in place
        out["backward"] = _core.layer_backward(cell, cache, dy, h0, c0, weights[0], weights[1], None, *grads)
        out["grads"] = grads[:4]
        return out

    dy = randn(T, B, H, dtype=dtype, seed=7)
    native = run(x, h0, c0, weights, lengths, dy)
    other = run(swapped(x), swapped(h0), swapped(c0), swap_all(weights), swapped(lengths), swapped(dy))
    for key in native:
        assert_same(native[key], other[key])


def test_gradient_accumulators_in_the_other_byte_order_are_refused():
    x, h0, c0, weights, lengths = core_layer_args("gru", np.float32)
    cache = _core.layer_forward("gru", x, h0, None, *weights, None, False, True, None)[3]
    grads = [np.zeros_like(w) for w in weights[:4]]
    grads[1] = swapped(grads[1])
    with pytest.raises(ValueError, match="dw_hh must be in native byte order"):
        _core.layer_backward("gru", cache, None, h0, None, weights[0], weights[1], None, *grads, None)


@pytest.mark.parametrize("headwise", [False, True])
def test_core_slstm(headwise):
    NH = 2
    x = randn(T, B, 4, dtype=np.float64)
    states = [randn(B, H, dtype=np.float64, seed=s) * 0.5 for s in (1, 2, 3, 4)]
    states[2] = np.abs(states[2]) + 1  # the normaliser n is positive
    w_ih = randn(4 * H, 4 // NH if headwise else 4, dtype=np.float64, seed=5) * 0.3
    w_hh = randn(4 * H, H // NH, dtype=np.float64, seed=6) * 0.3
    bias = randn(4 * H, dtype=np.float64, seed=7)
    lengths = np.array([4, 1, 3], np.int64)
    dy = randn(T, B, H, dtype=np.float64, seed=8)

    def run(x, states, w_ih, w_hh, bias, lengths, dy):
        fwd = _core.slstm_forward(x, *states, w_ih, w_hh, bias, NH, True, headwise, lengths, True)
        dw_ih, dw_hh, db = np.zeros(w_ih.shape), np.zeros(w_hh.shape), np.zeros(bias.shape)
        bwd = _core.slstm_backward(fwd[-1], dy, *states, w_ih, w_hh, dw_ih, dw_hh, db)
        return fwd[:-1], bwd, (dw_ih, dw_hh, db)

    native = run(x, states, w_ih, w_hh, bias, lengths, dy)
    other = run(swapped(x), swap_all(states), swapped(w_ih), swapped(w_hh), swapped(bias), swapped(lengths),
                swapped(dy))
    assert_same(native, other)


@pytest.mark.parametrize("output_gate", [False, True])
def test_core_mlstm(output_gate):
    NH, DH = 2, H // 2
    rows = (4 if output_gate else 3) * H + 2 * NH
    x = randn(T, B, I)
    states = [randn(B, NH, DH, DH, seed=1) * 0.1, randn(B, NH, DH, seed=2) * 0.1, randn(B, NH, seed=3) * 0.1]
    w_ih, bias = randn(rows, I, seed=4) * 0.3, randn(rows, seed=5)
    lengths = np.array([4, 1, 3], np.int64)
    dy = randn(T, B, H, seed=6)

    def run(x, states, w_ih, bias, lengths, dy):
        fwd = _core.mlstm_forward(x, *states, w_ih, bias, NH, 1e-6, output_gate, lengths, True)
        dw_ih, db = np.zeros(w_ih.shape, np.float32), np.zeros(bias.shape, np.float32)
        bwd = _core.mlstm_backward(fwd[-1], dy, *states, w_ih, dw_ih, db)
        return fwd[:-1], bwd, (dw_ih, db)

    native = run(x, states, w_ih, bias, lengths, dy)
    other = run(swapped(x), swap_all(states), swapped(w_ih), swapped(bias), swapped(lengths), swapped(dy))
    assert_same(native, other)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_core_gemm_and_math(dtype):
    gemm = _core._gemm_f32 if dtype == np.float32 else _core._gemm_f64
    math = _core._math_f32 if dtype == np.float32 else _core._math_f64
    A, Bm, C = randn(7, 9, dtype=dtype), randn(9, 5, dtype=dtype, seed=1), randn(7, 5, dtype=dtype, seed=2)
    assert_same(gemm(False, False, A, Bm, 1.0, C), gemm(False, False, swapped(A), swapped(Bm), 1.0, swapped(C)))
    assert_same(gemm(True, True, Bm, A), gemm(True, True, swapped(Bm), swapped(A)))
    assert_same(math("tanh", A), math("tanh", swapped(A)))


# -- the public classes --------------------------------------------------------------------------------
# One argument at a time in the other byte order: the fast paths hand arrays to the kernels as they
# are when the others are native, and that is where a misread would hide.


def swapped_state(state):
    return tuple(swapped(s) for s in state) if isinstance(state, tuple) else swapped(state)


def swap_one(args: dict, which: str) -> dict:
    return {k: (swapped_state(v) if k == which else v) for k, v in args.items()}


def assert_layers_agree(native, other, args: dict, which: str):
    """`native` and `other` (the same layer) agree with argument `which` swapped for `other`,
    forward and, in training mode, backward with its weight gradients."""
    y, s = native(*args.values())
    assert_same((y, s), other(*swap_one(args, which).values()))
    if native.training:
        grads = dict(dy=randn(*y.shape, seed=3), state=s)
        assert_same(native.backward(*grads.values()), other.backward(*swap_one(grads, which).values()))
        for k in native.grads:
            np.testing.assert_array_equal(native.grads[k], other.grads[k])


@pytest.mark.parametrize("cls", [pyrnn.LSTM, pyrnn.GRU, pyrnn.RNN])
@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("which", ["x", "state", "lengths", "dy", "weights"])
def test_layers(cls, mode, which):
    native, other = (getattr(cls(I, H, num_layers=2, bidirectional=True, seed=0), mode)() for _ in range(2))
    if which == "weights":
        other.load_state_dict({k: swapped(v) for k, v in other.state_dict().items()})
    state = np.zeros((4, B, H), np.float32) + 0.25
    args = dict(x=randn(T, B, I), state=(state, state * 2) if cls is pyrnn.LSTM else state,
                lengths=np.array([4, 2, 3]))
    assert_layers_agree(native, other, args, which)


@pytest.mark.parametrize("cls", [pyrnn.LSTM, pyrnn.GRU, pyrnn.RNN])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("which", ["x", "h", "c"])
def test_layer_step(cls, num_layers, which):
    layer = cls(I, H, num_layers=num_layers, seed=0).eval()
    h = np.zeros((num_layers, B, H), np.float32) + 0.5
    args = dict(x=randn(B, I), h=h, c=h - 1)
    call = (lambda x, h, c: layer.step(x, (h, c))) if cls is pyrnn.LSTM else (lambda x, h, c: layer.step(x, h))
    expected = call(**args)
    for _ in range(2):  # the first step packs the weights, the next ones reuse them
        assert_same(expected, call(**swap_one(args, which)))


@pytest.mark.parametrize("cls", [pyrnn.LSTMCell, pyrnn.GRUCell, pyrnn.RNNCell])
@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("which", ["x", "h", "c", "dh", "dc"])
def test_cells(cls, mode, which):
    cell = getattr(cls(I, H, seed=0), mode)()
    h = np.zeros((B, H), np.float32) + 0.5
    args = dict(x=randn(B, I), h=h, c=h - 1)
    is_lstm = cls is pyrnn.LSTMCell
    call = (lambda x, h, c: cell(x, (h, c))) if is_lstm else (lambda x, h, c: cell(x, h))
    out = call(**args)
    for _ in range(2):  # the first eval step packs the weights, the next ones reuse them
        assert_same(out, call(**swap_one(args, which)))
    if mode == "train":
        grads = dict(dh=out[0] if is_lstm else out, dc=out[1] if is_lstm else None)
        back = cell.backward(tuple(grads.values()) if is_lstm else grads["dh"])
        call(**args)
        grads = swap_one(grads, which)
        assert_same(back, cell.backward(tuple(grads.values()) if is_lstm else grads["dh"]))


@pytest.mark.parametrize("cls", [pyrnn.SLSTM, pyrnn.MLSTM])
@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("which", ["x", "state", "lengths", "dy", "weights"])
def test_xlstm_layers(cls, mode, which):
    native, other = (getattr(cls(4, H, num_heads=2, seed=0), mode)() for _ in range(2))
    if which == "weights":
        other.load_state_dict({k: swapped(v) for k, v in other.state_dict().items()})
    x = randn(T, B, 4)
    _, state = native(x)  # a non-trivial initial state
    args = dict(x=x, state=state, lengths=np.array([4, 2, 3]))
    assert_layers_agree(native, other, args, which)


@pytest.mark.parametrize("cls", [pyrnn.SLSTMCell, pyrnn.MLSTMCell])
@pytest.mark.parametrize("which", ["x", "state"])
def test_xlstm_cells(cls, which):
    cell = cls(4, H, num_heads=2, seed=0).eval()
    x = randn(B, 4)
    out = cell(x)
    args = dict(x=x, state=out[1] if cls is pyrnn.MLSTMCell else out)
    assert_same(cell(*args.values()), cell(*swap_one(args, which).values()))
