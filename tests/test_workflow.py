"""The workflow around the models: the same inputs for fit, evaluate and predict, warnings for
silent traps, streaming (step, encode), generation (greedy, sampling) and stateful training."""
import warnings

import numpy as np
import pytest

import pyrnn
from pyrnn import optim
from pyrnn.models import Seq2Seq, Seq2Vec, Vec2Seq



def _varlen(n=24, seed=0):
    rng = np.random.default_rng(seed)
    X = [rng.standard_normal((int(rng.integers(2, 7)), 2)).astype(np.float32) for _ in range(n)]
    y = np.array([int(x[:, 0].sum() > 0) for x in X])
    return X, y


# ---------------------------------------------------------------------------------------------
# the same inputs everywhere, and the traps


def test_padding_idx_defaults_to_none():
    m = Seq2Vec(vocab_size=5, output_size=2, hidden_size=4, seed=0)
    assert m.embedding.padding_idx is None and m.embedding.weight[0].any()
    assert Seq2Vec(vocab_size=5, output_size=2, padding_idx=0, seed=0).embedding.weight[0].sum() == 0


def test_predict_evaluate_fit_take_lists_and_padded_arrays_alike():
    X, y = _varlen()
    padded, lengths = pyrnn.models.pad_sequences(X)
    m = Seq2Vec(2, 2, hidden_size=6, seed=0)
    np.testing.assert_array_equal(m.predict(X), m.predict(padded, lengths))
    np.testing.assert_array_equal(m.predict(X, batch_size=5), m.predict(X))
    assert pyrnn.evaluate(m, (X, y), "cross_entropy", metrics=["accuracy"]) == \
        pyrnn.evaluate(m, (padded, y, lengths), "cross_entropy", metrics=["accuracy"])
    histories = []
    for data in ((X, y), (padded, y, lengths), (padded, y[:, None], lengths)):   # (N,) and (N, 1) labels
        m = Seq2Vec(2, 2, hidden_size=6, seed=0)
        histories.append(pyrnn.fit(m, data, "cross_entropy", optim.Adam(m, lr=0.01), epochs=2, batch_size=8,
                                   progress=False)["loss"])
    assert histories[0] == histories[1] == histories[2]
    s = Seq2Seq(2, 3, hidden_size=4, seed=0)
    out = s.predict(X[:3])
    assert [o.shape for o in out] == [(len(x), 3) for x in X[:3]]
    np.testing.assert_allclose(out[1], s.predict(X[1][None])[0], rtol=1e-5, atol=1e-6)


def test_padded_input_without_lengths_warns_once():
    X, y = _varlen()
    padded, _ = pyrnn.models.pad_sequences(X)
    m = Seq2Vec(2, 2, hidden_size=4, seed=0)
    pyrnn.fit(m, (X, y), "cross_entropy", optim.SGD(m, lr=0.01), epochs=1, progress=False)
    with pytest.warns(UserWarning, match="lengths="):
        m.predict(padded)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.predict(padded)            # once only
    fresh = Seq2Vec(2, 2, hidden_size=4, seed=0)   # never saw variable lengths: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fresh.predict(padded)


def test_shape_errors_say_what_to_do():
    m = Seq2Seq(1, 1, hidden_size=4, seed=0)
    with pytest.raises(ValueError, match=r"x\[\.\.\., None\]"):
        m.predict(np.zeros((3, 5)))
    with pytest.raises(ValueError, match=r"x\[None\]"):
        Seq2Vec(2, 1, hidden_size=4).predict(np.zeros((5, 2)))
    with pytest.raises(TypeError, match="token ids"):
        Seq2Vec(vocab_size=5, hidden_size=4).predict(np.zeros((2, 3)))


def test_step_in_training_mode_warns_once():
    m = Seq2Seq(vocab_size=5, output_size=5, hidden_size=4, seed=0)
    with pytest.warns(UserWarning, match="eval"):
        m.step(np.array([1, 2]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.step(np.array([1, 2]))
        m.eval().step(np.array([1, 2]))


# ---------------------------------------------------------------------------------------------
# streaming and generation


@pytest.mark.parametrize("cell", ["lstm", "gru", "slstm", "mlstm"])
@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
def test_seq2vec_step_and_encode(cell, pooling):
    m = Seq2Vec(3, 2, hidden_size=8, cell=cell, num_layers=2, pooling=pooling, dtype="float64", seed=0).eval()
    x = np.random.default_rng(0).standard_normal((2, 6, 3))
    state = None
    for t in range(6):
        y, state = m.step(x[:, t], state)
        np.testing.assert_allclose(y, m(x[:, :t + 1]), atol=1e-10)
    assert m.encode(x).shape == (2, 8)


def _greedy_by_recompute(m, prefix, steps):
    seq = list(prefix)
    for _ in range(steps):
        seq.append(int(np.argmax(m.predict(np.array([seq]))[0, -1])))
    return np.array(seq[len(prefix):])


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "slstm", "mlstm"])
def test_seq2seq_generate_greedy_equals_recompute(cell):
    m = Seq2Seq(vocab_size=7, output_size=7, hidden_size=8, cell=cell, num_layers=2, dtype="float64", seed=1)
    prefix = [1, 4, 2]
    np.testing.assert_array_equal(m.generate(prefix, 6), _greedy_by_recompute(m, prefix, 6))
    assert m.training                    # the mode is restored


