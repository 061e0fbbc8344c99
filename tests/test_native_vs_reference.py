"""The native kernels against the NumPy reference through the public layers and cells: forward
and backward (input, initial states and every parameter gradient), float32 and float64, on every
instruction set this CPU supports, with 1 and 2 threads.

The option grid is pairwise rather than a full cartesian product (which would be thousands of
cases): every pair of option values occurs in some row, and every row runs for every cell kind,
dtype, ISA and thread count.
"""
from __future__ import annotations

import numpy as np
import pytest

import pyrnn
from pyrnn import _core
from pyrnn.testing import use_backend

T, B, I, H, PROJ = 6, 3, 5, 4, 3
CELLS = ["rnn_tanh", "rnn_relu", "lstm", "gru", "gru_reset_before"]
TOLERANCE = {np.float32: dict(rtol=1e-4, atol=1e-5), np.float64: dict(rtol=1e-10, atol=1e-12)}

#        layers bidir  batch_first proj   bias   lengths unbatched initial_state dropout
GRID = [
    (1, False, False, False, True, False, False, True, 0.0),
    (2, True, False, False, False, True, False, False, 0.0),
    (3, False, True, False, True, True, False, True, 0.3),
    (2, True, True, True, True, False, False, True, 0.0),
    (1, True, False, True, False, False, True, True, 0.0),
    (3, True, True, False, True, True, False, True, 0.0),
    (1, False, True, True, True, True, False, False, 0.0),
    (2, False, False, False, True, True, True, False, 0.5),
    (2, True, False, True, False, True, False, True, 0.0),
]
FIELDS = ("num_layers", "bidirectional", "batch_first", "proj", "bias", "lengths", "unbatched",
          "initial_state", "dropout")


def _row_id(row) -> str:
    return ",".join(f"{f}={v}" for f, v in zip(FIELDS, row) if v not in (False, 0.0))


def _targets():
    """(ISA, threads) pairs to run the native kernels on."""
    return [(isa, threads) for isa in _core.available_isas() for threads in (1, 2)]


def _make_layer(cell, opts, dtype, I, H):
    common = dict(num_layers=opts["num_layers"], bias=opts["bias"], batch_first=opts["batch_first"],
                  dropout=opts["dropout"], bidirectional=opts["bidirectional"], dtype=dtype, seed=4)
    if cell == "lstm":
        return pyrnn.LSTM(I, H, proj_size=PROJ if opts["proj"] else 0, **common)
    if cell.startswith("gru"):
        return pyrnn.GRU(I, H, reset_after=cell == "gru", **common)
    return pyrnn.RNN(I, H, nonlinearity=cell[4:], **common)


def _layer_run(cell, opts, dtype, sizes=(T, B, I, H)):
    """Forward + backward of a fresh, identically seeded layer; every result in a flat dict."""
    T, B, I, H = sizes
    layer = _make_layer(cell, opts, dtype, I, H)
    rng = np.random.default_rng(0)
    D = 2 if opts["bidirectional"] else 1
    P = PROJ if (cell == "lstm" and opts["proj"]) else H
    stack = opts["num_layers"] * D
    batch = () if opts["unbatched"] else (B,)
    if opts["unbatched"]:
        x_shape = (T, I)
    else:
        x_shape = (B, T, I) if opts["batch_first"] else (T, B, I)
    x = rng.standard_normal(x_shape).astype(dtype)
    h0 = rng.standard_normal((stack, *batch, P)).astype(dtype) if opts["initial_state"] else None
    c0 = rng.standard_normal((stack, *batch, H)).astype(dtype) if opts["initial_state"] else None
    lengths = (np.array([T, 1, 4]) if not opts["unbatched"] else np.array([T - 2])) if opts["lengths"] else None
    dy = rng.standard_normal(x_shape[:-1] + (D * P,)).astype(dtype)
    dh_n = rng.standard_normal((stack, *batch, P)).astype(dtype)
    dc_n = rng.standard_normal((stack, *batch, H)).astype(dtype)
    if cell == "lstm":
        y, (h_n, c_n) = layer(x, (h0, c0), lengths=lengths)
        dx, (dh0, dc0) = layer.backward(dy, (dh_n, dc_n))
        out = dict(y=y, h_n=h_n, c_n=c_n, dx=dx, dh0=dh0, dc0=dc0)
    else:
        y, h_n = layer(x, h0, lengths=lengths)
        dx, dh0 = layer.backward(dy, dh_n)
        out = dict(y=y, h_n=h_n, dx=dx, dh0=dh0)
    out.update({"grad " + k: g for k, g in layer.grads.items()})
    return out


def _assert_same(native, reference, dtype, where):
    assert native.keys() == reference.keys()
    for key in reference:
        np.testing.assert_allclose(native[key], reference[key], **TOLERANCE[dtype],
                                   err_msg=f"{key} ({where})")


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("row", GRID, ids=[_row_id(r) for r in GRID])
@pytest.mark.parametrize("cell", CELLS)
def test_layer(cell, row, dtype, restore_native_settings):
    opts = dict(zip(FIELDS, row))
    with use_backend("reference"):
        reference = _layer_run(cell, opts, dtype)
    for isa, threads in _targets():
        _core.select_isa(isa)
        _core.set_num_threads(threads)
        _assert_same(_layer_run(cell, opts, dtype), reference, dtype, f"isa={isa}, threads={threads}")


