"""Linear, Embedding, Dropout and element-wise activations, each with an explicit backward."""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import _checks, _dense
from .module import Module


def _as_input(x: Any, dtype: np.dtype, name: str = "x", kept: bool = False) -> np.ndarray:
    return _checks.float_array(x, name, dtype, kept=kept)


class Linear(Module):
    """``y = x @ weight.T + bias`` on the last axis of ``x`` (any leading axes).

    PyTorch's names, shapes and initialisation: ``weight`` (out, in) and ``bias`` (out,), both
    U(-1/sqrt(in), 1/sqrt(in)) drawn from ``np.random.default_rng(seed)``.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 dtype: Any = np.float32, seed: int | None = None) -> None:
        super().__init__(dtype)
        self.in_features = _checks.positive_int(in_features, "in_features")
        self.out_features = _checks.positive_int(out_features, "out_features")
        rng = np.random.default_rng(seed)
        bound = 1.0 / np.sqrt(self.in_features)
        self.weight = self._add_parameter("weight", rng.uniform(-bound, bound, (self.out_features, self.in_features)))
        self.bias = (self._add_parameter("bias", rng.uniform(-bound, bound, (self.out_features,)))
                     if bias else None)
        self._cache = None

    def get_config(self) -> dict[str, Any]:
        return {"in_features": self.in_features, "out_features": self.out_features,
                "bias": self.bias is not None, "dtype": self.dtype.name}

    def __call__(self, x: Any) -> np.ndarray:
        x = _as_input(x, self.dtype, kept=self.training)  # backward reads it
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"x: expected shape (..., in_features) with in_features = {self.in_features}, "
                             f"got {_checks.shape_str(x.shape)}")
        y = _dense.linear(x, self.weight, self.bias)
        self._cache = x if self.training else None
        return y

    def backward(self, dout: Any) -> np.ndarray:
        x = self._need_cache(self._cache)
        self._cache = None
        dout = _as_input(dout, self.dtype, "dout")
        _checks.expect_shape(dout, "dout", x.shape[:-1] + (self.out_features,), "(..., out_features) like y")
        return _dense.linear_backward(x, dout, self.weight, self._grads["weight"],
                                      self._grads["bias"] if self.bias is not None else None)

    def _drop_caches(self) -> None:
        self._cache = None

    def _extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}" + ("" if self.bias is not None else ", bias=False")


class Embedding(Module):
    """Lookup table ``weight`` (num_embeddings, embedding_dim), initialised N(0, 1) as PyTorch.

    ``padding_idx``: that row starts at zero and never receives a gradient, so padding tokens
    embed to zeros. ``backward(dout)`` accumulates into ``grads["weight"]`` and returns None
    (token ids have no gradient).
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                 dtype: Any = np.float32, seed: int | None = None) -> None:
        super().__init__(dtype)
        self.num_embeddings = _checks.positive_int(num_embeddings, "num_embeddings")
        self.embedding_dim = _checks.positive_int(embedding_dim, "embedding_dim")
        if padding_idx is not None:
            if not -self.num_embeddings <= padding_idx < self.num_embeddings:
                raise ValueError(f"padding_idx must be in [-{self.num_embeddings}, {self.num_embeddings}), "
                                 f"got {padding_idx}")
            padding_idx = int(padding_idx) % self.num_embeddings
        self.padding_idx = padding_idx
        w = np.random.default_rng(seed).standard_normal((self.num_embeddings, self.embedding_dim))
        if padding_idx is not None:
            w[padding_idx] = 0
        self.weight = self._add_parameter("weight", w)
        self._cache = None

    def get_config(self) -> dict[str, Any]:
        return {"num_embeddings": self.num_embeddings, "embedding_dim": self.embedding_dim,
                "padding_idx": self.padding_idx, "dtype": self.dtype.name}

    def __call__(self, ids: Any) -> np.ndarray:
        ids = np.asarray(torch_free(ids))
        if ids.dtype.kind not in "iu":
            raise TypeError(f"ids must be an integer array, got dtype {ids.dtype}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.num_embeddings):
            bad = ids[(ids < 0) | (ids >= self.num_embeddings)].flat[0]
            raise ValueError(f"ids: token {bad} is outside 0..{self.num_embeddings - 1}")
        self._cache = ids.copy() if self.training else None
        return self.weight[ids]

    def backward(self, dout: Any) -> None:
        ids = self._need_cache(self._cache)
        self._cache = None
        dout = _as_input(dout, self.dtype, "dout")
        _checks.expect_shape(dout, "dout", ids.shape + (self.embedding_dim,), "ids.shape + (embedding_dim,)")
        _dense.embedding_backward(ids, dout, self.padding_idx, self._grads["weight"])
        return None

    def _drop_caches(self) -> None:
        self._cache = None

    def _extra_repr(self) -> str:
        pad = "" if self.padding_idx is None else f", padding_idx={self.padding_idx}"
        return f"{self.num_embeddings}, {self.embedding_dim}{pad}"


def torch_free(value: Any) -> Any:
    if hasattr(value, "detach") and hasattr(value, "numpy"):
        return value.detach().cpu().numpy()
    return value


class Dropout(Module):
    """Inverted dropout: in training mode zeroes each element with probability ``p`` and scales
    the rest by 1/(1-p); identity in eval mode. Masks come from ``default_rng(seed)``."""

    def __init__(self, p: float = 0.5, dtype: Any = np.float32, seed: int | None = None) -> None:
        super().__init__(dtype)
        self.p = _checks.dropout(p)
        self._rng = np.random.default_rng(seed)
        self._cache = None

    def get_config(self) -> dict[str, Any]:
        return {"p": self.p, "dtype": self.dtype.name}

    def __call__(self, x: Any) -> np.ndarray:
        x = _as_input(x, self.dtype)
        if not self.training or self.p == 0.0:
            self._cache = "identity" if self.training else None
            return x
        if self.p >= 1.0:
            mask = np.zeros(x.shape, self.dtype)
        else:
            mask = (self._rng.random(x.shape) >= self.p).astype(self.dtype) / self.dtype.type(1 - self.p)
        self._cache = mask
        return x * mask

    def backward(self, dout: Any) -> np.ndarray:
        mask = self._need_cache(self._cache)
        self._cache = None
        dout = _as_input(dout, self.dtype, "dout")
        if isinstance(mask, str):
            return dout
        _checks.expect_shape(dout, "dout", mask.shape, "like the input")
        return dout * mask

    def _drop_caches(self) -> None:
        self._cache = None

    def _extra_repr(self) -> str:
        return f"p={self.p}"


class _Elementwise(Module):
    """An element-wise function with its derivative written from the cached output or input."""

    def __init__(self, dtype: Any = np.float32) -> None:
        super().__init__(dtype)
        self._cache = None

    def get_config(self) -> dict[str, Any]:
        return {"dtype": self.dtype.name}

    def __call__(self, x: Any) -> np.ndarray:
        x = _as_input(x, self.dtype, kept=self.training)  # backward reads it
        y = self._f(x)
        self._cache = (x, y) if self.training else None
        return y

    def backward(self, dout: Any) -> np.ndarray:
        x, y = self._need_cache(self._cache)
        self._cache = None
        dout = _as_input(dout, self.dtype, "dout")
        _checks.expect_shape(dout, "dout", y.shape, "like the output")
        return self._df(x, y, dout)

    def _drop_caches(self) -> None:
        self._cache = None


class Identity(_Elementwise):
    def _f(self, x):
        return x

    def _df(self, x, y, d):
        return d


class _Native(_Elementwise):
    """An activation computed by the building blocks' kernels (``kind``: their name for it)."""

    kind = "identity"
    slope = 0.0

    def _f(self, x):
        return _dense.activation(self.kind, x, self.slope)

    def _df(self, x, y, d):
        return _dense.activation_backward(self.kind, x, y, d, self.slope)


class Tanh(_Native):
    kind = "tanh"


class Sigmoid(_Native):
    kind = "sigmoid"


class ReLU(_Native):
    kind = "relu"


class LeakyReLU(_Native):
    kind = "leaky_relu"

    def __init__(self, negative_slope: float = 0.01, dtype: Any = np.float32) -> None:
        super().__init__(dtype)
        self.negative_slope = self.slope = float(negative_slope)

    def get_config(self) -> dict[str, Any]:
        return {"negative_slope": self.negative_slope, "dtype": self.dtype.name}


ACTIVATIONS = {"identity": Identity, "tanh": Tanh, "sigmoid": Sigmoid, "relu": ReLU, "leaky_relu": LeakyReLU}


def activation(name: str, dtype: Any = np.float32) -> Module:
    """An activation module by name: identity, tanh, sigmoid, relu, leaky_relu."""
    _checks.choice(name, "activation", tuple(ACTIVATIONS))
    return ACTIVATIONS[name](dtype=dtype)
