"""The native sLSTM/mLSTM kernels against the NumPy reference through the public layers and
cells: forward and backward (input, every initial state, every parameter), float32 and
float64, on every instruction set this CPU has, with 1 and 2 threads."""
from __future__ import annotations

import numpy as np
import pytest

import pyrnn
from pyrnn import _core
from pyrnn.testing import use_backend

T, B, I, H, NH = 6, 3, 5, 8, 2
TOL = {np.float32: dict(rtol=2e-4, atol=2e-5), np.float64: dict(rtol=1e-9, atol=1e-11)}

#        kind    layers batch_first lengths unbatched state  bias  variant
GRID = [
    ("slstm", 1, False, False, False, True, True, "sigmoid"),
    ("slstm", 2, True, True, False, False, True, "exp"),
    ("slstm", 1, False, True, True, True, False, "sigmoid"),
    ("slstm", 3, False, False, False, True, True, "exp"),
    ("mlstm", 1, False, False, False, True, True, True),
    ("mlstm", 2, True, True, False, True, False, False),
    ("mlstm", 1, False, True, True, False, True, True),
    ("mlstm", 2, False, False, False, False, True, False),
]


def _targets():
    return [(isa, th) for isa in _core.available_isas() for th in (1, 2)]


def _states(kind, layers, batch, rng, dtype):
    if kind == "slstm":
        h, c, m = (rng.standard_normal((layers, *batch, H)).astype(dtype) for _ in range(3))
        n = rng.uniform(0.5, 2, (layers, *batch, H)).astype(dtype)
        return (h, c, n, m)
    DH = H // NH
    return (rng.standard_normal((layers, *batch, NH, DH, DH)).astype(dtype),
            rng.standard_normal((layers, *batch, NH, DH)).astype(dtype) + 1,
            rng.standard_normal((layers, *batch, NH)).astype(dtype))


def _run(row, dtype):
    kind, layers, batch_first, lengths, unbatched, with_state, bias, variant = row
    if kind == "slstm":
        layer = pyrnn.SLSTM(I, H, num_heads=NH, num_layers=layers, bias=bias, batch_first=batch_first,
                            forget_gate=variant, dtype=dtype, seed=3)
    else:
        layer = pyrnn.MLSTM(I, H, num_heads=NH, num_layers=layers, bias=bias, batch_first=batch_first,
                            output_gate=variant, dtype=dtype, seed=3)
    rng = np.random.default_rng(0)
    batch = () if unbatched else (B,)
    shape = (T, I) if unbatched else ((B, T, I) if batch_first else (T, B, I))
    x = rng.standard_normal(shape).astype(dtype)
    state = _states(kind, layers, batch, rng, dtype) if with_state else None
    lens = None
    if lengths:
        lens = np.array(4) if unbatched else np.array([T, 2, 5])
    y, fin = layer(x, state, lengths=lens)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dfin = tuple(rng.standard_normal(f.shape).astype(dtype) for f in fin)
    dx, d0 = layer.backward(dy, dfin)
    out = {"y": y, "dx": dx}
    out.update({f"final{i}": f for i, f in enumerate(fin)})
    out.update({f"d0_{i}": d for i, d in enumerate(d0)})
    out.update({"grad_" + k: v for k, v in layer.grads.items()})
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("row", GRID, ids=lambda r: "-".join(map(str, r)))
def test_layers_native_match_reference(row, dtype, restore_native_settings):
    with use_backend("reference"):
        expect = _run(row, dtype)
    for isa, threads in _targets():
        _core.select_isa(isa)
        _core.set_num_threads(threads)
        got = _run(row, dtype)
        for k, v in expect.items():
            assert got[k].dtype == dtype
            np.testing.assert_allclose(got[k], v, err_msg=f"{k} isa={isa} threads={threads}", **TOL[dtype])


def test_bitwise_identical_for_any_thread_count(restore_native_settings):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((20, 7, 16)).astype(np.float32)
    results = []
    for threads in (1, 2, 3):
        _core.set_num_threads(threads)
        outs = []
        for cls in (pyrnn.SLSTM, pyrnn.MLSTM):
            layer = cls(16, 16, num_heads=4, seed=0)
            y, _ = layer(x)
            dx, _ = layer.backward(np.ones_like(y))
            outs += [y, dx, *layer.grads.values()]
        results.append(outs)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cells_match_layer_steps(dtype):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, B, I)).astype(dtype)
    for layer_cls, cell_cls in ((pyrnn.SLSTM, pyrnn.SLSTMCell), (pyrnn.MLSTM, pyrnn.MLSTMCell)):
        layer = layer_cls(I, H, num_heads=NH, dtype=dtype, seed=5)
        cell = cell_cls(I, H, num_heads=NH, dtype=dtype, seed=5)
        y, fin = layer(x)
        dy = rng.standard_normal(y.shape).astype(dtype)
        dx, d0 = layer.backward(dy)
        state, hs = None, []
        for t in range(4):
            if cell_cls is pyrnn.SLSTMCell:
                state = cell(x[t], state)
                hs.append(state[0])
            else:
                h, state = cell(x[t], state)
                hs.append(h)
        np.testing.assert_allclose(np.stack(hs), y, **TOL[dtype])
        for a, b in zip(state, fin):
            np.testing.assert_allclose(a, b[0], **TOL[dtype])
        # BPTT by hand through the unrolled cell
        dstate, dxs = None, []
        for t in reversed(range(4)):
            if cell_cls is pyrnn.SLSTMCell:
                zero = np.zeros((B, H), dtype)
                ds = (dy[t] + (dstate[0] if dstate else zero), *(dstate[1:] if dstate else (None,) * 3))
                dxt, dstate = cell.backward(ds)
            else:
                dxt, dstate = cell.backward(dy[t], dstate)
            dxs.append(dxt)
        np.testing.assert_allclose(np.stack(dxs[::-1]), dx, **TOL[dtype])
        for k, v in layer.grads.items():
            np.testing.assert_allclose(cell.grads[k[:-3]], v, **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_slstm_headwise_native_matches_reference(dtype, restore_native_settings):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((T, B, 6)).astype(dtype)          # 6 inputs over NH = 2 heads
    lens = np.array([T, 2, 5])

    def run():
        layer = pyrnn.SLSTM(6, H, num_heads=NH, num_layers=2, input_projection="headwise", dtype=dtype, seed=3)
        assert layer.parameters()["weight_ih_l0"].shape == (4 * H, 3)
        assert layer.parameters()["weight_ih_l1"].shape == (4 * H, H // NH)
        y, fin = layer(x, lengths=lens)
        dx, d0 = layer.backward(np.ones_like(y), tuple(np.ones_like(f) for f in fin))
        return [y, dx, *fin, *d0, *layer.grads.values()]

    with use_backend("reference"):
        expect = run()
    for isa, threads in _targets():
        _core.select_isa(isa)
        _core.set_num_threads(threads)
        for got, want in zip(run(), expect):
            np.testing.assert_allclose(got, want, err_msg=f"isa={isa} threads={threads}", **TOL[dtype])
