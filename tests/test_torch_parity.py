"""pyrnn's layers and cells against torch.nn with the same weights: outputs, final states and
every gradient (input, initial states, parameters). Skipped cleanly when torch is absent."""
from __future__ import annotations

import numpy as np
import pytest

import pyrnn

torch = pytest.importorskip("torch")

# torch's own notice that it computes projected LSTMs without oneDNN: not our concern.
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")

T, B, I, H = 5, 3, 4, 6
OUTPUT_ATOL = {np.float32: 1e-5, np.float64: 1e-10}
GRAD_TOL = {np.float32: dict(rtol=1e-4, atol=1e-5), np.float64: dict(rtol=1e-4, atol=1e-10)}
TORCH_DTYPE = {np.float32: torch.float32, np.float64: torch.float64}

LAYERS = {
    "rnn_tanh": (torch.nn.RNN, pyrnn.RNN, dict(nonlinearity="tanh")),
    "rnn_relu": (torch.nn.RNN, pyrnn.RNN, dict(nonlinearity="relu")),
    "lstm": (torch.nn.LSTM, pyrnn.LSTM, {}),
    "gru": (torch.nn.GRU, pyrnn.GRU, {}),
}

# Each row: layer options, plus how the test calls it. `load` picks from_torch or load_state_dict.
CONFIGS = [
    dict(),
    dict(num_layers=2, bidirectional=True, load="state_dict"),
    dict(batch_first=True, lengths=True),
    dict(num_layers=2, bidirectional=True, batch_first=True, lengths=True),
    dict(bias=False, bidirectional=True, lengths=True, load="state_dict"),
    dict(num_layers=3, no_initial_state=True),
    dict(unbatched=True, bidirectional=True),
]
LSTM_PROJ_CONFIGS = [
    dict(proj_size=2),
    dict(proj_size=3, num_layers=2, bidirectional=True, lengths=True, load="state_dict"),
    dict(proj_size=4, batch_first=True, lengths=True, unbatched=False, bias=False),
]


def _config_id(config: dict) -> str:
    return "-".join(f"{k}={v}" for k, v in config.items()) or "default"


def _grid():
    for cell in LAYERS:
        configs = CONFIGS + (LSTM_PROJ_CONFIGS if cell == "lstm" else [])
        for config in configs:
            for dtype in (np.float32, np.float64):
                yield pytest.param(cell, config, dtype, id=f"{cell}-{_config_id(config)}-{dtype.__name__}")


def _torch_forward_backward(module, x, h0, c0, lengths, batch_first, dy, dh_n, dc_n):
    """Run torch, including packing for lengths; return outputs and all gradients as NumPy."""
    xt = torch.tensor(x, requires_grad=True)
    states = []
    hx = None
    if h0 is not None:
        states = [torch.tensor(h0, requires_grad=True)]
        if c0 is not None:
            states.append(torch.tensor(c0, requires_grad=True))
        hx = tuple(states) if c0 is not None else states[0]
    if lengths is not None:
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            xt, torch.tensor(lengths), batch_first=batch_first, enforce_sorted=False)
        out, hn = module(packed, hx)
        y, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=batch_first,
                                                      total_length=x.shape[1 if batch_first else 0])
    else:
        y, hn = module(xt, hx)
    h_n, c_n = hn if isinstance(hn, tuple) else (hn, None)
    loss = (y * torch.tensor(dy)).sum() + (h_n * torch.tensor(dh_n)).sum()
    if c_n is not None:
        loss = loss + (c_n * torch.tensor(dc_n)).sum()
    module.zero_grad()
    loss.backward()
    return dict(
        y=y.detach().numpy(), h_n=h_n.detach().numpy(),
        c_n=None if c_n is None else c_n.detach().numpy(),
        dx=xt.grad.numpy(),
        dstates=[s.grad.numpy() for s in states],
        grads={k: p.grad.numpy() for k, p in module.named_parameters()},
    )


