"""Bad input (issue section 5): every case gets a defined result or a ValueError / TypeError /
MemoryError whose message names the argument and the expected and given shapes. Never a crash,
never a write into the caller's arrays. Ends with property-based tests over random input."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pyrnn

T, B, I, H = 5, 3, 4, 6


def lstm(**kw):
    return pyrnn.LSTM(I, H, seed=0, **kw)


def x_seq(dtype=np.float32, shape=(T, B, I)):
    return np.random.default_rng(0).standard_normal(shape).astype(dtype)


# -- wrong rank or shape -----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(I,), (1, T, B, I), ()])
def test_x_wrong_rank(shape):
    with pytest.raises(ValueError, match=r"x: expected a 3-D array \(T, B, I\).*got shape"):
        pyrnn.GRU(I, H)(np.zeros(shape, np.float32))


def test_x_wrong_feature_size():
    with pytest.raises(ValueError, match=r"x: expected shape \(B, T, I\) with I = input_size = 4, "
                                         r"got shape \(3, 5, 7\)"):
        pyrnn.GRU(I, H, batch_first=True)(np.zeros((B, T, 7), np.float32))


def test_h0_wrong_shape_and_batch_mismatch():
    gru = pyrnn.GRU(I, H, num_layers=2)
    with pytest.raises(ValueError, match=r"h0: expected shape \(D\*num_layers, B, H_out\) = "
                                         r"\(2, 3, 6\), got \(2, 4, 6\)"):
        gru(x_seq(), np.zeros((2, B + 1, H), np.float32))
    with pytest.raises(ValueError, match=r"h0: .* = \(2, 3, 6\), got \(3, 6\)"):
        gru(x_seq(), np.zeros((B, H), np.float32))
    with pytest.raises(ValueError, match=r"h0: expected shape \(D\*num_layers, H_out\) = \(2, 6\)"):
        gru(x_seq(shape=(T, I)), np.zeros((2, 1, H), np.float32))  # unbatched x needs 2-D h0


def test_c0_wrong_shape_with_projection():
    layer = lstm(proj_size=2)
    h0 = np.zeros((1, B, 2), np.float32)
    with pytest.raises(ValueError, match=r"c0: expected shape \(D\*num_layers, B, H\) = \(1, 3, 6\), "
                                         r"got \(1, 3, 2\)"):
        layer(x_seq(), (h0, np.zeros((1, B, 2), np.float32)))
    y, (h_n, c_n) = layer(x_seq(), (h0, None))  # c0 alone may be omitted
    assert c_n.shape == (1, B, H)


def test_lstm_state_must_be_a_pair():
    with pytest.raises(TypeError, match=r"hx must be a pair \(h0, c0\) or None"):
        lstm()(x_seq(), np.zeros((1, B, H), np.float32))


@pytest.mark.parametrize("lengths, error, pattern", [
    ([5, 5], ValueError, r"lengths: expected shape \(B,\) = \(3,\), got \(2,\)"),
    ([[5, 5, 5]], ValueError, r"lengths: expected shape \(B,\) = \(3,\), got \(1, 3\)"),
    ([5, 0, 1], ValueError, r"lengths\[1\] = 0 is outside 1..T = 1..5"),
    ([5, 6, 1], ValueError, r"lengths\[1\] = 6 is outside 1..T = 1..5"),
    ([-1, 2, 1], ValueError, r"lengths\[0\] = -1 is outside"),
    ([5.0, 2.0, 1.0], TypeError, r"lengths must be integers, got dtype float64"),
    ([True, True, True], TypeError, r"lengths must be integers, got dtype bool"),
])
def test_bad_lengths(lengths, error, pattern):
    with pytest.raises(error, match=pattern):
        pyrnn.RNN(I, H)(x_seq(), lengths=lengths)


def test_lengths_of_other_integer_dtypes_work():
    y1, _ = pyrnn.RNN(I, H, seed=0)(x_seq(), lengths=np.array([5, 2, 3], np.uint8))
    y2, _ = pyrnn.RNN(I, H, seed=0)(x_seq(), lengths=[5, 2, 3])
    np.testing.assert_array_equal(y1, y2)


@pytest.mark.parametrize("dtype", [np.int32, np.bool_, np.complex64, object])
@pytest.mark.parametrize("argument", ["x", "h0", "dy"])
def test_non_float_arrays_raise_type_error_naming_the_argument(argument, dtype):
    gru = pyrnn.GRU(I, H)
    arrays = dict(x=x_seq(), h0=np.zeros((1, B, H), np.float32))
    if argument != "dy":
        arrays[argument] = arrays[argument].astype(dtype)
        with pytest.raises(TypeError, match=f"^{argument} must be a floating-point array"):
            gru(arrays["x"], arrays["h0"])
    else:
        y, _ = gru(arrays["x"])
        with pytest.raises(TypeError, match="^dy must be a floating-point array"):
            gru.backward(np.ones_like(y).astype(dtype))


def test_cell_input_checks():
    cell = pyrnn.LSTMCell(I, H)
    with pytest.raises(ValueError, match=r"x: expected shape \(B, I\) or unbatched \(I,\) with I = "
                                         r"input_size = 4, got shape \(3, 5\)"):
        cell(np.zeros((B, 5), np.float32))
    with pytest.raises(ValueError, match=r"c: expected shape \(B, H\) = \(3, 6\), got \(2, 6\)"):
        cell(np.zeros((B, I), np.float32), (None, np.zeros((2, H), np.float32)))
    with pytest.raises(ValueError, match=r"h: expected shape \(H,\) = \(6,\), got \(1, 6\)"):
        pyrnn.GRUCell(I, H)(np.zeros(I, np.float32), np.zeros((1, H), np.float32))


@pytest.mark.parametrize("factory, error", [
    (lambda: pyrnn.LSTM(0, 4), ValueError),
    (lambda: pyrnn.LSTM(4, -1), ValueError),
    (lambda: pyrnn.LSTM(4, 4.0), TypeError),
    (lambda: pyrnn.LSTM(4, 4, num_layers=0), ValueError),
    (lambda: pyrnn.LSTM(4, 4, proj_size=4), ValueError),
    (lambda: pyrnn.LSTM(4, 4, proj_size=-1), ValueError),
    (lambda: pyrnn.LSTM(4, 4, dropout=1.5), ValueError),
    (lambda: pyrnn.LSTM(4, 4, dropout="0.1"), TypeError),
    (lambda: pyrnn.RNN(4, 4, nonlinearity="sigmoid"), ValueError),
    (lambda: pyrnn.GRU(4, 4, dtype=np.complex64), TypeError),
    (lambda: pyrnn.GRUCell(4, 4, dtype="not a dtype"), TypeError),
])
def test_bad_constructor_arguments(factory, error):
    with pytest.raises(error):
        factory()


# -- NaN / Inf ------------------------------------------------------------------------------------


def test_nan_and_inf_propagate_only_where_they_flow():
    x = x_seq(np.float64)
    x[2, 1, 0] = np.nan
    x[3, 2, 1] = np.inf
    y, (h_n, c_n) = pyrnn.LSTM(I, H, dtype=np.float64, seed=0)(x)
    assert np.all(np.isfinite(y[:, 0])) and np.all(np.isfinite(y[:2]))
    assert np.all(np.isnan(y[2:, 1]))
    # Inf saturates some gates and makes NaN of others (inf - inf): IEEE rules, as the reference
    from pyrnn.testing import use_backend
    with use_backend("reference"):
        y_ref, _ = pyrnn.LSTM(I, H, dtype=np.float64, seed=0)(x)
    np.testing.assert_allclose(y, y_ref, rtol=1e-10, equal_nan=True)


NON_FINITE_LAYERS = {
    "LSTM": lambda: pyrnn.LSTM(I, H, num_layers=2, dtype=np.float64, seed=0),
    "LSTM proj": lambda: pyrnn.LSTM(I, H, proj_size=2, dtype=np.float64, seed=0),
    "GRU reset before": lambda: pyrnn.GRU(I, H, reset_after=False, dtype=np.float64, seed=0),
    "GRU": lambda: pyrnn.GRU(I, H, bidirectional=True, dtype=np.float64, seed=0),
    "RNN relu": lambda: pyrnn.RNN(I, H, nonlinearity="relu", dtype=np.float64, seed=0),
    "SLSTM": lambda: pyrnn.SLSTM(I, H, num_heads=2, dtype=np.float64, seed=0),
    "SLSTM exp": lambda: pyrnn.SLSTM(I, H, num_heads=2, forget_gate="exp", dtype=np.float64, seed=0),
    "MLSTM": lambda: pyrnn.MLSTM(I, H, num_heads=2, dtype=np.float64, seed=0),
    "MLSTM no output gate": lambda: pyrnn.MLSTM(I, H, num_heads=3, output_gate=False, dtype=np.float64, seed=0),
}


def _flat_arrays(obj):
    if isinstance(obj, np.ndarray):
        return [obj]
    if isinstance(obj, dict):
        return [a for k in sorted(obj) for a in _flat_arrays(obj[k])]
    return [a for part in obj for a in _flat_arrays(part)] if isinstance(obj, (tuple, list)) else []


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("name", list(NON_FINITE_LAYERS))
def test_native_and_reference_agree_on_non_finite_input(name, mode, value, isa):
    """NaN and Inf flow through the native kernels as through the NumPy reference (IEEE rules),
    outputs, final states (the xLSTM stabiliser m included) and gradients."""
    from pyrnn.testing import use_backend
    x = x_seq(np.float64)
    x[2, 1, 0] = value
    results = {}
    for backend in ["native", "reference"]:
        layer = getattr(NON_FINITE_LAYERS[name](), mode)()
        with use_backend(backend), np.errstate(invalid="ignore", over="ignore"):
            out = layer(x, lengths=[5, 4, 2])
            grads = (layer.backward(np.ones_like(out[0])), layer.grads) if mode == "train" else ()
        results[backend] = _flat_arrays((out, grads))
    for a, b in zip(*results.values(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, equal_nan=True)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
def test_nan_in_padding_does_not_leak_into_outputs_or_gradients(cell):
    layers = dict(lstm=pyrnn.LSTM, gru=pyrnn.GRU, rnn_tanh=pyrnn.RNN)
    layer = layers[cell](I, H, bidirectional=True, num_layers=2, dtype=np.float64, seed=0)
    x = x_seq(np.float64)
    x[3:, 1] = np.nan  # padding of sequence 1 (length 3)
    out = layer(x, lengths=[5, 3, 1])
    y = out[0]
    assert np.all(np.isfinite(y))
    dy = np.ones_like(y)
    dy[3:, 1] = np.nan  # gradients at padding positions are ignored, as in PyTorch
    dx = layer.backward(dy)[0]
    assert np.all(np.isfinite(dx[:3])) and np.all(dx[3:, 1] == 0)
    assert all(np.all(np.isfinite(g)) for g in layer.grads.values())


# -- empty batch, T = 0 -----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(0, B, I), (T, 0, I), (0, 0, I), (0, I)])
def test_empty_sequence_or_batch(shape):
    layer = lstm(num_layers=2, bidirectional=True)
    batch = shape[1:-1]
    h0 = np.random.default_rng(0).standard_normal((4, *batch, H)).astype(np.float32)
    c0 = h0 + 1
    y, (h_n, c_n) = layer(np.zeros(shape, np.float32), (h0, c0))
    assert y.shape == shape[:-1] + (2 * H,)
    np.testing.assert_array_equal(h_n, h0)  # no step ran: states pass through
    np.testing.assert_array_equal(c_n, c0)
    dx, (dh0, dc0) = layer.backward(np.zeros_like(y), (h0, None))
    assert dx.shape == shape
    np.testing.assert_array_equal(dh0, h0)
    assert np.all(dc0 == 0)
    assert all(np.all(g == 0) for g in layer.grads.values())


def test_lengths_cannot_be_given_with_t_zero():
    with pytest.raises(ValueError, match="T = 0"):
        pyrnn.GRU(I, H)(np.zeros((0, 2, I), np.float32), lengths=[1, 1])
    y, _ = pyrnn.GRU(I, H)(np.zeros((0, 0, I), np.float32), lengths=np.zeros(0, np.int64))
    assert y.shape == (0, 0, H)


def test_cell_with_empty_batch():
    cell = pyrnn.LSTMCell(I, H)
    h, c = cell(np.zeros((0, I), np.float32))
    assert h.shape == c.shape == (0, H)
    dx, (dh, dc) = cell.backward((h, c))
    assert dx.shape == (0, I)


# -- views, read-only arrays, caller's arrays untouched ----------------------------------------------


def test_non_contiguous_and_negative_stride_views_work():
    rng = np.random.default_rng(0)
    big = rng.standard_normal((2 * T, B, 2 * I)).astype(np.float32)
    view = big[::-2, :, ::2]  # negative and non-unit strides
    assert not view.flags.c_contiguous
    h0 = np.asfortranarray(rng.standard_normal((1, B, H)).astype(np.float32))
    gru = pyrnn.GRU(I, H, seed=0)
    y1, h1 = gru(view, h0)
    dx1, dh1 = gru.backward(np.ones_like(y1)[::-1][::-1])
    y2, h2 = gru(np.ascontiguousarray(view), np.ascontiguousarray(h0))
    dx2, dh2 = gru.backward(np.ones_like(y2))
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(dx1, dx2)


def test_read_only_inputs_are_fine_and_never_written():
    rng = np.random.default_rng(0)
    arrays = dict(x=rng.standard_normal((T, B, I)).astype(np.float32),
                  h0=rng.standard_normal((2, B, H)).astype(np.float32),
                  c0=rng.standard_normal((2, B, H)).astype(np.float32),
                  lengths=np.array([5, 2, 3]))
    originals = {k: v.copy() for k, v in arrays.items()}
    for v in arrays.values():
        v.flags.writeable = False
    layer = lstm(bidirectional=True)
    y, (h_n, c_n) = layer(arrays["x"], (arrays["h0"], arrays["c0"]), lengths=arrays["lengths"])
    grads = dict(dy=rng.standard_normal(y.shape).astype(np.float32), dh=h_n.copy(), dc=c_n.copy())
    grad_originals = {k: v.copy() for k, v in grads.items()}
    for v in grads.values():
        v.flags.writeable = False
    layer.backward(grads["dy"], (grads["dh"], grads["dc"]))
    for k, v in {**arrays, **grads}.items():
        np.testing.assert_array_equal(v, {**originals, **grad_originals}[k])


def test_editing_x_after_forward_does_not_change_backward():
    x = x_seq(np.float64)
    a = pyrnn.GRU(I, H, dtype=np.float64, seed=0)
    y, _ = a(x)
    x[:] = 100.0  # the caller reuses its buffer before calling backward
    a.backward(np.ones_like(y))
    b = pyrnn.GRU(I, H, dtype=np.float64, seed=0)
    y, _ = b(x_seq(np.float64))
    b.backward(np.ones_like(y))
    for k in a.grads:
        np.testing.assert_array_equal(a.grads[k], b.grads[k])


# -- huge sizes -----------------------------------------------------------------------------------


def test_huge_layer_raises_memory_error():
    with pytest.raises(MemoryError):
        pyrnn.LSTM(10**6, 10**6)
    with pytest.raises(MemoryError):
        pyrnn.GRUCell(10**7, 10**6)


def test_huge_input_raises_memory_error():
    # a zero-stride view that looks like 10**12 elements: copying or running it cannot fit
    x = np.broadcast_to(np.zeros(I, np.float32), (10**6, 10**5, I))
    with pytest.raises(MemoryError):
        pyrnn.GRU(I, H)(x)


def test_huge_sequence_that_fits_as_input_but_not_in_the_training_cache():
    layer = pyrnn.LSTM(1, 256, dtype=np.float64)
    x = np.zeros((10**4, 10**3, 1))  # 80 MB of input; the cache would need hundreds of GB
    with pytest.raises(MemoryError, match="LSTM forward over T=10000, B=1000"):
        layer(x)


# -- property-based: random shapes and arguments never crash -----------------------------------------


FLOAT_DTYPES = [np.float16, np.float32, np.float64]
OTHER_DTYPES = [np.int64, np.bool_, np.complex128]


@st.composite
def layer_call(draw):
    kind = draw(st.sampled_from(["rnn_tanh", "rnn_relu", "lstm", "gru", "gru_reset_before"]))
    I_, H_ = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    num_layers = draw(st.integers(1, 2))
    bidirectional = draw(st.booleans())
    batch_first = draw(st.booleans())
    proj = draw(st.integers(0, H_ - 1)) if kind == "lstm" else 0
    T_, B_ = draw(st.integers(0, 4)), draw(st.integers(0, 3))
    unbatched = draw(st.booleans())
    # the shape of x: usually right, sometimes one dimension off or the wrong rank
    shape = [T_, I_] if unbatched else ([B_, T_, I_] if batch_first else [T_, B_, I_])
    if draw(st.integers(0, 4)) == 0:
        shape = draw(st.lists(st.integers(0, 5), min_size=0, max_size=4))
    dtype = draw(st.sampled_from(FLOAT_DTYPES + (OTHER_DTYPES if draw(st.integers(0, 9)) == 0 else [])))
    offsets = [0.0, 1.0, -3.0] + ([np.nan, np.inf] if dtype in FLOAT_DTYPES else [])
    values = draw(st.sampled_from(offsets)) + np.random.default_rng(draw(st.integers(0, 10))).standard_normal(shape)
    x = np.asarray(values).astype(dtype)  # (NaN/Inf only for float dtypes: casting them warns)
    if x.ndim >= 1 and draw(st.booleans()):
        x = x[::-1]  # negative stride
    D = 2 if bidirectional else 1
    stack, P = num_layers * D, proj or H_
    state_shape = [stack, P] if unbatched else [stack, B_, P]
    h0 = None
    if draw(st.booleans()):
        if draw(st.integers(0, 3)) == 0:
            state_shape = draw(st.lists(st.integers(0, 4), min_size=0, max_size=4))
        h0 = np.zeros(state_shape, np.float32)
    lengths = None
    if draw(st.booleans()):
        n = B_ if draw(st.integers(0, 4)) else draw(st.integers(0, 4))
        lengths = np.array(draw(st.lists(st.integers(-1, T_ + 1), min_size=n, max_size=n)), np.int64)
    layer_kw = dict(num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first,
                    dropout=draw(st.sampled_from([0.0, 0.5])), seed=draw(st.integers(0, 3)))
    return kind, I_, H_, proj, layer_kw, x, h0, lengths


def _build(kind, I_, H_, proj, kw):
    if kind == "lstm":
        return pyrnn.LSTM(I_, H_, proj_size=proj, **kw)
    if kind.startswith("gru"):
        return pyrnn.GRU(I_, H_, reset_after=kind == "gru", **kw)
    return pyrnn.RNN(I_, H_, nonlinearity=kind[4:], **kw)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layer_call())
def test_random_layer_calls_never_crash(call):
    kind, I_, H_, proj, kw, x, h0, lengths = call
    layer = _build(kind, I_, H_, proj, kw)
    x_before = x.copy()
    try:
        if kind == "lstm":
            y, (h_n, c_n) = layer(x, (h0, None), lengths=lengths)
        else:
            y, h_n = layer(x, h0, lengths=lengths)
    except (ValueError, TypeError, MemoryError) as e:
        assert str(e)  # every refusal says why
        return
    np.testing.assert_array_equal(x, x_before)
    assert y.dtype == np.float32 and y.shape[-1] == (2 if kw["bidirectional"] else 1) * (proj or H_)
    if kind == "lstm":
        dx, _ = layer.backward(np.ones_like(y), (np.ones_like(h_n), None))
    else:
        dx, _ = layer.backward(np.ones_like(y), np.ones_like(h_n))
    assert dx.shape == x.shape


@settings(max_examples=100, deadline=None)
@given(kind=st.sampled_from(["rnn", "lstm", "gru"]),
       x_shape=st.lists(st.integers(0, 4), min_size=0, max_size=3),
       h_shape=st.one_of(st.none(), st.lists(st.integers(0, 4), min_size=0, max_size=3)))
def test_random_cell_calls_never_crash(kind, x_shape, h_shape):
    cls = dict(rnn=pyrnn.RNNCell, lstm=pyrnn.LSTMCell, gru=pyrnn.GRUCell)[kind]
    cell = cls(3, 2, seed=0)
    x = np.ones(x_shape, np.float32)
    h = None if h_shape is None else np.ones(h_shape, np.float32)
    try:
        out = cell(x, (h, None) if kind == "lstm" else h)
    except (ValueError, TypeError, MemoryError) as e:
        assert str(e)
        return
    h_new = out[0] if kind == "lstm" else out
    dx, _ = cell.backward((h_new, None) if kind == "lstm" else h_new)
    assert dx.shape == x.shape


def test_dropout_of_infinite_values_is_nan_without_warnings():
    # found by hypothesis: inf * 0 (a dropped unit) is NaN, with no RuntimeWarning escaping
    rnn = pyrnn.RNN(1, 4, num_layers=2, nonlinearity="relu", dropout=0.5, seed=0)
    y, _ = rnn(np.array([[[np.inf]]], np.float32))
    rnn.backward(np.ones_like(y))


# -- equal dtypes that are other objects ------------------------------------------------------------
# NumPy makes new dtype objects when it unpickles or deep-copies an array: the native checks must
# compare dtypes by value, never by identity.


def _copies_of(arr: np.ndarray) -> dict[str, np.ndarray]:
    import copy
    import pickle
    # (deepcopy of an array keeps its dtype object; that of a layer copies its dtype attribute)
    copies = {"unpickled": pickle.loads(pickle.dumps(arr)),
              "deep-copied": copy.deepcopy(arr).view(copy.deepcopy(arr.dtype))}
    assert all(c.dtype is not arr.dtype and c.dtype == arr.dtype for c in copies.values())
    return copies


DTYPE_SPELLINGS = [np.dtype("float32"), np.dtype("<f4"), np.float32, "float32",
                   np.dtype("float64"), np.float64, "<f8"]


@pytest.mark.parametrize("how", ["unpickled", "deep-copied"])
def test_native_calls_accept_unpickled_and_deep_copied_arrays(how):
    from pyrnn import _core
    x = _copies_of(np.zeros((2, 1, 3), np.float32))[how]
    h = _copies_of(np.zeros((1, 4), np.float32))[how]
    w_ih, w_hh = (_copies_of(np.zeros(s, np.float32))[how] for s in [(16, 3), (16, 4)])
    y, h_n, c_n, _ = _core.layer_forward("lstm", x, h, h, w_ih, w_hh, None, None, None, None, False, False, None)
    assert y.shape == (2, 1, 4)
    packed = _core.pack_layer("lstm", w_ih, w_hh, None, None, None)
    h_new, _ = _core.layer_step(x[0], h, h, packed)
    assert h_new.shape == (1, 4)
    lengths = _copies_of(np.array([2], np.int64))[how]
    _core.layer_forward("gru", x, h, None, np.zeros((12, 3), np.float32), np.zeros((12, 4), np.float32),
                        None, None, None, lengths, False, False, None)


@pytest.mark.parametrize("how", ["unpickled", "deep-copied"])
@pytest.mark.parametrize("make", [
    lambda dt: pyrnn.LSTM(3, 4, dtype=dt, seed=0), lambda dt: pyrnn.GRUCell(3, 4, dtype=dt, seed=0),
    lambda dt: pyrnn.SLSTM(3, 4, num_heads=2, dtype=dt, seed=0),
    lambda dt: pyrnn.MLSTM(3, 4, num_heads=2, dtype=dt, seed=0)], ids=["LSTM", "GRUCell", "SLSTM", "MLSTM"])
@pytest.mark.parametrize("spelling", DTYPE_SPELLINGS, ids=str)
def test_layers_with_copied_dtype_and_parameters_run(make, spelling, how):
    reference = make(spelling)
    layer = make(spelling)
    # what an unpickled layer holds: a dtype object and parameter arrays that are new objects
    layer.dtype = _copies_of(np.zeros(0, layer.dtype))[how].dtype
    for module in [layer, getattr(layer, "_layer", None)]:
        for name, value in getattr(module, "_params", {}).items():
            module._params[name] = _copies_of(value)[how]
    x = np.random.default_rng(0).standard_normal((2, 3) if "Cell" in type(layer).__name__ else (2, 1, 3))
    for mode in ["train", "eval"]:
        getattr(layer, mode)(), getattr(reference, mode)()
        out, expected = layer(x.astype(np.float32)), reference(x.astype(np.float32))
        np.testing.assert_array_equal(out[0], expected[0])


# -- what a training cache keeps is pyrnn's own copy ------------------------------------------------
# A forward in training mode keeps its input for backward. Whatever the input was (an ndarray, a
# torch tensor, a memoryview, an ndarray subclass), the caller's later writes to that memory must
# not reach the backward.


class _Subclass(np.ndarray):
    pass


def _caller_memory(kind, values):
    """(object to pass, its memory as an ndarray the test can write) for an input of ``kind``."""
    buf = values.copy()
    if kind == "ndarray":
        return buf, buf
    if kind == "read-only view":  # a view the caller may still change through `buf`
        view = buf.view()
        view.flags.writeable = False
        return view, buf
    if kind == "subclass":
        return buf.view(_Subclass), buf
    if kind == "memoryview":
        return memoryview(buf), buf
    torch = pytest.importorskip("torch")
    tensor = torch.from_numpy(buf)
    return tensor, tensor.numpy()


def _mlstm_cell_backward(m, out):
    return m.backward(np.ones_like(out[0]))


KEPT_INPUT_CASES = {  # name: (factory, x shape, backward(module, output) -> input gradient)
    "LSTM": (lambda: pyrnn.LSTM(I, H, seed=0), (T, B, I), lambda m, out: m.backward(np.ones_like(out[0]))[0]),
    "GRU batch_first": (lambda: pyrnn.GRU(I, H, batch_first=True, seed=0), (B, T, I),
                        lambda m, out: m.backward(np.ones_like(out[0]))[0]),
    "RNN unbatched": (lambda: pyrnn.RNN(I, H, seed=0), (T, I), lambda m, out: m.backward(np.ones_like(out[0]))[0]),
    "GRUCell": (lambda: pyrnn.GRUCell(I, H, seed=0), (B, I), lambda m, out: m.backward(np.ones_like(out))[0]),
    "LSTMCell": (lambda: pyrnn.LSTMCell(I, H, seed=0), (B, I),
                 lambda m, out: m.backward((np.ones_like(out[0]), None))[0]),
    "SLSTM": (lambda: pyrnn.SLSTM(I, H, num_heads=2, seed=0), (T, B, I),
              lambda m, out: m.backward(np.ones_like(out[0]))[0]),
    "MLSTM": (lambda: pyrnn.MLSTM(I, H, num_heads=2, seed=0), (T, B, I),
              lambda m, out: m.backward(np.ones_like(out[0]))[0]),
    "SLSTMCell": (lambda: pyrnn.SLSTMCell(I, H, num_heads=2, seed=0), (B, I),
                  lambda m, out: m.backward((np.ones_like(out[0]), None, None, None))[0]),
    "MLSTMCell": (lambda: pyrnn.MLSTMCell(I, H, num_heads=2, seed=0), (B, I),
                  lambda m, out: _mlstm_cell_backward(m, out)[0]),
    "nn.Linear": (lambda: pyrnn.nn.Linear(I, H, seed=0), (B, T, I), lambda m, out: m.backward(np.ones_like(out))),
    "nn.Tanh": (lambda: pyrnn.nn.Tanh(), (B, I), lambda m, out: m.backward(np.ones_like(out))),
}


@pytest.mark.parametrize("kind", ["ndarray", "read-only view", "subclass", "memoryview", "torch"])
@pytest.mark.parametrize("case", list(KEPT_INPUT_CASES))
def test_caller_writes_after_forward_do_not_reach_backward(case, kind):
    factory, shape, backward = KEPT_INPUT_CASES[case]
    values = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    expected_module = factory()
    expected_dx = backward(expected_module, expected_module(values.copy()))
    module = factory()
    x, memory = _caller_memory(kind, values)
    out = module(x)
    memory *= 10  # the caller reuses its buffer before calling backward
    dx = backward(module, out)
    np.testing.assert_array_equal(dx, expected_dx)
    for name, grad in getattr(module, "grads", {}).items():
        np.testing.assert_array_equal(grad, expected_module.grads[name], err_msg=name)


@pytest.mark.parametrize("kind", ["ndarray", "torch"])
def test_caller_writes_to_states_and_lengths_after_forward_do_not_reach_backward(kind):
    def run(mutate):
        layer = pyrnn.LSTM(I, H, seed=0)
        rng = np.random.default_rng(1)
        h0, h0_memory = _caller_memory(kind, rng.standard_normal((1, B, H)).astype(np.float32))
        c0, c0_memory = _caller_memory(kind, rng.standard_normal((1, B, H)).astype(np.float32))
        lengths, lengths_memory = _caller_memory(kind, np.array([5, 2, 3]))
        y, _ = layer(x_seq(), (h0, c0), lengths=lengths)
        if mutate:
            h0_memory *= 10
            c0_memory *= 10
            lengths_memory[:] = [1, 1, 1]
        return layer.backward(np.ones_like(y)), layer.grads

    (dx, (dh0, dc0)), grads = run(mutate=True)
    (dx_ref, (dh0_ref, dc0_ref)), grads_ref = run(mutate=False)
    for a, b in [(dx, dx_ref), (dh0, dh0_ref), (dc0, dc0_ref)] + [(grads[k], grads_ref[k]) for k in grads]:
        np.testing.assert_array_equal(a, b)


def test_attention_keeps_its_own_copy_of_query_and_keys():
    from pyrnn.models.attention import Attention
    rng = np.random.default_rng(0)
    q, k = rng.standard_normal((2, 3, 4)).astype(np.float32), rng.standard_normal((2, 5, 4)).astype(np.float32)

    def run(mutate):
        attention = Attention("general", 4, 4, seed=0)
        query, keys = q.copy(), k.copy()
        context, _ = attention(query, keys)
        if mutate:
            query *= 10
            keys *= 10
        return attention.backward(np.ones_like(context)), attention.grads

    (dq, dk), grads = run(True)
    (dq_ref, dk_ref), grads_ref = run(False)
    np.testing.assert_array_equal(dq, dq_ref)
    np.testing.assert_array_equal(dk, dk_ref)
    np.testing.assert_array_equal(grads["weight"], grads_ref["weight"])


@pytest.mark.parametrize("make, shape", [
    (lambda: pyrnn.LSTM(I, H), (T, 0, I)), (lambda: pyrnn.GRU(I, H, batch_first=True), (0, T, I)),
    (lambda: pyrnn.RNN(I, H), (0, 0, I)), (lambda: pyrnn.SLSTM(I, H, num_heads=2), (T, 0, I)),
    (lambda: pyrnn.MLSTM(I, H, num_heads=2), (T, 0, I))])
@pytest.mark.parametrize("lengths", [[], (), np.zeros(0, np.int32)], ids=["list", "tuple", "int32 array"])
def test_empty_lengths_for_an_empty_batch(make, shape, lengths):
    layer = make()
    y, _ = layer(np.zeros(shape, np.float32), lengths=lengths)
    assert y.shape == shape[:-1] + (H,)
    dx = layer.backward(np.zeros_like(y))[0]
    assert dx.shape == shape
    with pytest.raises(ValueError, match=r"lengths: expected shape \(B,\) = \(2,\), got \(0,\)"):
        pyrnn.GRU(I, H)(np.zeros((T, 2, I), np.float32), lengths=[])
