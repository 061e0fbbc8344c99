"""The xLSTM block stack's optional official parts (causal convolution, headwise q/k/v, group
norm, learnable skip, GELU feed-forward, no post-norm) and their building blocks: values
against definitions, gradients against finite differences (float64), native against the
NumPy reference, lengths, pickling and argument checks. Parity with the official package:
tests/test_xlstm_official.py."""
from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

import pyrnn
from pyrnn.nn.conv import causal_conv1d_backward, causal_conv1d_forward
from pyrnn.nn.gelu import erf, gelu, silu
from pyrnn.testing import use_backend

from _fd import check_input_grad, check_param_grads, numeric_grad

OFFICIAL = dict(conv_kernel_size=4, qkv_blocksize=2, group_norm=True, learnable_skip=True, ffn_activation="gelu")
OPTION_SETS = [
    {"conv_kernel_size": 3}, {"qkv_blocksize": 4}, {"group_norm": True}, {"learnable_skip": True},
    {"ffn_activation": "gelu"}, {"post_norm": False}, {"conv_kernel_size": 2, "learnable_skip": True},
    OFFICIAL,
]


def test_erf_matches_math_erf_to_rounding():
    x = np.concatenate([np.linspace(-7, 7, 20001), [0.0, -0.0, 1e-300, 2.0, -2.0, 30.0, np.inf, -np.inf]])
    expected = np.array([math.erf(v) for v in x])
    np.testing.assert_allclose(erf(x), expected, rtol=1e-15, atol=1e-15)   # a few ulps
    single = erf(x.astype(np.float32))
    assert single.dtype == np.float32
    np.testing.assert_allclose(single, expected, rtol=5e-7, atol=5e-7)       # a few float32 ulps
    assert np.isnan(erf(np.array([np.nan]))[0])


@pytest.mark.parametrize("fn", [gelu, silu])
def test_smooth_activation_derivatives(fn):
    x = np.linspace(-6, 6, 61)
    value, slope = fn(x)
    numeric = (fn(x + 1e-6)[0] - fn(x - 1e-6)[0]) / 2e-6
    np.testing.assert_allclose(slope, numeric, rtol=1e-7, atol=1e-9)
    if fn is gelu:
        np.testing.assert_allclose(value, x * 0.5 * (1 + np.array([math.erf(v / math.sqrt(2)) for v in x])),
                                   rtol=1e-15, atol=1e-15)
    assert fn(x.astype(np.float32))[0].dtype == np.float32


def _conv_by_definition(x, w, b):
    T, _, C = x.shape
    K = w.shape[1]
    y = np.zeros_like(x) + b
    for t in range(T):
        for j in range(K):
            src = t - (K - 1) + j
            if src >= 0:
                y[t] += w[:, j] * x[src]
    return y


@pytest.mark.parametrize("T, K", [(7, 1), (7, 3), (2, 4), (1, 4)])
def test_causal_conv_matches_definition_and_finite_differences(T, K):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, 2, 3))
    w = rng.standard_normal((3, K))
    b = rng.standard_normal(3)
    np.testing.assert_allclose(causal_conv1d_forward(x, w, b), _conv_by_definition(x, w, b), rtol=1e-14, atol=1e-14)
    r = rng.standard_normal(x.shape)
    dw, db = np.zeros_like(w), np.zeros_like(b)
    dx = causal_conv1d_backward(x, r, w, dw, db)

    def loss():
        return float(np.sum(causal_conv1d_forward(x, w, b) * r))

    for value, analytic in ((x, dx), (w, dw), (b, db)):
        np.testing.assert_allclose(analytic, numeric_grad(loss, value), rtol=1e-7, atol=1e-9)


def _masked_names(stack):
    """The convolved sLSTM blocks' input weights, whose structural zeros are held at zero."""
    if not stack.conv_kernel_size:
        return set()
    return {f"blocks.{k}.xlstm.weight_ih_l0" for k, kind in enumerate(stack.block_types) if kind == "s"}


