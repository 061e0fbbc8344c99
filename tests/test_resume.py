"""Resumable training: optimizer and scheduler state dicts, checkpoints holding them, training
resumed from a checkpoint bitwise equal to training without interruption; nn.Sequential and
every model class round-trip through save/load."""
import numpy as np
import pytest

import pyrnn
from pyrnn import nn, optim
from pyrnn.checkpoint import CheckpointError
from pyrnn.models import EncoderDecoder, Seq2Seq, Seq2Vec, Vec2Seq
from pyrnn.training import ModelCheckpoint, fit

RNG = np.random.default_rng(0)
X = RNG.standard_normal((12, 6, 3)).astype(np.float32)
Y = RNG.integers(0, 2, 12)

OPTIMIZERS = [
    lambda m: optim.SGD(m, lr=0.1, momentum=0.9, nesterov=True),
    lambda m: optim.Adam(m, lr=1e-2, weight_decay=1e-3),
    lambda m: optim.AdamW(m, lr=1e-2),
    lambda m: optim.RMSprop(m, lr=1e-2, momentum=0.5, centered=True),
    lambda m: optim.Adagrad(m, lr=1e-2, lr_decay=0.1),
]


def _steps(model, opt, n):
    for _ in range(n):
        y = model(X)
        opt.zero_grad()
        model.backward(np.ones_like(y))
        opt.step()


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)


@pytest.mark.parametrize("make_opt", OPTIMIZERS, ids=["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"])
def test_optimizer_state_dict_resumes_bitwise(make_opt):
    model = Seq2Vec(3, 2, hidden_size=4, seed=0)
    opt = make_opt(model)
    _steps(model, opt, 3)
    other = Seq2Vec(3, 2, hidden_size=4, seed=1)
    other.load_state_dict(model.state_dict())
    opt2 = make_opt(other)
    opt2.lr = 123.0                                  # restored from the state dict
    opt2.load_state_dict(opt.state_dict())
    assert opt2.lr == opt.lr and opt2.steps == opt.steps
    _steps(model, opt, 2)
    _steps(other, opt2, 2)
    _same_weights(model, other)


def test_optimizer_state_dict_is_a_copy_and_checked():
    model = pyrnn.GRU(3, 4, seed=0)
    opt = optim.Adam(model)
    y, _ = model(X)
    model.backward(np.ones_like(y))
    opt.step()
    state = opt.state_dict()
    state["state"]["weight_ih_l0"]["m"] += 1
    assert not np.array_equal(opt.state["weight_ih_l0"]["m"], state["state"]["weight_ih_l0"]["m"])
    with pytest.raises(ValueError, match="Adam"):
        optim.SGD(model).load_state_dict(state)
    bad = opt.state_dict()
    bad["state"]["weight_ih_l0"]["m"] = np.zeros((2, 2))
    with pytest.raises(ValueError, match="shape"):
        optim.Adam(model).load_state_dict(bad)


SCHEDULERS = [
    lambda o: optim.StepLR(o, 2, gamma=0.5),
    lambda o: optim.CosineLR(o, 5, warmup=1),
    lambda o: optim.WarmupCosineLR(o, 2, 10),
    lambda o: optim.OneCycleLR(o, 0.1, 10),
    lambda o: optim.ReduceLROnPlateau(o, patience=0, factor=0.5),
]


@pytest.mark.parametrize("make", SCHEDULERS, ids=["StepLR", "CosineLR", "WarmupCosine", "OneCycle", "Plateau"])
def test_scheduler_state_dict_resumes(make):
    opt = optim.SGD(pyrnn.GRU(3, 4), lr=0.1)
    sched = make(opt)
    step = (lambda s, i: s.step(1.0 + (i % 2))) if isinstance(sched, optim.ReduceLROnPlateau) else (lambda s, i: s.step())
    for i in range(3):
        step(sched, i)
    opt2 = optim.SGD(pyrnn.GRU(3, 4), lr=0.1)
    sched2 = make(opt2)
    opt2.load_state_dict(opt.state_dict())
    sched2.load_state_dict(sched.state_dict())
    for i in range(3, 6):
        step(sched, i)
        step(sched2, i)
        assert opt2.lr == opt.lr


def _setup(seed):
    model = Seq2Vec(3, 2, hidden_size=5, dropout=0.3, seed=seed)
    opt = optim.Adam(model, lr=5e-3)
    sched = optim.StepLR(opt, 1, gamma=0.7)
    return model, opt, sched