@pytest.mark.parametrize("cell, config, dtype", list(_grid()))
def test_layer_matches_torch(cell, config, dtype):
    torch_cls, pyrnn_cls, cell_kwargs = LAYERS[cell]
    config = dict(config)
    load = config.pop("load", "from_torch")
    use_lengths = config.pop("lengths", False)
    unbatched = config.pop("unbatched", False)
    no_initial_state = config.pop("no_initial_state", False)
    torch.manual_seed(0)
    module = torch_cls(I, H, **cell_kwargs, **config).to(TORCH_DTYPE[dtype])
    if load == "from_torch":
        layer = pyrnn_cls.from_torch(module)
    else:
        layer = pyrnn_cls(I, H, **cell_kwargs, **config, dtype=dtype, seed=1)
        layer.load_state_dict(module.state_dict())
    assert set(layer.state_dict()) == set(dict(module.named_parameters()))

    rng = np.random.default_rng(2)
    D = 2 if config.get("bidirectional") else 1
    L = config.get("num_layers", 1)
    P = config.get("proj_size") or H
    batch_first = config.get("batch_first", False)
    batch = () if unbatched else (B,)
    x_shape = (T, I) if unbatched else ((B, T, I) if batch_first else (T, B, I))
    x = rng.standard_normal(x_shape).astype(dtype)
    h0 = None if no_initial_state else rng.standard_normal((L * D, *batch, P)).astype(dtype)
    c0 = (None if no_initial_state or cell != "lstm"
          else rng.standard_normal((L * D, *batch, H)).astype(dtype))
    lengths = np.array([T, 2, 4]) if use_lengths else None
    y_shape = x_shape[:-1] + (D * P,)
    dy = rng.standard_normal(y_shape).astype(dtype)
    dh_n = rng.standard_normal((L * D, *batch, P)).astype(dtype)
    dc_n = rng.standard_normal((L * D, *batch, H)).astype(dtype) if cell == "lstm" else None

    expected = _torch_forward_backward(module, x, h0, c0, lengths, batch_first, dy, dh_n, dc_n)

    if cell == "lstm":
        y, (h_n, c_n) = layer(x, None if h0 is None else (h0, c0), lengths=lengths)
        dx, (dh0, dc0) = layer.backward(dy, (dh_n, dc_n))
        dstates = [dh0, dc0]
        np.testing.assert_allclose(c_n, expected["c_n"], rtol=0, atol=OUTPUT_ATOL[dtype])
    else:
        y, h_n = layer(x, h0, lengths=lengths)
        dx, dh0 = layer.backward(dy, dh_n)
        dstates = [dh0]
    assert y.dtype == dtype and y.shape == y_shape
    np.testing.assert_allclose(y, expected["y"], rtol=0, atol=OUTPUT_ATOL[dtype])
    np.testing.assert_allclose(h_n, expected["h_n"], rtol=0, atol=OUTPUT_ATOL[dtype])
    np.testing.assert_allclose(dx, expected["dx"], **GRAD_TOL[dtype])
    for ours, theirs in zip(dstates, expected["dstates"]):
        np.testing.assert_allclose(ours, theirs, **GRAD_TOL[dtype])
    for name, grad in expected["grads"].items():
        np.testing.assert_allclose(layer.grads[name], grad, **GRAD_TOL[dtype], err_msg=name)


CELLS = {
    "rnn_tanh": (torch.nn.RNNCell, pyrnn.RNNCell, dict(nonlinearity="tanh")),
    "rnn_relu": (torch.nn.RNNCell, pyrnn.RNNCell, dict(nonlinearity="relu")),
    "lstm": (torch.nn.LSTMCell, pyrnn.LSTMCell, {}),
    "gru": (torch.nn.GRUCell, pyrnn.GRUCell, {}),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bias, unbatched, load", [
    (True, False, "from_torch"), (False, False, "state_dict"), (True, True, "state_dict")])