def _stack(blocks="ms", dtype=np.float64, seed=0, **options):
    stack = pyrnn.xLSTMBlockStack(8, blocks=blocks, num_heads=2, dtype=dtype, seed=seed, **options)
    rng = np.random.default_rng(seed + 1)
    for name, p in stack.parameters().items():   # away from the initial zeros and ones
        p += rng.standard_normal(p.shape) * 0.1
        if name in _masked_names(stack):
            p *= stack._slstm_input_mask()          # the convolved sLSTM's structural zeros
    return stack


class _FreeParameters:
    """The stack as check_param_grads sees it, its parameters without the convolved sLSTM's
    input weights: their structural zeros are held at zero (gradient masked), so only the
    other entries are compared (see test_convolved_slstm_input_weights_gradient)."""

    def __init__(self, stack):
        self.stack = stack
        self.grads = stack.grads

    def parameters(self):
        return {k: v for k, v in self.stack.parameters().items() if k not in _masked_names(self.stack)}

    def zero_grad(self):
        self.stack.zero_grad()

    def backward(self, dy):
        return self.stack.backward(dy)


@pytest.mark.parametrize("options", OPTION_SETS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_block_stack_options_gradients_match_finite_differences(options):
    stack = _stack("ms", **options)
    x = np.random.default_rng(2).standard_normal((5, 2, 8))
    check_param_grads(_FreeParameters(stack), lambda: stack(x), n_per_param=3, rtol=1e-5, atol=1e-8)
    check_input_grad(stack, stack.backward, x, rtol=1e-5, atol=1e-8)


def test_convolved_slstm_input_weights_gradient():
    stack = _stack("s", conv_kernel_size=3)
    x = np.random.default_rng(8).standard_normal((5, 2, 8))
    r = np.random.default_rng(9).standard_normal((5, 2, 8))
    w = stack.parameters()["blocks.0.xlstm.weight_ih_l0"]
    free = np.argwhere(w != 0)
    stack.zero_grad()
    stack(x)
    stack.backward(r)
    g = stack.grads["blocks.0.xlstm.weight_ih_l0"]
    assert np.all(g[w == 0] == 0)
    for idx in map(tuple, free[::7]):
        old = w[idx]
        w[idx] = old + 1e-6
        plus = float(np.sum(stack(x) * r))
        w[idx] = old - 1e-6
        minus = float(np.sum(stack(x) * r))
        w[idx] = old
        np.testing.assert_allclose(g[idx], (plus - minus) / 2e-6, rtol=1e-5, atol=1e-8)


def test_block_stack_options_native_equals_reference(isa):
    stack = _stack("msm", **OFFICIAL)
    x = np.random.default_rng(3).standard_normal((6, 3, 8))
    r = np.random.default_rng(4).standard_normal((6, 3, 8))
    results = []
    for backend in ("native", "reference"):
        with use_backend(backend):
            stack.zero_grad()
            y = stack(x, lengths=[6, 2, 4])
            dx = stack.backward(r)
            results.append((y, dx, {k: v.copy() for k, v in stack.grads.items()}))
    (y0, dx0, g0), (y1, dx1, g1) = results
    np.testing.assert_allclose(y0, y1, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx0, dx1, rtol=1e-11, atol=1e-12)
    for name in g0:
        np.testing.assert_allclose(g0[name], g1[name], rtol=1e-10, atol=1e-11, err_msg=name)


def test_block_stack_options_bitwise_on_any_thread_count(restore_native_settings):
    """With every kernel splitting any work among its threads, 1 and 2 threads give the same
    bits, forward and backward."""
    from pyrnn import _core

    testing = _core._thread_testing()
    _core._set_thread_testing(0.0, "auto")
    try:
        x = np.random.default_rng(10).standard_normal((6, 3, 8)).astype(np.float32)
        results = []
        for threads in (1, 2):
            _core.set_num_threads(threads)
            _core._reset_split_counts()
            stack = _stack("msm", dtype=np.float32, **OFFICIAL)
            y = stack(x, lengths=[6, 4, 5])
            dx = stack.backward(np.ones_like(y))
            results.append([y, dx, *stack.grads.values()])
            if threads == 2:
                assert sum(_core._split_counts().values()) > 0
    finally:
        _core._set_thread_testing(*testing)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_block_stack_options_respect_lengths():
    """A padded sequence's outputs are those of the sequence alone (the convolution is causal;
    padding never leaks back), and the padding's outputs are zero."""
    stack = _stack("ms", **OFFICIAL)
    stack.eval()
    x = np.random.default_rng(5).standard_normal((7, 3, 8))
    lengths = [7, 3, 5]
    y = stack(x, lengths=lengths)
    for b, n in enumerate(lengths):
        np.testing.assert_allclose(y[:n, b], stack(x[:n, b]), rtol=1e-12, atol=1e-12)
        assert np.all(y[n:, b] == 0)


def test_block_stack_defaults_keep_the_plain_blocks():
    names = set(pyrnn.xLSTMBlockStack(8, blocks="ms", num_heads=2).state_dict())
    assert not any(part in name for name in names
                   for part in ("conv", "q_proj", "igate", "skip", "group_norm"))
    assert "post_norm.weight" in names
    full = set(pyrnn.xLSTMBlockStack(8, blocks="ms", num_heads=2, post_norm=False, **OFFICIAL).state_dict())
    assert "post_norm.weight" not in full
    assert {"blocks.0.conv.weight", "blocks.0.q_proj.weight", "blocks.0.igate.weight", "blocks.0.skip.weight",
            "blocks.0.group_norm.weight", "blocks.1.conv.weight", "blocks.1.group_norm.weight"} <= full
    assert not any(name.startswith("blocks.0.xlstm") for name in full)   # headwise: no inner mLSTM layer


def test_block_stack_convolved_slstm_keeps_its_structural_zeros():
    """With the convolution, the sLSTM's i and f gates read only the convolved input and z, o
    only the plain one: those zeros survive training steps."""
    stack = pyrnn.xLSTMBlockStack(8, blocks="s", num_heads=2, conv_kernel_size=3, seed=0)
    w = stack.parameters()["blocks.0.xlstm.weight_ih_l0"]
    zeros = w == 0
    assert zeros.sum() == w.size // 2
    opt = pyrnn.optim.Adam(stack, lr=0.05)
    x = np.random.default_rng(6).standard_normal((5, 2, 8)).astype(np.float32)
    for _ in range(3):
        stack.zero_grad()
        stack.backward(stack(x) - 1)
        opt.step()
    assert np.all(w[zeros] == 0) and np.any(w[~zeros] != 0)


def test_block_stack_options_pickle_and_repr():
    stack = _stack("ms", dtype=np.float32, **OFFICIAL)
    x = np.random.default_rng(7).standard_normal((4, 2, 8)).astype(np.float32)
    clone = pickle.loads(pickle.dumps(stack))
    np.testing.assert_array_equal(clone(x), stack(x))
    text = repr(stack)
    assert "conv_kernel_size=4" in text and "qkv_blocksize=2" in text and "ffn_activation='gelu'" in text


@pytest.mark.parametrize("options, message", [
    ({"conv_kernel_size": -1}, "conv_kernel_size"),
    ({"conv_kernel_size": 2.5}, "conv_kernel_size"),
    ({"qkv_blocksize": 3}, "qkv_blocksize"),
    ({"ffn_activation": "relu"}, "ffn_activation"),
])
def test_block_stack_option_errors(options, message):
    with pytest.raises(ValueError, match=message):
        pyrnn.xLSTMBlockStack(8, blocks="ms", num_heads=2, **options)
