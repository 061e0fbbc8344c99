"""GELU (the exact one, x * Phi(x) with the normal CDF Phi, as ``torch.nn.functional.gelu``)
and SiLU, each with its derivative, in NumPy; and the error function they need, which NumPy
lacks: accurate to a few ulps of float64, or of float32 for float32 input, which is computed
in float32 with fewer terms (tests/test_xlstm_blocks.py checks both against ``math.erf``)."""
from __future__ import annotations

import math

import numpy as np

# erf(x) = 2/sqrt(pi) * x * sum_n (-x^2)^n / (n! (2n + 1)) for |x| < _SERIES_BELOW; beyond it
# erfc(x) = exp(-x^2) / sqrt(pi) / (x + (1/2) / (x + 1 / (x + (3/2) / (x + ...)))), the continued
# fraction evaluated from a fixed depth up. Per dtype: (Taylor terms, fraction depth) that reach
# its rounding.
_SERIES_BELOW = 2.0
_TERMS_AND_DEPTH = {np.dtype(np.float64): (32, 90), np.dtype(np.float32): (20, 40)}


def erf(x: np.ndarray) -> np.ndarray:
    """The error function, element-wise: in float32 for float32 x, in float64 otherwise."""
    arr = np.asarray(x)
    dt = np.dtype(np.float32) if arr.dtype == np.float32 else np.dtype(np.float64)
    terms, depth = _TERMS_AND_DEPTH[dt]
    arr = arr.astype(dt, copy=False)
    a = np.abs(arr)
    out = np.empty_like(a)
    near = a < _SERIES_BELOW
    s = a[near]
    z = s * s
    coefficients = [dt.type((-1) ** n / (math.factorial(n) * (2 * n + 1))) for n in range(terms)]
    acc = np.full_like(s, coefficients[-1])
    for c in coefficients[-2::-1]:
        acc = acc * z + c
    out[near] = dt.type(2 / math.sqrt(math.pi)) * s * acc
    b = a[~near]
    frac = b.copy()
    for k in range(depth, 0, -1):
        frac = b + dt.type(k / 2) / frac
    out[~near] = 1 - np.exp(-b * b) / (dt.type(math.sqrt(math.pi)) * frac)
    return np.copysign(out, arr)


def gelu(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(gelu(x), gelu'(x))`` for float32 or float64 x, in its dtype: x * Phi(x) and
    Phi(x) + x * phi(x)."""
    t = x.dtype.type
    cdf = t(0.5) * (1 + erf(x * t(1 / math.sqrt(2))))
    pdf = np.exp(t(-0.5) * x * x) * t(1 / math.sqrt(2 * math.pi))
    return x * cdf, cdf + x * pdf


def silu(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(silu(x), silu'(x))``: x * sigmoid(x) and s * (1 + x * (1 - s))."""
    s = 0.5 * (1 + np.tanh(0.5 * x))     # overflow-free logistic
    return x * s, s * (1 + x * (1 - s))
