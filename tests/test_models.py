"""The architectures: float64 finite-difference gradients through each whole model (attention
included), learning on small tasks, decoding (greedy, beam search), shapes and errors."""
import numpy as np
import pytest

import pyrnn
from pyrnn.models import Attention, EncoderDecoder, Seq2Seq, Seq2Vec, Vec2Seq, beam_search, greedy_decode
from pyrnn.demo import tasks

from _fd import check_input_grad, check_param_grads


F64 = "float64"


def _src_tgt(seed=1):
    rng = np.random.default_rng(seed)
    src = rng.integers(3, 7, (3, 5))
    src_len = np.array([5, 3, 2])
    for b, L in enumerate(src_len):
        src[b, L:] = 0
    tgt = rng.integers(1, 6, (3, 4))
    tgt_len = np.array([4, 2, 3])
    return src, src_len, tgt, tgt_len


# ---------------------------------------------------------------------------------------------
# gradients


@pytest.mark.parametrize("attention", [None, "dot", "general", "bahdanau"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_encoder_decoder_gradients(attention, cell):
    bidirectional = attention != "dot"   # dot needs decoder size == encoder output size
    m = EncoderDecoder(7, 6, hidden_size=4, embedding_dim=3, cell=cell, num_layers=2 if attention else 1,
                       bidirectional=bidirectional, attention=attention, dtype=F64, seed=0)
    src, src_len, tgt, tgt_len = _src_tgt()
    check_param_grads(m, lambda: m(src, tgt, src_len, tgt_len), n_per_param=3)


@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
@pytest.mark.parametrize("cell,bidirectional", [("lstm", True), ("gru", False), ("rnn", True)])
def test_seq2vec_gradients(pooling, cell, bidirectional):
    m = Seq2Vec(2, 3, hidden_size=4, cell=cell, num_layers=2, bidirectional=bidirectional, pooling=pooling,
                dtype=F64, seed=0)
    x = np.random.default_rng(2).standard_normal((3, 6, 2))
    lengths = np.array([6, 4, 2])
    check_param_grads(m, lambda: m(x, lengths))
    check_input_grad(lambda xx: m(xx, lengths), m.backward, x)


def test_seq2vec_tokens_gradients():
    m = Seq2Vec(vocab_size=9, output_size=2, hidden_size=4, embedding_dim=3, cell="gru", dtype=F64, seed=0)
    ids = np.array([[3, 4, 5, 0], [8, 7, 0, 0]])
    check_param_grads(m, lambda: m(ids, [3, 2]))
    assert np.all(m.grads["embedding.weight"][0] == 0)   # padding row never learns


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_seq2seq_gradients(cell):
    m = Seq2Seq(2, 3, hidden_size=4, cell=cell, bidirectional=True, num_layers=2, dtype=F64, seed=0)
    x = np.random.default_rng(3).standard_normal((3, 5, 2))
    lengths = np.array([5, 2, 4])
    check_param_grads(m, lambda: m(x, lengths))
    check_input_grad(lambda xx: m(xx, lengths), m.backward, x)


@pytest.mark.parametrize("make", [
    lambda: Seq2Vec(2, 3, hidden_size=4, cell="lstm", bidirectional=True, num_layers=2, dtype=F64, seed=0),
    lambda: Seq2Seq(2, 3, hidden_size=4, cell="gru", num_layers=2, dtype=F64, seed=0),
    lambda: Seq2Vec(2, 3, hidden_size=4, cell="slstm", dtype=F64, seed=0),
], ids=["seq2vec", "seq2seq", "seq2vec-slstm"])
def test_backward_without_input_grad(make):
    """backward(dout, input_grad=False) returns None and the same parameter gradients."""
    x = np.random.default_rng(4).standard_normal((3, 5, 2))
    grads = []
    for input_grad in (True, False):
        m = make()
        out = m(x, [5, 2, 4])
        dx = m.backward(np.ones_like(out), input_grad=input_grad)
        assert (dx is None) == (not input_grad)
        grads.append({k: g.copy() for k, g in m.grads.items()})
    for k in grads[0]:
        assert np.array_equal(grads[0][k], grads[1][k]), k


@pytest.mark.parametrize("condition", ["init", "input", "both"])
def test_vec2seq_gradients(condition):
    m = Vec2Seq(4, 6, hidden_size=5, num_layers=2, condition=condition, dtype=F64, seed=0)
    v = np.random.default_rng(3).standard_normal((3, 4))
    tgt = np.random.default_rng(1).integers(1, 6, (3, 4))
    lengths = np.array([4, 2, 3])
    check_param_grads(m, lambda: m(v, tgt, lengths))
    check_input_grad(lambda vv: m(vv, tgt, lengths), m.backward, v)


@pytest.mark.parametrize("kind", ["dot", "general", "bahdanau"])
def test_attention_module(kind):
    a = Attention(kind, 4, 4 if kind == "dot" else 6, dtype=F64, seed=0)
    rng = np.random.default_rng(0)
    q, k = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 5, a.key_size))
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], bool)
    ctx, w = a(q, k, mask)
    assert ctx.shape == (2, 3, a.key_size) and w.shape == (2, 3, 5)
    np.testing.assert_allclose(w.sum(-1), 1.0)
    assert np.all(w[1, :, 2:] == 0)
    R = rng.standard_normal(ctx.shape)
    dq, dk = a.backward(R)
    eps = 1e-6
    for arr, grad in ((q, dq), (k, dk)):
        for idx in [(0, 1, 2), (1, 2, 3), (1, 1, 0)]:
            old = arr[idx]
            arr[idx] = old + eps
            plus = np.sum(a(q, k, mask)[0] * R)
            arr[idx] = old - eps
            minus = np.sum(a(q, k, mask)[0] * R)
            arr[idx] = old
            assert abs((plus - minus) / (2 * eps) - grad[idx]) < 1e-7
    if kind != "dot":
        check_param_grads(a, lambda: a(q, k, mask)[0])


