"""NumPy reference of quantized inference (int8 and bfloat16 weights), and the weight
quantization that ``pyrnn.quantize`` itself uses. See docs/quantization.md.

int8 (the same arithmetic as the native kernels, csrc/kernels/quant_gemm.cpp)::

    weights    w[n, :] ~ s_w[n] * q_w[n, :]      s_w = max|w[n, :]| / 127, q_w in [-127, 127]
    activations a[m, :] ~ s_a[m] * q_a[m, :]      per row, at run time (each x_t row, each
                                                  h_{t-1} row, each step)
    product    C[m, n] = (float32(sum_k q_a[m, k] * q_w[n, k]) * s_a[m]) * s_w[n]

with the integer sum exact (int32), ``q = rint(v * (127 / max|v|))`` (round half to even) and
``127 / max|v|`` and ``max|v| / 127`` rounded to float32. A row with NaN or Inf gets the scale
NaN (its products are NaN); a row with ``max|v| < 1e-30`` quantizes to zeros. The native
products equal :func:`int8_product` bit for bit.

bf16: weights and each product's activations rounded to bfloat16 (to nearest even), products
summed in float32 in the kernels' order: the native products equal :func:`bf16_product` bit for
bit too (denormal values aside, which the kernels flush to zero).

Everything else (bias, gates, cell state) is float32 as in :mod:`pyrnn.reference`, whose time
loop :func:`layer_forward` reuses: the weights are passed as :class:`QuantizedMatrix` objects,
whose products are the quantized ones.
"""
from __future__ import annotations

import numpy as np

from . import reference

__all__ = ["quantize_weight", "quantize_rows", "int8_product", "to_bfloat16", "from_bfloat16",
           "bf16_product", "QuantizedMatrix", "layer_forward"]

#: a row whose largest magnitude is below this quantizes to zeros
MIN_ROW_MAX = np.float32(1e-30)
_NONFINITE = np.uint32(0x7F800000)


def quantize_rows(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row of ``v`` (M, K) float32 quantized symmetrically: ``(q int8 (M, K), scale
    float32 (M,))`` with ``v[m] ~ scale[m] * q[m]``."""
    v = np.ascontiguousarray(v, dtype=np.float32)
    magnitude = v.view(np.uint32) & np.uint32(0x7FFFFFFF)     # NaN > Inf > finite, as integers
    max_bits = magnitude.max(axis=1, initial=np.uint32(0)) if v.shape[1] else np.zeros(v.shape[0], np.uint32)
    amax = max_bits.view(np.float32)
    nonfinite = max_bits >= _NONFINITE
    usable = ~nonfinite & (amax >= MIN_ROW_MAX)
    safe = np.where(usable, amax, np.float32(1))
    inv = (np.float32(127) / safe).astype(np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        q = np.clip(np.rint(v * inv[:, None]), -127, 127)
    q = np.where(usable[:, None], q, 0).astype(np.int8)
    scale = np.where(usable, safe / np.float32(127), np.where(nonfinite, np.float32(np.nan), np.float32(0)))
    return q, scale.astype(np.float32)


def quantize_weight(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A weight matrix (N, K) quantized per output row (channel): ``(q int8, scale float32)``."""
    return quantize_rows(w)


def int8_product(a: np.ndarray, q_w: np.ndarray, s_w: np.ndarray) -> np.ndarray:
    """``a @ w.T`` for ``w ~ s_w[:, None] * q_w``, with ``a`` quantized per row: float32 (M, N)."""
    q_a, s_a = quantize_rows(a)
    acc = (q_a.astype(np.int64) @ q_w.astype(np.int64).T).astype(np.int32)
    with np.errstate(invalid="ignore"):
        return (acc.astype(np.float32) * s_a[:, None]) * s_w[None, :]


def to_bfloat16(v: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits (uint16), rounded to nearest even; NaN stays NaN."""
    bits = np.ascontiguousarray(v, dtype=np.float32).view(np.uint32)
    rounded = ((bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16))
    nan = (bits & np.uint32(0x7FFFFFFF)) > _NONFINITE
    return np.where(nan, (bits >> np.uint32(16)) | np.uint32(0x40), rounded).astype(np.uint16)


def from_bfloat16(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bits (uint16) -> float32 (exact)."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)


def bf16_product(a: np.ndarray, w_bits: np.ndarray) -> np.ndarray:
    """``a @ w.T`` with ``a`` rounded to bfloat16 and ``w`` given as bfloat16 bits: float32.

    The sum runs over k in pairs, k odd before k even (as vdpbf16ps adds them); each product of
    two bfloat16 values is exact in float32, so every step rounds once, like the kernels' FMAs."""
    a16 = from_bfloat16(to_bfloat16(a))
    w16 = from_bfloat16(w_bits)
    K = a16.shape[1]
    acc = np.zeros((a16.shape[0], w16.shape[0]), np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        for k0 in range(0, K, 2):
            for k in (k0 + 1, k0):
                if k < K:
                    acc += a16[:, k, None] * w16[None, :, k]
    return acc


class QuantizedMatrix:
    """A weight matrix (N, K) in int8 (``q``, ``scale``) or bfloat16 (``bits``) that the time
    loop of :func:`pyrnn.reference.layer_forward` multiplies as ``a @ w.T`` (rows via ``w[i:j]``)."""

    __array_ufunc__ = None  # a @ m.T defers to the product below

    def __init__(self, q: np.ndarray, scale: np.ndarray | None = None) -> None:
        self.q, self.scale = q, scale
        self.shape = q.shape

    def __getitem__(self, rows: slice) -> "QuantizedMatrix":
        return QuantizedMatrix(self.q[rows], None if self.scale is None else self.scale[rows])

    @property
    def T(self) -> "_Transposed":  # noqa: N802 (numpy's name)
        return _Transposed(self)

    def product(self, a: np.ndarray) -> np.ndarray:
        a = np.asarray(a, dtype=np.float32)
        if a.shape[0] == 0:
            return np.zeros((0, self.shape[0]), np.float32)
        if self.scale is None:
            return bf16_product(a, self.q)
        return int8_product(a, self.q, self.scale)


class _Transposed:
    __array_ufunc__ = None

    def __init__(self, m: QuantizedMatrix) -> None:
        self.m = m

    def __rmatmul__(self, a: np.ndarray) -> np.ndarray:
        return self.m.product(a)


def layer_forward(cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, reverse):
    """One quantized layer and direction over a sequence: as :func:`pyrnn.reference.layer_forward`
    (inference) with the weights as :class:`QuantizedMatrix`. Returns ``(y, h_n, c_n or None)``."""
    y, h_n, c_n, _ = reference.layer_forward(cell, np.asarray(x, np.float32), h0, c0, w_ih, w_hh, b_ih, b_hh,
                                             w_hr, lengths, reverse, False, None)
    return y, h_n, c_n
