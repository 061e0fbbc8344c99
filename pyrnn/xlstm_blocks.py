"""The xLSTM block stack (pre-norm residual blocks, sLSTM and mLSTM blocks mixable) and the
weight mapping from the official ``xlstm`` package.

Blocks (E = embedding_dim, time-major rows; LN = LayerNorm with a weight, no bias; P =
proj_size, F = ffn_size, NH = num_heads). The parts in [brackets] are options, each off by
default; with all of them on (and ``ffn_activation="gelu"``) the blocks are the official
package's ``mLSTMBlock`` / ``sLSTMBlock`` and :func:`from_official` loads their weights.

* mLSTM block, the paper's *pre up-projection* block::

      u = LN(x);  a = u W_a^T + b_a;  g = u W_g^T + b_g             (E -> P each)
      c = [silu(conv(a))]  (c = a without the convolution)
      h~ = MLSTM(c)                                                 (dense q, k, v, i, f from c)
         | MLSTM_cell(q = Wq c, k = Wk c, v = Wv a)                 [qkv_blocksize: headwise q, k,
                                                                     v; gates i, f from (q, k, v)]
      h = [GN(h~)] + [skip * c]
      y = x + (h * silu(g)) W_down^T + b_down                       (no output gate: silu(g) gates)

* sLSTM block, the paper's *post up-projection* block::

      u = LN1(x);  s = SLSTM(u)       (E -> E, head-wise gate projections, as the official layer)
         | SLSTM(i, f from [silu(conv(u))], z, o from u)            [conv_kernel_size]
      y1 = x + [GN(s)]
      v = LN2(y1);  y = y1 + (act(v W_g^T + b_g) * (v W_a^T + b_a)) W_down^T + b_down
                                                  (gated feed-forward E -> F -> E, act silu or gelu)

and a final LN after the last block ([post_norm], on by default). ``conv``: causal depthwise
convolution with bias (``pyrnn.nn.conv``); ``GN``: group norm with one group per head, weight
only, eps 1e-5; ``skip``: a learnable per-channel weight (starts at 1).

Forward and backward run the native sLSTM/mLSTM kernels; the dense parts pyrnn's own products
(``pyrnn._dense``); norms, convolution and gates are element-wise NumPy passes.

Headwise q, k, v: the mLSTM kernel projects its input itself, so the block hands it the input
(c, a) (2P columns) and the projection the headwise weights compose to (rows q, k, v
block-diagonal, rows i, f the gate weights times them), made from the parameters at each call;
its gradient is mapped back onto the parameters. The kernel's projection is then a dense
(3P + 2NH) x 2P product: twice the dense block's, where the official computes q, k, v with
P x qkv_blocksize weights each.
"""
from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from . import _checks, _dense
from ._module import Module, PerThread
from .nn.conv import causal_conv1d_backward, causal_conv1d_forward
from .nn.gelu import gelu, silu
from .nn.norm import group_norm_backward, group_norm_forward

LN_EPS = 1e-5            # the pre-norms', the post-norm's and the group norms' epsilon
MLSTM_EPS = 1e-6         # added to the mLSTM denominator, as the official package


def _norm_forward(x, w, groups):
    """(xhat * w, (xhat, rstd)) normalised within ``groups`` channel groups."""
    xhat, rstd = group_norm_forward(x, groups, LN_EPS)
    return xhat * w, (xhat, rstd)


def _norm_backward(dy, w, cache, dw, groups):
    xhat, rstd = cache
    dw += (dy * xhat).reshape(-1, xhat.shape[-1]).sum(axis=0)
    return group_norm_backward(dy * w, xhat, rstd, groups)


def _non_negative_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    return int(value)


def _block_diagonal(w: np.ndarray) -> np.ndarray:
    """(NB, bs, bs) blocks -> the (NB*bs, NB*bs) block-diagonal matrix, block i at (i, i)."""
    nb, bs, _ = w.shape
    full = np.zeros((nb, bs, nb, bs), w.dtype)
    full[np.arange(nb), :, np.arange(nb), :] = w
    return full.reshape(nb * bs, nb * bs)


def _diagonal_blocks(m: np.ndarray, bs: int) -> np.ndarray:
    """The (NB, bs, bs) diagonal blocks of an (NB*bs, NB*bs) matrix."""
    nb = m.shape[0] // bs
    return m.reshape(nb, bs, nb, bs)[np.arange(nb), :, np.arange(nb), :]


