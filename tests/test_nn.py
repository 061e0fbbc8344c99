"""Building blocks: explicit backward of every module against finite differences (float64),
PyTorch parity where torch is installed, padding_idx, dropout, Sequential, the module contract."""
import numpy as np
import pytest

from pyrnn.nn import (Dropout, Embedding, Identity, LeakyReLU, Linear, Module, ReLU, Sequential, Sigmoid, Tanh,
                      activation)

from _fd import check_input_grad, check_param_grads

F64 = np.float64


def test_linear_gradients_any_leading_axes():
    lin = Linear(4, 3, dtype=F64, seed=0)
    x = np.random.default_rng(0).standard_normal((2, 5, 4))
    check_param_grads(lin, lambda: lin(x))
    check_input_grad(lin, lin.backward, x)
    no_bias = Linear(4, 3, bias=False, dtype=F64, seed=0)
    assert set(no_bias.parameters()) == {"weight"}


@pytest.mark.parametrize("act", [Tanh, Sigmoid, ReLU, LeakyReLU, Identity])
def test_activation_gradients(act):
    m = act(dtype=F64)
    x = np.random.default_rng(0).standard_normal((3, 4)) + 0.01   # keep away from relu's kink
    check_input_grad(m, m.backward, x)
    assert activation(next(k for k, v in __import__("pyrnn").nn.ACTIVATIONS.items() if v is act), F64)


def test_sequential_composes_and_names_parameters():
    net = Sequential(Linear(3, 5, dtype=F64, seed=0), Tanh(dtype=F64), Linear(5, 2, dtype=F64, seed=1), dtype=F64)
    assert set(net.parameters()) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    x = np.random.default_rng(1).standard_normal((4, 3))
    check_param_grads(net, lambda: net(x))
    check_input_grad(net, net.backward, x)
    assert len(net) == 3 and isinstance(net[1], Tanh)


def test_embedding_padding_idx_and_gradients():
    emb = Embedding(6, 3, padding_idx=0, dtype=F64, seed=0)
    assert np.all(emb.weight[0] == 0)
    ids = np.array([[1, 2, 0], [2, 2, 5]])
    out = emb(ids)
    assert out.shape == (2, 3, 3) and np.all(out[0, 2] == 0)
    emb.zero_grad()
    assert emb.backward(np.ones((2, 3, 3))) is None
    g = emb.grads["weight"]
    np.testing.assert_array_equal(g[:, 0], [0, 1, 3, 0, 0, 1])   # row 2 used three times; pad row none
    with pytest.raises(ValueError, match="outside 0..5"):
        emb(np.array([6]))
    with pytest.raises(TypeError, match="integer"):
        emb(np.array([1.0]))


def test_dropout_train_eval_and_backward():
    d = Dropout(0.5, dtype=F64, seed=0)
    x = np.ones((1000,))
    y = d(x)
    assert set(np.unique(y)) <= {0.0, 2.0} and 400 < np.count_nonzero(y) < 600
    np.testing.assert_array_equal(d.backward(np.ones(1000)), y)
    d.eval()
    np.testing.assert_array_equal(d(x), x)
    with pytest.raises(RuntimeError, match="eval mode"):
        d.backward(x)


def test_module_contract_state_dict_and_errors():
    net = Sequential(Linear(3, 4, seed=0), ReLU(), Linear(4, 2, seed=1))
    sd = net.state_dict()
    params = net.parameters()
    params["0.weight"] += 1                       # live
    assert not np.allclose(net.state_dict()["0.weight"], sd["0.weight"])
    net.load_state_dict(sd)                       # in place: still live
    np.testing.assert_array_equal(params["0.weight"], sd["0.weight"])
    bad = dict(sd)
    del bad["0.bias"]
    bad["x"] = np.zeros(1)
    bad["2.weight"] = np.zeros((3, 3))
    with pytest.raises(ValueError, match=r"missing keys: 0.bias.*unexpected keys: x.*wrong shapes: 2.weight"):
        net.load_state_dict(bad)
    lin = Linear(3, 2)
    with pytest.raises(RuntimeError, match="training-mode"):
        lin.backward(np.zeros((1, 2)))
    with pytest.raises(ValueError, match="in_features = 3"):
        lin(np.zeros((2, 4)))
    net(np.zeros((2, 3), np.float32))
    net.eval()
    assert not net[0].training and not net[2].training
    with pytest.raises(TypeError, match="not a module"):
        Sequential(Linear(2, 2), 3)
    assert "Linear(3, 4)" in repr(net)


def test_core_layers_nest_inside_modules():
    import pyrnn

    class Tagger(Module):
        def __init__(self):
            super().__init__(F64)
            self.rnn = pyrnn.GRU(2, 3, batch_first=True, dtype=F64, seed=0)
            self.head = Linear(3, 2, dtype=F64, seed=1)

        def __call__(self, x):
            return self.head(self.rnn(x)[0])

        def backward(self, d):
            return self.rnn.backward(self.head.backward(d))[0]

    t = Tagger()
    assert "rnn.weight_hh_l0" in t.parameters()
    x = np.random.default_rng(0).standard_normal((2, 4, 2))
    check_param_grads(t, lambda: t(x))


def test_linear_embedding_match_torch():
    torch = pytest.importorskip("torch")
    lin = Linear(4, 3, seed=0)
    tl = torch.nn.Linear(4, 3)
    with torch.no_grad():
        tl.weight.copy_(torch.from_numpy(lin.weight))
        tl.bias.copy_(torch.from_numpy(lin.bias))
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    xt = torch.from_numpy(x).requires_grad_()
    tl(xt).pow(2).sum().backward()
    y = lin(x)
    dx = lin.backward(2 * y)
    np.testing.assert_allclose(y, tl(xt).detach().numpy(), atol=1e-6)
    np.testing.assert_allclose(dx, xt.grad.numpy(), atol=1e-5)
    np.testing.assert_allclose(lin.grads["weight"], tl.weight.grad.numpy(), atol=1e-5)
    te = torch.nn.Embedding(5, 2, padding_idx=1)
    emb = Embedding(5, 2, padding_idx=1)
    emb.load_state_dict(te.state_dict())
    ids = np.array([[0, 1, 4]])
    te(torch.from_numpy(ids)).sum().backward()
    emb(ids)
    emb.backward(np.ones((1, 3, 2), np.float32))
    np.testing.assert_allclose(emb.grads["weight"], te.weight.grad.numpy())