# ---------------------------------------------------------------------------------------------
# decoding


def test_beam_search_finds_better_sequence_than_greedy():
    """Hand-built: greedy takes 'a' (p=0.6) but every continuation of 'a' is uncertain, while
    'b' (p=0.4) continues with certainty: P(b, EOS) = 0.4 > P(a, x, EOS) = 0.6 * 0.5."""
    EOS, BOS, A, B, X, Y = 0, 1, 2, 3, 4, 5
    table = {(): {A: 0.6, B: 0.4}, (A,): {X: 0.5, Y: 0.5}, (B,): {EOS: 1.0},
             (A, X): {EOS: 1.0}, (A, Y): {EOS: 1.0}}

    def step(tokens, state):
        logp = np.full((len(tokens), 6), -np.inf)
        new_state = []
        for r, (tok, hist) in enumerate(zip(tokens, state)):
            hist = hist if tok == BOS else hist + (int(tok),)
            for t, p in table.get(hist, {EOS: 1.0}).items():
                logp[r, t] = np.log(p)
            new_state.append(hist)
        return logp, new_state

    select = lambda state, idx: [state[i] for i in idx]   # noqa: E731
    greedy, _ = greedy_decode(step, [()], 1, BOS, EOS, 5)
    beam, score = beam_search(step, [()], select, 1, BOS, EOS, 5, beam_width=2)
    assert greedy == [[A, X]]
    assert beam == [[B]]
    np.testing.assert_allclose(score, np.log(0.4))
    width1, _ = beam_search(step, [()], select, 1, BOS, EOS, 5, beam_width=1)
    assert width1 == greedy


