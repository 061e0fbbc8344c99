"""Property-based fuzz of every layer, cell and xLSTM layer against the NumPy reference.

Hypothesis draws the options (cell kind, sizes including 0 and 1, layers, directions, batch
first, projection, bias, unbatched input, lengths, initial states, dropout, train or eval
mode, float32/float64), how each array is handed over (contiguous, strided, Fortran order,
read-only, a list, the other byte order; mixed within a call), and the instruction set and
thread count. The native result must equal the reference's (forward, final states, and in
training mode every gradient), and the caller's arrays must come back unchanged.

``PYRNN_FUZZ_EXAMPLES`` sets the examples per test (CI runs 2,000 or more with a fixed seed).
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

import pyrnn
from pyrnn import _core
from pyrnn.testing import use_backend

EXAMPLES = int(os.environ.get("PYRNN_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
SEED = 20261203
TOL = {np.float32: (2e-4, 2e-5), np.float64: (1e-9, 1e-11)}

PRESENTATIONS = ["plain", "strided", "fortran", "readonly", "list", "swapped"]


def present(arr: np.ndarray | None, how: str):
    """``arr`` handed over as ``how``: equal values in another memory layout or container."""
    if arr is None or how == "plain":
        return arr
    if how == "strided":
        wide = np.zeros(arr.shape + (2,), arr.dtype)
        wide[..., 1] = arr
        return wide[..., 1]
    if how == "fortran":
        return np.asfortranarray(arr)
    if how == "readonly":
        out = arr.copy()
        out.setflags(write=False)
        return out
    if how == "list":        # a nested list holds float64 values and cannot hold a 0-length axis
        return arr.tolist() if arr.dtype == np.float64 and arr.size else arr.copy()
    if how == "swapped":                       # the other byte order (big-endian here)
        return arr.astype(arr.dtype.newbyteorder("S"))
    raise ValueError(how)


class Handover:
    """Hands each array over in the next of ``ways``, cycling, so one call can mix them."""

    def __init__(self, ways) -> None:
        self.ways, self.count = tuple(ways), 0

    def __call__(self, arr):
        way = self.ways[self.count % len(self.ways)]
        self.count += 1
        return present(arr, way)


def unchanged(handed, original):
    if isinstance(handed, np.ndarray):
        np.testing.assert_array_equal(handed, original)


def assert_close(native: dict, reference: dict, dtype, where: str) -> None:
    assert native.keys() == reference.keys(), where
    rtol, atol = TOL[dtype]
    for key, ref in reference.items():
        got = native[key]
        assert got.shape == ref.shape and got.dtype == ref.dtype, f"{key}: {got.shape} {got.dtype} ({where})"
        scale = float(np.max(np.abs(ref), initial=1.0))
        np.testing.assert_allclose(got, ref, rtol=rtol, atol=atol * scale, err_msg=f"{key} ({where})")


class Machine:
    """The instruction set and thread count for one example, restored afterwards."""

    def __init__(self, isa: str, threads: int) -> None:
        self.isa, self.threads = isa, threads

    def __enter__(self):
        self.saved = _core.active_isa(), _core.get_num_threads()
        _core.select_isa(self.isa)
        _core.set_num_threads(self.threads)

    def __exit__(self, *exc):
        _core.select_isa(self.saved[0])
        _core.set_num_threads(self.saved[1])


machines = st.builds(Machine, st.sampled_from(_core.available_isas()), st.sampled_from([1, 2]))
dtypes = st.sampled_from([np.float32, np.float64])
presentations = st.lists(st.sampled_from(PRESENTATIONS), min_size=1, max_size=4)


def compare(run, case, dtype, machine, ways):
    """``run(case, hand)`` on the reference with plain arrays and natively with arrays handed
    over in ``ways``."""
    with use_backend("reference"):
        reference = run(case, Handover(["plain"]))
    with machine:
        native = run(case, Handover(ways))
    assert_close(native, reference, dtype, f"isa={machine.isa} threads={machine.threads} arrays={ways}")


def lengths_strategy(draw, T, B, batched):
    """None, or B valid lengths handed over as a list or an int32/int64 array."""
    if not batched or T == 0 or not draw(st.booleans()):
        return None
    values = draw(st.lists(st.integers(1, T), min_size=B, max_size=B))
    form = draw(st.sampled_from(["list", "int32", "int64"]))
    if form == "list":
        return values
    return np.array(values, dtype=np.int32 if form == "int32" else np.int64)


def _random(rng, shape, dtype, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


# -- core layers -----------------------------------------------------------------------------

@st.composite
def core_layer_cases(draw):
    kind = draw(st.sampled_from(["rnn_tanh", "rnn_relu", "lstm", "gru", "gru_reset_before"]))
    T, B, I, H = draw(st.integers(0, 5)), draw(st.integers(0, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 5))
    layers = draw(st.integers(1, 2))
    case = dict(kind=kind, T=T, B=B, I=I, H=H, layers=layers, bidirectional=draw(st.booleans()),
                batch_first=draw(st.booleans()), bias=draw(st.booleans()), unbatched=draw(st.booleans()),
                proj=draw(st.integers(1, H - 1)) if kind == "lstm" and H > 1 and draw(st.booleans()) else 0,
                dropout=draw(st.sampled_from([0.0, 0.5])) if layers > 1 else 0.0,
                training=draw(st.booleans()), initial_state=draw(st.booleans()), seed=draw(st.integers(0, 99)))
    case["lengths"] = lengths_strategy(draw, T, B, not case["unbatched"])
    return case


def _core_layer(case, dtype):
    common = dict(num_layers=case["layers"], bias=case["bias"], batch_first=case["batch_first"],
                  dropout=case["dropout"], bidirectional=case["bidirectional"], dtype=dtype, seed=case["seed"])
    kind, I, H = case["kind"], case["I"], case["H"]
    if kind == "lstm":
        layer = pyrnn.LSTM(I, H, proj_size=case["proj"], **common)
    elif kind.startswith("gru"):
        layer = pyrnn.GRU(I, H, reset_after=kind == "gru", **common)
    else:
        layer = pyrnn.RNN(I, H, nonlinearity=kind[4:], **common)
    return layer.train(case["training"])


def run_core_layer(case, hand, dtype):
    rng = np.random.default_rng(case["seed"])
    T, B, I, H = case["T"], case["B"], case["I"], case["H"]
    D = 2 if case["bidirectional"] else 1
    P = case["proj"] or H
    batch = () if case["unbatched"] else (B,)
    x_shape = (T, I) if case["unbatched"] else ((B, T, I) if case["batch_first"] else (T, B, I))
    x = _random(rng, x_shape, dtype)
    h0 = _random(rng, (case["layers"] * D, *batch, P), dtype) if case["initial_state"] else None
    c0 = _random(rng, (case["layers"] * D, *batch, H), dtype) if case["initial_state"] else None
    lengths = case["lengths"]
    layer = _core_layer(case, dtype)
    args = [hand(a) for a in (x, h0, c0)]
    is_lstm = case["kind"] == "lstm"
    state = (args[1], args[2]) if is_lstm else args[1]
    y, final = layer(args[0], state, lengths=lengths)
    out = {"y": y}
    out.update({f"final{i}": f for i, f in enumerate(final if is_lstm else (final,))})
    if case["training"]:
        dy = _random(rng, y.shape, dtype)
        dfinal = tuple(_random(rng, f.shape, dtype) for f in (final if is_lstm else (final,)))
        handed = [hand(a) for a in (dy, *dfinal)]
        dx, d0 = layer.backward(handed[0], tuple(handed[1:]) if is_lstm else handed[1])
        out["dx"] = dx
        out.update({f"d0_{i}": d for i, d in enumerate(d0 if is_lstm else (d0,))})
        out.update({"grad " + k: g for k, g in layer.grads.items()})
        for h, o in zip(handed, (dy, *dfinal)):
            unchanged(h, o)
    elif D == 1 and case["lengths"] is None and T > 0:
        # streaming: step by step from the same initial state equals the whole sequence
        stepper = _core_layer(case, dtype).eval()
        s = state
        steps = []
        for t in range(T):
            x_t = x[t] if case["unbatched"] or not case["batch_first"] else x[:, t]
            y_t, s = stepper.step(hand(x_t), s)
            steps.append(y_t)
        out["steps"] = np.stack(steps, axis=1 if case["batch_first"] and not case["unbatched"] else 0)
    for h, o in zip(args, (x, h0, c0)):
        unchanged(h, o)
    return out


@seed(SEED)
@FUZZ
@given(case=core_layer_cases(), dtype=dtypes, machine=machines, ways=presentations)
def test_core_layers_match_reference(case, dtype, machine, ways):
    compare(lambda c, hand: run_core_layer(c, hand, dtype), case, dtype, machine, ways)


# -- core cells ------------------------------------------------------------------------------

@st.composite
def core_cell_cases(draw):
    return dict(kind=draw(st.sampled_from(["rnn_tanh", "rnn_relu", "lstm", "gru", "gru_reset_before"])),
                B=draw(st.integers(0, 3)), I=draw(st.integers(1, 4)), H=draw(st.integers(1, 5)),
                bias=draw(st.booleans()), unbatched=draw(st.booleans()), steps=draw(st.integers(1, 3)),
                training=draw(st.booleans()), initial_state=draw(st.booleans()), seed=draw(st.integers(0, 99)))


def run_core_cell(case, hand, dtype):
    rng = np.random.default_rng(case["seed"])
    kind, I, H = case["kind"], case["I"], case["H"]
    batch = () if case["unbatched"] else (case["B"],)
    if kind == "lstm":
        cell = pyrnn.LSTMCell(I, H, bias=case["bias"], dtype=dtype, seed=case["seed"])
    elif kind.startswith("gru"):
        cell = pyrnn.GRUCell(I, H, bias=case["bias"], reset_after=kind == "gru", dtype=dtype, seed=case["seed"])
    else:
        cell = pyrnn.RNNCell(I, H, bias=case["bias"], nonlinearity=kind[4:], dtype=dtype, seed=case["seed"])
    cell.train(case["training"])
    is_lstm = kind == "lstm"
    state = None
    if case["initial_state"]:
        state = (_random(rng, (*batch, H), dtype), _random(rng, (*batch, H), dtype)) if is_lstm else _random(rng, (*batch, H), dtype)
    out = {}
    for t in range(case["steps"]):
        x = _random(rng, (*batch, I), dtype)
        handed_x = hand(x)
        handed_state = tuple(hand(s) for s in state) if is_lstm and state is not None else hand(state)
        state = cell(handed_x, handed_state)
        unchanged(handed_x, x)
        for i, s in enumerate(state if is_lstm else (state,)):
            out[f"state{t}_{i}"] = s
    if case["training"]:
        for t in reversed(range(case["steps"])):
            d = tuple(_random(rng, (*batch, H), dtype) for _ in range(2 if is_lstm else 1))
            dx, dprev = cell.backward(tuple(hand(a) for a in d) if is_lstm else hand(d[0]))
            out[f"dx{t}"] = dx
            out.update({f"dprev{t}_{i}": g for i, g in enumerate(dprev if is_lstm else (dprev,))})
        out.update({"grad " + k: g for k, g in cell.grads.items()})
    return out


@seed(SEED)
@FUZZ
@given(case=core_cell_cases(), dtype=dtypes, machine=machines, ways=presentations)
def test_core_cells_match_reference(case, dtype, machine, ways):
    compare(lambda c, hand: run_core_cell(c, hand, dtype), case, dtype, machine, ways)


# -- xLSTM layers and cells -------------------------------------------------------------------

@st.composite
def xlstm_cases(draw):
    kind = draw(st.sampled_from(["slstm", "mlstm"]))
    heads = draw(st.sampled_from([1, 2]))
    T, B = draw(st.integers(0, 5)), draw(st.integers(0, 3))
    headwise = kind == "slstm" and draw(st.booleans())
    I = heads * draw(st.integers(1, 2)) if headwise else draw(st.integers(1, 4))
    layers = draw(st.integers(1, 2))
    case = dict(kind=kind, heads=heads, T=T, B=B, I=I, H=heads * draw(st.integers(1, 3)), layers=layers,
                headwise=headwise, batch_first=draw(st.booleans()), bias=draw(st.booleans()),
                unbatched=draw(st.booleans()), variant=draw(st.booleans()),
                dropout=draw(st.sampled_from([0.0, 0.5])) if layers > 1 else 0.0,
                training=draw(st.booleans()), initial_state=draw(st.booleans()), seed=draw(st.integers(0, 99)))
    case["lengths"] = lengths_strategy(draw, T, B, not case["unbatched"])
    return case


def _xlstm_states(case, rng, dtype, batch):
    L, H, NH = case["layers"], case["H"], case["heads"]
    if case["kind"] == "slstm":
        h, c, m = (_random(rng, (L, *batch, H), dtype) for _ in range(3))
        return (h, c, rng.uniform(0.5, 2.0, (L, *batch, H)).astype(dtype), m)
    DH = H // NH
    return (_random(rng, (L, *batch, NH, DH, DH), dtype), _random(rng, (L, *batch, NH, DH), dtype) + 1,
            _random(rng, (L, *batch, NH), dtype))


def run_xlstm_layer(case, hand, dtype):
    rng = np.random.default_rng(case["seed"])
    common = dict(num_heads=case["heads"], num_layers=case["layers"], bias=case["bias"],
                  batch_first=case["batch_first"], dropout=case["dropout"], dtype=dtype, seed=case["seed"])
    if case["kind"] == "slstm":
        layer = pyrnn.SLSTM(case["I"], case["H"], forget_gate="exp" if case["variant"] else "sigmoid",
                            input_projection="headwise" if case["headwise"] else "dense", **common)
    else:
        layer = pyrnn.MLSTM(case["I"], case["H"], output_gate=case["variant"], **common)
    layer.train(case["training"])
    T, B, I = case["T"], case["B"], case["I"]
    batch = () if case["unbatched"] else (B,)
    x_shape = (T, I) if case["unbatched"] else ((B, T, I) if case["batch_first"] else (T, B, I))
    x = _random(rng, x_shape, dtype)
    state = _xlstm_states(case, rng, dtype, batch) if case["initial_state"] else None
    lengths = case["lengths"]
    handed_x = hand(x)
    handed_state = None if state is None else tuple(hand(s) for s in state)
    y, final = layer(handed_x, handed_state, lengths=lengths)
    out = {"y": y}
    out.update({f"final{i}": f for i, f in enumerate(final)})
    if case["training"]:
        dy = _random(rng, y.shape, dtype)
        dfinal = tuple(_random(rng, f.shape, dtype) for f in final)
        dx, d0 = layer.backward(hand(dy), tuple(hand(d) for d in dfinal))
        out["dx"] = dx
        out.update({f"d0_{i}": d for i, d in enumerate(d0)})
        out.update({"grad " + k: g for k, g in layer.grads.items()})
    unchanged(handed_x, x)
    for h, s in zip(handed_state or (), state or ()):
        unchanged(h, s)
    return out


@seed(SEED)
@FUZZ
@given(case=xlstm_cases(), dtype=dtypes, machine=machines, ways=presentations)
def test_xlstm_layers_match_reference(case, dtype, machine, ways):
    compare(lambda c, hand: run_xlstm_layer(c, hand, dtype), case, dtype, machine, ways)


def run_xlstm_cell(case, hand, dtype):
    rng = np.random.default_rng(case["seed"])
    common = dict(num_heads=case["heads"], bias=case["bias"], dtype=dtype, seed=case["seed"])
    slstm = case["kind"] == "slstm"
    if slstm:
        cell = pyrnn.SLSTMCell(case["I"], case["H"], forget_gate="exp" if case["variant"] else "sigmoid",
                               input_projection="headwise" if case["headwise"] else "dense", **common)
    else:
        cell = pyrnn.MLSTMCell(case["I"], case["H"], output_gate=case["variant"], **common)
    batch = () if case["unbatched"] else (case["B"],)
    state = None
    if case["initial_state"]:
        state = tuple(s[0] for s in _xlstm_states(dict(case, layers=1), rng, dtype, batch))
    out = {}
    steps = max(case["T"], 1)
    for t in range(steps):
        x = _random(rng, (*batch, case["I"]), dtype)
        handed = None if state is None else tuple(hand(s) for s in state)
        if slstm:
            state = cell(hand(x), handed)
            h = state[0]
        else:
            h, state = cell(hand(x), handed)
        out[f"h{t}"] = h
        out.update({f"state{t}_{i}": s for i, s in enumerate(state)})
    for t in reversed(range(steps)):
        if slstm:
            dstate = tuple(_random(rng, s.shape, dtype) for s in state)
            dx, dprev = cell.backward(tuple(hand(d) for d in dstate))
        else:
            dh = _random(rng, state[1].shape[:-2] + (case["H"],), dtype)
            dx, dprev = cell.backward(hand(dh))
        out[f"dx{t}"] = dx
        out.update({f"dprev{t}_{i}": d for i, d in enumerate(dprev)})
    out.update({"grad " + k: g for k, g in cell.grads.items()})
    return out


@seed(SEED)
@FUZZ
@given(case=xlstm_cases(), dtype=dtypes, machine=machines, ways=presentations)
def test_xlstm_cells_match_reference(case, dtype, machine, ways):
    compare(lambda c, hand: run_xlstm_cell(c, hand, dtype), case, dtype, machine, ways)


def test_empty_lengths_list_for_an_empty_batch():
    y, h_n = pyrnn.GRU(3, 4)(np.zeros((2, 0, 3), np.float32), lengths=[])
    assert y.shape == (2, 0, 4) and h_n.shape == (1, 0, 4)
