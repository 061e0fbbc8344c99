"""The one module model: every parameterised object is a pyrnn Module with the same contract, the
recurrent layers share one base, and streaming has one path whose fast lane equals the checked one."""
import numpy as np
import pytest

import pyrnn
from pyrnn import nn
from pyrnn._module import Module
from pyrnn._recurrent import RecurrentLayer
from pyrnn.models import MODELS


def _every_module():
    yield pyrnn.RNN(3, 4, num_layers=2, seed=0)
    yield pyrnn.LSTM(3, 4, proj_size=2, bidirectional=True, seed=0)
    yield pyrnn.GRU(3, 4, reset_after=False, seed=0)
    yield pyrnn.RNNCell(3, 4, seed=0)
    yield pyrnn.LSTMCell(3, 4, seed=0)
    yield pyrnn.GRUCell(3, 4, seed=0)
    yield pyrnn.SLSTM(4, 8, num_heads=2, num_layers=2, seed=0)
    yield pyrnn.MLSTM(4, 8, num_heads=2, seed=0)
    yield pyrnn.SLSTMCell(4, 8, num_heads=2, seed=0)
    yield pyrnn.MLSTMCell(4, 8, num_heads=2, seed=0)
    yield pyrnn.xLSTMBlockStack(8, blocks="ms", num_heads=2, seed=0)
    yield nn.Sequential(nn.Linear(3, 4, seed=0), nn.Tanh(), nn.Linear(4, 2, seed=1))
    yield pyrnn.models.Seq2Vec(3, 2, hidden_size=4, seed=0)


@pytest.mark.parametrize("module", list(_every_module()), ids=lambda m: type(m).__name__)
def test_every_parameterised_object_is_one_kind_of_module(module):
    assert isinstance(module, Module)
    params, grads = module.parameters(), module.grads
    assert list(params) == list(grads) == list(module.state_dict())
    for k in params:
        assert params[k].shape == grads[k].shape and params[k].dtype == module.dtype
    # eval/train reach every child; state_dict round-trips through load_state_dict
    module.eval()
    assert not module.training and all(not c.training for c in module.children().values())
    module.train()
    state = {k: v + 1 for k, v in module.state_dict().items()}
    module.load_state_dict(state)
    for k, v in module.state_dict().items():
        np.testing.assert_array_equal(v, state[k])
    for g in module.grads.values():
        g += 1
    module.zero_grad()
    assert all(not g.any() for g in module.grads.values())
    assert repr(module).startswith(type(module).__name__ + "(")


def test_models_are_modules():
    assert all(issubclass(cls, Module) for cls in MODELS.values())


def test_core_and_xlstm_layers_share_one_recurrent_base():
    for cls in (pyrnn.RNN, pyrnn.LSTM, pyrnn.GRU, pyrnn.SLSTM, pyrnn.MLSTM):
        assert issubclass(cls, RecurrentLayer)
    layer = pyrnn.SLSTM(4, 8, num_heads=2)
    # the attributes models use to size what follows a recurrent layer
    assert (layer.num_directions, layer.output_size, layer.bidirectional) == (1, 8, False)


def test_layers_and_cells_are_children_of_sequential_and_models():
    net = nn.Sequential(nn.Linear(3, 3, seed=0), nn.Tanh())
    net.rnn = pyrnn.GRU(3, 4, seed=1)
    assert "rnn.weight_ih_l0" in net.parameters()
    net.rnn = None
    assert "rnn.weight_ih_l0" not in net.parameters()
    with pytest.raises(TypeError, match="not a module"):
        nn.Sequential(object())


def test_xlstm_cell_shares_its_arrays_with_its_layer():
    cell = pyrnn.SLSTMCell(4, 8, num_heads=2, seed=0)
    assert set(cell.parameters()) == {"weight_ih", "weight_hh", "bias"}
    assert (cell.num_heads, cell.head_dim, cell.forget_gate, cell.headwise) == (2, 4, "sigmoid", False)
    x = np.ones(4, np.float32)
    h = cell(x)
    cell.load_state_dict({k: v * 0 for k, v in cell.state_dict().items()})
    assert not np.array_equal(cell(x)[0], h[0])   # the layer computing the step sees the new weights
    with pytest.raises(AttributeError):
        cell.num_layers   # nothing is delegated behind the cell's back


def test_block_stack_registers_its_inner_layers_as_children():
    stack = pyrnn.xLSTMBlockStack(8, blocks="ms", num_heads=2, seed=0)
    assert list(stack.children()) == ["blocks.0.xlstm", "blocks.1.xlstm"]
    assert "blocks.0.xlstm.weight_ih_l0" in stack.parameters()
    stack.eval()
    assert not stack.layers[0].training


# -- the one streaming path -----------------------------------------------------------------------


def _stream(layer, xs, state, convert):
    out = []
    for x in xs:
        y, state = layer.step(convert(x), state)
        out.append(np.array(y))
    return np.array(out), state


@pytest.mark.parametrize("cls", [pyrnn.RNN, pyrnn.GRU, pyrnn.LSTM])
def test_fast_and_checked_streaming_agree(cls):
    rng = np.random.default_rng(0)
    layer = cls(3, 5, seed=1).eval()
    xs = rng.standard_normal((6, 2, 3)).astype(np.float32)
    fast, _ = _stream(layer, xs, None, lambda x: x)
    assert layer._step_packing is not None       # the loop ran on the fast lane
    for convert in (lambda x: x.astype(np.float64), lambda x: x.tolist(), lambda x: np.asfortranarray(x),
                    lambda x: x.astype(">f4")):
        slow, _ = _stream(layer, xs, None, convert)
        np.testing.assert_array_equal(slow, fast)
    full, _ = layer(xs)
    np.testing.assert_allclose(fast, full, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("cls", [pyrnn.GRUCell, pyrnn.LSTMCell])
def test_cell_states_in_other_byte_order_or_layout_take_the_checked_path(cls):
    rng = np.random.default_rng(0)
    cell = cls(3, 4, seed=0).eval()
    x = rng.standard_normal((2, 3)).astype(np.float32)
    h = rng.standard_normal((2, 4)).astype(np.float32)
    state = (h, h.copy()) if cls is pyrnn.LSTMCell else h
    want = cell(x, state)
    assert cell._step_packing is not None
    odd = (h.astype(">f4"), h.copy()) if cls is pyrnn.LSTMCell else h.astype(">f4")
    np.testing.assert_array_equal(np.asarray(cell(x, odd)), np.asarray(want))
    with pytest.raises(ValueError, match="h"):
        cell(x, (h[None], h) if cls is pyrnn.LSTMCell else h[None])   # a layer's state is not a cell's


def test_layer_step_rejects_a_cell_shaped_state_as_before():
    layer = pyrnn.GRU(3, 4).eval()
    x = np.ones((1, 3), np.float32)
    _, h = layer.step(x)
    layer.step(x, h)
    with pytest.raises(ValueError, match="h"):
        layer.step(x, h[0])


def test_streaming_follows_a_backend_switch():
    from pyrnn.testing import use_backend

    layer = pyrnn.GRU(3, 4, seed=0).eval()
    x = np.ones((1, 3), np.float32)
    _, h = layer.step(x)
    native, _ = layer.step(x, h)
    with use_backend("reference"):
        ref, _ = layer.step(x, h)
    np.testing.assert_allclose(ref, native, rtol=1e-5, atol=1e-6)