def test_length_penalty_prefers_longer():
    EOS, BOS = 0, 1
    # EOS now: p=0.5; or 2 more tokens each p=0.9 then EOS p=0.8 -> 0.5*0.9*0.9*0.8... compare
    def step(tokens, state):
        logp = np.full((len(tokens), 4), -1e9)
        new = []
        for r, (tok, n) in enumerate(zip(tokens, state)):
            n = 0 if tok == BOS else n + 1
            if n == 0:
                logp[r, EOS], logp[r, 2] = np.log(0.3), np.log(0.7)
            elif n < 3:
                logp[r, 2], logp[r, EOS] = np.log(0.55), np.log(0.45)
            else:
                logp[r, EOS] = 0.0
            new.append(n)
        return logp, new

    select = lambda state, idx: [state[i] for i in idx]   # noqa: E731
    short, _ = beam_search(step, [0], select, 1, BOS, EOS, 6, beam_width=3, length_penalty=0.0)
    long, _ = beam_search(step, [0], select, 1, BOS, EOS, 6, beam_width=3, length_penalty=2.0)
    assert len(long[0]) > len(short[0])


@pytest.mark.parametrize("attention", [None, "general"])
def test_beam_width_one_equals_greedy_on_a_model(attention):
    m = EncoderDecoder(9, 9, hidden_size=8, cell="gru", attention=attention, seed=3)
    rng = np.random.default_rng(0)
    src = [rng.integers(3, 9, rng.integers(2, 7)) for _ in range(6)]
    greedy = m.generate(src, max_len=8)
    assert m.generate(src, max_len=8, beam_width=1) == greedy
    beams = m.generate(src, max_len=8, beam_width=4)
    assert len(beams) == 6 and all(len(b) <= 8 for b in beams)
    if attention:
        toks, w = m.generate(src, max_len=8, return_attention=True)
        assert toks == greedy and w.shape[0] == 6
        np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-5)


def test_beam_search_scores_with_model_agree_with_forward():
    """The beam's reported score is the model's own log-probability of that output."""
    m = Vec2Seq(3, 7, hidden_size=8, cell="lstm", dtype=F64, seed=1)
    v = np.random.default_rng(0).standard_normal((2, 3))
    state, B = m._start(v)
    from pyrnn.models.seq_decoders import _select_state
    toks, scores = beam_search(m._decoder_step_logp, state, _select_state, B, m.bos_id, m.eos_id, 6, 3) \
        if hasattr(m, "_decoder_step_logp") else (None, None)
    m.eval()
    state, B = m._start(v)
    toks, scores = beam_search(lambda t, s: m._decoder_step(t, s)[:2], state, _select_state, B,
                               m.bos_id, m.eos_id, 6, 3)
    for b in range(2):
        seq = toks[b]
        tin = np.array([[m.bos_id] + seq])
        target = seq + ([m.eos_id] if len(seq) < 6 else [])
        logp = pyrnn.losses.log_softmax(m(v[b:b + 1], tin))[0]
        total = sum(logp[t, tok] for t, tok in enumerate(target))
        np.testing.assert_allclose(scores[b], total, rtol=1e-9)


# ---------------------------------------------------------------------------------------------
# learning (thresholds stated in each test)


def test_encoder_decoder_learns_reversal():
    """Reverse 3-7 digit strings (bidirectional GRU encoder, general attention): held-out greedy
    exact match >= 95% after 5 epochs (100% on seeds 0-3 when written)."""
    rng = np.random.default_rng(0)
    X, Y = tasks.digit_reversal(4000, rng, 3, 7)
    Xt, Yt = tasks.digit_reversal(200, rng, 3, 7)
    m = EncoderDecoder(tasks.DIGIT_VOCAB, tasks.DIGIT_VOCAB, hidden_size=32, embedding_dim=16, cell="gru",
                       attention="general", bidirectional=True, seed=0)
    opt = pyrnn.optim.Adam(m, lr=1e-2)
    sched = pyrnn.optim.CosineLR(opt, T_max=5, eta_min=1e-3)
    pyrnn.fit(m, (X, Y), "cross_entropy", opt, epochs=5, batch_size=50, clip_grad_norm=1.0, scheduler=sched,
              progress=False)
    acc = np.mean([p == list(y) for p, y in zip(m.generate(Xt, max_len=9), Yt)])
    assert acc >= 0.95, acc


