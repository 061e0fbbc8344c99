"""GELU (the exact one, x * Phi(x) with the normal CDF Phi, as ``torch.nn.functional.gelu``)
and SiLU, each with its derivative, in NumPy; and the error function they need, which NumPy
lacks: accurate to a few ulps of float64 (tests/test_xlstm_blocks.py checks it against
``math.erf``)."""
from __future__ import annotations

import math

import numpy as np

# erf(x) = 2/sqrt(pi) * x * sum_n (-x^2)^n / (n! (2n + 1)): the Taylor coefficients, enough terms
# for |x| < _SERIES_BELOW to reach float64 rounding.
_SERIES_BELOW = 2.0
_TAYLOR = [(-1) ** n / (math.factorial(n) * (2 * n + 1)) for n in range(32)]
# Beyond it, erfc(x) = exp(-x^2) / sqrt(pi) / (x + (1/2) / (x + 1 / (x + (3/2) / (x + ...)))),
# the continued fraction evaluated from this depth up (converged for x >= _SERIES_BELOW).
_FRACTION_DEPTH = 90


def erf(x: np.ndarray) -> np.ndarray:
    """The error function, element-wise, computed in float64."""
    x = np.asarray(x, dtype=np.float64)
    a = np.abs(x)
    out = np.empty_like(a)
    near = a < _SERIES_BELOW
    s = a[near]
    z = s * s
    acc = np.full_like(s, _TAYLOR[-1])
    for c in _TAYLOR[-2::-1]:
        acc = acc * z + c
    out[near] = (2 / math.sqrt(math.pi)) * s * acc
    b = a[~near]
    frac = b.copy()
    for k in range(_FRACTION_DEPTH, 0, -1):
        frac = b + (k / 2) / frac
    out[~near] = 1 - np.exp(-b * b) / (math.sqrt(math.pi) * frac)
    return np.copysign(out, x)


def gelu(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(gelu(x), gelu'(x))`` in x's dtype: x * Phi(x) and Phi(x) + x * phi(x)."""
    xd = np.asarray(x, dtype=np.float64)
    cdf = 0.5 * (1 + erf(xd * (1 / math.sqrt(2))))
    pdf = np.exp(-0.5 * xd * xd) * (1 / math.sqrt(2 * math.pi))
    return (xd * cdf).astype(x.dtype, copy=False), (cdf + xd * pdf).astype(x.dtype, copy=False)


def silu(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(silu(x), silu'(x))``: x * sigmoid(x) and s * (1 + x * (1 - s))."""
    s = 0.5 * (1 + np.tanh(0.5 * x))     # overflow-free logistic
    return x * s, s * (1 + x * (1 - s))
