"""Public API of the xLSTM layers, cells and block stack: shapes, states, state dicts, modes,
bad input, long-sequence numerical safety and the block stack's gradients."""
from __future__ import annotations

import numpy as np
import pytest

import pyrnn

I, H, NH = 5, 8, 2
DH = H // NH


@pytest.mark.parametrize("cls", [pyrnn.SLSTM, pyrnn.MLSTM])
def test_shapes_batch_first_unbatched_and_states(cls):
    layer = cls(I, H, num_heads=NH, num_layers=2, seed=0)
    x = np.random.default_rng(0).standard_normal((7, 3, I)).astype(np.float32)
    y, state = layer(x)
    assert y.shape == (7, 3, H) and y.dtype == np.float32
    expect = [(2, 3, H)] * 4 if cls is pyrnn.SLSTM else [(2, 3, NH, DH, DH), (2, 3, NH, DH), (2, 3, NH)]
    assert [s.shape for s in state] == expect
    # continuing from the returned state equals one long call
    y1, s1 = layer(x[:3])
    y2, s2 = layer(x[3:], s1)
    np.testing.assert_allclose(np.concatenate([y1, y2]), y, rtol=1e-5, atol=1e-6)
    for a, b in zip(s2, state):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # batch_first and unbatched give the same numbers
    bf = cls(I, H, num_heads=NH, num_layers=2, batch_first=True, seed=0)
    yb, _ = bf(x.transpose(1, 0, 2))
    np.testing.assert_allclose(yb.transpose(1, 0, 2), y, rtol=1e-6, atol=1e-7)
    yu, su = layer(x[:, 1])
    np.testing.assert_allclose(yu, y[:, 1], rtol=1e-6, atol=1e-7)
    assert su[0].shape == state[0][:, 1].shape
    dx, d0 = layer.backward(np.ones_like(yu))
    assert dx.shape == (7, I) and d0[0].shape == su[0].shape