def test_seq2seq_sampling():
    m = Seq2Seq(vocab_size=7, output_size=7, hidden_size=8, seed=1)
    prefix = np.array([[1, 4, 2], [3, 3, 3]])
    a = m.generate(prefix, 20, temperature=1.0, seed=5)
    assert a.shape == (2, 20)
    np.testing.assert_array_equal(a, m.generate(prefix, 20, temperature=1.0, seed=5))
    assert not np.array_equal(a, m.generate(prefix, 20, temperature=1.0, seed=6))
    greedy = m.generate(prefix, 20)
    np.testing.assert_array_equal(m.generate(prefix, 20, temperature=1.0, top_k=1, seed=0), greedy)
    np.testing.assert_array_equal(m.generate(prefix, 20, temperature=0.7, top_p=1e-9, seed=0), greedy)
    assert m.generate(prefix, 0).shape == (2, 0)


def test_sample_next_follows_the_distribution():
    from pyrnn.models.decoding import sample_next
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]]).repeat(20000, 0))
    rng = np.random.default_rng(0)
    counts = np.bincount(sample_next(logits, 1.0, rng=rng), minlength=4) / 20000
    np.testing.assert_allclose(counts, [0.5, 0.3, 0.15, 0.05], atol=0.015)
    counts = np.bincount(sample_next(logits, 1.0, top_k=2, rng=rng), minlength=4) / 20000
    np.testing.assert_allclose(counts, [0.625, 0.375, 0, 0], atol=0.015)
    counts = np.bincount(sample_next(logits, 1.0, top_p=0.6, rng=rng), minlength=4) / 20000
    np.testing.assert_allclose(counts, [0.625, 0.375, 0, 0], atol=0.015)


def test_float_seq2seq_generate_feeds_predictions_back():
    m = Seq2Seq(2, 2, hidden_size=6, dtype="float64", seed=0)
    prefix = np.random.default_rng(0).standard_normal((4, 2))
    seq = list(prefix)
    for _ in range(5):
        seq.append(m.predict(np.array(seq)[None])[0, -1])
    np.testing.assert_allclose(m.generate(prefix, 5), np.array(seq[4:]), atol=1e-10)
    with pytest.raises(ValueError, match="greedily"):
        m.generate(prefix, 5, temperature=1.0)


def test_vec2seq_sampling_is_seeded():
    m = Vec2Seq(3, 9, hidden_size=8, seed=0)
    v = np.random.default_rng(0).standard_normal((3, 3))
    a = m.generate(v, max_len=8, temperature=1.0, seed=3)
    assert a == m.generate(v, max_len=8, temperature=1.0, seed=3)
    assert m.generate(v, max_len=8, temperature=1.0, top_k=1, seed=1) == m.generate(v, max_len=8)
    with pytest.raises(ValueError, match="beam_width=1"):
        m.generate(v, beam_width=2, temperature=1.0)


# ---------------------------------------------------------------------------------------------
# stateful training


def test_make_streams_layout():
    X, Y = pyrnn.make_streams(np.arange(43), batch_size=2, steps=5)
    # 2 streams of 21 steps -> 4 segments of 5 each; batch k = segment k of both streams
    np.testing.assert_array_equal(X[:2], [[0, 1, 2, 3, 4], [21, 22, 23, 24, 25]])
    np.testing.assert_array_equal(X[2:4], [[5, 6, 7, 8, 9], [26, 27, 28, 29, 30]])
    np.testing.assert_array_equal(Y, X + 1)


@pytest.mark.parametrize("cell", ["lstm", "slstm"])
def test_stateful_carries_each_stream(cell):
    """With the state carried, the batched segments see exactly what one pass over each whole
    stream sees; evaluate(stateful) gives that loss."""
    rng = np.random.default_rng(0)
    text = rng.integers(0, 6, 121)
    m = Seq2Seq(vocab_size=6, output_size=6, hidden_size=8, cell=cell, dtype="float64", seed=0)
    X, Y = pyrnn.make_streams(text, batch_size=3, steps=8)
    streams = np.concatenate([X[k::3] for k in range(3)], axis=0).reshape(3, -1)   # (3, 5*8)
    targets = np.concatenate([Y[k::3] for k in range(3)], axis=0).reshape(3, -1)
    whole = pyrnn.losses.cross_entropy(m.predict(streams), targets)[0]
    assert pyrnn.evaluate(m, (X, Y), "cross_entropy", batch_size=3, stateful=True)["loss"] == pytest.approx(whole)
    assert pyrnn.evaluate(m, (X, Y), "cross_entropy", batch_size=3)["loss"] != pytest.approx(whole)
    h = pyrnn.fit(m, (X, Y), "cross_entropy", optim.Adam(m, lr=0.02), epochs=3, batch_size=3, stateful=True,
                  validation_data=(X, Y), progress=False)
    assert h["loss"][-1] < h["loss"][0]
    assert m._stream_state is not None
    m.reset_states()
    assert m._stream_state is None


def test_stateful_errors():
    m = Seq2Seq(vocab_size=6, output_size=6, hidden_size=4, seed=0)
    X, Y = pyrnn.make_streams(np.arange(100) % 6, batch_size=4, steps=5)
    with pytest.raises(ValueError, match="multiple of batch_size"):
        pyrnn.fit(m, (X, Y), "cross_entropy", optim.SGD(m), batch_size=3, stateful=True, progress=False)
    with pytest.raises(ValueError, match="shuffle"):
        pyrnn.fit(m, (X, Y), "cross_entropy", optim.SGD(m), batch_size=4, stateful=True, shuffle=True,
                  progress=False)
    with pytest.raises(ValueError, match="cannot carry"):
        v = Seq2Vec(vocab_size=6, hidden_size=4)
        pyrnn.fit(v, (X, Y[:, 0]), "cross_entropy", optim.SGD(v), batch_size=4, stateful=True, progress=False)
