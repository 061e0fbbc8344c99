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

from .. import _checks, _dense
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
            scores = _dense.matmul(q, k, trans_b=True)
        elif self.kind == "general":
            qw = _dense.matmul(q, p["weight"])
            scores = _dense.matmul(qw, k, trans_b=True)
            extra["qw"] = qw
        else:
            A = self.attention_size
            u = _dense.matmul(q, p["query_weight"], trans_b=True)          # (B, Tq, A)
            w = _dense.matmul(k, p["key_weight"], trans_b=True)            # (B, Tk, A)
            e = _dense.activation("tanh", u[:, :, None, :] + w[:, None, :, :])  # (B, Tq, Tk, A)
            scores = _dense.matmul(e.reshape(-1, A), p["v"].reshape(A, 1)).reshape(e.shape[:3])
            extra["e"] = e
        if mask is not None:
            mask = np.asarray(mask, bool)
            _checks.expect_shape(mask, "mask", (k.shape[0], k.shape[1]), "(B, Tk)")
            scores = np.where(mask[:, None, :], scores, -np.inf).astype(self.dtype, copy=False)
        a = _dense.softmax(scores)
        context = _dense.matmul(a, k)
        self._cache = (q, k, a, extra) if self.training else None
        return context, a

    def backward(self, dcontext: Any) -> tuple[np.ndarray, np.ndarray]:
        q, k, a, extra = self._need_cache(self._cache)
        self._cache = None
        dc = _checks.float_array(dcontext, "dcontext", self.dtype)
        _checks.expect_shape(dc, "dcontext", (q.shape[0], q.shape[1], k.shape[2]), "(B, Tq, Hk) like context")
        p, g = self._params, self._grads
        da = _dense.matmul(dc, k, trans_b=True)                 # (B, Tq, Tk)
        dk = _dense.matmul(a, dc, trans_a=True)                 # (B, Tk, Hk)
        ds = _dense.softmax_backward(a, da)                     # 0 where masked
        if self.kind == "dot":
            dq = _dense.matmul(ds, k)
            dk += _dense.matmul(ds, q, trans_a=True)
        elif self.kind == "general":
            dqw = _dense.matmul(ds, k)
            dk += _dense.matmul(ds, extra["qw"], trans_a=True)
            _dense.matmul_into(g["weight"], q.reshape(-1, self.query_size), dqw.reshape(-1, self.key_size),
                               trans_a=True)
            dq = _dense.matmul(dqw, p["weight"], trans_b=True)
        else:
            e, A = extra["e"], self.attention_size
            _dense.matmul_into(g["v"].reshape(1, A), ds.reshape(1, -1), e.reshape(-1, A))
            dpre = _dense.activation_backward("tanh", e, e, ds[..., None] * p["v"])   # (B, Tq, Tk, A)
            du, dw = dpre.sum(axis=2), dpre.sum(axis=1)
            _dense.matmul_into(g["query_weight"], du.reshape(-1, A), q.reshape(-1, self.query_size), trans_a=True)
            _dense.matmul_into(g["key_weight"], dw.reshape(-1, A), k.reshape(-1, self.key_size), trans_a=True)
            dq = _dense.matmul(du, p["query_weight"])
            dk += _dense.matmul(dw, p["key_weight"])
        return dq, dk

    def _drop_caches(self) -> None:
        self._cache = None

    def _extra_repr(self) -> str:
        return f"{self.kind!r}, query_size={self.query_size}, key_size={self.key_size}"
