"""Peephole LSTM (``peepholes=True``): the NumPy reference against finite differences in
float64, the native kernels against the reference (forward and BPTT, every instruction set,
1 and 2 threads, both thread splits), eval-mode packing, streaming steps and the cell."""
from __future__ import annotations

import numpy as np
import pytest

import pyrnn
from pyrnn import _core, reference
from pyrnn.testing import use_backend

from _fd import check_input_grad, check_param_grads

TOLERANCE = {np.float32: dict(rtol=1e-4, atol=1e-5), np.float64: dict(rtol=1e-10, atol=1e-12)}

#        layers bidir  batch_first proj bias  lengths initial_state
GRID = [
    (1, False, False, 0, True, False, True),
    (2, True, False, 0, False, True, False),
    (2, False, True, 3, True, True, True),
    (1, True, True, 3, True, False, False),
    (3, True, False, 0, True, True, True),
]
FIELDS = ("num_layers", "bidirectional", "batch_first", "proj_size", "bias", "lengths", "initial_state")


def _make(opts, dtype, I, H, seed=3):
    layer = pyrnn.LSTM(I, H, num_layers=opts["num_layers"], bidirectional=opts["bidirectional"],
                       batch_first=opts["batch_first"], proj_size=opts["proj_size"], bias=opts["bias"],
                       peepholes=True, dtype=dtype, seed=seed)
    # Peepholes drawn like every parameter are small next to the other paths: make them count.
    rng = np.random.default_rng(seed)
    layer.load_state_dict({k: (2 * rng.standard_normal(v.shape) if "peephole" in k else v)
                           for k, v in layer.state_dict().items()})
    return layer


def _inputs(opts, dtype, T, B, I, H, seed=0):
    rng = np.random.default_rng(seed)
    D = 2 if opts["bidirectional"] else 1
    P = opts["proj_size"] or H
    stack = opts["num_layers"] * D
    x = rng.standard_normal((B, T, I) if opts["batch_first"] else (T, B, I)).astype(dtype)
    h0 = rng.standard_normal((stack, B, P)).astype(dtype) if opts["initial_state"] else None
    c0 = rng.standard_normal((stack, B, H)).astype(dtype) if opts["initial_state"] else None
    lengths = rng.integers(1, T + 1, size=B) if opts["lengths"] else None
    if lengths is not None:
        lengths[0] = T
    dy = rng.standard_normal(x.shape[:-1] + (D * P,)).astype(dtype)
    dh_n = rng.standard_normal((stack, B, P)).astype(dtype)
    dc_n = rng.standard_normal((stack, B, H)).astype(dtype)
    return x, h0, c0, lengths, dy, dh_n, dc_n


def _run(opts, dtype, sizes=(5, 3, 4, 6)):
    T, B, I, H = sizes
    layer = _make(opts, dtype, I, H)
    x, h0, c0, lengths, dy, dh_n, dc_n = _inputs(opts, dtype, T, B, I, H)
    y, (h_n, c_n) = layer(x, (h0, c0), lengths=lengths)
    dx, (dh0, dc0) = layer.backward(dy, (dh_n, dc_n))
    out = dict(y=y, h_n=h_n, c_n=c_n, dx=dx, dh0=dh0, dc0=dc0)
    out.update({"grad " + k: g for k, g in layer.grads.items()})
    return out


def _assert_same(native, reference, dtype, where):
    assert native.keys() == reference.keys()
    for key in reference:
        np.testing.assert_allclose(native[key], reference[key], **TOLERANCE[dtype], err_msg=f"{key} ({where})")


def test_zero_peepholes_equal_the_plain_lstm():
    plain = pyrnn.LSTM(4, 5, num_layers=2, seed=1, dtype=np.float64)
    peep = pyrnn.LSTM(4, 5, num_layers=2, peepholes=True, seed=1, dtype=np.float64)
    state = plain.state_dict()
    state.update({k: np.zeros(v.shape) for k, v in peep.state_dict().items() if "peephole" in k})
    peep.load_state_dict(state)
    x = np.random.default_rng(0).standard_normal((6, 2, 4))
    for backend in ("reference", "native"):
        with use_backend(backend):
            np.testing.assert_allclose(peep(x)[0], plain(x)[0], rtol=1e-12)


