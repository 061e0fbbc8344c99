"""fit: reproducible shuffling, variable-length batches, validation metrics, truncated BPTT
(state carried across chunks), clipping, callbacks, progress output, history and plots."""
import io

import numpy as np
import pytest

import pyrnn
from pyrnn import optim
from pyrnn.models import Seq2Seq, Seq2Vec
from pyrnn.models._base import pad_sequences
from pyrnn.training import EarlyStopping, ModelCheckpoint, evaluate, fit, plot_history



def _regression(n=64, seed=0):
    rng = np.random.default_rng(seed)
    X = [rng.standard_normal((int(rng.integers(2, 8)), 2)).astype(np.float32) for _ in range(n)]
    y = np.array([x[:, 0].sum() for x in X], np.float32)
    return X, y


def test_fit_learns_variable_length_and_is_reproducible():
    X, y = _regression()
    runs = []
    for _ in range(2):
        m = Seq2Vec(2, 1, hidden_size=8, pooling="mean", seed=0)
        h = fit(m, (X, y), "mse", optim.Adam(m, lr=1e-2), epochs=3, batch_size=16, validation_data=(X, y),
                seed=5, progress=False)
        runs.append((h["loss"], m.state_dict()["head.weight"]))
    assert runs[0][0] == runs[1][0]
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    assert h["loss"][-1] < h["loss"][0]
    assert set(h.keys()) >= {"loss", "val_loss", "lr", "time"} and h.epochs == [1, 2, 3]


def test_shuffle_seed_changes_order():
    X, y = _regression()
    losses = []
    for seed in (1, 2):
        m = Seq2Vec(2, 1, hidden_size=8, seed=0)
        losses.append(fit(m, (X, y), "mse", optim.SGD(m, lr=0.01), epochs=1, batch_size=8, seed=seed,
                          progress=False)["loss"][0])
    assert losses[0] != losses[1]


def test_tbptt_chunks_carry_state():
    """Chunked forwards with the state carried equal one full forward, and fit with tbptt
    learns a delay that crosses chunk boundaries."""
    m = Seq2Seq(1, 1, hidden_size=6, cell="lstm", dtype="float64", seed=0)
    x = np.random.default_rng(0).standard_normal((3, 12, 1))
    lengths = np.array([12, 7, 3])
    full = m(x, lengths)
    state, parts = None, []
    for s in range(0, 12, 4):
        chunk_len = np.maximum(np.clip(lengths - s, 0, 4), 1)
        parts.append(m(x[:, s:s + 4], chunk_len, state=state))
        state = m.final_state
    chunked = np.concatenate(parts, axis=1)
    valid = np.arange(12)[None, :] < lengths[:, None]
    np.testing.assert_allclose(chunked[valid], full[valid], rtol=1e-12)
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (400, 24, 1)).astype(np.float32)
    y = np.zeros_like(x)
    y[:, 1:] = x[:, :-1]                     # needs the previous step, also across chunk edges
    m = Seq2Seq(1, 1, hidden_size=16, cell="gru", seed=0)
    fit(m, (x, y), "mse", optim.Adam(m, lr=1e-2), epochs=10, batch_size=40, tbptt=6, progress=False)
    mse = np.mean((m.predict(x[:50]) - y[:50])[:, 6::6] ** 2)   # first step of each chunk
    assert mse < 0.02, mse
    with pytest.raises(ValueError, match="does not support truncated BPTT"):
        fit(Seq2Vec(1, 1), (x, y[:, 0, 0]), "mse", optim.SGD(Seq2Vec(1, 1)), tbptt=4)


def test_tbptt_state_passed_between_chunks():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 10, 1)).astype(np.float32)
    calls = []
    real_call = Seq2Seq.__call__

    class Recording(Seq2Seq):
        def __call__(self, x, lengths=None, state=None):
            calls.append((x.shape[1], state is None))
            return real_call(self, x, lengths, state)

    r = Recording(1, 1, hidden_size=4, seed=0)
    fit(r, (x, x), "mse", optim.SGD(r, lr=0.01), epochs=1, batch_size=4, tbptt=4, progress=False, shuffle=False)
    assert calls == [(4, True), (4, False), (2, False)]


def test_early_stopping_and_checkpoint(tmp_path):
    X, y = _regression(32)
    m = Seq2Vec(2, 1, hidden_size=4, seed=0)
    path = tmp_path / "best.safetensors"
    es = EarlyStopping(monitor="val_loss", patience=1, min_delta=1e9)    # never "improves" after epoch 1
    ck = ModelCheckpoint(str(path), monitor="val_loss")
    h = fit(m, (X, y), "mse", optim.Adam(m, lr=1e-2), epochs=10, batch_size=8, validation_data=(X, y),
            callbacks=[es, ck], progress=False)
    assert h.stopped_early and len(h.epochs) == 2
    assert path.exists()
    assert es.best_epoch == 1 and np.array_equal(m.state_dict()["head.weight"], es.best_state["head.weight"])
    saved = pyrnn.load(path)
    assert pyrnn.checkpoint.read_metadata(path)["user.epoch"] == str(ck.best_epoch)
    if ck.best_epoch == 1:
        np.testing.assert_array_equal(saved.state_dict()["head.weight"], m.state_dict()["head.weight"])
    with pytest.raises(KeyError, match="not in the logs"):
        fit(m, (X, y), "mse", optim.SGD(m), epochs=1, callbacks=[EarlyStopping()], progress=False)


