"""`pyrnn demo`: every task runs end to end (small sizes here), prints its result,
and writes a loadable model and a loss curve."""
import os
import subprocess
import sys

import numpy as np
import pytest

import pyrnn
from pyrnn.demo import run as demo
from pyrnn.demo import tasks


def _args(tmp_path, **kw):
    import argparse

    p = argparse.ArgumentParser()
    demo.add_arguments(p)
    argv = [f"--{k.replace('_', '-')}={v}" for k, v in kw.items()] + [f"--out={tmp_path}", "--threads=1"]
    return p.parse_args(argv)


def test_demo_reverse_small(tmp_path, capsys):
    result = demo.run_demo(_args(tmp_path, epochs=1, train_size=256, test_size=20))
    out = capsys.readouterr().out
    assert "held-out exact-match accuracy" in out and "->" in out and "same predictions: True" in out
    assert 0 <= result["accuracy"] <= 1
    model = pyrnn.load(result["model"])
    assert isinstance(model, pyrnn.EncoderDecoder)
    if result["plot"]:
        assert os.path.getsize(result["plot"]) > 0


@pytest.mark.parametrize("task", ["adding", "sine"])
def test_demo_other_tasks_small(task, tmp_path, capsys):
    result = demo.run_demo(_args(tmp_path, task=task, epochs=1, train_size=64, test_size=16, length=20))
    assert "held-out MSE" in capsys.readouterr().out
    assert np.isfinite(result["mse"]) and os.path.exists(result["model"])


def test_generated_tasks():
    rng = np.random.default_rng(0)
    x, y = tasks.adding_problem(500, 30, rng)
    assert x.shape == (500, 30, 2) and np.all(x[:, :, 1].sum(1) == 2)
    np.testing.assert_allclose(np.mean((y - 1.0) ** 2), 1 / 6, atol=0.03)
    X, Y = tasks.digit_reversal(5, rng)
    assert all(list(a[::-1]) == list(b) for a, b in zip(X, Y))
    assert tasks.tokens_to_digits(tasks.digits_to_tokens("0429")) == "0429"
    x, y = tasks.sine_waves(3, 10, rng)
    assert x.shape == y.shape == (3, 10, 1)


def test_cli_lists_demo():
    out = subprocess.run([sys.executable, "-m", "pyrnn", "demo", "--help"], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(pyrnn.__file__)))
    assert out.returncode == 0, out.stderr
    for flag in ("--task", "--epochs", "--seed", "--threads", "--out"):
        assert flag in out.stdout