def test_reference_step_follows_the_onnx_equations():
    """One step written out from ONNX's LSTM definition (gates i, o, f, c; P = [p_i, p_o, p_f])."""
    rng = np.random.default_rng(5)
    B, I, H = 2, 3, 4
    layer = pyrnn.LSTM(I, H, peepholes=True, dtype=np.float64, seed=0)
    p = {k: 3 * rng.standard_normal(v.shape) for k, v in layer.state_dict().items()}
    layer.load_state_dict(p)
    x, h0, c0 = rng.standard_normal((1, B, I)), rng.standard_normal((1, B, H)), rng.standard_normal((1, B, H))
    with use_backend("reference"):
        _, (h, c) = layer(x, (h0, c0))
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    a = x[0] @ p["weight_ih_l0"].T + p["bias_ih_l0"] + h0[0] @ p["weight_hh_l0"].T + p["bias_hh_l0"]
    pi, pf, po = np.split(p["weight_peephole_l0"], 3)
    i = sig(a[:, :H] + pi * c0[0])
    f = sig(a[:, H:2 * H] + pf * c0[0])
    c_new = f * c0[0] + i * np.tanh(a[:, 2 * H:3 * H])
    o = sig(a[:, 3 * H:] + po * c_new)
    np.testing.assert_allclose(c[0], c_new, rtol=1e-12)
    np.testing.assert_allclose(h[0], o * np.tanh(c_new), rtol=1e-12)