@pytest.mark.parametrize("cls", [pyrnn.SLSTM, pyrnn.MLSTM])
def test_lengths_zero_padding_and_final_state(cls):
    layer = cls(I, H, num_heads=NH, seed=1)
    x = np.random.default_rng(1).standard_normal((6, 2, I)).astype(np.float32)
    y, state = layer(x, lengths=[6, 3])
    assert np.all(y[3:, 1] == 0)
    y_short, s_short = layer(x[:3, 1:2])
    np.testing.assert_allclose(y[:3, 1:2], y_short, rtol=1e-5, atol=1e-6)
    for a, b in zip(state, s_short):
        np.testing.assert_allclose(a[:, 1:2], b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", [pyrnn.SLSTM, pyrnn.MLSTM])
def test_parameters_state_dict_grads_and_modes(cls):
    layer = cls(I, H, num_heads=NH, seed=2)
    sd = layer.state_dict()
    assert set(sd) == set(layer.grads) == set(layer.parameters())
    other = cls(I, H, num_heads=NH, seed=3)
    x = np.random.default_rng(2).standard_normal((4, 2, I)).astype(np.float32)
    assert not np.allclose(other(x)[0], layer(x)[0])
    other.load_state_dict(sd)
    np.testing.assert_array_equal(other(x)[0], layer(x)[0])
    with pytest.raises(ValueError, match="missing keys"):
        other.load_state_dict({})
    # grads accumulate, zero_grad resets, parameter updates take effect
    y, _ = layer(x)
    layer.backward(np.ones_like(y))
    g1 = {k: v.copy() for k, v in layer.grads.items()}
    layer(x)
    layer.backward(np.ones_like(y))
    for k, v in layer.grads.items():
        np.testing.assert_allclose(v, 2 * g1[k], rtol=1e-5, atol=1e-6)
    layer.zero_grad()
    assert all(np.all(v == 0) for v in layer.grads.values())
    p = layer.parameters()
    name = next(iter(p))
    p[name] += 0.5
    assert not np.allclose(layer(x)[0], y)
    layer.eval()
    layer(x)
    with pytest.raises(RuntimeError, match="eval mode"):
        layer.backward(np.ones_like(y))
    with pytest.raises(RuntimeError):
        cls(I, H, num_heads=NH).backward(np.ones_like(y))


def test_float64_and_repr():
    layer = pyrnn.SLSTM(I, H, num_heads=NH, dtype=np.float64, forget_gate="exp")
    y, _ = layer(np.zeros((2, 1, I), np.float32))
    assert y.dtype == np.float64
    assert "forget_gate='exp'" in repr(layer) and "float64" in repr(layer)
    assert "output_gate=False" in repr(pyrnn.MLSTM(I, H, num_heads=NH, output_gate=False))
    assert repr(pyrnn.MLSTMCell(I, H, num_heads=NH)).startswith("MLSTMCell(")


@pytest.mark.parametrize("cls", [pyrnn.SLSTM, pyrnn.MLSTM])
def test_bad_input_raises_clear_errors(cls):
    with pytest.raises(ValueError, match="multiple of num_heads"):
        cls(I, 10, num_heads=4)
    with pytest.raises(ValueError):
        cls(I, H, num_heads=0)
    layer = cls(I, H, num_heads=NH)
    with pytest.raises(ValueError, match="I = input_size"):
        layer(np.zeros((3, 2, I + 1), np.float32))
    with pytest.raises(ValueError, match="x: expected"):
        layer(np.zeros((3,), np.float32))
    with pytest.raises(TypeError, match="floating-point"):
        layer(np.zeros((3, 2, I), np.int64))
    with pytest.raises(ValueError, match="lengths"):
        layer(np.zeros((3, 2, I), np.float32), lengths=[4, 1])
    with pytest.raises(TypeError, match="state must be"):
        layer(np.zeros((3, 2, I), np.float32), state=np.zeros(3))
    bad = [None] * len(layer.state_names)
    bad[0] = np.zeros((1, 3, 7), np.float32)
    with pytest.raises(ValueError, match=layer.state_names[0]):
        layer(np.zeros((3, 2, I), np.float32), state=tuple(bad))
    y, _ = layer(np.zeros((3, 2, I), np.float32))
    with pytest.raises(ValueError, match="dy"):
        layer.backward(np.zeros((3, 2, H + 1), np.float32))
    # empty batch and T = 0: states pass through
    y, s = layer(np.zeros((0, 2, I), np.float32))
    assert y.shape == (0, 2, H)
    y, s = layer(np.zeros((3, 0, I), np.float32))
    assert y.shape == (3, 0, H)
    # NaN propagates, never crashes
    x = np.zeros((3, 2, I), np.float32)
    x[1, 0, 0] = np.nan
    y, _ = layer(x)
    assert np.isnan(y[1:, 0]).all() and np.isfinite(y[:, 1]).all()


def test_slstm_headwise_input_projection():
    layer = pyrnn.SLSTM(8, 12, num_heads=4, input_projection="headwise")
    assert layer.parameters()["weight_ih_l0"].shape == (48, 2)
    assert "input_projection='headwise'" in repr(layer)
    cell = pyrnn.SLSTMCell(8, 12, num_heads=4, input_projection="headwise")
    assert cell.parameters()["weight_ih"].shape == (48, 2)
    with pytest.raises(ValueError, match="multiple of num_heads"):
        pyrnn.SLSTM(6, 12, num_heads=4, input_projection="headwise")
    with pytest.raises(ValueError, match="input_projection"):
        pyrnn.SLSTM(8, 12, input_projection="blocky")


def test_native_bindings_reject_bad_arrays():
    from pyrnn import _core

    x = np.zeros((2, 1, 3), np.float32)
    z = np.zeros((1, 4), np.float32)
    with pytest.raises(ValueError, match="multiple of num_heads"):
        _core.slstm_forward(x, z, z, z, z, np.zeros((16, 3), np.float32), np.zeros((16, 2), np.float32),
                            None, 3, False, False, None, False)
    with pytest.raises(ValueError, match="w_hh"):
        _core.slstm_forward(x, z, z, z, z, np.zeros((16, 3), np.float32), np.zeros((16, 4), np.float32),
                            None, 2, False, False, None, False)
    with pytest.raises(ValueError, match="multiple of num_heads"):   # headwise: I = 3 over 2 heads
        _core.slstm_forward(x, z, z, z, z, np.zeros((16, 1), np.float32), np.zeros((16, 2), np.float32),
                            None, 2, False, True, None, False)
    with pytest.raises(ValueError, match=r"w_ih: expected shape \(16, 2\)"):
        _core.slstm_forward(np.zeros((2, 1, 4), np.float32), z, z, z, z, np.zeros((16, 4), np.float32),
                            np.zeros((16, 2), np.float32), None, 2, False, True, None, False)
    with pytest.raises(TypeError, match="dtype"):
        _core.mlstm_forward(x.astype(np.float64), np.zeros((1, 2, 2, 2)), np.zeros((1, 2, 2)), np.zeros((1, 2)),
                            np.zeros((20, 3), np.float32), None, 2, 1e-6, True, None, False)
    with pytest.raises(TypeError, match="cache"):
        _core.mlstm_backward(None, None, None, None, None, np.zeros((16, 3), np.float32),
                             np.zeros((16, 3), np.float32), None)


@pytest.mark.parametrize("cls", [pyrnn.SLSTM, pyrnn.MLSTM])
def test_long_sequence_with_large_gates_stays_finite(cls):
    """T = 10,000 steps with gate pre-activations in the hundreds: outputs, final states and
    every gradient finite."""
    T = 10_000
    layer = cls(4, 8, num_heads=2, seed=4)
    for p in layer.parameters().values():
        p *= 60.0
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((T, 2, 4)) * 5).astype(np.float32)
    y, state = layer(x)
    assert np.isfinite(y).all() and all(np.isfinite(s).all() for s in state)
    dx, d0 = layer.backward(rng.standard_normal(y.shape).astype(np.float32))
    assert np.isfinite(dx).all() and all(np.isfinite(d).all() for d in d0)
    assert all(np.isfinite(g).all() for g in layer.grads.values())


