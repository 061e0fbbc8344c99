"""NumPy reference of the building blocks' kernels: the same functions, arguments and results
as ``pyrnn._core.blocks`` (csrc/bindings_blocks.cpp), written for clarity. Tests compare the
native kernels with these on every instruction set and thread split, and check these by
finite differences in float64. ``pyrnn.testing.use_backend("reference")`` makes the building
blocks run on them (through ``pyrnn._dense``).
"""
from __future__ import annotations

import numpy as np

ACTIVATIONS = ("identity", "tanh", "sigmoid", "relu", "leaky_relu")


def _op(x: np.ndarray, trans: bool) -> np.ndarray:
    return np.swapaxes(x, -1, -2) if trans else x


def gemm(a, b, trans_a=False, trans_b=False, out=None, beta=0.0):
    """``out = beta * out + op(a) @ op(b)``: 2-D, or a batch of products along a 3-D ``a``'s
    first axis (``b`` 3-D with the same batch, or 2-D shared). Returns ``out``."""
    prod = np.matmul(_op(a, trans_a), _op(b, trans_b))
    if out is None:
        if beta != 0:
            raise ValueError("gemm: beta != 0 needs out")
        return prod
    if beta == 0:
        out[...] = prod
    else:
        out *= out.dtype.type(beta)
        out += prod
    return out


def linear(x, weight, bias=None):
    """``x (M, K) @ weight (N, K).T + bias (N,)``."""
    y = x @ weight.T
    if bias is not None:
        y += bias
    return y


def column_sums(x, out):
    """``out (N,) += x (M, N).sum(axis=0)``."""
    out += x.sum(axis=0)


def activation(kind, x, slope=0.0):
    if kind == "identity":
        return x.copy()
    if kind == "tanh":
        return np.tanh(x)
    if kind == "sigmoid":
        return 0.5 * (1 + np.tanh(0.5 * x))    # overflow-free logistic
    if kind == "relu":
        return np.maximum(x, 0)
    if kind == "leaky_relu":
        return np.where(x < 0, x * x.dtype.type(slope), x)
    raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {kind!r}")


def activation_backward(kind, x, y, dy, slope=0.0):
    """dx from the forward's input ``x`` and output ``y`` and the output's gradient ``dy``."""
    if kind == "identity":
        return dy.copy()
    if kind == "tanh":
        return dy * (1 - y * y)
    if kind == "sigmoid":
        return dy * y * (1 - y)
    if kind == "relu":
        return np.where(x > 0, dy, 0).astype(dy.dtype)
    if kind == "leaky_relu":
        return np.where(x > 0, dy, dy * dy.dtype.type(slope))
    raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {kind!r}")


def softmax(x, log=False):
    """Softmax (or log-softmax) over the last axis; -inf entries get probability 0."""
    shifted = x - x.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    s = e.sum(axis=-1, keepdims=True)
    return shifted - np.log(s) if log else e / s


def softmax_backward(y, dy):
    """The softmax's backward from its output ``y``: ``y * (dy - sum(dy * y))`` per row."""
    return y * (dy - (dy * y).sum(axis=-1, keepdims=True))


def cross_entropy(logits, targets, scale, label_smoothing=0.0):
    """Softmax cross-entropy of ``logits`` (M, N) against class ``targets`` (M,): the loss of
    each row (float64; with label smoothing eps, ``(1-eps) * nll + eps * mean(-log p)``) and
    ``dlogits = (softmax - (1-eps) * onehot - eps/N) * scale[:, None]``."""
    M, N = logits.shape
    if np.any((targets < 0) | (targets >= N)):
        raise ValueError(f"targets: a class is outside 0..{N - 1}")
    eps = float(label_smoothing)
    logp = softmax(logits.astype(np.float64), log=True)
    rows = np.arange(M)
    loss = -(1 - eps) * logp[rows, targets] - eps * logp.mean(axis=-1)
    grad = np.exp(logp) - eps / N
    grad[rows, targets] -= 1 - eps
    return loss, (grad * scale[:, None]).astype(logits.dtype)


def adam_update(p, g, m, v, lr, beta1, beta2, eps, weight_decay, decoupled, step):
    """One Adam step in place (``torch.optim.Adam``; AdamW when ``decoupled``)."""
    if weight_decay and decoupled:
        p *= p.dtype.type(1 - lr * weight_decay)
    elif weight_decay:
        g = g + p.dtype.type(weight_decay) * p
    m *= m.dtype.type(beta1)
    m += m.dtype.type(1 - beta1) * g
    v *= v.dtype.type(beta2)
    v += v.dtype.type(1 - beta2) * (g * g)
    step_size = p.dtype.type(lr / (1 - beta1 ** step))
    denom = np.sqrt(v / p.dtype.type(1 - beta2 ** step)) + p.dtype.type(eps)
    p -= step_size * m / denom


def sgd_update(p, g, buf, lr, momentum, dampening, weight_decay, nesterov, first):
    """One SGD step in place (``torch.optim.SGD``); ``buf`` the momentum buffer or None."""
    t = p.dtype.type
    d = g + t(weight_decay) * p if weight_decay else g
    if buf is not None:
        if first:
            buf[...] = d
        else:
            buf *= t(momentum)
            buf += t(1 - dampening) * d
        d = d + t(momentum) * buf if nesterov else buf
    p -= t(lr) * d


def embedding_backward(ids, dout, skip, dweight):
    """``dweight[ids[i]] += dout[i]`` for every i whose id is not ``skip``."""
    keep = ids != skip
    if np.any((ids[keep] < 0) | (ids[keep] >= dweight.shape[0])):
        raise ValueError(f"ids: a row is outside 0..{dweight.shape[0] - 1}")
    np.add.at(dweight, ids[keep], dout[keep])


def sum_squares(x):
    """The sum of ``x**2`` in float64."""
    x64 = x.astype(np.float64)
    return float(np.sum(x64 * x64))
