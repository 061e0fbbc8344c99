"""Every module, model and optimizer pickles (protocols 2-5), copies and deep-copies; the copy
computes bitwise the same outputs, is in the same mode, and continues training identically."""
import concurrent.futures
import copy
import multiprocessing
import pickle

import numpy as np
import pytest

import pyrnn
from pyrnn import nn, optim
from pyrnn.models import Attention, EncoderDecoder, Seq2Seq, Seq2Vec, Vec2Seq

RNG = np.random.default_rng(0)
X_SEQ = RNG.standard_normal((2, 5, 3)).astype(np.float32)       # (B, T, I), batch_first models
X_TM = np.ascontiguousarray(X_SEQ.transpose(1, 0, 2))           # (T, B, I)
TOKENS = RNG.integers(3, 9, size=(2, 4))


def _cases():
    """(name, factory, run): run(module) -> (outputs, a gradient of the outputs)."""
    def layer(m):
        y, _ = m(X_TM)
        return y

    def xlayer(m):
        return m(np.ones((5, 2, 4), np.float32))[0]

    def cell(m):
        out = m(X_TM[0])
        return out[0] if isinstance(out, tuple) else out

    def xcell(m):
        out = m(np.ones((2, 4), np.float32))
        return out[0]

    return [
        ("RNN", lambda: pyrnn.RNN(3, 4, num_layers=2, dropout=0.5, seed=0), layer),
        ("LSTM", lambda: pyrnn.LSTM(3, 4, proj_size=2, bidirectional=True, seed=0), layer),
        ("GRU", lambda: pyrnn.GRU(3, 4, reset_after=False, seed=0), layer),
        ("RNNCell", lambda: pyrnn.RNNCell(3, 4, seed=0), cell),
        ("LSTMCell", lambda: pyrnn.LSTMCell(3, 4, seed=0), cell),
        ("GRUCell", lambda: pyrnn.GRUCell(3, 4, seed=0), cell),
        ("SLSTM", lambda: pyrnn.SLSTM(4, 8, num_heads=2, num_layers=2, dropout=0.3, seed=0), xlayer),
        ("MLSTM", lambda: pyrnn.MLSTM(4, 8, num_heads=2, seed=0), xlayer),
        ("SLSTMCell", lambda: pyrnn.SLSTMCell(4, 8, num_heads=2, seed=0), xcell),
        ("MLSTMCell", lambda: pyrnn.MLSTMCell(4, 8, num_heads=2, seed=0), xcell),
        ("xLSTMBlockStack", lambda: pyrnn.xLSTMBlockStack(4, blocks="ms", num_heads=2, seed=0),
         lambda m: m(np.ones((5, 2, 4), np.float32))),
        ("Sequential", lambda: nn.Sequential(nn.Linear(3, 4, seed=0), nn.Dropout(0.5, seed=1), nn.Tanh(),
                                             nn.Linear(4, 2, seed=2)), lambda m: m(X_SEQ)),
        ("Embedding", lambda: nn.Embedding(10, 3, padding_idx=0, seed=0), lambda m: m(TOKENS)),
        ("Attention", lambda: Attention("bahdanau", 3, 3, 4, seed=0),
         lambda m: m(X_SEQ, X_SEQ)[0]),
        ("Seq2Vec", lambda: Seq2Vec(3, 2, hidden_size=4, dropout=0.5, seed=0), lambda m: m(X_SEQ)),
        ("Seq2Seq", lambda: Seq2Seq(3, 2, hidden_size=4, cell="lstm", seed=0), lambda m: m(X_SEQ)),
        ("Vec2Seq", lambda: Vec2Seq(3, 10, hidden_size=4, seed=0),
         lambda m: m(X_SEQ[:, 0], TOKENS)),
        ("EncoderDecoder", lambda: EncoderDecoder(10, 10, hidden_size=4, attention="general", seed=0),
         lambda m: m(TOKENS, TOKENS)),
    ]


CASES = _cases()
IDS = [c[0] for c in CASES]


def _backward(module, out):
    """Backward of the ones gradient of ``out`` (the cells whose state is a tuple take it so)."""
    d = np.ones_like(out)
    if isinstance(module, pyrnn.LSTMCell):
        return module.backward((d, None))
    if isinstance(module, pyrnn.SLSTMCell):
        return module.backward((d, None, None, None))
    return module.backward(d)


def _train_steps(module, run, opt, steps=2):
    """A few forward/backward/update steps; the outputs of each step."""
    outs = []
    for _ in range(steps):
        out = run(module)
        outs.append(np.array(out))
        opt.zero_grad()
        _backward(module, out)
        opt.step()
    return outs


def _assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def _state_equal(m1, m2):
    s1, s2 = m1.state_dict(), m2.state_dict()
    assert list(s1) == list(s2)
    for k in s1:
        np.testing.assert_array_equal(s1[k], s2[k])


COPIERS = {f"pickle{p}": (lambda obj, p=p: pickle.loads(pickle.dumps(obj, protocol=p))) for p in (2, 3, 4, 5)}
COPIERS["deepcopy"] = copy.deepcopy