def test_fit_resumed_from_a_checkpoint_equals_uninterrupted_training(tmp_path):
    kw = dict(loss="cross_entropy", batch_size=4, shuffle=False, progress=False)
    model, opt, sched = _setup(0)
    fit(model, (X, Y), optimizer=opt, scheduler=sched, epochs=4, **kw)

    first, opt1, sched1 = _setup(0)
    path = tmp_path / "ckpt.safetensors"
    fit(first, (X, Y), optimizer=opt1, scheduler=sched1, epochs=2,
        callbacks=[ModelCheckpoint(path, save_best_only=False, optimizer=opt1, scheduler=sched1)], **kw)
    resumed, opt2, sched2 = _setup(7)                # another seed: everything comes from the file
    pyrnn.load(path, into=resumed, optimizer=opt2, scheduler=sched2)
    assert opt2.steps == opt1.steps and opt2.lr == opt1.lr and sched2.epoch == 2
    fit(resumed, (X, Y), optimizer=opt2, scheduler=sched2, epochs=2, **kw)
    _same_weights(model, resumed)


def test_save_load_round_trip_of_the_training_state(tmp_path):
    model, opt, sched = _setup(0)
    _steps(model, opt, 2)
    path = pyrnn.save(model, tmp_path / "m.safetensors", optimizer=opt, scheduler=sched)
    assert set(pyrnn.load(path).state_dict()) == set(model.state_dict())   # the weights alone
    other, opt2, sched2 = _setup(3)
    with pytest.raises(TypeError, match="into"):
        pyrnn.load(path, optimizer=opt2)
    with pytest.raises(CheckpointError, match="does not optimize"):
        pyrnn.load(path, into=other, optimizer=opt)
    with pytest.raises(CheckpointError, match="training state"):
        pyrnn.load(path, into=other, optimizer=optim.SGD(other))
    plain = pyrnn.save(model, tmp_path / "plain.safetensors")
    with pytest.raises(CheckpointError, match="no optimizer state"):
        pyrnn.load(plain, into=other, optimizer=opt2)


def _models():
    yield Seq2Vec(3, 2, hidden_size=4, seed=0), (X,)
    yield Seq2Seq(3, 2, hidden_size=4, cell="lstm", seed=0), (X,)
    tokens = RNG.integers(3, 9, size=(2, 4))
    yield Vec2Seq(3, 10, hidden_size=4, seed=0), (X[:2, 0], tokens)
    yield EncoderDecoder(10, 10, hidden_size=4, attention="bahdanau", seed=0), (tokens, tokens)
    yield nn.Sequential(nn.Linear(3, 4, seed=0), nn.LayerNorm(4), nn.ReLU(), nn.Dropout(0.2),
                        nn.Linear(4, 2, bias=False, seed=1), nn.LeakyReLU(0.1)), (X,)
    yield nn.Sequential(nn.Embedding(10, 3, padding_idx=0, seed=0), pyrnn.GRU(3, 4, batch_first=True, seed=1)), \
        (RNG.integers(0, 10, size=(2, 5)),)


@pytest.mark.parametrize("model,args", list(_models()), ids=lambda v: type(v).__name__ if not isinstance(v, tuple) else "")
def test_every_model_class_and_sequential_round_trip(tmp_path, model, args):
    path = pyrnn.save(model, tmp_path / "m.safetensors")
    loaded = pyrnn.load(path)
    assert type(loaded) is type(model) and repr(loaded) == repr(model)
    model.eval()
    loaded.eval()
    want, got = model(*args), loaded(*args)
    want = want[0] if isinstance(want, tuple) else want
    got = got[0] if isinstance(got, tuple) else got
    np.testing.assert_array_equal(got, want)


def test_sequential_config_is_checked_before_building(tmp_path):
    import json

    from pyrnn.checkpoint import load_file, save_file

    path = pyrnn.save(nn.Sequential(nn.Linear(3, 4, seed=0)), tmp_path / "s.safetensors")
    tensors, meta = load_file(path)
    meta["config"] = json.dumps({"modules": [["Linear", {"in_features": 3, "out_features": 10**9}]],
                                 "dtype": "float32"})
    save_file(tensors, path, meta)
    with pytest.raises(CheckpointError, match="Linear"):
        pyrnn.load(path)
