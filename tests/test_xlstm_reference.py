"""The NumPy reference of the sLSTM and mLSTM kernels: gradients against central finite
differences in float64 (every input, initial state and parameter, with and without lengths),
and the mLSTM's parallel form against its recurrent form."""
from __future__ import annotations

import numpy as np
import pytest

from pyrnn import reference_xlstm as ref

T, B, I, H, NH = 5, 2, 3, 4, 2
DH = H // NH


def _loss_weights(rng, shapes):
    return [rng.standard_normal(s) for s in shapes]


def _fd_check(fn, inputs, grads, names, eps=1e-6, rtol=1e-5, atol=1e-7, per_array=14):
    """fn(*inputs) -> scalar; grads: analytic gradients, same order. Checks up to
    ``per_array`` random elements of each input (all of the small ones)."""
    pick = np.random.default_rng(99)
    for name, arr, g in zip(names, inputs, grads):
        fd = np.zeros_like(arr)
        chosen = [np.unravel_index(k, arr.shape)
                  for k in pick.permutation(arr.size)[:per_array]]
        mask = np.zeros(arr.shape, bool)
        for i in chosen:
            mask[i] = True
        g = np.where(mask, g, 0)
        for i in chosen:
            old = arr[i]
            arr[i] = old + eps
            up = fn(*inputs)
            arr[i] = old - eps
            down = fn(*inputs)
            arr[i] = old
            fd[i] = (up - down) / (2 * eps)
        np.testing.assert_allclose(g, fd, rtol=rtol, atol=atol, err_msg=name)


def _slstm_case(rng, scale=1.0):
    x = rng.standard_normal((T, B, I)) * scale
    h0 = rng.standard_normal((B, H)) * 0.5
    c0 = rng.standard_normal((B, H)) * 0.5
    n0 = rng.uniform(0.5, 2.0, (B, H))
    m0 = rng.standard_normal((B, H)) * 0.5
    w_ih = rng.standard_normal((4 * H, I)) * 0.7
    w_hh = rng.standard_normal((4 * H, DH)) * 0.7
    bias = rng.standard_normal(4 * H) * 0.5
    return x, h0, c0, n0, m0, w_ih, w_hh, bias


@pytest.mark.parametrize("forget_exp", [False, True])
@pytest.mark.parametrize("lengths", [None, np.array([5, 3])])
@pytest.mark.parametrize("zero_state", [False, True])
def test_slstm_gradients_match_finite_differences(forget_exp, lengths, zero_state):
    rng = np.random.default_rng(1)
    args = list(_slstm_case(rng))
    if zero_state:
        for k in (1, 2, 3, 4):
            args[k] = np.zeros_like(args[k])
    wy, wh, wc, wn, wm = _loss_weights(rng, [(T, B, H)] + [(B, H)] * 4)

    def loss(x, h0, c0, n0, m0, w_ih, w_hh, bias):
        y, h, c, n, m, _ = ref.slstm_forward(x, h0, c0, n0, m0, w_ih, w_hh, bias, NH, forget_exp,
                                             False, lengths, False)
        return (y * wy).sum() + (h * wh).sum() + (c * wc).sum() + (n * wn).sum() + (m * wm).sum()

    x, h0, c0, n0, m0, w_ih, w_hh, bias = args
    *_, cache = ref.slstm_forward(*args[:8], NH, forget_exp, False, lengths, True)
    dw_ih, dw_hh, db = np.zeros_like(w_ih), np.zeros_like(w_hh), np.zeros_like(bias)
    dx, dh0, dc0, dn0, dm0 = ref.slstm_backward(cache, wy, wh, wc, wn, wm, w_ih, w_hh, dw_ih, dw_hh, db)
    names = ["x", "h0", "c0", "n0", "m0", "w_ih", "w_hh", "bias"]
    grads = [dx, dh0, dc0, dn0, dm0, dw_ih, dw_hh, db]
    if zero_state:  # n0 = 0 is the empty-memory boundary: no finite difference there
        names, grads, args = names[:3] + names[5:], grads[:3] + grads[5:], args
        _fd_check(lambda x, h0, c0, w_ih, w_hh, bias: loss(x, h0, c0, args[3], args[4], w_ih, w_hh, bias),
                  [args[0], args[1], args[2], args[5], args[6], args[7]], grads, names)
        assert np.all(dm0 == 0)
    else:
        _fd_check(loss, args, grads, names)