@pytest.mark.parametrize("row", GRID[:4])
def test_reference_gradients_match_finite_differences(row):
    opts = dict(zip(FIELDS, row))
    T, B, I, H = 4, 3, 3, 4
    layer = _make(opts, np.float64, I, H)
    x, h0, c0, lengths, _, _, _ = _inputs(opts, np.float64, T, B, I, H)

    def forward_of(xv):
        y, (h_n, c_n) = layer(xv, (h0, c0), lengths=lengths)
        return np.concatenate([y.ravel(), h_n.ravel(), c_n.ravel()])

    def backward(R):
        y_size = x.shape[:-1] + (layer.num_directions * layer.output_size,)
        ny, nh = int(np.prod(y_size)), h0_size
        dy = R[:ny].reshape(y_size)
        dh = R[ny:ny + nh].reshape(stack, B, layer.output_size)
        dc = R[ny + nh:].reshape(stack, B, H)
        return layer.backward(dy, (dh, dc))[0]

    stack = opts["num_layers"] * layer.num_directions
    h0_size = stack * B * layer.output_size
    with use_backend("reference"):
        layer.zero_grad()
        check_input_grad(forward_of, backward, x)
        layer.zero_grad()

        class Whole:  # the module interface check_param_grads expects
            parameters, grads, zero_grad = layer.parameters, property(lambda s: layer.grads), layer.zero_grad

            @staticmethod
            def backward(R):
                backward(R)

        check_param_grads(Whole(), lambda: forward_of(x), n_per_param=3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("row", GRID, ids=[",".join(f"{f}={v}" for f, v in zip(FIELDS, r)) for r in GRID])
def test_native_matches_reference(row, dtype, restore_native_settings):
    opts = dict(zip(FIELDS, row))
    with use_backend("reference"):
        reference = _run(opts, dtype)
    for isa in _core.available_isas():
        for threads in (1, 2):
            _core.select_isa(isa)
            _core.set_num_threads(threads)
            _assert_same(_run(opts, dtype), reference, dtype, f"isa={isa}, threads={threads}")


# 32 hidden units split the time loop by batch rows, 520 by units (layer_plan.h: plan_loop).
@pytest.mark.parametrize("hidden", [32, 520])
def test_both_thread_splits_match_reference_and_are_bitwise_stable(isa, hidden, restore_native_settings):
    opts = dict(num_layers=1, bidirectional=True, batch_first=False, proj_size=0, bias=True,
                lengths=True, initial_state=True)
    sizes = (4, 24, 9, hidden)
    with use_backend("reference"):
        reference = _run(opts, np.float64, sizes)
    results = []
    for threads in (1, 2):
        _core.set_num_threads(threads)
        results.append(_run(opts, np.float64, sizes))
        _assert_same(results[-1], reference, np.float64, f"isa={isa}, threads={threads}")
    for key in reference:
        np.testing.assert_array_equal(results[0][key], results[1][key], err_msg=key)


@pytest.mark.parametrize("proj_size", [0, 2])
def test_eval_packing_and_streaming_steps_equal_the_forward(isa, proj_size):
    layer = _make(dict(num_layers=2, bidirectional=False, batch_first=False, proj_size=proj_size,
                       bias=True), np.float32, 3, 5)
    x = np.random.default_rng(2).standard_normal((6, 2, 3)).astype(np.float32)
    y, (h_n, c_n) = layer(x)
    layer.eval()
    y_eval, (h_eval, c_eval) = layer(x)
    np.testing.assert_array_equal(y_eval, y)
    state = None
    for t in range(x.shape[0]):
        y_t, state = layer.step(x[t], state)
        np.testing.assert_allclose(y_t, y[t], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(state[1], c_n, rtol=1e-6, atol=1e-6)
    with use_backend("reference"):
        y_ref, _ = layer(x)
        y_step, _ = layer.step(x[0])
    np.testing.assert_allclose(y_ref, y, **TOLERANCE[np.float32])
    np.testing.assert_allclose(y_step, y[0], **TOLERANCE[np.float32])


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_cell_matches_layer_and_reference(dtype, restore_native_settings):
    def run():
        cell = pyrnn.LSTMCell(3, 4, peepholes=True, dtype=dtype, seed=1)
        cell.load_state_dict({k: 2 * v for k, v in cell.state_dict().items()})
        rng = np.random.default_rng(0)
        xs = rng.standard_normal((3, 2, 3)).astype(dtype)
        state, out = None, {}
        for t in range(3):
            state = cell(xs[t], state)
            out[f"h{t}"], out[f"c{t}"] = state
        d = (np.ones((2, 4), dtype), np.ones((2, 4), dtype))
        for t in reversed(range(3)):
            out[f"dx{t}"], d = cell.backward(d)
        out["dh"], out["dc"] = d
        out.update({"grad " + k: g for k, g in cell.grads.items()})
        return out, cell, xs

    with use_backend("reference"):
        reference, cell, xs = run()
    assert "grad weight_peephole" in reference
    layer = pyrnn.LSTM(3, 4, peepholes=True, dtype=dtype)
    layer.load_state_dict({k + "_l0": v for k, v in cell.state_dict().items()})
    y, _ = layer(xs)
    np.testing.assert_allclose(y[-1], reference["h2"], **TOLERANCE[dtype])
    for isa in _core.available_isas():
        for threads in (1, 2):
            _core.select_isa(isa)
            _core.set_num_threads(threads)
            _assert_same(run()[0], reference, dtype, f"isa={isa}, threads={threads}")
    cell.eval()
    h, c = cell(xs[0])
    np.testing.assert_allclose(h, reference["h0"], **TOLERANCE[dtype])


def test_peephole_arguments_are_checked():
    x = np.zeros((2, 1, 3), np.float32)
    h = np.zeros((1, 4), np.float32)
    w_ih, w_hh, b = np.zeros((16, 3), np.float32), np.zeros((16, 4), np.float32), np.zeros(16, np.float32)
    with pytest.raises(ValueError, match="w_peep"):
        _core.layer_forward("lstm", x, h, h, w_ih, w_hh, b, b, None, None, False, False, None,
                            w_peep=np.zeros(5, np.float32))
    with pytest.raises(ValueError, match="LSTM only"):
        _core.layer_forward("gru", x, h, None, np.zeros((12, 3), np.float32), np.zeros((12, 4), np.float32),
                            None, None, None, None, False, False, None, w_peep=np.zeros(12, np.float32))
    packed = _core.pack_layer("lstm", w_ih, w_hh, b, b, None)
    with pytest.raises(ValueError, match="different layer"):
        _core.layer_forward("lstm", x, h, h, w_ih, w_hh, b, b, None, None, False, False, packed,
                            w_peep=np.zeros(12, np.float32))
    _, _, _, cache = _core.layer_forward("lstm", x, h, h, w_ih, w_hh, b, b, None, None, False, True, None,
                                         w_peep=np.zeros(12, np.float32))
    with pytest.raises(ValueError, match="peepholes"):
        _core.layer_backward("lstm", cache, None, None, None, w_ih, w_hh, None, np.zeros_like(w_ih),
                             np.zeros_like(w_hh), np.zeros_like(b), np.zeros_like(b), None)


@pytest.mark.parametrize("cell", ["rnn_tanh", "lstm", "gru", "gru_reset_before"])
def test_inference_on_unpacked_weights_matches_reference(cell, isa):
    """A direct inference call without packed weights projects every step's input into scratch
    (the layers always pack in eval mode; importers and tools call the kernels directly)."""
    rng = np.random.default_rng(0)
    G = {"lstm": 4, "gru": 3, "gru_reset_before": 3}.get(cell, 1)
    T, B, I, H = 7, 3, 5, 6
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    w_ih, w_hh = rng.standard_normal((G * H, I)).astype(np.float32), rng.standard_normal((G * H, H)).astype(np.float32)
    h0 = rng.standard_normal((B, H)).astype(np.float32)
    c0 = h0.copy() if cell == "lstm" else None
    for reverse in (False, True):
        args = (cell, x, h0, c0, w_ih, w_hh, None, None, None, None, reverse, False, None)
        y, h_n, _, _ = _core.layer_forward(*args)
        y_ref, h_ref, _, _ = reference.layer_forward(*args)
        np.testing.assert_allclose(y, y_ref, **TOLERANCE[np.float32])
        np.testing.assert_allclose(h_n, h_ref, **TOLERANCE[np.float32])