def _stack_loss_and_grads(stack, x, w):
    y = stack(x)
    dx = stack.backward(w)
    return float((y * w).sum()), dx


@pytest.mark.parametrize("blocks", ["m", "s", "sm"])
def test_block_stack_gradients_match_finite_differences(blocks):
    rng = np.random.default_rng(5)
    stack = pyrnn.xLSTMBlockStack(8, blocks=blocks, num_heads=2, dtype=np.float64, seed=0)
    for p in stack.parameters().values():
        p += rng.standard_normal(p.shape) * 0.1
    x = rng.standard_normal((5, 2, 8))
    w = rng.standard_normal((5, 2, 8))
    _, dx = _stack_loss_and_grads(stack, x, w)
    grads = {k: v.copy() for k, v in stack.grads.items()}
    eps = 1e-6

    def loss():
        stack.eval()
        out = float((stack(x) * w).sum())
        stack.train()
        return out

    for idx in [(0, 0, 0), (3, 1, 5), (4, 0, 7)]:
        old = x[idx]
        x[idx] = old + eps
        up = loss()
        x[idx] = old - eps
        down = loss()
        x[idx] = old
        np.testing.assert_allclose(dx[idx], (up - down) / (2 * eps), rtol=1e-5, atol=1e-8)
    params = stack.parameters()
    for name in [n for n in params if n.endswith("weight")][:: 3]:
        p = params[name]
        idx = tuple(s // 2 for s in p.shape)
        old = p[idx]
        p[idx] = old + eps
        up = loss()
        p[idx] = old - eps
        down = loss()
        p[idx] = old
        np.testing.assert_allclose(grads[name][idx], (up - down) / (2 * eps), rtol=1e-5, atol=1e-8,
                                   err_msg=name)


def test_block_stack_shapes_and_lengths():
    stack = pyrnn.xLSTMBlockStack(16, blocks="msm", num_heads=4, batch_first=True, seed=1)
    x = np.random.default_rng(6).standard_normal((3, 9, 16)).astype(np.float32)
    y = stack(x, lengths=[9, 4, 1])
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.all(y[1, 4:] == 0) and np.all(y[2, 1:] == 0)
    dx = stack.backward(np.ones_like(y))
    assert dx.shape == x.shape and np.isfinite(dx).all()
    assert "blocks.1.xlstm.weight_hh_l0" in stack.state_dict()
