"""Tests of pyrnn/reference.py, the pure-NumPy oracle of the native kernels.

1. gradients against central finite differences (float64), every cell/option;
2. forward and gradients against torch.nn.RNN/LSTM/GRU (skipped without torch);
3. gru_reset_before against ONNX's GRU with linear_before_reset=0;
4. gemm and the elementwise functions against plain numpy;
plus the packed-sequence semantics, edge cases and the no-mutation contract.
"""

import importlib.util
import itertools
import pathlib
import warnings
import zlib

import numpy as np
import pytest
from _fd import numeric_grad


def _load_reference():
    # The reference must work without the compiled extension: if the package
    # cannot be imported (e.g. pyrnn._core not built), load the file alone.
    try:
        import pyrnn.reference as ref
        return ref
    except ImportError:
        path = pathlib.Path(__file__).resolve().parents[1] / "pyrnn" / "reference.py"
        spec = importlib.util.spec_from_file_location("_pyrnn_reference_standalone", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod


ref = _load_reference()

G_OF = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3, "gru_reset_before": 3}
CELLS = list(G_OF)


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def make_problem(cell, T=4, B=3, I=3, H=4, proj=0, bias=True, lengths=False,
                 dtype=np.float64, seed=0):
    """Random inputs and parameters for one layer; returns a dict of arrays."""
    rng = np.random.default_rng(seed)
    G = G_OF[cell]
    P = proj or H

    def u(*shape):
        return rng.uniform(-0.8, 0.8, size=shape).astype(dtype)

    p = {
        "x": u(T, B, I),
        "h0": u(B, P),
        "c0": u(B, H) if cell == "lstm" else None,
        "w_ih": u(G * H, I),
        "w_hh": u(G * H, P),
        "b_ih": u(G * H) if bias else None,
        "b_hh": u(G * H) if bias else None,
        "w_hr": u(P, H) if proj else None,
        "lengths": None,
    }
    if lengths and B > 0 and T > 0:
        lens = rng.integers(1, T + 1, size=B)
        lens[0] = T            # one full-length sequence
        if B > 1:
            lens[1] = 1        # and one of length 1
        p["lengths"] = lens.astype(np.int64)
    return p


def forward(cell, p, reverse, training=True):
    return ref.layer_forward(cell, p["x"], p["h0"], p["c0"], p["w_ih"], p["w_hh"],
                             p["b_ih"], p["b_hh"], p["w_hr"], p["lengths"], reverse, training, None)


def backward(cell, p, cache, dy, dh_n, dc_n):
    """Run layer_backward with fresh zero gradient buffers; returns a dict."""
    g = {k: (None if p[k] is None else np.zeros_like(p[k]))
         for k in ("w_ih", "w_hh", "b_ih", "b_hh", "w_hr")}
    dx, dh0, dc0 = ref.layer_backward(cell, cache, dy, dh_n, dc_n, p["w_ih"], p["w_hh"],
                                      p["w_hr"], g["w_ih"], g["w_hh"], g["b_ih"],
                                      g["b_hh"], g["w_hr"])
    g.update(x=dx, h0=dh0, c0=dc0)
    return g