def test_seq2vec_learns_sequence_classification():
    """Does a sequence of tokens contain token 5? 2-layer bidirectional LSTM, max pooling:
    held-out accuracy >= 95%."""
    rng = np.random.default_rng(0)

    def data(n):
        X = [rng.integers(3, 10, rng.integers(3, 12)) for _ in range(n)]
        return X, np.array([int(5 in x) for x in X])

    X, y = data(1500)
    Xt, yt = data(300)
    m = Seq2Vec(vocab_size=10, output_size=2, hidden_size=16, embedding_dim=8, pooling="max",
                bidirectional=True, seed=0)
    opt = pyrnn.optim.Adam(m, lr=1e-2)
    hist = pyrnn.fit(m, (X, y), "cross_entropy", opt, epochs=6, batch_size=32, validation_data=(Xt, yt),
                     metrics=["accuracy"], progress=False)
    assert hist["val_accuracy"][-1] >= 0.95, hist.history


def test_seq2seq_learns_delayed_copy():
    """Output at step t is the input at t-2 (tagging with memory): held-out MSE < 0.01."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (600, 20, 1)).astype(np.float32)
    y = np.zeros_like(x)
    y[:, 2:] = x[:, :-2]
    m = Seq2Seq(1, 1, hidden_size=24, cell="gru", seed=0)
    opt = pyrnn.optim.Adam(m, lr=1e-2)
    pyrnn.fit(m, (x[:500], y[:500]), "mse", opt, epochs=15, batch_size=25, progress=False)
    mse = np.mean((m.predict(x[500:]) - y[500:]) ** 2)
    assert mse < 0.01, mse


def test_vec2seq_learns_to_spell_a_number():
    """A one-hot vector for k in 0..9 -> the token sequence of k's digits repeated (k+1) % 4 + 1
    times: held-out (all 10) greedy exact match = 100%."""
    def target(k):
        return [3 + k] * ((k + 1) % 4 + 1)

    V = np.eye(10, dtype=np.float32)
    X = np.repeat(V, 30, axis=0)
    Y = [target(k) for k in np.repeat(np.arange(10), 30)]
    m = Vec2Seq(10, 13, hidden_size=24, cell="lstm", seed=0)
    opt = pyrnn.optim.Adam(m, lr=1e-2)
    pyrnn.fit(m, (X, Y), "cross_entropy", opt, epochs=8, batch_size=30, progress=False)
    assert m.generate(V, max_len=6) == [target(k) for k in range(10)]
    assert m.generate(V, max_len=6, beam_width=3) == [target(k) for k in range(10)]


# ---------------------------------------------------------------------------------------------
# API


def test_shapes_predict_and_modes():
    m = Seq2Vec(3, 2, hidden_size=5, seed=0)
    x = np.zeros((4, 7, 3), np.float32)
    assert m(x).shape == (4, 2)
    m.backward(np.ones((4, 2)))
    assert m.training
    assert m.predict(x).shape == (4, 2) and m.training   # mode restored
    m.eval()
    m(x)
    with pytest.raises(RuntimeError, match="eval mode"):
        m.backward(np.ones((4, 2)))


def test_parameters_are_live_and_named():
    m = EncoderDecoder(5, 6, hidden_size=4, cell="lstm", attention="bahdanau", seed=0)
    params = m.parameters()
    assert "encoder.weight_ih_l0_reverse" in params and "attention.v" in params
    assert set(params) == set(m.grads) == set(m.state_dict())
    assert m.generate([[3, 4]], max_len=3) == [[5, 5, 5]]
    for p in params.values():                       # in place: the model must see the new values
        p *= 0
    assert m.state_dict()["out.weight"].sum() == 0
    assert m.generate([[3, 4]], max_len=3) == [[0, 0, 0]]     # all logits 0: argmax is token 0
    params["out.bias"][4] = 1.0
    assert m.generate([[3, 4]], max_len=3) == [[4, 4, 4]]


def test_config_roundtrip_and_bad_arguments():
    m = EncoderDecoder(5, 6, hidden_size=4, cell="gru", attention="dot", bidirectional=False, seed=0)
    m2 = EncoderDecoder.from_config(m.get_config())
    m2.load_state_dict(m.state_dict())
    src = [[3, 4, 4]]
    assert m2.generate(src, max_len=4) == m.generate(src, max_len=4)
    with pytest.raises(ValueError, match="dot attention needs"):
        EncoderDecoder(5, 6, hidden_size=4, attention="dot", bidirectional=True)
    with pytest.raises(ValueError, match="attention must be one of"):
        EncoderDecoder(5, 6, attention="luong")
    with pytest.raises(ValueError, match="cell must be one of"):
        Seq2Vec(3, cell="transformer")
    with pytest.raises(ValueError, match="exactly one of input_size"):
        Seq2Vec(3, vocab_size=5)


def test_registry_accepts_new_recurrent_layers():
    from pyrnn.models import RECURRENT

    RECURRENT["gru_before"] = lambda *a, **k: pyrnn.GRU(*a, reset_after=False, **k)
    try:
        m = Seq2Seq(2, 1, hidden_size=3, cell="gru_before", dtype=F64, seed=0)
        x = np.random.default_rng(0).standard_normal((2, 4, 2))
        check_param_grads(m, lambda: m(x))
    finally:
        del RECURRENT["gru_before"]


@pytest.mark.parametrize("backend", ["native", "reference"])
@pytest.mark.parametrize("cell,bidirectional,tokens", [("lstm", True, False), ("gru", False, True), ("rnn", True, False)])
def test_seq2vec_last_pooling_in_eval_reads_the_final_states(cell, bidirectional, tokens, backend):
    """Eval-mode 'last' pooling comes from the top layer's final states (no per-step outputs);
    it equals pooling the outputs at each sequence's last step (forward direction) and at step
    0 (backward direction), bitwise."""
    from pyrnn.testing import use_backend
    kwargs = dict(vocab_size=11, embedding_dim=4) if tokens else dict(input_size=3)
    model = Seq2Vec(output_size=2, hidden_size=9, cell=cell, num_layers=2, bidirectional=bidirectional,
                    seed=0, **kwargs).eval()
    rng = np.random.default_rng(0)
    x = rng.integers(0, 11, (6, 7)) if tokens else rng.standard_normal((6, 7, 3)).astype(np.float32)
    lengths = np.array([7, 1, 3, 7, 5, 2])
    with use_backend(backend):
        got = model.predict(x, lengths)
        y, _ = model._encode(*model._prepare(x, lengths)[:2], None)
    pooled = y[np.arange(6), lengths - 1].copy()
    if bidirectional:
        pooled[:, 9:] = y[:, 0, 9:]
    np.testing.assert_array_equal(got, model.head(pooled))


def test_predict_without_batch_size_runs_in_chunks_with_the_same_result(monkeypatch):
    """predict's default chunking (bounded intermediates) gives the whole-batch result bitwise,
    for padded arrays and for lists of sequences."""
    from pyrnn.models import sequence
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 6, 3)).astype(np.float32)
    lengths = rng.integers(1, 7, 300)
    seqs = [x[i, :n] for i, n in enumerate(lengths)]
    for model in (Seq2Vec(input_size=3, output_size=2, hidden_size=8, pooling="mean", seed=0),
                  Seq2Vec(input_size=3, output_size=2, hidden_size=8, seed=0),
                  Seq2Seq(input_size=3, output_size=2, hidden_size=8, seed=0)):
        whole = model.predict(x, lengths, batch_size=300)
        whole_list = model.predict(seqs, batch_size=300)
        monkeypatch.setattr(sequence, "_CHUNK_BYTES", 1)       # the smallest chunks: 64 rows per thread
        assert sequence._chunk_rows(model, 6) == 64 * pyrnn.get_num_threads()
        np.testing.assert_array_equal(model.predict(x, lengths), whole)
        for a, b in zip(model.predict(seqs), whole_list):
            np.testing.assert_array_equal(a, b)
        monkeypatch.undo()