class xLSTMBlockStack(Module):
    """A stack of residual xLSTM blocks as a sequence encoder: ``y = stack(x, lengths=None)``
    with x (T, B, E) (or batch_first, or unbatched (T, E)) and y of the same shape;
    ``dx = stack.backward(dy)``. ``blocks`` is a string or list of "m" / "s" (e.g. "msm").

    Options (see the module docstring for where each acts): ``conv_kernel_size`` (0: none),
    ``qkv_blocksize`` (None: dense q, k, v), ``group_norm``, ``learnable_skip``,
    ``ffn_activation`` ("silu" or "gelu"), ``post_norm``.

    Parameters are named ``blocks.{k}.{part}`` (inner layers: ``blocks.{k}.xlstm.*``) plus
    ``post_norm.weight``; ``parameters()``, ``grads``, ``state_dict()`` as the layers.
    """

    _tape = PerThread()      # this thread's last training-mode forward, for its backward

    def __init__(self, embedding_dim: int, blocks: Any = "ms", num_heads: int = 4,
                 proj_factor: float = 2.0, ffn_factor: float = 4.0 / 3.0, batch_first: bool = False,
                 conv_kernel_size: int = 0, qkv_blocksize: int | None = None, group_norm: bool = False,
                 learnable_skip: bool = False, ffn_activation: str = "silu", post_norm: bool = True,
                 dtype: Any = np.float32, seed: int | None = None) -> None:
        from .xlstm import MLSTM, SLSTM

        Module.__init__(self, dtype)
        E = self.embedding_dim = _checks.positive_int(embedding_dim, "embedding_dim")
        self.block_types = list(blocks)
        if not self.block_types or any(b not in ("m", "s") for b in self.block_types):
            raise ValueError(f"blocks must be a non-empty sequence of 'm' and 's', got {blocks!r}")
        NH = self.num_heads = _checks.positive_int(num_heads, "num_heads")
        self.batch_first = bool(batch_first)
        self.conv_kernel_size = K = _non_negative_int(conv_kernel_size, "conv_kernel_size")
        self.qkv_blocksize = None if qkv_blocksize is None else _checks.positive_int(qkv_blocksize, "qkv_blocksize")
        self.group_norm, self.learnable_skip = bool(group_norm), bool(learnable_skip)
        self.ffn_activation = _checks.choice(ffn_activation, "ffn_activation", ("silu", "gelu"))
        self.post_norm = bool(post_norm)
        rng = np.random.default_rng(seed)
        P = int(round(proj_factor * E / NH)) * NH
        F = int(round(ffn_factor * E))
        if P < NH or E % NH:
            raise ValueError(f"embedding_dim = {E} and proj_factor * embedding_dim must be multiples of "
                             f"num_heads = {NH}")
        bs = self.qkv_blocksize
        if bs is not None and P % bs:
            raise ValueError(f"qkv_blocksize = {bs} must divide the up-projection size {P}")
        self.proj_size, self.ffn_size = P, F
        shapes: dict[str, tuple[int, ...]] = {}
        for k, kind in enumerate(self.block_types):
            pre = f"blocks.{k}."
            width = P if kind == "m" else E        # the convolved and normed channels
            if kind == "m":
                shapes.update({pre + "norm.weight": (E,), pre + "up_a.weight": (P, E), pre + "up_a.bias": (P,),
                               pre + "up_g.weight": (P, E), pre + "up_g.bias": (P,),
                               pre + "down.weight": (E, P), pre + "down.bias": (E,)})
                if bs is not None:
                    for name in ("q_proj", "k_proj", "v_proj"):
                        shapes.update({pre + name + ".weight": (P // bs, bs, bs), pre + name + ".bias": (P,)})
                    for name in ("igate", "fgate"):
                        shapes.update({pre + name + ".weight": (NH, 3 * P), pre + name + ".bias": (NH,)})
                if self.learnable_skip:
                    shapes[pre + "skip.weight"] = (P,)
            else:
                shapes.update({pre + "norm.weight": (E,), pre + "ffn_norm.weight": (E,),
                               pre + "up_a.weight": (F, E), pre + "up_a.bias": (F,),
                               pre + "up_g.weight": (F, E), pre + "up_g.bias": (F,),
                               pre + "down.weight": (E, F), pre + "down.bias": (E,)})
            if K:
                shapes.update({pre + "conv.weight": (width, K), pre + "conv.bias": (width,)})
            if self.group_norm:
                shapes[pre + "group_norm.weight"] = (P if kind == "m" else E,)
        if self.post_norm:
            shapes["post_norm.weight"] = (E,)
        self._create_parameters(shapes, E, rng)
        for name, p in self._params.items():
            self._initialise(name, p, rng)
        self.layers: list[Any] = []        # each block's MLSTM / SLSTM layer (None: headwise mLSTM)
        for k, kind in enumerate(self.block_types):
            sub_seed = int(rng.integers(2**31))
            layer: Any
            if kind == "m":
                layer = None if bs is not None else MLSTM(P, P, num_heads=NH, output_gate=False,
                                                          eps=MLSTM_EPS, dtype=self.dtype, seed=sub_seed)
            else:
                # with the convolution the layer reads (convolved, plain) per head: (T, B, 2E)
                layer = SLSTM(2 * E if K else E, E, num_heads=NH, input_projection="headwise",
                              dtype=self.dtype, seed=sub_seed)
                if K:
                    layer._params["weight_ih_l0"] *= self._slstm_input_mask()
            if layer is not None:
                self._add_module(f"blocks.{k}.xlstm", layer)
            self.layers.append(layer)
        self._tape = None

    def _initialise(self, name: str, p: np.ndarray, rng: np.random.Generator) -> None:
        """The official package's initialisations where it has the part, pyrnn's otherwise."""
        part = name.split(".", 2)[2] if name.startswith("blocks.") else name    # e.g. "up_a.weight"
        if part.endswith("norm.weight") or part == "skip.weight":
            p[...] = 1
        elif part == "fgate.bias":
            p[...] = np.linspace(3.0, 6.0, p.shape[0])     # an open forget gate
        elif part == "igate.bias":
            p[...] = rng.normal(0.0, 0.1, p.shape)
        elif part.startswith("conv."):       # PyTorch's Conv1d default: U(+-1/sqrt(fan-in)), fan-in K
            bound = 1 / np.sqrt(self.conv_kernel_size)
            p[...] = rng.uniform(-bound, bound, p.shape)
        elif part.endswith(".bias") or part in ("igate.weight", "fgate.weight"):
            p[...] = 0
        elif part.startswith(("q_proj", "k_proj", "v_proj")):
            p[...] = rng.standard_normal(p.shape) * np.sqrt(2.0 / (5 * self.embedding_dim))
        else:  # small init, scaled by the fan-in
            p[...] = rng.standard_normal(p.shape) * np.sqrt(2.0 / (5 * p.shape[1]))

    def _slstm_input_mask(self) -> np.ndarray:
        """(4E, 2E/NH) ones where the convolved sLSTM's gates read: rows i, f the convolved half
        of each head's columns, rows z, o the plain half. The other weights stay zero (their
        gradients are masked too)."""
        E, NH = self.embedding_dim, self.num_heads
        DH = E // NH
        mask = np.zeros((4, E, 2 * DH), self.dtype)
        mask[:2, :, :DH] = 1
        mask[2:, :, DH:] = 1
        return mask.reshape(4 * E, 2 * DH)

    def _drop_caches(self) -> None:
        self._tape = None

    # -- the parts ---------------------------------------------------------------------------

    def _conv(self, pre, x):
        """(silu(conv(x)), its cache) or (x, None) without the convolution."""
        if not self.conv_kernel_size:
            return x, None
        p = self._params
        pre_act = causal_conv1d_forward(x, p[pre + "conv.weight"], p[pre + "conv.bias"])
        c, dc = silu(pre_act)
        return c, (x, dc)

    def _conv_backward(self, pre, dc, cache):
        if cache is None:
            return dc
        x, dsilu = cache
        gr = self._grads
        return causal_conv1d_backward(x, dc * dsilu, self._params[pre + "conv.weight"],
                                      gr[pre + "conv.weight"], gr[pre + "conv.bias"])

    def _headwise_projection(self, pre):
        """The mLSTM kernel's projection of (c, a) that the headwise parameters compose to:
        (weight (3P + 2NH, 2P), bias (3P + 2NH,), the block-diagonal q, k, v matrices)."""
        p, P = self._params, self.proj_size
        Q, Kd, V = (_block_diagonal(p[pre + n + ".weight"]) for n in ("q_proj", "k_proj", "v_proj"))
        w_gates = np.concatenate([p[pre + "igate.weight"], p[pre + "fgate.weight"]])       # (2NH, 3P)
        b_qkv = np.concatenate([p[pre + n + ".bias"] for n in ("q_proj", "k_proj", "v_proj")])
        w = np.zeros((3 * P + len(w_gates), 2 * P), self.dtype)
        w[:P, :P], w[P:2 * P, :P], w[2 * P:3 * P, P:] = Q, Kd, V
        w[3 * P:, :P] = _dense.matmul(w_gates[:, :P], Q) + _dense.matmul(w_gates[:, P:2 * P], Kd)
        w[3 * P:, P:] = _dense.matmul(w_gates[:, 2 * P:], V)
        b_gates = np.concatenate([p[pre + "igate.bias"], p[pre + "fgate.bias"]])
        b = np.concatenate([b_qkv, b_gates + _dense.matmul(w_gates, b_qkv[:, None])[:, 0]])
        return w, b, (Q, Kd, V, w_gates, b_qkv)

    def _headwise_projection_backward(self, pre, dw, db, parts):
        """Accumulates the parameters' gradients from those of the composed projection."""
        Q, Kd, V, w_gates, b_qkv = parts
        P, NH, bs, gr = self.proj_size, self.num_heads, self.qkv_blocksize, self._grads
        dw_c, dw_a, db_gates = dw[3 * P:, :P], dw[3 * P:, P:], db[3 * P:]
        db_outer = _dense.matmul(db_gates[:, None], b_qkv[None, :])                      # (2NH, 3P)
        dw_gates = np.concatenate([_dense.matmul(dw_c, Q, trans_b=True), _dense.matmul(dw_c, Kd, trans_b=True),
                                   _dense.matmul(dw_a, V, trans_b=True)], axis=1) + db_outer
        gr[pre + "igate.weight"] += dw_gates[:NH]
        gr[pre + "fgate.weight"] += dw_gates[NH:]
        gr[pre + "igate.bias"] += db_gates[:NH]
        gr[pre + "fgate.bias"] += db_gates[NH:]
        db_qkv = db[:3 * P] + _dense.matmul(w_gates, db_gates[:, None], trans_a=True)[:, 0]
        for j, (name, gate_input) in enumerate((("q_proj", dw_c), ("k_proj", dw_c), ("v_proj", dw_a))):
            dfull = dw[j * P:(j + 1) * P, :P] if j < 2 else dw[2 * P:3 * P, P:]
            dfull = dfull + _dense.matmul(w_gates[:, j * P:(j + 1) * P], gate_input, trans_a=True)
            gr[pre + name + ".weight"] += _diagonal_blocks(dfull, bs)
            gr[pre + name + ".bias"] += db_qkv[j * P:(j + 1) * P]

    def _mlstm(self, k, pre, c, a, lengths):
        """h~ (T, B, P) of block k's mLSTM and what its backward needs."""
        layer = self.layers[k]
        if not c.shape[0] or not c.shape[1]:
            return np.zeros_like(c), None
        if layer is not None:
            return layer(c, lengths=lengths)[0], None
        from .xlstm import _ops

        w, b, parts = self._headwise_projection(pre)
        B, NH = c.shape[1], self.num_heads
        DH = self.proj_size // NH
        zero_state = (np.zeros((B, NH, DH, DH), self.dtype), np.zeros((B, NH, DH), self.dtype),
                      np.zeros((B, NH), self.dtype))
        y, *_, cache = _ops().mlstm_forward(np.concatenate([c, a], axis=-1), *zero_state, w, b, NH, MLSTM_EPS,
                                            False, lengths, self.training)
        return y, (cache, w, b, parts)

    def _mlstm_backward(self, k, pre, dm, cache):
        """(dc, da) through block k's mLSTM."""
        layer = self.layers[k]
        if layer is not None:
            return layer.backward(np.ascontiguousarray(dm))[0], 0
        from .xlstm import _ops

        kernel_cache, w, b, parts = cache
        dw, db = np.zeros_like(w), np.zeros_like(b)
        dx, *_ = _ops().mlstm_backward(kernel_cache, np.ascontiguousarray(dm), None, None, None, w, dw, db)
        self._headwise_projection_backward(pre, dw, db, parts)
        P = self.proj_size
        return dx[..., :P], dx[..., P:]

    def _slstm_input(self, u, c):
        """The sLSTM layer's input: u, or per head (convolved, plain) halves with the convolution."""
        if not self.conv_kernel_size:
            return u
        T, B, E = u.shape
        NH = self.num_heads
        return np.concatenate([c.reshape(T, B, NH, -1), u.reshape(T, B, NH, -1)], axis=-1).reshape(T, B, 2 * E)

    # -- forward and backward ------------------------------------------------------------------

    def __call__(self, x: Any, lengths: Any = None) -> np.ndarray:
        xt, batched = _checks.sequence(x, self.embedding_dim, self.batch_first, self.dtype)
        T, B, E = xt.shape
        lengths = _checks.lengths(lengths, T, B, batched)
        p, NH = self._params, self.num_heads
        tape: list[tuple] = []
        h = xt
        for k, (kind, layer) in enumerate(zip(self.block_types, self.layers)):
            pre = f"blocks.{k}."
            if kind == "m":
                u, ln = _norm_forward(h, p[pre + "norm.weight"], 1)
                a = _dense.linear(u, p[pre + "up_a.weight"], p[pre + "up_a.bias"])
                g = _dense.linear(u, p[pre + "up_g.weight"], p[pre + "up_g.bias"])
                c, conv = self._conv(pre, a)
                m, cell = self._mlstm(k, pre, c, a, lengths)
                gn = None
                if self.group_norm:
                    m, gn = _norm_forward(m, p[pre + "group_norm.weight"], NH)
                if self.learnable_skip:
                    m = m + p[pre + "skip.weight"] * c
                sg, dsg = silu(g)
                z = m * sg
                h = h + _dense.linear(z, p[pre + "down.weight"], p[pre + "down.bias"])
                tape.append((ln, u, c, conv, cell, gn, m, sg, dsg, z))
            else:
                u, ln1 = _norm_forward(h, p[pre + "norm.weight"], 1)
                c, conv = self._conv(pre, u)
                s, _ = layer(self._slstm_input(u, c), lengths=lengths) if T and B else (np.zeros_like(u), None)
                gn = None
                if self.group_norm:
                    s, gn = _norm_forward(s, p[pre + "group_norm.weight"], NH)
                h1 = h + s
                v, ln2 = _norm_forward(h1, p[pre + "ffn_norm.weight"], 1)
                a = _dense.linear(v, p[pre + "up_a.weight"], p[pre + "up_a.bias"])
                g = _dense.linear(v, p[pre + "up_g.weight"], p[pre + "up_g.bias"])
                sg, dsg = gelu(g) if self.ffn_activation == "gelu" else silu(g)
                z = sg * a
                h = h1 + _dense.linear(z, p[pre + "down.weight"], p[pre + "down.bias"])
                tape.append((ln1, conv, gn, ln2, v, a, sg, dsg, z))
        y, ln_post = _norm_forward(h, p["post_norm.weight"], 1) if self.post_norm else (h, None)
        mask = None
        if lengths is not None:
            mask = (np.arange(T)[:, None] < lengths[None, :])[:, :, None]
            y = y * mask
        self._tape = (tape, ln_post, mask, batched, T, B) if self.training else None
        y = y.astype(self.dtype, copy=False)
        if not batched:
            return y[:, 0]
        return np.ascontiguousarray(y.transpose(1, 0, 2)) if self.batch_first else y

    def backward(self, dy: Any) -> np.ndarray:
        """Backpropagation through the last training-mode call: returns dx; gradients of every
        parameter accumulate in ``grads``."""
        tape, ln_post, mask, batched, T, B = self._need_cache(self._tape)
        self._tape = None
        E, NH = self.embedding_dim, self.num_heads
        d = _checks.float_array(dy, "dy", self.dtype)
        if not batched:
            _checks.expect_shape(d, "dy", (T, E), "(T, E) like y")
            d = d[:, None]
        elif self.batch_first:
            _checks.expect_shape(d, "dy", (B, T, E), "(B, T, E) like y")
            d = d.transpose(1, 0, 2)
        else:
            _checks.expect_shape(d, "dy", (T, B, E), "(T, B, E) like y")
        if mask is not None:
            d = d * mask
        p, gr = self._params, self._grads
        dh = _norm_backward(d, p["post_norm.weight"], ln_post, gr["post_norm.weight"], 1) if self.post_norm else d

        def dense_back(dout, x_in, name):
            return _dense.linear_backward(x_in, dout, p[name + ".weight"], gr[name + ".weight"], gr[name + ".bias"])

        for k in reversed(range(len(self.layers))):
            kind, layer, t = self.block_types[k], self.layers[k], tape[k]
            pre = f"blocks.{k}."
            if kind == "m":
                ln, u, c, conv, cell, gn, m, sg, dsg, z = t
                dz = dense_back(dh, z, pre + "down")
                dm, dg = dz * sg, dz * m * dsg
                dc, da = np.zeros_like(dm), np.zeros_like(dm)      # gradients of c and a
                if self.learnable_skip:
                    gr[pre + "skip.weight"] += (dm * c).reshape(-1, c.shape[-1]).sum(axis=0)
                    dc += dm * p[pre + "skip.weight"]
                if gn is not None:
                    dm = _norm_backward(dm, p[pre + "group_norm.weight"], gn, gr[pre + "group_norm.weight"], NH)
                if T and B:
                    dc_cell, da_cell = self._mlstm_backward(k, pre, dm, cell)
                    dc += dc_cell
                    da += da_cell
                da += self._conv_backward(pre, dc, conv)
                du = dense_back(da, u, pre + "up_a") + dense_back(dg, u, pre + "up_g")
                dh = dh + _norm_backward(du, p[pre + "norm.weight"], ln, gr[pre + "norm.weight"], 1)
            else:
                ln1, conv, gn, ln2, v, a, sg, dsg, z = t
                dz = dense_back(dh, z, pre + "down")
                da, dg = dz * sg, dz * a * dsg
                dv = dense_back(da, v, pre + "up_a") + dense_back(dg, v, pre + "up_g")
                dh1 = dh + _norm_backward(dv, p[pre + "ffn_norm.weight"], ln2, gr[pre + "ffn_norm.weight"], 1)
                ds = dh1
                if gn is not None:
                    ds = _norm_backward(ds, p[pre + "group_norm.weight"], gn, gr[pre + "group_norm.weight"], NH)
                du = self._slstm_backward(layer, ds, conv, pre, T, B)
                dh = dh1 + _norm_backward(du, p[pre + "norm.weight"], ln1, gr[pre + "norm.weight"], 1)
        dx = dh.astype(self.dtype, copy=False)
        if not batched:
            return dx[:, 0]
        return np.ascontiguousarray(dx.transpose(1, 0, 2)) if self.batch_first else dx

    def _slstm_backward(self, layer, ds, conv, pre, T, B):
        """d(normed input) through an sLSTM block's layer (and its convolution)."""
        if not (T and B):
            return np.zeros_like(ds)
        din = layer.backward(np.ascontiguousarray(ds))[0]
        if not self.conv_kernel_size:
            return din
        layer._grads["weight_ih_l0"] *= self._slstm_input_mask()   # the structural zeros stay zero
        halves = din.reshape(T, B, self.num_heads, 2, -1)
        du = halves[:, :, :, 1].reshape(T, B, -1)
        return du + self._conv_backward(pre, np.ascontiguousarray(halves[:, :, :, 0].reshape(T, B, -1)), conv)

    def _extra_repr(self) -> str:
        options = [f"num_heads={self.num_heads}"]
        if self.conv_kernel_size:
            options.append(f"conv_kernel_size={self.conv_kernel_size}")
        if self.qkv_blocksize is not None:
            options.append(f"qkv_blocksize={self.qkv_blocksize}")
        options += [name + "=True" for name in ("group_norm", "learnable_skip") if getattr(self, name)]
        if self.ffn_activation != "silu":
            options.append(f"ffn_activation={self.ffn_activation!r}")
        if not self.post_norm:
            options.append("post_norm=False")
        return (f"{self.embedding_dim}, blocks={''.join(self.block_types)!r}, " + ", ".join(options)
                + f", dtype={self.dtype.name}")


# ---------------------------------------------------------------------------------------------
# the official package's weights


def _t(tensor) -> np.ndarray:
    return tensor.detach().cpu().double().numpy()


def _norm_weight(norm, size: int) -> np.ndarray:
    """The scale an official (MultiHead)LayerNorm applies: its ``weight_proxy`` (1 + weight with
    the default residual weight), ones without a weight."""
    w = norm.weight_proxy
    return np.ones(size) if w is None else _t(w)


def _bias(linear, size: int) -> np.ndarray:
    return np.zeros(size) if linear.bias is None else _t(linear.bias)


def from_official(module: Any, dtype: Any = np.float32):
    """The pyrnn equivalent of a module of the official ``xlstm`` package (torch is only used
    to read its weights):

    * ``xLSTMBlockStack`` -> :class:`xLSTMBlockStack` with the official options
      (``conv_kernel_size``, ``qkv_blocksize``, ``group_norm``, ``learnable_skip``,
      ``ffn_activation``), the same blocks and post-norm; ``sLSTMBlock`` / ``mLSTMBlock`` -> a
      one-block stack without post-norm. Every block must share num_heads and the convolution
      size (pyrnn's stack has one of each); the official LayerNorms' residual weights (scale
      1 + w) become pyrnn's scales. Dropout is not carried over (pyrnn's stack has none).
    * ``sLSTMLayer`` with ``conv1d_kernel_size=0`` -> ``SLSTM(E, E, num_heads,
      input_projection="headwise")`` (the official headwise gate projections, weight (NH, DH,
      E/NH) each, are its ``weight_ih`` rows) whose output is the layer's sLSTM cell output
      (before its dropout and group norm). Note that the official
      layer feeds its module named ``fgate`` to the cell's input gate and ``igate`` to the
      forget gate; the mapping follows what the code computes.
    * an sLSTM cell (``sLSTMCell_vanilla``/``sLSTMCell``, input: the 4H gate pre-activations,
      gates i, f, z, o) -> ``SLSTM(4H, H, num_heads)`` with an identity input projection.
    * ``mLSTMCell`` -> ``MLSTM(3E, E, num_heads, output_gate=False, eps=1e-6)`` taking
      ``concat(q, k, v)`` and returning the cell's h~ before its ``outnorm``.
    """
    from .xlstm import MLSTM, SLSTM

    name = type(module).__name__
    if name == "xLSTMBlockStack":
        post = module.post_blocks_norm
        return _official_stack(list(module.blocks), None if type(post).__name__ == "Identity" else post, dtype)
    if name in ("sLSTMBlock", "mLSTMBlock"):
        return _official_stack([module], None, dtype)
    if name == "sLSTMLayer":
        cfg = module.config
        if cfg.conv1d_kernel_size > 0:
            raise ValueError("from_official: an sLSTMLayer with a causal convolution (conv1d_kernel_size > 0) "
                             "maps to pyrnn's block stack only: load its sLSTMBlock, or build the layer with "
                             "conv1d_kernel_size=0")
        E, NH = cfg.embedding_dim, cfg.num_heads
        layer = SLSTM(E, E, num_heads=NH, input_projection="headwise", dtype=dtype)
        layer.load_state_dict({"weight_ih_l0": _slstm_gate_weights(module, E, NH, conv=False),
                               **_slstm_cell_weights(module.slstm_cell, E, NH)})
        return layer
    if name.startswith("sLSTMCell"):
        H, NH = module.config.hidden_size, module.config.num_heads
        layer = SLSTM(4 * H, H, num_heads=NH, dtype=dtype)
        layer.load_state_dict({"weight_ih_l0": np.eye(4 * H), **_slstm_cell_weights(module, H, NH)})
        return layer
    if name == "mLSTMCell":
        E, NH = module.config.embedding_dim, module.config.num_heads
        layer = MLSTM(3 * E, E, num_heads=NH, output_gate=False, eps=MLSTM_EPS, dtype=dtype)
        w = np.zeros((3 * E + 2 * NH, 3 * E))
        w[:3 * E, :3 * E] = np.eye(3 * E)
        w[3 * E:3 * E + NH] = _t(module.igate.weight)
        w[3 * E + NH:] = _t(module.fgate.weight)
        b = np.zeros(3 * E + 2 * NH)
        b[3 * E:3 * E + NH] = _t(module.igate.bias)
        b[3 * E + NH:] = _t(module.fgate.bias)
        layer.load_state_dict({"weight_ih_l0": w, "bias_l0": b})
        return layer
    raise TypeError(f"from_official supports xLSTMBlockStack, sLSTMBlock, mLSTMBlock, sLSTMLayer, sLSTMCell "
                    f"and mLSTMCell, got {name}")


def _official_stack(blocks: list[Any], post_norm: Any, dtype: Any) -> xLSTMBlockStack:
    """The block stack holding the official blocks' weights (``post_norm``: the official
    final LayerNorm, or None)."""
    kinds = ["m" if type(b.xlstm).__name__ == "mLSTMLayer" else "s" for b in blocks]
    E = blocks[0].xlstm_norm.ndim
    heads: set[int] = set()
    convs: set[int] = set()
    blocksizes: set[int] = set()
    ffns: set[str] = set()
    P = F = 0           # the official up-projection and feed-forward sizes (0: no such block)
    for block, kind in zip(blocks, kinds):
        cfg = block.xlstm.config
        heads.add(cfg.num_heads)
        convs.add(cfg.conv1d_kernel_size)
        if kind == "m":
            blocksizes.add(cfg.qkv_proj_blocksize)
            P = cfg._inner_embedding_dim
        else:
            if block.ffn is None:
                raise ValueError("from_official: pyrnn's sLSTM blocks have a feed-forward; this sLSTMBlock has none")
            act = block.ffn.config.act_fn
            if act not in ("gelu", "swish"):
                raise ValueError(f"from_official: the feed-forward activation must be gelu or swish, got {act!r}")
            ffns.add("gelu" if act == "gelu" else "silu")
            F = block.ffn.config._proj_up_dim
    for what, values in (("num_heads", heads), ("convolution size", convs), ("qkv_proj_blocksize", blocksizes),
                         ("feed-forward activation", ffns)):
        if len(values) > 1:
            raise ValueError(f"from_official: pyrnn's block stack has one {what} for all blocks; these blocks "
                             f"have {sorted(values)}")
    NH = heads.pop()
    stack = xLSTMBlockStack(E, kinds, num_heads=NH, proj_factor=(P or 2 * E) / E, ffn_factor=(F or E) / E,
                            conv_kernel_size=convs.pop(), qkv_blocksize=blocksizes.pop() if blocksizes else None,
                            group_norm=True, learnable_skip="m" in kinds,
                            ffn_activation=ffns.pop() if ffns else "silu", post_norm=post_norm is not None,
                            dtype=dtype)
    P, F = stack.proj_size, stack.ffn_size
    state: dict[str, np.ndarray] = {}
    for k, (block, kind) in enumerate(zip(blocks, kinds)):
        pre = f"blocks.{k}."
        state[pre + "norm.weight"] = _norm_weight(block.xlstm_norm, E)
        layer = block.xlstm
        if kind == "m":
            up, down = layer.proj_up, layer.proj_down
            w_up, b_up = _t(up.weight), _bias(up, 2 * P)
            state.update({pre + "up_a.weight": w_up[:P], pre + "up_a.bias": b_up[:P],   # the mLSTM branch
                          pre + "up_g.weight": w_up[P:], pre + "up_g.bias": b_up[P:],   # the gate branch z
                          pre + "down.weight": _t(down.weight), pre + "down.bias": _bias(down, E)})
            state.update(_official_conv(pre, layer.conv1d, P))
            for proj in ("q_proj", "k_proj", "v_proj"):
                mod = getattr(layer, proj)
                state[pre + proj + ".weight"] = _t(mod.weight)           # (NB, bs, bs): the same layout
                state[pre + proj + ".bias"] = _bias(mod, P)
            cell = layer.mlstm_cell
            for gate in ("igate", "fgate"):
                state[pre + gate + ".weight"] = _t(getattr(cell, gate).weight)
                state[pre + gate + ".bias"] = _t(getattr(cell, gate).bias)
            state[pre + "skip.weight"] = _t(layer.learnable_skip)
            state[pre + "group_norm.weight"] = _norm_weight(cell.outnorm, P)
        else:
            conv = stack.conv_kernel_size > 0
            state[pre + "xlstm.weight_ih_l0"] = _slstm_gate_weights(layer, E, NH, conv)
            state.update({pre + "xlstm." + n: w for n, w in _slstm_cell_weights(layer.slstm_cell, E, NH).items()})
            if conv:
                state.update(_official_conv(pre, layer.conv1d, E))
            state[pre + "group_norm.weight"] = _norm_weight(layer.group_norm, E)
            ffn = block.ffn
            w_up, b_up = _t(ffn.proj_up.weight), _bias(ffn.proj_up, 2 * F)
            state.update({pre + "ffn_norm.weight": _norm_weight(block.ffn_norm, E),
                          pre + "up_g.weight": w_up[:F], pre + "up_g.bias": b_up[:F],   # the activated half
                          pre + "up_a.weight": w_up[F:], pre + "up_a.bias": b_up[F:],
                          pre + "down.weight": _t(ffn.proj_down.weight), pre + "down.bias": _bias(ffn.proj_down, E)})
    if post_norm is not None:
        state["post_norm.weight"] = _norm_weight(post_norm, E)
    stack.load_state_dict(state)
    return stack


def _official_conv(pre: str, conv, channels: int) -> dict[str, np.ndarray]:
    """An official CausalConv1d's weights (C, K) and bias."""
    weight = _t(conv.conv.weight)[:, 0]                                # (C, 1, K) -> (C, K)
    return {pre + "conv.weight": weight, pre + "conv.bias": _bias(conv.conv, channels)}


def _slstm_gate_weights(layer, E: int, NH: int, conv: bool) -> np.ndarray:
    """An official sLSTMLayer's four headwise gate projections (NH, DH, E/NH) each as pyrnn's
    headwise ``weight_ih``: rows g*E + h*DH + j over head h's columns. The official module named
    ``fgate`` feeds the cell's input gate and ``igate`` its forget gate. With the convolution,
    each head's columns are (convolved, plain): i, f read the first half, z, o the second."""
    DH = E // NH
    gates = [_t(g.weight) for g in (layer.fgate, layer.igate, layer.zgate, layer.ogate)]   # cell order i, f, z, o
    if not conv:
        return np.concatenate([g.reshape(E, DH) for g in gates])
    w = np.zeros((4, NH, DH, 2 * DH))
    w[:2, :, :, :DH] = gates[:2]
    w[2:, :, :, DH:] = gates[2:]
    return w.reshape(4 * E, 2 * DH)


def _slstm_cell_weights(cell, H, NH):
    """The cell's recurrent kernel and bias in pyrnn's layout. Its internal (vanilla) layouts:
    recurrent (NH, 4*DH, DH) with row g*DH + j, bias (4, NH, DH) gate-major -- reached
    through the external proxies (NH, DH_in, 4, DH_out) and (NH, 4, DH)."""
    DH = H // NH
    R = _t(cell.recurrent_kernel[...]).reshape(NH, DH, 4, DH)                       # [head, in k, gate, out j]
    w_hh = R.transpose(2, 0, 3, 1).reshape(4 * H, DH)  # row g*H + h*DH + j, column k
    bias = _t(cell.bias[...]).reshape(NH, 4, DH).transpose(1, 0, 2).reshape(4 * H)
    return {"weight_hh_l0": w_hh, "bias_l0": bias}
