"""Generated data sets for the demos and tests, all reproducible from a NumPy generator."""
from __future__ import annotations

import numpy as np

PAD, BOS, EOS = 0, 1, 2
DIGIT0 = 3                      # token of digit 0; digits are tokens 3..12
DIGIT_VOCAB = DIGIT0 + 10


def digits_to_tokens(s: str) -> list[int]:
    return [DIGIT0 + int(c) for c in s]


def tokens_to_digits(tokens) -> str:
    return "".join(str(t - DIGIT0) if DIGIT0 <= t < DIGIT_VOCAB else "?" for t in tokens)


def digit_reversal(n: int, rng: np.random.Generator, min_len: int = 3, max_len: int = 12):
    """``n`` random digit strings (as tokens) of lengths min_len..max_len and their reversals."""
    lengths = rng.integers(min_len, max_len + 1, n)
    X = [rng.integers(DIGIT0, DIGIT_VOCAB, L) for L in lengths]
    return X, [x[::-1].copy() for x in X]


def adding_problem(n: int, T: int, rng: np.random.Generator, dtype=np.float32):
    """The adding problem (Hochreiter & Schmidhuber): x (n, T, 2) holds T uniform values and a
    marker channel with exactly two ones, one in each half; the target (n,) is the sum of the
    two marked values. Predicting the mean (1.0) gives MSE 1/6 ~ 0.167."""
    x = np.zeros((n, T, 2), dtype)
    x[:, :, 0] = rng.random((n, T))
    rows = np.arange(n)
    i = rng.integers(0, T // 2, n)
    j = rng.integers(T // 2, T, n)
    x[rows, i, 1] = 1
    x[rows, j, 1] = 1
    return x, (x[rows, i, 0] + x[rows, j, 0]).astype(dtype)


def sine_waves(n: int, T: int, rng: np.random.Generator, noise: float = 0.05, dtype=np.float32):
    """Next-value forecasting: x (n, T, 1) noisy sines with random frequency, phase and
    amplitude; the target (n, T, 1) is the clean signal one step ahead."""
    t = np.arange(T + 1)[None, :]
    freq = rng.uniform(0.04, 0.12, (n, 1)) * 2 * np.pi
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    amp = rng.uniform(0.5, 1.0, (n, 1))
    clean = amp * np.sin(freq * t + phase)
    x = clean[:, :-1] + noise * rng.standard_normal((n, T))
    return x[..., None].astype(dtype), clean[:, 1:, None].astype(dtype)