@pytest.mark.parametrize("copier", list(COPIERS), ids=list(COPIERS))
@pytest.mark.parametrize("name,factory,run", CASES, ids=IDS)
def test_copy_continues_training_identically(name, factory, run, copier):
    module = factory()
    opt = optim.Adam(module, lr=1e-2)
    _train_steps(module, run, opt)          # optimizer moments and dropout streams are under way
    run(module)                             # a forward whose cache must not travel
    module2, opt2 = COPIERS[copier]((module, opt))
    assert type(module2) is type(module) and module2.training
    assert repr(module2) == repr(module)
    with pytest.raises(RuntimeError, match="training-mode"):
        _no_cache_backward(module2, run)
    _state_equal(module, module2)
    _assert_same(_train_steps(module, run, opt), _train_steps(module2, run, opt2))
    _state_equal(module, module2)
    np.testing.assert_array_equal(opt.state[next(iter(opt.state))]["m"], opt2.state[next(iter(opt2.state))]["m"])


def _no_cache_backward(module, run):
    out = run(copy.deepcopy(module))         # the shape of a gradient, from a throwaway copy
    _backward(module, out)


@pytest.mark.parametrize("copier", list(COPIERS), ids=list(COPIERS))
@pytest.mark.parametrize("name,factory,run", CASES, ids=IDS)
def test_eval_mode_copy_computes_the_same(name, factory, run, copier):
    module = factory().eval()
    want = np.array(run(module))            # packs the weights of layers and cells
    module2 = COPIERS[copier](module)
    assert not module2.training
    np.testing.assert_array_equal(np.array(run(module2)), want)
    # back to training: parameters writable again, and the update reaches the next forward
    module2.train()
    for p in module2.parameters().values():
        assert p.flags.writeable
        p += 0.5
    module2.eval()
    assert not np.array_equal(np.array(run(module2)), want)
    np.testing.assert_array_equal(np.array(run(module)), want)   # the original is untouched


@pytest.mark.parametrize("cls", [pyrnn.GRU, pyrnn.LSTM, pyrnn.GRUCell])
def test_streaming_after_unpickling(cls):
    m = cls(3, 4, seed=0).eval()
    x = np.ones((1, 3), np.float32)
    if cls is pyrnn.GRUCell:
        want = m(x, m(x))
        m2 = pickle.loads(pickle.dumps(m, protocol=5))
        np.testing.assert_array_equal(m2(x, m2(x)), want)
        return
    _, s = m.step(x)
    want, _ = m.step(x, s)
    m2 = pickle.loads(pickle.dumps(m, protocol=5))
    _, s2 = m2.step(x)
    got, _ = m2.step(x, s2)
    np.testing.assert_array_equal(got, want)


def test_unpickled_dtypes_are_numpys_own():
    m = pickle.loads(pickle.dumps(pyrnn.LSTM(3, 4, dtype=np.float64)))
    assert m.dtype is np.dtype(np.float64)
    assert all(p.dtype is np.dtype(np.float64) for p in m.parameters().values())
    y, _ = m(np.zeros((2, 1, 3)))
    assert y.dtype == np.float64


def test_shallow_copy_shares_parameters_and_not_caches():
    m = pyrnn.GRU(3, 4, seed=0)
    m(X_TM)
    c = copy.copy(m)
    assert c.parameters()["weight_ih_l0"] is m.parameters()["weight_ih_l0"]
    with pytest.raises(RuntimeError, match="training-mode"):
        c.backward(np.ones((5, 2, 4), np.float32))
    m.backward(np.ones((5, 2, 4), np.float32))   # the original's tape is its own


def test_schedulers_and_optimizers_pickle():
    m = pyrnn.GRU(3, 4, seed=0)
    for opt in (optim.SGD(m, lr=0.1, momentum=0.9), optim.Adam(m), optim.AdamW(m)):
        for sched in (optim.StepLR(opt, 2), optim.CosineLR(opt, 5, warmup=1)):
            sched.step()
            o2 = pickle.loads(pickle.dumps(sched))
            assert o2.epoch == sched.epoch and o2.optimizer.lr == opt.lr
            assert o2.optimizer.params.keys() == opt.params.keys()


def test_optimizer_of_a_dict_pair_pickles_with_its_arrays():
    p, g = {"w": np.ones(3)}, {"w": np.ones(3)}
    opt = pickle.loads(pickle.dumps(optim.SGD((p, g), lr=0.5)))
    opt.step()
    np.testing.assert_array_equal(opt.params["w"], 0.5)


def test_joblib_round_trip(tmp_path):
    joblib = pytest.importorskip("joblib")
    m = Seq2Vec(3, 2, hidden_size=4, seed=0)
    want = m.predict(X_SEQ)
    joblib.dump(m, tmp_path / "m.joblib")
    m2 = joblib.load(tmp_path / "m.joblib")
    np.testing.assert_array_equal(m2.predict(X_SEQ), want)


def _predict(model, x):
    return model.predict(x)


def _layer_forward(layer, x):
    return layer(x)[0]


def test_process_pool_with_models_as_arguments():
    m = Seq2Vec(3, 2, hidden_size=4, seed=0)
    layer = pyrnn.LSTM(3, 4, seed=0).eval()
    with concurrent.futures.ProcessPoolExecutor(2) as pool:
        got = list(pool.map(_predict, [m, m], [X_SEQ, X_SEQ[:1]]))
        got_layer = pool.submit(_layer_forward, layer, X_TM).result()
    np.testing.assert_array_equal(got[0], m.predict(X_SEQ))
    np.testing.assert_array_equal(got[1], m.predict(X_SEQ[:1]))
    np.testing.assert_array_equal(got_layer, layer(X_TM)[0])


def test_spawn_pool_with_models_as_arguments():
    models = [Seq2Vec(3, 2, hidden_size=4, seed=s) for s in range(2)]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        got = pool.starmap(_predict, [(m, X_SEQ) for m in models])
    for m, g in zip(models, got):
        np.testing.assert_array_equal(g, m.predict(X_SEQ))