def _cell_run(cell, bias, dtype, unbatched):
    """Three steps forward, three backward calls through the cell's call stack."""
    if cell == "lstm":
        module = pyrnn.LSTMCell(I, H, bias=bias, dtype=dtype, seed=2)
    elif cell.startswith("gru"):
        module = pyrnn.GRUCell(I, H, bias=bias, reset_after=cell == "gru", dtype=dtype, seed=2)
    else:
        module = pyrnn.RNNCell(I, H, bias=bias, nonlinearity=cell[4:], dtype=dtype, seed=2)
    rng = np.random.default_rng(1)
    batch = () if unbatched else (B,)
    state = None
    out = {}
    for t in range(3):
        state = module(rng.standard_normal((*batch, I)).astype(dtype), state)
        out[f"state {t}"] = state
    dstate = (np.ones((*batch, H), dtype), np.ones((*batch, H), dtype)) if cell == "lstm" else np.ones((*batch, H), dtype)
    for t in reversed(range(3)):
        out[f"dx {t}"], dstate = module.backward(dstate)
    out["dstate"] = dstate
    out.update({"grad " + k: g for k, g in module.grads.items()})
    # flatten LSTM (h, c) pairs
    return {f"{k}{i}": v for k, vs in out.items()
            for i, v in enumerate(vs if isinstance(vs, tuple) else (vs,))}


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("bias, unbatched", [(True, False), (False, True)])
@pytest.mark.parametrize("cell", CELLS)
def test_cell(cell, bias, unbatched, dtype, restore_native_settings):
    with use_backend("reference"):
        reference = _cell_run(cell, bias, dtype, unbatched)
    for isa, threads in _targets():
        _core.select_isa(isa)
        _core.set_num_threads(threads)
        _assert_same(_cell_run(cell, bias, dtype, unbatched), reference, dtype,
                     f"isa={isa}, threads={threads}")


@pytest.mark.parametrize("cell", ["lstm", "gru"])
# (T, B, I, H). Float64 rows of H = 64 LSTM gate gradients are 2 KB: their buffer's rows get
# one cache line more (gemm_row_stride); with H = 256 the states' rows are 2 KB apart and the
# products copy them into strips first.
@pytest.mark.parametrize("sizes", [(9, 13, 37, 67), (4, 13, 150, 150), (3, 14, 8, 64), (3, 14, 8, 256)])
def test_larger_sizes_cross_simd_and_thread_boundaries(cell, sizes, restore_native_settings):
    """Sizes that are not multiples of any vector width and big enough for threads to split."""
    opts = dict(num_layers=2, bidirectional=True, batch_first=False, proj=False, bias=True,
                lengths=False, unbatched=False, initial_state=True, dropout=0.0)
    with use_backend("reference"):
        reference = _layer_run(cell, opts, np.float64, sizes)
    for isa, threads in _targets():
        _core.select_isa(isa)
        _core.set_num_threads(threads)
        _assert_same(_layer_run(cell, opts, np.float64, sizes), reference, np.float64,
                     f"isa={isa}, threads={threads}")


@pytest.mark.parametrize("ops", [pyrnn.reference, _core], ids=["reference", "native"])
def test_outputs_false_is_for_inference(ops):
    """layer_forward(outputs=False) returns no y; training needs y and refuses it by name."""
    x, h0 = np.ones((2, 1, 3), np.float32), np.zeros((1, 4), np.float32)
    w_ih, w_hh = np.ones((4, 3), np.float32) * 0.1, np.ones((4, 4), np.float32) * 0.1
    y, h_n, _, _ = ops.layer_forward("rnn_tanh", x, h0, None, w_ih, w_hh, None, None, None, None, False, False,
                                     None, outputs=False)
    assert y is None and h_n.shape == (1, 4)
    with pytest.raises(ValueError, match="outputs=False is for inference"):
        ops.layer_forward("rnn_tanh", x, h0, None, w_ih, w_hh, None, None, None, None, False, True, None,
                          outputs=False)


@pytest.mark.parametrize("cell", CELLS)
def test_input_grad_false_skips_only_dx(cell, restore_native_settings):
    """backward(input_grad=False) returns dx None and every other gradient bit for bit as with
    dx, natively (every ISA, 1 and 2 threads, with every split reached) and in the reference."""
    opts = dict(num_layers=2, bidirectional=True, batch_first=False, proj=cell == "lstm", bias=True,
                lengths=True, unbatched=False, initial_state=True, dropout=0.0)

    def run(input_grad):
        layer = _make_layer(cell, opts, np.float64, I, H)
        rng = np.random.default_rng(3)
        y, _ = layer(rng.standard_normal((T, B, I)), lengths=np.array([T, 1, 4]))
        dx, d0 = layer.backward(rng.standard_normal(y.shape), input_grad=input_grad)
        return dx, d0 if isinstance(d0, tuple) else (d0,), {k: g.copy() for k, g in layer.grads.items()}

    testing = _core._thread_testing()
    targets = [("reference", None, 1)] + [("native", isa, t) for isa, t in _targets()]
    try:
        _core._set_thread_testing(0.0, "auto")
        for backend, isa, threads in targets:
            with use_backend(backend):
                if isa:
                    _core.select_isa(isa)
                    _core.set_num_threads(threads)
                dx, d0, grads = run(True)
                none, d0_skip, grads_skip = run(False)
            where = f"{backend} {isa} threads={threads}"
            assert dx is not None and none is None, where
            assert all(np.array_equal(a, b) for a, b in zip(d0, d0_skip)), where
            for k in grads:
                assert np.array_equal(grads[k], grads_skip[k]), (where, k)
    finally:
        _core._set_thread_testing(*testing)
