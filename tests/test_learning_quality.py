"""Short versions of the learning-quality examples on real data shipped with common packages:
sunspot forecasting (statsmodels) against the last-value baseline, the character language model
on the standard library's docstrings against the same model trained in PyTorch, and an xLSTM
block-stack character model trained with fit."""
import math
import sys
from pathlib import Path

import numpy as np
import pytest


sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))


def test_sunspots_beats_last_value_by_35_percent():
    pytest.importorskip("statsmodels")
    import sunspots

    res = sunspots.run(epochs=8, hidden=32)
    assert res["improvement"] >= 0.35, res


@pytest.fixture(scope="module")
def char_data():
    import char_lm

    ids, vocab = char_lm.encode(char_lm.stdlib_text(12_000))
    return char_lm.split(ids, batch_size=16, steps=32), len(vocab)


def test_char_model_matches_pytorch(char_data):
    pytest.importorskip("torch")
    import char_lm

    (train, val), V = char_data
    model = char_lm.lstm_model(V, hidden=32, embed=16)
    twin = char_lm.lstm_model(V, hidden=32, embed=16)
    twin.load_state_dict(model.state_dict())
    ours = char_lm.train(model, train, val, batch_size=16, epochs=2, lr=1e-2)["val_bpc"]
    theirs = char_lm.torch_train(twin, train, val, batch_size=16, epochs=2, lr=1e-2)
    assert ours < math.log2(V) - 1          # it learned something
    assert abs(ours / theirs - 1) < 0.02, (ours, theirs)


def test_xlstm_block_char_model_trains_with_fit(char_data):
    import char_lm

    (train, val), V = char_data
    model = char_lm.xlstm_model(V, embed=16)
    bpc = char_lm.train(model, train, val, batch_size=16, epochs=2, lr=1e-2, stateful=False)["val_bpc"]
    assert bpc < math.log2(V) - 1
    text = char_lm.sample(char_lm.lstm_model(V, 8, 8), [chr(32 + i) for i in range(V)], "ab", 5)
    assert len(text) == 7