GRAD_KEYS = ("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "w_hr")


# ---------------------------------------------------------------------------
# 1. finite differences
# ---------------------------------------------------------------------------

def _fd_cases():
    for cell in CELLS:
        projs = (0, 2) if cell == "lstm" else (0,)
        for reverse, lengths, bias, proj in itertools.product((False, True), (False, True),
                                                              (True, False), projs):
            yield pytest.param(cell, reverse, lengths, bias, proj,
                               id=f"{cell}-{'rev' if reverse else 'fwd'}"
                                  f"-{'len' if lengths else 'full'}"
                                  f"-{'bias' if bias else 'nobias'}"
                                  f"{'-proj' if proj else ''}")


@pytest.mark.parametrize("cell,reverse,lengths,bias,proj", list(_fd_cases()))
def test_gradients_vs_finite_differences(cell, reverse, lengths, bias, proj):
    p = make_problem(cell, T=5, B=3, I=3, H=4, proj=proj, bias=bias, lengths=lengths,
                     seed=zlib.crc32(repr((cell, reverse, lengths, bias, proj)).encode()))
    rng = np.random.default_rng(1)
    y, h_n, c_n, cache = forward(cell, p, reverse)
    wy = rng.standard_normal(y.shape)      # includes padding positions: must not matter
    wh = rng.standard_normal(h_n.shape)
    wc = None if c_n is None else rng.standard_normal(c_n.shape)

    def loss():
        y, h_n, c_n, _ = forward(cell, p, reverse, training=False)
        val = np.sum(wy * y) + np.sum(wh * h_n)
        if c_n is not None:
            val += np.sum(wc * c_n)
        return val

    g = backward(cell, p, cache, wy, wh, wc)
    eps = 1e-6
    for key in GRAD_KEYS:
        if p[key] is None:
            assert g[key] is None, key
            continue
        fd = numeric_grad(loss, p[key], eps)
        scale = max(np.max(np.abs(fd)), 1e-3)
        err = np.max(np.abs(fd - g[key])) / scale
        assert err < 1e-6, f"{key}: rel err {err:.2e}"
    if p["lengths"] is not None:
        # outputs at padding are zero and their gradient never reaches x
        pad = np.arange(p["x"].shape[0])[:, None] >= p["lengths"][None, :]
        assert np.all(y[pad] == 0)
        assert np.all(g["x"][pad] == 0)


# ---------------------------------------------------------------------------
# packed-sequence semantics, independent of torch: each sequence alone
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("reverse", [False, True])
def test_lengths_equal_running_each_sequence_alone(cell, reverse):
    p = make_problem(cell, T=6, B=4, proj=2 if cell == "lstm" else 0, lengths=True, seed=3)
    y, h_n, c_n, _ = forward(cell, p, reverse, training=False)
    for b, L in enumerate(p["lengths"]):
        q = dict(p, x=p["x"][:L, b:b + 1], h0=p["h0"][b:b + 1], lengths=None,
                 c0=None if p["c0"] is None else p["c0"][b:b + 1])
        yb, hb, cb, _ = forward(cell, q, reverse, training=False)
        # (batch size changes BLAS rounding, hence not bit-exact)
        np.testing.assert_allclose(y[:L, b:b + 1], yb, rtol=0, atol=1e-14)
        assert np.all(y[L:, b] == 0)
        np.testing.assert_allclose(h_n[b:b + 1], hb, rtol=0, atol=1e-14)
        if cb is not None:
            np.testing.assert_allclose(c_n[b:b + 1], cb, rtol=0, atol=1e-14)


@pytest.mark.parametrize("cell", CELLS)
def test_reverse_is_forward_on_time_flipped_input(cell):
    p = make_problem(cell, T=5, B=2, seed=4)
    y_r, h_r, c_r, _ = forward(cell, p, True, training=False)
    y_f, h_f, c_f, _ = forward(cell, dict(p, x=p["x"][::-1]), False, training=False)
    np.testing.assert_allclose(y_r, y_f[::-1], rtol=0, atol=1e-15)
    np.testing.assert_allclose(h_r, h_f, rtol=0, atol=1e-15)


@pytest.mark.parametrize("cell", ["lstm", "gru", "gru_reset_before"])
@pytest.mark.parametrize("reverse", [False, True])
def test_nan_in_padding_does_not_leak(cell, reverse):
    p = make_problem(cell, T=5, B=3, lengths=True, seed=5)
    pad = np.arange(5)[:, None] >= p["lengths"][None, :]
    p["x"][pad] = np.nan
    y, h_n, c_n, cache = forward(cell, p, reverse)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(h_n))
    dy = np.ones_like(y)
    dy[pad] = np.nan                            # dy at padding is ignored
    g = backward(cell, p, cache, dy, None, None)
    for k in GRAD_KEYS:
        if g[k] is not None:
            assert np.all(np.isfinite(g[k])), k