@pytest.mark.parametrize("cell", list(CELLS))
def test_cell_unrolled_matches_torch(cell, bias, unbatched, load, dtype):
    """Three steps forward, then three backward calls (BPTT through the cell's call stack)."""
    torch_cls, pyrnn_cls, kwargs = CELLS[cell]
    torch.manual_seed(0)
    module = torch_cls(I, H, bias=bias, **kwargs).to(TORCH_DTYPE[dtype])
    if load == "from_torch":
        ours = pyrnn_cls.from_torch(module)
    else:
        ours = pyrnn_cls(I, H, bias=bias, **kwargs, dtype=dtype)
        ours.load_state_dict(module.state_dict())
    is_lstm = cell == "lstm"
    rng = np.random.default_rng(3)
    batch = () if unbatched else (B,)
    steps = 3
    xs = [rng.standard_normal((*batch, I)).astype(dtype) for _ in range(steps)]
    h0 = rng.standard_normal((*batch, H)).astype(dtype)
    c0 = rng.standard_normal((*batch, H)).astype(dtype)
    dhs = [rng.standard_normal((*batch, H)).astype(dtype) for _ in range(steps)]
    dc_last = rng.standard_normal((*batch, H)).astype(dtype)

    # torch
    xts = [torch.tensor(x, requires_grad=True) for x in xs]
    h0t, c0t = torch.tensor(h0, requires_grad=True), torch.tensor(c0, requires_grad=True)
    state = (h0t, c0t) if is_lstm else h0t
    loss = 0
    for xt, dh in zip(xts, dhs):
        state = module(xt, state)
        h = state[0] if is_lstm else state
        loss = loss + (h * torch.tensor(dh)).sum()
    if is_lstm:
        loss = loss + (state[1] * torch.tensor(dc_last)).sum()
    loss.backward()

    # pyrnn: forward step by step, then backward through the steps in reverse order
    state = (h0, c0) if is_lstm else h0
    for x in xs:
        state = ours(x, state)
    expected_h = (state[0] if is_lstm else state)
    torch_h = h.detach().numpy()
    np.testing.assert_allclose(expected_h, torch_h, rtol=0, atol=OUTPUT_ATOL[dtype])
    dh_carry = np.zeros_like(h0)
    dc_carry = dc_last
    dxs = []
    for dh in reversed(dhs):
        if is_lstm:
            dx, (dh_carry, dc_carry) = ours.backward((dh + dh_carry, dc_carry))
        else:
            dx, dh_carry = ours.backward(dh + dh_carry)
        dxs.append(dx)
    dxs.reverse()
    for dx, xt in zip(dxs, xts):
        np.testing.assert_allclose(dx, xt.grad.numpy(), **GRAD_TOL[dtype])
    np.testing.assert_allclose(dh_carry, h0t.grad.numpy(), **GRAD_TOL[dtype])
    if is_lstm:
        np.testing.assert_allclose(dc_carry, c0t.grad.numpy(), **GRAD_TOL[dtype])
    for name, p in module.named_parameters():
        np.testing.assert_allclose(ours.grads[name], p.grad.numpy(), **GRAD_TOL[dtype], err_msg=name)


@pytest.mark.parametrize("cell", list(LAYERS))
def test_default_init_matches_torch_distribution(cell):
    """Same names, shapes and U(-1/sqrt(H), 1/sqrt(H)) range as torch's default init."""
    torch_cls, pyrnn_cls, kwargs = LAYERS[cell]
    extra = dict(proj_size=2) if cell == "lstm" else {}
    module = torch_cls(I, 16, num_layers=2, bidirectional=True, **kwargs, **extra)
    layer = pyrnn_cls(I, 16, num_layers=2, bidirectional=True, **kwargs, **extra, seed=0)
    theirs = {k: v.shape for k, v in module.state_dict().items()}
    ours = {k: v.shape for k, v in layer.state_dict().items()}
    assert list(ours) == list(theirs)
    assert ours == {k: tuple(s) for k, s in theirs.items()}
    for value in layer.state_dict().values():
        assert np.all(np.abs(value) <= 1 / np.sqrt(16))


def test_from_torch_rejects_the_wrong_module():
    with pytest.raises(TypeError, match="torch.nn.LSTM"):
        pyrnn.LSTM.from_torch(torch.nn.GRU(3, 4))
    with pytest.raises(TypeError, match="torch.nn.GRUCell"):
        pyrnn.GRUCell.from_torch(torch.nn.GRU(3, 4))


def test_torch_tensors_are_accepted_as_input():
    module = torch.nn.LSTM(I, H, batch_first=True)
    layer = pyrnn.LSTM.from_torch(module)
    x = torch.randn(B, T, I, requires_grad=True)
    y, (h_n, _) = layer(x, (torch.zeros(1, B, H), None), lengths=torch.tensor([5, 3, 1]))
    assert isinstance(y, np.ndarray) and y.shape == (B, T, H)
