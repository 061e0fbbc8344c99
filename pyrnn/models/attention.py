"""Attention over encoder outputs: Luong dot and general (multiplicative) scores and Bahdanau's
additive score, with a masked softmax and an explicit backward.

``context, weights = attn(query, keys, mask)``: query (B, Tq, Hq) (decoder outputs), keys
(B, Tk, Hk) (encoder outputs, also the values), mask (B, Tk) bool (valid source positions);
context (B, Tq, Hk), weights (B, Tq, Tk) summing to 1 over valid positions.
``dquery, dkeys = attn.backward(dcontext)``.

Scores: dot ``q . k`` (Hq == Hk); general ``q W k`` with W (Hq, Hk); bahdanau (additive)
``v . tanh(W_q q + W_k k)`` with W_q (A, Hq), W_k (A, Hk), v (A,).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import _checks
from ..nn.module import Module

KINDS = ("dot", "general", "bahdanau")


class Attention(Module):
    def __init__(self, kind: str, query_size: int, key_size: int, attention_size: int | None = None,
                 dtype: Any = np.float32, seed: int | None = None) -> None:
        super().__init__(dtype)
        self.kind = _checks.choice(kind, "attention", KINDS)
        self.query_size = _checks.positive_int(query_size, "query_size")
        self.key_size = _checks.positive_int(key_size, "key_size")
        rng = np.random.default_rng(seed)
        if self.kind == "dot" and query_size != key_size:
            raise ValueError(f"dot attention needs query_size == key_size, got {query_size} and {key_size} "
                             "(use 'general' or 'bahdanau' for different sizes)")
        if self.kind == "general":
            b = 1.0 / np.sqrt(key_size)
            self._add_parameter("weight", rng.uniform(-b, b, (query_size, key_size)))
        elif self.kind == "bahdanau":
            A = self.attention_size = _checks.positive_int(attention_size or query_size, "attention_size")
            self._add_parameter("query_weight", rng.uniform(-1, 1, (A, query_size)) / np.sqrt(query_size))
            self._add_parameter("key_weight", rng.uniform(-1, 1, (A, key_size)) / np.sqrt(key_size))
            self._add_parameter("v", rng.uniform(-1, 1, (A,)) / np.sqrt(A))
        self._cache = None

    def __call__(self, query: Any, keys: Any, mask: Any = None) -> tuple[np.ndarray, np.ndarray]:
        q = _checks.float_array(query, "query", self.dtype, kept=self.training)  # backward reads both
        k = _checks.float_array(keys, "keys", self.dtype, kept=self.training)
        if q.ndim != 3 or q.shape[2] != self.query_size:
            raise ValueError(f"query: expected shape (B, Tq, {self.query_size}), got {_checks.shape_str(q.shape)}")
        if k.ndim != 3 or k.shape[0] != q.shape[0] or k.shape[2] != self.key_size:
            raise ValueError(f"keys: expected shape (B={q.shape[0]}, Tk, {self.key_size}), "
                             f"got {_checks.shape_str(k.shape)}")
        p = self._params
        extra: dict[str, Any] = {}
        if self.kind == "dot":
            scores = q @ k.transpose(0, 2, 1)
        elif self.kind == "general":
            qw = q @ p["weight"]
            scores = qw @ k.transpose(0, 2, 1)
            extra["qw"] = qw
        else:
            u = q @ p["query_weight"].T                      # (B, Tq, A)
            w = k @ p["key_weight"].T                        # (B, Tk, A)
            e = np.tanh(u[:, :, None, :] + w[:, None, :, :])  # (B, Tq, Tk, A)
            scores = e @ p["v"]
            extra["e"] = e
        if mask is not None:
            mask = np.asarray(mask, bool)
            _checks.expect_shape(mask, "mask", (k.shape[0], k.shape[1]), "(B, Tk)")
            scores = np.where(mask[:, None, :], scores, -np.inf)
        scores = scores - scores.max(axis=-1, keepdims=True)
        a = np.exp(scores)
        a /= a.sum(axis=-1, keepdims=True)
        a = a.astype(self.dtype, copy=False)
        context = a @ k
        self._cache = (q, k, a, extra) if self.training else None
        return context, a

    def backward(self, dcontext: Any) -> tuple[np.ndarray, np.ndarray]:
        q, k, a, extra = self._need_cache(self._cache)
        self._cache = None
        dc = _checks.float_array(dcontext, "dcontext", self.dtype)
        _checks.expect_shape(dc, "dcontext", (q.shape[0], q.shape[1], k.shape[2]), "(B, Tq, Hk) like context")
        p, g = self._params, self._grads
        da = dc @ k.transpose(0, 2, 1)                         # (B, Tq, Tk)
        dk = a.transpose(0, 2, 1) @ dc                         # (B, Tk, Hk)
        ds = a * (da - (da * a).sum(axis=-1, keepdims=True))   # softmax backward; 0 where masked
        if self.kind == "dot":
            dq = ds @ k
            dk += ds.transpose(0, 2, 1) @ q
        elif self.kind == "general":
            dqw = ds @ k
            dk += ds.transpose(0, 2, 1) @ extra["qw"]
            g["weight"] += q.reshape(-1, self.query_size).T @ dqw.reshape(-1, self.key_size)
            dq = dqw @ p["weight"].T
        else:
            e = extra["e"]
            g["v"] += np.einsum("bqk,bqka->a", ds, e)
            dpre = ds[..., None] * p["v"] * (1 - e * e)        # (B, Tq, Tk, A)
            du, dw = dpre.sum(axis=2), dpre.sum(axis=1)
            A = self.attention_size
            g["query_weight"] += du.reshape(-1, A).T @ q.reshape(-1, self.query_size)
            g["key_weight"] += dw.reshape(-1, A).T @ k.reshape(-1, self.key_size)
            dq = du @ p["query_weight"]
            dk += dw @ p["key_weight"]
        return dq, dk

    def _drop_caches(self) -> None:
        self._cache = None

    def _extra_repr(self) -> str:
        return f"{self.kind!r}, query_size={self.query_size}, key_size={self.key_size}"