# ---------------------------------------------------------------------------
# contract details
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("cell", CELLS)
def test_inputs_not_modified_and_gradients_accumulate(cell):
    p = make_problem(cell, proj=2 if cell == "lstm" else 0, lengths=True, seed=6)
    before = {k: (None if v is None else v.copy()) for k, v in p.items()}
    y, h_n, c_n, cache = forward(cell, p, True)
    rng = np.random.default_rng(0)
    dy = rng.standard_normal(y.shape)
    dh = rng.standard_normal(h_n.shape)
    dc = None if c_n is None else rng.standard_normal(c_n.shape)
    dy0, dh0_, dc0_ = dy.copy(), dh.copy(), None if dc is None else dc.copy()
    g1 = backward(cell, p, cache, dy, dh, dc)
    # a second backward into the same buffers doubles the parameter gradients
    bufs = {k: (None if g1[k] is None else g1[k].copy()) for k in ("w_ih", "w_hh", "b_ih", "b_hh", "w_hr")}
    ref.layer_backward(cell, cache, dy, dh, dc, p["w_ih"], p["w_hh"], p["w_hr"],
                       bufs["w_ih"], bufs["w_hh"], bufs["b_ih"], bufs["b_hh"], bufs["w_hr"])
    for k, v in bufs.items():
        if v is not None:
            np.testing.assert_allclose(v, 2 * g1[k], rtol=1e-14, atol=1e-14)
    for k, v in p.items():
        if v is not None:
            np.testing.assert_array_equal(v, before[k], err_msg=k)
    np.testing.assert_array_equal(dy, dy0)
    np.testing.assert_array_equal(dh, dh0_)
    if dc is not None:
        np.testing.assert_array_equal(dc, dc0_)
    # the returned state is not an alias of the caller's h0
    assert not np.shares_memory(h_n, p["h0"])


@pytest.mark.parametrize("cell", CELLS)
def test_eval_mode_has_no_cache_and_same_outputs(cell):
    p = make_problem(cell, seed=7)
    y1, h1, c1, cache1 = forward(cell, p, False, training=True)
    y2, h2, c2, cache2 = forward(cell, p, False, training=False)
    assert cache1 is not None and cache2 is None
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(h1, h2)
    assert (c2 is None) == (cell != "lstm")
    with pytest.raises(RuntimeError):
        backward(cell, p, None, None, None, None)


@pytest.mark.parametrize("cell", CELLS)
def test_none_output_gradients_mean_zeros(cell):
    p = make_problem(cell, seed=8)
    y, h_n, c_n, cache = forward(cell, p, False)
    g_none = backward(cell, p, cache, None, None, None)
    g_zero = backward(cell, p, cache, np.zeros_like(y), np.zeros_like(h_n),
                      None if c_n is None else np.zeros_like(c_n))
    for k in GRAD_KEYS:
        if g_none[k] is not None:
            assert np.all(g_none[k] == 0) and np.all(g_zero[k] == 0), k
    # dh_n alone
    g = backward(cell, p, cache, None, np.ones_like(h_n), None)
    assert np.any(g["x"] != 0)


@pytest.mark.parametrize("cell", CELLS)
def test_float32_matches_float64(cell):
    p64 = make_problem(cell, proj=2 if cell == "lstm" else 0, lengths=True, seed=9)
    p32 = {k: (v.astype(np.float32) if v is not None and v.dtype == np.float64 else v)
           for k, v in p64.items()}
    out64 = forward(cell, p64, True)
    out32 = forward(cell, p32, True)
    for a, b in zip(out32[:3], out64[:3]):
        if a is None:
            continue
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=0, atol=2e-6)
    rng = np.random.default_rng(0)
    dy = rng.standard_normal(out64[0].shape)
    g64 = backward(cell, p64, out64[3], dy, None, None)
    g32 = backward(cell, p32, out32[3], dy.astype(np.float32), None, None)
    for k in GRAD_KEYS:
        if g64[k] is not None:
            assert g32[k].dtype == np.float32, k
            np.testing.assert_allclose(g32[k], g64[k], rtol=0, atol=1e-5 * max(1, np.abs(g64[k]).max()))


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("T,B", [(0, 3), (4, 0), (0, 0)])
def test_empty_sequence_or_batch(cell, T, B):
    p = make_problem(cell, T=T, B=B, seed=10)
    for reverse in (False, True):
        y, h_n, c_n, cache = forward(cell, p, reverse)
        assert y.shape == (T, B, 4)
        np.testing.assert_array_equal(h_n, p["h0"])
        if cell == "lstm":
            np.testing.assert_array_equal(c_n, p["c0"])
        dh = np.ones_like(h_n)
        g = backward(cell, p, cache, None, dh, None)
        assert g["x"].shape == (T, B, 3)
        np.testing.assert_array_equal(g["h0"], dh)
        assert np.all(g["w_ih"] == 0) and np.all(g["w_hh"] == 0)


