"""LayerNorm and GroupNorm over the last axis (channels last), each with an explicit backward.

``LayerNorm(C)``: normalises each position's C features to zero mean and unit variance, then
``* weight + bias`` (as ``torch.nn.LayerNorm(C)``). ``GroupNorm(G, C)``: the same within each of
G contiguous groups of C/G channels, with per-channel weight and bias (as
``torch.nn.GroupNorm(G, C)`` applied with the channels on the last axis; the xLSTM blocks'
per-head norm is GroupNorm with one group per head). The variance is the biased one, as
PyTorch's.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import _checks
from .module import Module


def group_norm_forward(x: np.ndarray, groups: int, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """x (..., C) normalised within ``groups`` contiguous channel groups: ``xhat`` (..., C) and
    ``rstd`` (..., groups, 1), the reciprocal standard deviations ``backward`` needs."""
    g = x.reshape(x.shape[:-1] + (groups, -1))
    mu = g.mean(axis=-1, keepdims=True)
    xc = g - mu
    rstd = 1.0 / np.sqrt((xc * xc).mean(axis=-1, keepdims=True) + eps)
    return (xc * rstd).reshape(x.shape), rstd


def group_norm_backward(dxhat: np.ndarray, xhat: np.ndarray, rstd: np.ndarray, groups: int) -> np.ndarray:
    """dL/dx from dL/dxhat (..., C) through the normalisation of :func:`group_norm_forward`."""
    shape = dxhat.shape[:-1] + (groups, -1)
    d, xh = dxhat.reshape(shape), xhat.reshape(shape)
    dx = rstd * (d - d.mean(axis=-1, keepdims=True) - xh * (d * xh).mean(axis=-1, keepdims=True))
    return dx.reshape(dxhat.shape)


class GroupNorm(Module):
    """Group normalisation over the last axis: ``y = xhat * weight + bias`` with ``xhat``
    normalised within ``num_groups`` contiguous groups of channels. ``affine=False``: no weight
    or bias; ``bias=False``: weight only (as the xLSTM blocks' norms)."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True,
                 bias: bool = True, dtype: Any = np.float32) -> None:
        super().__init__(dtype)
        self.num_groups = _checks.positive_int(num_groups, "num_groups")
        self.num_channels = _checks.positive_int(num_channels, "num_channels")
        if self.num_channels % self.num_groups:
            raise ValueError(f"num_channels = {num_channels} must be a multiple of num_groups = {num_groups}")
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.eps, self.affine = float(eps), bool(affine)
        self.weight = self._add_parameter("weight", np.ones(self.num_channels)) if affine else None
        self.bias = self._add_parameter("bias", np.zeros(self.num_channels)) if affine and bias else None
        self._cache = None

    def __call__(self, x: Any) -> np.ndarray:
        x = _checks.float_array(x, "x", self.dtype)
        if x.ndim < 1 or x.shape[-1] != self.num_channels:
            raise ValueError(f"x: expected shape (..., {self.num_channels}) (channels last), "
                             f"got {_checks.shape_str(x.shape)}")
        xhat, rstd = group_norm_forward(x, self.num_groups, self.eps)
        y = xhat * self.weight if self.weight is not None else xhat.copy()
        if self.bias is not None:
            y += self.bias
        self._cache = (xhat, rstd) if self.training else None
        return y.astype(self.dtype, copy=False)

    def backward(self, dout: Any) -> np.ndarray:
        xhat, rstd = self._need_cache(self._cache)
        self._cache = None
        d = _checks.float_array(dout, "dout", self.dtype)
        _checks.expect_shape(d, "dout", xhat.shape, "like the output")
        C = self.num_channels
        if self.weight is not None:
            self._grads["weight"] += (d * xhat).reshape(-1, C).sum(axis=0)
            d = d * self.weight
        if self.bias is not None:
            self._grads["bias"] += _checks.float_array(dout, "dout", self.dtype).reshape(-1, C).sum(axis=0)
        return group_norm_backward(d, xhat, rstd, self.num_groups).astype(self.dtype, copy=False)

    def _drop_caches(self) -> None:
        self._cache = None

    def _extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}" + ("" if self.affine else ", affine=False")


class LayerNorm(GroupNorm):
    """Layer normalisation over the last axis (``torch.nn.LayerNorm(normalized_shape)`` for an
    int): one group of all channels. ``elementwise_affine=False``: no weight or bias."""

    def __init__(self, normalized_shape: int, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, dtype: Any = np.float32) -> None:
        super().__init__(1, normalized_shape, eps, elementwise_affine, bias, dtype)

    def _extra_repr(self) -> str:
        return f"{self.num_channels}, eps={self.eps}" + ("" if self.affine else ", elementwise_affine=False")
