"""The xLSTM block stack (pre-norm residual blocks, sLSTM and mLSTM blocks mixable) and the
weight mapping from the official ``xlstm`` package.

Blocks (E = embedding_dim, time-major rows; LN = LayerNorm with a weight, no bias):

* mLSTM block, the paper's *pre up-projection* block::

      u = LN(x);  a = u W_a^T + b_a;  g = u W_g^T + b_g        (E -> P = proj_factor * E each)
      y = x + (MLSTM(a) * silu(g)) W_down^T + b_down            (MLSTM: P -> P, no output gate:
                                                                  the silu branch gates it)
* sLSTM block, the paper's *post up-projection* block::

      y1 = x + SLSTM(LN1(x))                                    (E -> E, head-wise gate
                                                                  projections, as the official layer)
      v = LN2(y1);  y = y1 + (silu(v W_g^T + b_g) * (v W_a^T + b_a)) W_down^T + b_down
                                                                 (gated feed-forward, E -> F -> E)

and a final LN after the last block. Simplified against the official package: no causal
convolution, no learnable skip and no per-head group norm inside the blocks. Forward and
backward run the native sLSTM/mLSTM kernels; the dense parts pyrnn's own products
(``pyrnn._dense``).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import _checks, _dense
from ._module import Module, PerThread

LN_EPS = 1e-5


def _silu(x):
    s = 1 / (1 + np.exp(-x))
    return x * s, s * (1 + x * (1 - s))


def _ln_forward(x, w):
    mu = x.mean(axis=-1, keepdims=True)
    xc = x - mu
    rstd = 1 / np.sqrt((xc * xc).mean(axis=-1, keepdims=True) + LN_EPS)
    xhat = xc * rstd
    return xhat * w, (xhat, rstd)


def _ln_backward(dy, w, cache, dw):
    xhat, rstd = cache
    dw += (dy * xhat).reshape(-1, xhat.shape[-1]).sum(axis=0)
    g = dy * w
    return rstd * (g - g.mean(axis=-1, keepdims=True) - xhat * (g * xhat).mean(axis=-1, keepdims=True))


class xLSTMBlockStack(Module):
    """A stack of residual xLSTM blocks as a sequence encoder: ``y = stack(x, lengths=None)``
    with x (T, B, E) (or batch_first, or unbatched (T, E)) and y of the same shape;
    ``dx = stack.backward(dy)``. ``blocks`` is a string or list of "m" / "s" (e.g. "msm").
    Parameters are named ``blocks.{k}.{part}`` (inner layers: ``blocks.{k}.xlstm.*``) plus
    ``post_norm.weight``; ``parameters()``, ``grads``, ``state_dict()`` as the layers.
    """

    _tape = PerThread()      # this thread's last training-mode forward, for its backward

    def __init__(self, embedding_dim: int, blocks: Any = "ms", num_heads: int = 4,
                 proj_factor: float = 2.0, ffn_factor: float = 4.0 / 3.0, batch_first: bool = False,
                 dtype: Any = np.float32, seed: int | None = None) -> None:
        from .xlstm import MLSTM, SLSTM

        Module.__init__(self, dtype)
        E = self.embedding_dim = _checks.positive_int(embedding_dim, "embedding_dim")
        self.block_types = list(blocks)
        if not self.block_types or any(b not in ("m", "s") for b in self.block_types):
            raise ValueError(f"blocks must be a non-empty sequence of 'm' and 's', got {blocks!r}")
        self.num_heads = _checks.positive_int(num_heads, "num_heads")
        self.batch_first = bool(batch_first)
        rng = np.random.default_rng(seed)
        P = int(round(proj_factor * E / self.num_heads)) * self.num_heads
        F = int(round(ffn_factor * E))
        if P < self.num_heads or E % self.num_heads:
            raise ValueError(f"embedding_dim = {E} and proj_factor * embedding_dim must be multiples of "
                             f"num_heads = {self.num_heads}")
        self.proj_size, self.ffn_size = P, F
        shapes: dict[str, tuple[int, ...]] = {}
        for k, kind in enumerate(self.block_types):
            pre = f"blocks.{k}."
            if kind == "m":
                shapes.update({pre + "norm.weight": (E,), pre + "up_a.weight": (P, E), pre + "up_a.bias": (P,),
                               pre + "up_g.weight": (P, E), pre + "up_g.bias": (P,),
                               pre + "down.weight": (E, P), pre + "down.bias": (E,)})
            else:
                shapes.update({pre + "norm.weight": (E,), pre + "ffn_norm.weight": (E,),
                               pre + "up_a.weight": (F, E), pre + "up_a.bias": (F,),
                               pre + "up_g.weight": (F, E), pre + "up_g.bias": (F,),
                               pre + "down.weight": (E, F), pre + "down.bias": (E,)})
        shapes["post_norm.weight"] = (E,)
        self._create_parameters(shapes, E, rng)
        for name, p in self._params.items():
            if name.endswith("norm.weight"):
                p[...] = 1
            elif name.endswith(".bias"):
                p[...] = 0
            else:  # small init, scaled by the fan-in
                p[...] = rng.standard_normal(p.shape) * np.sqrt(2.0 / (5 * p.shape[1]))
        self.layers = []
        for k, kind in enumerate(self.block_types):
            sub_seed = int(rng.integers(2**31))
            if kind == "m":
                layer = MLSTM(P, P, num_heads=self.num_heads, output_gate=False, dtype=self.dtype, seed=sub_seed)
            else:
                layer = SLSTM(E, E, num_heads=self.num_heads, input_projection="headwise", dtype=self.dtype,
                              seed=sub_seed)
            self._add_module(f"blocks.{k}.xlstm", layer)
            self.layers.append(layer)
        self._tape = None

    def _drop_caches(self) -> None:
        self._tape = None

    def __call__(self, x: Any, lengths: Any = None) -> np.ndarray:
        xt, batched = _checks.sequence(x, self.embedding_dim, self.batch_first, self.dtype)
        T, B, E = xt.shape
        lengths = _checks.lengths(lengths, T, B, batched)
        p = self._params
        tape = []
        h = xt
        for k, (kind, layer) in enumerate(zip(self.block_types, self.layers)):
            pre = f"blocks.{k}."
            if kind == "m":
                u, ln = _ln_forward(h, p[pre + "norm.weight"])
                a = _dense.linear(u, p[pre + "up_a.weight"], p[pre + "up_a.bias"])
                g = _dense.linear(u, p[pre + "up_g.weight"], p[pre + "up_g.bias"])
                m, _ = layer(a, lengths=lengths) if T and B else (np.zeros_like(a), None)
                sg, dsg = _silu(g)
                z = m * sg
                h = h + _dense.linear(z, p[pre + "down.weight"], p[pre + "down.bias"])
                tape.append((ln, u, m, sg, dsg, z))
            else:
                u, ln1 = _ln_forward(h, p[pre + "norm.weight"])
                s, _ = layer(u, lengths=lengths) if T and B else (np.zeros_like(u), None)
                h1 = h + s
                v, ln2 = _ln_forward(h1, p[pre + "ffn_norm.weight"])
                a = _dense.linear(v, p[pre + "up_a.weight"], p[pre + "up_a.bias"])
                g = _dense.linear(v, p[pre + "up_g.weight"], p[pre + "up_g.bias"])
                sg, dsg = _silu(g)
                z = sg * a
                h = h1 + _dense.linear(z, p[pre + "down.weight"], p[pre + "down.bias"])
                tape.append((ln1, ln2, v, a, sg, dsg, z))
        y, ln_post = _ln_forward(h, p["post_norm.weight"])
        mask = None
        if lengths is not None:
            mask = (np.arange(T)[:, None] < lengths[None, :])[:, :, None]
            y = y * mask
        self._tape = (tape, ln_post, mask, batched, T, B, lengths) if self.training else None
        y = y.astype(self.dtype, copy=False)
        if not batched:
            return y[:, 0]
        return np.ascontiguousarray(y.transpose(1, 0, 2)) if self.batch_first else y

    def backward(self, dy: Any) -> np.ndarray:
        """Backpropagation through the last training-mode call: returns dx; gradients of every
        parameter accumulate in ``grads``."""
        tape, ln_post, mask, batched, T, B, lengths = self._need_cache(self._tape)
        self._tape = None
        E = self.embedding_dim
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
        dh = _ln_backward(d, p["post_norm.weight"], ln_post, gr["post_norm.weight"])

        def dense_back(dout, x_in, name):
            return _dense.linear_backward(x_in, dout, p[name + ".weight"], gr[name + ".weight"], gr[name + ".bias"])

        for k in reversed(range(len(self.layers))):
            kind, layer, t = self.block_types[k], self.layers[k], tape[k]
            pre = f"blocks.{k}."
            if kind == "m":
                ln, u, m, sg, dsg, z = t
                dz = dense_back(dh, z, pre + "down")
                dm, dg = dz * sg, dz * m * dsg
                da = layer.backward(np.ascontiguousarray(dm))[0] if T and B else np.zeros_like(dm)
                du = dense_back(da, u, pre + "up_a") + dense_back(dg, u, pre + "up_g")
                dh = dh + _ln_backward(du, p[pre + "norm.weight"], ln, gr[pre + "norm.weight"])
            else:
                ln1, ln2, v, a, sg, dsg, z = t
                dz = dense_back(dh, z, pre + "down")
                da, dg = dz * sg, dz * a * dsg
                dv = dense_back(da, v, pre + "up_a") + dense_back(dg, v, pre + "up_g")
                dh1 = dh + _ln_backward(dv, p[pre + "ffn_norm.weight"], ln2, gr[pre + "ffn_norm.weight"])
                du = layer.backward(np.ascontiguousarray(dh1))[0] if T and B else np.zeros_like(dh1)
                dh = dh1 + _ln_backward(du, p[pre + "norm.weight"], ln1, gr[pre + "norm.weight"])
        dx = dh.astype(self.dtype, copy=False)
        if not batched:
            return dx[:, 0]
        return np.ascontiguousarray(dx.transpose(1, 0, 2)) if self.batch_first else dx

    def _extra_repr(self) -> str:
        return (f"{self.embedding_dim}, blocks={''.join(self.block_types)!r}, "
                f"num_heads={self.num_heads}, dtype={self.dtype.name}")


# ---------------------------------------------------------------------------------------------
# the official package's weights


def _t(tensor) -> np.ndarray:
    return tensor.detach().cpu().double().numpy()


def from_official(module: Any, dtype: Any = np.float32):
    """The pyrnn layer equivalent to a module of the official ``xlstm`` package (torch is
    only used to read its weights):

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
    if name == "sLSTMLayer":
        cfg = module.config
        if cfg.conv1d_kernel_size > 0:
            raise ValueError("from_official: sLSTMLayer with a causal convolution (conv1d_kernel_size > 0) "
                             "has no pyrnn equivalent; build it with conv1d_kernel_size=0")
        E, NH = cfg.embedding_dim, cfg.num_heads
        # gate order i, f, z, o; each (NH, DH, E/NH) -> rows h*DH + j of its gate
        w_ih = np.concatenate([_t(gate.weight).reshape(E, E // NH)
                               for gate in (module.fgate, module.igate, module.zgate, module.ogate)])
        layer = SLSTM(E, E, num_heads=NH, input_projection="headwise", dtype=dtype)
        cell = module.slstm_cell
        layer.load_state_dict({"weight_ih_l0": w_ih, **_slstm_cell_weights(cell, E, NH)})
        return layer
    if name.startswith("sLSTMCell"):
        H, NH = module.config.hidden_size, module.config.num_heads
        layer = SLSTM(4 * H, H, num_heads=NH, dtype=dtype)
        layer.load_state_dict({"weight_ih_l0": np.eye(4 * H), **_slstm_cell_weights(module, H, NH)})
        return layer
    if name == "mLSTMCell":
        E, NH = module.config.embedding_dim, module.config.num_heads
        layer = MLSTM(3 * E, E, num_heads=NH, output_gate=False, eps=1e-6, dtype=dtype)
        w = np.zeros((3 * E + 2 * NH, 3 * E))
        w[:3 * E, :3 * E] = np.eye(3 * E)
        w[3 * E:3 * E + NH] = _t(module.igate.weight)
        w[3 * E + NH:] = _t(module.fgate.weight)
        b = np.zeros(3 * E + 2 * NH)
        b[3 * E:3 * E + NH] = _t(module.igate.bias)
        b[3 * E + NH:] = _t(module.fgate.bias)
        layer.load_state_dict({"weight_ih_l0": w, "bias_l0": b})
        return layer
    raise TypeError(f"from_official supports sLSTMLayer, sLSTMCell and mLSTMCell, got {name}")


def _slstm_cell_weights(cell, H, NH):
    """The cell's recurrent kernel and bias in pyrnn's layout. Its internal (vanilla) layouts:
    recurrent (NH, 4*DH, DH) with row g*DH + j, bias (4, NH, DH) gate-major -- reached
    through the external proxies (NH, DH_in, 4, DH_out) and (NH, 4, DH)."""
    DH = H // NH
    R = _t(cell.recurrent_kernel[...]).reshape(NH, DH, 4, DH)                       # [head, in k, gate, out j]
    w_hh = R.transpose(2, 0, 3, 1).reshape(4 * H, DH)  # row g*H + h*DH + j, column k
    bias = _t(cell.bias[...]).reshape(NH, 4, DH).transpose(1, 0, 2).reshape(4 * H)
    return {"weight_hh_l0": w_hh, "bias_l0": bias}