def test_bad_arguments():
    p = make_problem("lstm", seed=11)
    with pytest.raises(ValueError, match="cell"):
        forward("lstmx", p, False)
    with pytest.raises(ValueError, match="h0"):
        forward("lstm", dict(p, h0=p["h0"][:, :2]), False)
    with pytest.raises(ValueError, match="lengths"):
        forward("lstm", dict(p, lengths=np.array([1, 5, 2])), False)
    with pytest.raises(ValueError, match="lengths"):
        forward("lstm", dict(p, lengths=np.array([0, 1, 2])), False)
    with pytest.raises(ValueError, match="b_ih"):
        forward("lstm", dict(p, b_hh=None), False)


# ---------------------------------------------------------------------------
# 2. against torch
# ---------------------------------------------------------------------------

TORCH_CASES = [("rnn_tanh", 0), ("rnn_relu", 0), ("lstm", 0), ("lstm", 2), ("gru", 0)]


@pytest.mark.parametrize("cell,proj", TORCH_CASES, ids=[f"{c}-p{p}" for c, p in TORCH_CASES])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("lengths", [False, True], ids=["full", "len"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_against_torch(cell, proj, reverse, lengths, bias):
    torch = pytest.importorskip("torch")
    T, B, I, H = 5, 4, 3, 4
    P = proj or H
    D = 2 if reverse else 1
    d = D - 1                                   # the direction we compare
    sfx = "_reverse" if reverse else ""
    kw = dict(input_size=I, hidden_size=H, bias=bias, bidirectional=reverse, dtype=torch.float64)
    if cell.startswith("rnn"):
        mod = torch.nn.RNN(nonlinearity=cell[4:], **kw)
    elif cell == "lstm":
        mod = torch.nn.LSTM(proj_size=proj, **kw)
    else:
        mod = torch.nn.GRU(**kw)
    p = make_problem(cell, T=T, B=B, I=I, H=H, proj=proj, bias=bias, lengths=lengths, seed=12)
    rng = np.random.default_rng(13)
    with torch.no_grad():
        for name, param in mod.named_parameters():
            param.copy_(torch.from_numpy(rng.uniform(-0.8, 0.8, size=tuple(param.shape))))
        getattr(mod, "weight_ih_l0" + sfx).copy_(torch.from_numpy(p["w_ih"]))
        getattr(mod, "weight_hh_l0" + sfx).copy_(torch.from_numpy(p["w_hh"]))
        if bias:
            getattr(mod, "bias_ih_l0" + sfx).copy_(torch.from_numpy(p["b_ih"]))
            getattr(mod, "bias_hh_l0" + sfx).copy_(torch.from_numpy(p["b_hh"]))
        if proj:
            getattr(mod, "weight_hr_l0" + sfx).copy_(torch.from_numpy(p["w_hr"]))

    h0_all = rng.uniform(-0.8, 0.8, size=(D, B, P))
    h0_all[d] = p["h0"]
    xt = torch.tensor(p["x"], requires_grad=True)
    h0t = torch.tensor(h0_all, requires_grad=True)
    if cell == "lstm":
        c0_all = rng.uniform(-0.8, 0.8, size=(D, B, H))
        c0_all[d] = p["c0"]
        c0t = torch.tensor(c0_all, requires_grad=True)
        state = (h0t, c0t)
    else:
        state = h0t
    if lengths:
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            xt, torch.from_numpy(p["lengths"]), enforce_sorted=False)
        out, hs = mod(packed, state)
        yt, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=T)
    else:
        yt, hs = mod(xt, state)
    yt = yt[..., d * P:(d + 1) * P]
    if cell == "lstm":
        hnt, cnt = hs[0][d], hs[1][d]
    else:
        hnt, cnt = hs[d], None

    y, h_n, c_n, cache = forward(cell, p, reverse)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(h_n, hnt.detach().numpy(), rtol=0, atol=1e-10)
    if cell == "lstm":
        np.testing.assert_allclose(c_n, cnt.detach().numpy(), rtol=0, atol=1e-10)

    wy = rng.standard_normal(y.shape)
    wh = rng.standard_normal(h_n.shape)
    wc = rng.standard_normal(c_n.shape) if cell == "lstm" else None
    loss = (yt * torch.from_numpy(wy)).sum() + (hnt * torch.from_numpy(wh)).sum()
    if cell == "lstm":
        loss = loss + (cnt * torch.from_numpy(wc)).sum()
    loss.backward()
    g = backward(cell, p, cache, wy, wh, wc)

    def close(ours, theirs, what):
        theirs = theirs.detach().numpy()
        np.testing.assert_allclose(ours, theirs, rtol=1e-7, atol=1e-9 * max(1.0, np.abs(theirs).max()),
                                   err_msg=what)

    close(g["x"], xt.grad, "x")
    close(g["h0"], h0t.grad[d], "h0")
    if cell == "lstm":
        close(g["c0"], c0t.grad[d], "c0")
    close(g["w_ih"], getattr(mod, "weight_ih_l0" + sfx).grad, "w_ih")
    close(g["w_hh"], getattr(mod, "weight_hh_l0" + sfx).grad, "w_hh")
    if bias:
        close(g["b_ih"], getattr(mod, "bias_ih_l0" + sfx).grad, "b_ih")
        close(g["b_hh"], getattr(mod, "bias_hh_l0" + sfx).grad, "b_hh")
    if proj:
        close(g["w_hr"], getattr(mod, "weight_hr_l0" + sfx).grad, "w_hr")


