"""layer.to_torch() / cell.to_torch() / pyrnn.to_torch and pyrnn.from_torch (whole nn.Sequential):
the converted module computes what the source does."""
from __future__ import annotations

import numpy as np
import pytest

import pyrnn

torch = pytest.importorskip("torch")

# torch's own notice that it computes projected LSTMs without oneDNN: not our concern.
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")

TOL = {np.float32: dict(rtol=1e-5, atol=1e-5), np.float64: dict(rtol=1e-10, atol=1e-12)}


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("make", [
    lambda d: pyrnn.LSTM(3, 5, num_layers=2, bidirectional=True, proj_size=2, batch_first=True, dtype=d, seed=1),
    lambda d: pyrnn.LSTM(3, 5, bias=False, dtype=d, seed=2),
    lambda d: pyrnn.GRU(3, 5, num_layers=3, dropout=0.3, dtype=d, seed=3),
    lambda d: pyrnn.RNN(3, 5, nonlinearity="relu", bidirectional=True, dtype=d, seed=4),
], ids=["lstm-proj", "lstm-nobias", "gru", "rnn-relu"])
def test_layer_to_torch(make, dtype):
    layer = make(dtype).eval()
    module = layer.to_torch()
    assert type(module).__name__ == type(layer).__name__ and not module.training
    x = np.random.default_rng(0).standard_normal((4, 6, 3) if layer.batch_first else (6, 4, 3)).astype(dtype)
    y, state = layer(x)
    with torch.no_grad():
        ty, tstate = module(torch.from_numpy(x))
    np.testing.assert_allclose(ty.numpy(), y, **TOL[dtype])
    for ours, theirs in zip(state if isinstance(state, tuple) else (state,),
                            tstate if isinstance(tstate, tuple) else (tstate,)):
        np.testing.assert_allclose(theirs.numpy(), ours, **TOL[dtype])
    back = pyrnn.from_torch(module)
    for k, v in layer.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[k], v)


@pytest.mark.parametrize("make", [
    lambda: pyrnn.LSTMCell(3, 4, seed=1), lambda: pyrnn.GRUCell(3, 4, bias=False, seed=2),
    lambda: pyrnn.RNNCell(3, 4, nonlinearity="relu", seed=3),
], ids=["lstm", "gru", "rnn"])
def test_cell_to_torch(make):
    cell = make().eval()
    module = cell.to_torch()
    x = np.random.default_rng(1).standard_normal((2, 3)).astype(np.float32)
    ours = cell(x)
    with torch.no_grad():
        theirs = module(torch.from_numpy(x))
    for a, b in zip(ours if isinstance(ours, tuple) else (ours,), theirs if isinstance(theirs, tuple) else (theirs,)):
        np.testing.assert_allclose(b.numpy(), a, **TOL[np.float32])


def test_from_torch_sequential_and_back():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Dropout(0.2),
                              torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.LeakyReLU(0.1)),
                              torch.nn.Linear(8, 3), torch.nn.Sigmoid(), torch.nn.Identity(), torch.nn.ReLU()).eval()
    ours = pyrnn.from_torch(net)
    assert isinstance(ours, pyrnn.nn.Sequential) and len(ours) == 8 and not ours.training
    x = np.random.default_rng(2).standard_normal((5, 4)).astype(np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours(x), expected, **TOL[np.float32])
    again = pyrnn.to_torch(ours)
    with torch.no_grad():
        np.testing.assert_allclose(again(torch.from_numpy(x)).numpy(), expected, **TOL[np.float32])


def test_from_torch_embedding_and_recurrent_children():
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Embedding(10, 4, padding_idx=0), torch.nn.GRU(4, 5, batch_first=True))
    ours = pyrnn.from_torch(net)
    ids = np.array([[1, 2, 3, 0], [4, 5, 0, 0]])
    y, _ = ours[1](ours[0](ids))
    with torch.no_grad():
        ty, _ = net[1](net[0](torch.from_numpy(ids)))
    np.testing.assert_allclose(y, ty.numpy(), **TOL[np.float32])
    assert isinstance(pyrnn.to_torch(ours)[0], torch.nn.Embedding)


def test_unsupported_conversions_are_named():
    with pytest.raises(ValueError, match="peepholes"):
        pyrnn.LSTM(2, 3, peepholes=True).to_torch()
    with pytest.raises(ValueError, match="reset_after=False"):
        pyrnn.GRUCell(2, 3, reset_after=False).to_torch()
    with pytest.raises(TypeError, match=r"child '1'.*Conv1d"):
        pyrnn.from_torch(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Conv1d(1, 1, 1)))
    with pytest.raises(TypeError, match="no PyTorch equivalent"):
        pyrnn.to_torch(pyrnn.Seq2Vec(input_size=2))