def test_clipping_and_accuracy_metric_and_evaluate():
    rng = np.random.default_rng(0)
    X = [rng.integers(3, 6, int(rng.integers(2, 6))) for _ in range(40)]
    y = np.array([int(4 in x) for x in X])
    m = Seq2Vec(vocab_size=6, output_size=2, hidden_size=6, seed=0)
    h = fit(m, (X, y), "cross_entropy", optim.SGD(m, lr=0.1, momentum=0.9), epochs=20, batch_size=10,
            validation_data=(X, y), metrics=["accuracy"], clip_grad_norm=0.5, clip_grad_value=0.1, progress=False)
    assert h["val_accuracy"][0] == pytest.approx(np.mean(y))     # at first it predicts the majority class
    assert h["val_accuracy"][-1] == 1.0                          # then learns whether a 4 occurs
    tokens, lengths = pad_sequences(X)
    predicted = m.predict(tokens, lengths=lengths).argmax(-1)
    assert h["val_accuracy"][-1] == np.mean(predicted == y)
    logs = evaluate(m, (X, y), "cross_entropy", metrics={"n": lambda model, a, b: len(a)})
    assert logs["n"] == 40 and logs["loss"] == pytest.approx(h["val_loss"][-1])


def test_progress_plain_line_without_tqdm(monkeypatch):
    import pyrnn.training as training

    monkeypatch.setattr(training, "_tqdm", lambda: None)
    X, y = _regression(16)
    m = Seq2Vec(2, 1, hidden_size=4, seed=0)
    out = io.StringIO()
    fit(m, (X, y), "mse", optim.SGD(m), epochs=2, batch_size=8, progress=True, file=out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("epoch 1/2  loss ")


def test_progress_bar_with_tqdm():
    pytest.importorskip("tqdm")
    X, y = _regression(16)
    m = Seq2Vec(2, 1, hidden_size=4, seed=0)
    out = io.StringIO()
    fit(m, (X, y), "mse", optim.SGD(m), epochs=1, batch_size=8, file=out)
    assert "epoch 1/1" in out.getvalue() and "loss" in out.getvalue()


def test_plot_history(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    h = pyrnn.History()
    for e in range(3):
        h.append(e + 1, {"loss": 1.0 / (e + 1), "val_loss": 1.2 / (e + 1), "val_accuracy": 0.3 * e, "lr": 0.1})
    path = plot_history(h, str(tmp_path / "curve.png"), title="t")
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_plot_history_without_matplotlib(monkeypatch, tmp_path):
    import builtins

    real_import = builtins.__import__

    def fake(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("no matplotlib")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(ImportError, match=r"'demo' extra"):
        plot_history({"loss": [1.0]}, str(tmp_path / "x.png"))


def test_fit_errors():
    X, y = _regression(8)
    m = Seq2Vec(2, 1, hidden_size=4, seed=0)
    with pytest.raises(ValueError, match="loss must be"):
        fit(m, (X, y), "hinge", optim.SGD(m))
    with pytest.raises(TypeError, match="optimizer"):
        fit(m, (X, y), "mse", None)
    with pytest.raises(ValueError, match="8 inputs but 3 targets"):
        fit(m, (X, y[:3]), "mse", optim.SGD(m))
    with pytest.raises(FloatingPointError, match="loss is"):
        fit(m, (X, y * np.inf), "mse", optim.SGD(m), progress=False)


def test_fit_skips_the_input_gradient_where_backward_can():
    """fit calls backward(dout, input_grad=False) on a model that takes the flag (the same
    weights as a loop that computes dx) and plain backward(dout) on one that does not."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((32, 6, 3)).astype(np.float32), rng.integers(0, 2, 32)
    seen = []

    class Spy(pyrnn.Seq2Vec):
        def backward(self, dout, input_grad=True):
            seen.append(input_grad)
            return super().backward(dout, input_grad)

    class Plain(pyrnn.Seq2Vec):
        def backward(self, dout):
            seen.append("plain")
            return super().backward(dout)

    weights = []
    for cls in (Spy, Plain):
        net = cls(input_size=3, output_size=2, hidden_size=5, seed=1)
        pyrnn.fit(net, (X, y), "cross_entropy", pyrnn.optim.Adam(net, lr=1e-2), epochs=2, batch_size=8,
                  shuffle=False, progress=False)
        weights.append(net.state_dict())
    assert seen == [False] * 8 + ["plain"] * 8
    for k in weights[0]:
        assert np.array_equal(weights[0][k], weights[1][k]), k
