"""Causal depthwise 1-D convolution over time (time-major, channels last), forward and backward.

Each of the C channels is convolved with its own K taps, looking only at the present and the
K - 1 previous steps (zeros before the start)::

    y[t, b, c] = bias[c] + sum_j weight[c, j] * x[t - (K - 1) + j, b, c]

``weight`` (C, K) is PyTorch's depthwise ``Conv1d`` weight (C, 1, K) without its middle axis
(cross-correlation, the last tap on the present step), as the official xLSTM package's
causal convolution. Element-wise passes only (K multiply-adds per element): no products.
"""
from __future__ import annotations

import numpy as np


def causal_conv1d_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """y (T, B, C) for x (T, B, C), weight (C, K), bias (C,) or None."""
    T = x.shape[0]
    K = weight.shape[1]
    y = np.empty_like(x)              # C order (an astype of a broadcast view would keep its odd strides)
    y[...] = 0 if bias is None else bias
    for j in range(K):
        shift = K - 1 - j                   # tap j reads the step `shift` steps back
        if shift < T:
            y[shift:] += weight[:, j] * x[:T - shift]
    return y


def causal_conv1d_backward(x: np.ndarray, dy: np.ndarray, weight: np.ndarray, dweight: np.ndarray,
                           dbias: np.ndarray | None) -> np.ndarray:
    """dx (T, B, C) from the forward's input x and dy; dweight (C, K) and dbias (C,) accumulate."""
    T, C = x.shape[0], x.shape[-1]
    K = weight.shape[1]
    dx = np.zeros_like(dy)
    for j in range(K):
        shift = K - 1 - j
        if shift < T:
            dx[:T - shift] += weight[:, j] * dy[shift:]
            dweight[:, j] += (dy[shift:] * x[:T - shift]).reshape(-1, C).sum(axis=0)
    if dbias is not None:
        dbias += dy.reshape(-1, C).sum(axis=0)
    return dx