@pytest.mark.parametrize("lengths", [None, np.array([5, 3])])
def test_slstm_headwise_gradients_match_finite_differences(lengths):
    rng = np.random.default_rng(4)
    I_hw = 2 * NH                                    # input split into NH slices of 2
    x, h0, c0, n0, m0, _, w_hh, bias = _slstm_case(rng)
    x = rng.standard_normal((T, B, I_hw))
    w_ih = rng.standard_normal((4 * H, I_hw // NH)) * 0.7
    args = [x, h0, c0, n0, m0, w_ih, w_hh, bias]
    wy, wh = _loss_weights(rng, [(T, B, H), (B, H)])

    def loss(x, h0, c0, n0, m0, w_ih, w_hh, bias):
        y, h, *_ = ref.slstm_forward(x, h0, c0, n0, m0, w_ih, w_hh, bias, NH, False, True, lengths, False)
        return (y * wy).sum() + (h * wh).sum()

    *_, cache = ref.slstm_forward(*args, NH, False, True, lengths, True)
    dw_ih, dw_hh, db = np.zeros_like(w_ih), np.zeros_like(w_hh), np.zeros_like(bias)
    dx, dh0, dc0, dn0, dm0 = ref.slstm_backward(cache, wy, wh, None, None, None, w_ih, w_hh, dw_ih, dw_hh, db)
    _fd_check(loss, args, [dx, dh0, dc0, dn0, dm0, dw_ih, dw_hh, db],
              ["x", "h0", "c0", "n0", "m0", "w_ih", "w_hh", "bias"])
    # Headwise equals dense with the blocks on the diagonal (zeros elsewhere).
    dense = ref._dense_input_weight(w_ih, I_hw, NH, True)
    assert np.count_nonzero(dense) == w_ih.size
    y_dense = ref.slstm_forward(x, h0, c0, n0, m0, dense, w_hh, bias, NH, False, False, lengths, False)[0]
    y_head = ref.slstm_forward(x, h0, c0, n0, m0, w_ih, w_hh, bias, NH, False, True, lengths, False)[0]
    np.testing.assert_array_equal(y_head, y_dense)


def test_slstm_first_step_from_zero_state_is_o_tanh_z():
    rng = np.random.default_rng(2)
    x, _, _, _, _, w_ih, w_hh, bias = _slstm_case(rng, scale=30.0)  # large pre-activations
    z = np.zeros((B, H))
    y, h, c, n, m, _ = ref.slstm_forward(x[:1], z, z, z, z, w_ih, w_hh, bias, NH, False, False, None, False)
    raw = x[0] @ w_ih.T + bias
    expect = ref._sigmoid(raw[:, 3 * H:]) * np.tanh(raw[:, 2 * H:3 * H])
    np.testing.assert_allclose(y[0], expect, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(n, 1.0)          # i' = 1: m_1 = i~
    np.testing.assert_array_equal(m, raw[:, :H])


def _mlstm_case(rng, output_gate, rows_scale=0.6):
    rows = ref.mlstm_rows(H, NH, output_gate)
    x = rng.standard_normal((T, B, I))
    c0 = rng.standard_normal((B, NH, DH, DH)) * 0.5
    n0 = rng.standard_normal((B, NH, DH)) * 0.5 + 1.0
    m0 = rng.standard_normal((B, NH)) * 0.5
    w_ih = rng.standard_normal((rows, I)) * rows_scale
    bias = rng.standard_normal(rows) * 0.5
    return x, c0, n0, m0, w_ih, bias


@pytest.mark.parametrize("output_gate", [True, False])
@pytest.mark.parametrize("lengths", [None, np.array([4, 5])])
@pytest.mark.parametrize("eps", [0.0, 1e-6])
def test_mlstm_gradients_match_finite_differences(output_gate, lengths, eps):
    rng = np.random.default_rng(3)
    args = list(_mlstm_case(rng, output_gate))
    wy, wc, wn, wm = _loss_weights(rng, [(T, B, H), (B, NH, DH, DH), (B, NH, DH), (B, NH)])

    def loss(x, c0, n0, m0, w_ih, bias):
        y, C, n, m, _ = ref.mlstm_forward(x, c0, n0, m0, w_ih, bias, NH, eps, output_gate, lengths, False)
        return (y * wy).sum() + (C * wc).sum() + (n * wn).sum() + (m * wm).sum()

    x, c0, n0, m0, w_ih, bias = args
    *_, cache = ref.mlstm_forward(*args[:4], w_ih, bias, NH, eps, output_gate, lengths, True)
    dw, db = np.zeros_like(w_ih), np.zeros_like(bias)
    dx, dc0, dn0, dm0 = ref.mlstm_backward(cache, wy, wc, wn, wm, w_ih, dw, db)
    _fd_check(loss, args, [dx, dc0, dn0, dm0, dw, db], ["x", "c0", "n0", "m0", "w_ih", "bias"])


def test_mlstm_gradient_through_exp_neg_m_branch():
    """Small |n.q| (tiny keys): the denominator is exp(-m), whose m-gradient must be right."""
    rng = np.random.default_rng(4)
    x, c0, n0, m0, w_ih, bias = _mlstm_case(rng, True)
    w_ih[H:2 * H] *= 1e-3
    bias[H:2 * H] *= 1e-3
    wy = rng.standard_normal((T, B, H))
    z = np.zeros

    def loss(x, w_ih, bias):
        y, *_ = ref.mlstm_forward(x, z((B, NH, DH, DH)), z((B, NH, DH)), z((B, NH)), w_ih, bias, NH,
                                  1e-6, True, None, False)
        return (y * wy).sum()

    *_, cache = ref.mlstm_forward(x, z((B, NH, DH, DH)), z((B, NH, DH)), z((B, NH)), w_ih, bias, NH,
                                  1e-6, True, None, True)
    assert any(np.any(np.abs(s["s"]) < np.exp(-s["m_new"])) for s in cache["steps"])
    dw, db = np.zeros_like(w_ih), np.zeros_like(bias)
    dx, *_ = ref.mlstm_backward(cache, wy, None, None, None, w_ih, dw, db)
    _fd_check(loss, [x, w_ih, bias], [dx, dw, db], ["x", "w_ih", "bias"])


@pytest.mark.parametrize("eps", [0.0, 1e-6])
def test_mlstm_parallel_form_equals_recurrent_form(eps):
    rng = np.random.default_rng(5)
    T_, B_, NH_, DH_ = 17, 3, 2, 4
    H_ = NH_ * DH_
    rows = ref.mlstm_rows(H_, NH_, False)
    x = rng.standard_normal((T_, B_, 6))
    w_ih = rng.standard_normal((rows, 6))
    bias = rng.standard_normal(rows)
    bias[3 * H_ + NH_:] += 3.0  # forget gates mostly open, as trained models have
    z = np.zeros
    y, *_ = ref.mlstm_forward(x, z((B_, NH_, DH_, DH_)), z((B_, NH_, DH_)), z((B_, NH_)), w_ih, bias,
                              NH_, eps, False, None, False)
    xg = x @ w_ih.T + bias
    q = xg[..., :H_].reshape(T_, B_, NH_, DH_)
    k = xg[..., H_:2 * H_].reshape(T_, B_, NH_, DH_)
    v = xg[..., 2 * H_:3 * H_].reshape(T_, B_, NH_, DH_)
    ig, fg = xg[..., 3 * H_:3 * H_ + NH_], xg[..., 3 * H_ + NH_:]
    hp = ref.mlstm_parallel(q, k, v, ig, fg, eps)
    np.testing.assert_allclose(hp.reshape(T_, B_, H_), y, rtol=1e-10, atol=1e-12)