# ---------------------------------------------------------------------------
# 3. gru_reset_before against ONNX GRU (linear_before_reset=0)
# ---------------------------------------------------------------------------

def _to_onnx_gates(a, H):
    """Reorder stacked GRU gate blocks from PyTorch's (r, z, n) to ONNX's (z, r, h)."""
    return np.concatenate([a[H:2 * H], a[0:H], a[2 * H:3 * H]], axis=0)


def _onnx_gru_model(T, B, I, H, bias, reverse, with_lens, elem_type):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    inputs = [
        helper.make_tensor_value_info("X", elem_type, [T, B, I]),
        helper.make_tensor_value_info("W", elem_type, [1, 3 * H, I]),
        helper.make_tensor_value_info("R", elem_type, [1, 3 * H, H]),
    ]
    names = ["X", "W", "R"]
    if bias:
        inputs.append(helper.make_tensor_value_info("B", elem_type, [1, 6 * H]))
        names.append("B")
    else:
        names.append("")
    if with_lens:
        inputs.append(helper.make_tensor_value_info("sequence_lens", TensorProto.INT32, [B]))
        names.append("sequence_lens")
    else:
        names.append("")
    inputs.append(helper.make_tensor_value_info("initial_h", elem_type, [1, B, H]))
    names.append("initial_h")
    node = helper.make_node("GRU", names, ["Y", "Y_h"], hidden_size=H, linear_before_reset=0,
                            direction="reverse" if reverse else "forward")
    outputs = [helper.make_tensor_value_info("Y", elem_type, [T, 1, B, H]),
               helper.make_tensor_value_info("Y_h", elem_type, [1, B, H])]
    graph = helper.make_graph([node], "gru", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _onnx_feeds(p, H, bias, dtype):
    feeds = {
        "X": p["x"].astype(dtype),
        "W": _to_onnx_gates(p["w_ih"], H)[None].astype(dtype),
        "R": _to_onnx_gates(p["w_hh"], H)[None].astype(dtype),
        "initial_h": p["h0"][None].astype(dtype),
    }
    if bias:
        feeds["B"] = np.concatenate([_to_onnx_gates(p["b_ih"], H),
                                     _to_onnx_gates(p["b_hh"], H)])[None].astype(dtype)
    return feeds


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_gru_reset_before_vs_onnx_reference(reverse, bias):
    pytest.importorskip("onnx")
    from onnx import TensorProto
    from onnx.reference import ReferenceEvaluator

    T, B, I, H = 5, 3, 3, 4
    p = make_problem("gru_reset_before", T=T, B=B, I=I, H=H, bias=bias, seed=14)
    model = _onnx_gru_model(T, B, I, H, bias, reverse, False, TensorProto.DOUBLE)
    Y, Y_h = ReferenceEvaluator(model).run(None, _onnx_feeds(p, H, bias, np.float64))
    y, h_n, _, _ = forward("gru_reset_before", p, reverse, training=False)
    np.testing.assert_allclose(y, Y[:, 0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(h_n, Y_h[0], rtol=0, atol=1e-12)
    # and the PyTorch-style GRU really is different
    y_after, _, _, _ = forward("gru", p, reverse, training=False)
    assert np.max(np.abs(y_after - y)) > 1e-3


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("with_lens", [False, True], ids=["full", "len"])
def test_gru_reset_before_vs_onnxruntime(reverse, with_lens):
    # onnx.reference ignores sequence_lens, so lengths are checked against
    # onnxruntime (float32 only on CPU).
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto

    T, B, I, H = 6, 4, 3, 4
    p = make_problem("gru_reset_before", T=T, B=B, I=I, H=H, lengths=with_lens, seed=15)
    model = _onnx_gru_model(T, B, I, H, True, reverse, with_lens, TensorProto.FLOAT)
    feeds = _onnx_feeds(p, H, True, np.float32)
    if with_lens:
        feeds["sequence_lens"] = p["lengths"].astype(np.int32)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    Y, Y_h = sess.run(None, feeds)
    y, h_n, _, _ = forward("gru_reset_before", p, reverse, training=False)
    np.testing.assert_allclose(y, Y[:, 0], rtol=0, atol=1e-5)
    np.testing.assert_allclose(h_n, Y_h[0], rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------
# 4. gemm and elementwise functions
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("ta,tb", list(itertools.product([False, True], repeat=2)))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm(ta, tb, dtype):
    rng = np.random.default_rng(16)
    M, K, N = 5, 7, 3
    A = rng.standard_normal((K, M) if ta else (M, K)).astype(dtype)
    Bm = rng.standard_normal((N, K) if tb else (K, N)).astype(dtype)
    expect = (A.T if ta else A) @ (Bm.T if tb else Bm)
    out = ref.gemm(ta, tb, A, Bm)
    assert out.dtype == dtype and out.shape == (M, N)
    np.testing.assert_allclose(out, expect, rtol=1e-6)
    # string flags too
    np.testing.assert_allclose(ref.gemm("T" if ta else "N", "T" if tb else "N", A, Bm), expect, rtol=1e-6)
    # beta * C + ..., in place
    C = rng.standard_normal((M, N)).astype(dtype)
    C0 = C.copy()
    res = ref.gemm(ta, tb, A, Bm, beta=0.5, C=C)
    assert res is C
    np.testing.assert_allclose(C, 0.5 * C0 + expect, rtol=1e-5, atol=1e-6)
    # beta = 0 ignores C's contents, NaN included (BLAS semantics)
    C = np.full((M, N), np.nan, dtype=dtype)
    np.testing.assert_allclose(ref.gemm(ta, tb, A, Bm, beta=0.0, C=C), expect, rtol=1e-6)
    with pytest.raises(ValueError):
        ref.gemm(ta, not tb, A, Bm)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_elementwise(dtype):
    x = np.concatenate([np.linspace(-50, 50, 1001), [-1e4, 1e4, 0.0, -0.0]]).astype(dtype)
    x0 = x.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # the sigmoid must not overflow
        s = ref.vsigmoid(x)
    with np.errstate(over="ignore"):
        e = ref.vexp(x)
        np.testing.assert_array_equal(e, np.exp(x))
        expect_s = (1 / (1 + np.exp(-x.astype(np.float64))))
    assert s.dtype == dtype and e.dtype == dtype
    np.testing.assert_allclose(s, expect_s, rtol=2 * np.finfo(dtype).eps, atol=0)
    assert np.all((s >= 0) & (s <= 1))
    t = ref.vtanh(x)
    assert t.dtype == dtype
    np.testing.assert_array_equal(t, np.tanh(x))
    np.testing.assert_array_equal(x, x0)
    assert np.isnan(ref.vsigmoid(np.array([np.nan], dtype=dtype)))[0]
