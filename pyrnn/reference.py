"""Pure-NumPy reference implementation of every pyrnn native kernel.

This module is the test oracle of :mod:`pyrnn._core`: the same function names,
the same arguments, the same results (up to floating-point rounding).  It is
written to be read, not to be fast: each cell has a small ``*_step_forward`` /
``*_step_backward`` pair, vectorised over the batch, and one shared time loop
(:func:`layer_forward` / :func:`layer_backward`) drives them.  It imports
numpy only, so it can be loaded on its own without the compiled extension.

Conventions (all PyTorch's)
---------------------------
* One layer, one direction, whole sequence, time-major: ``x`` is ``(T, B, I)``.
* ``G`` gate blocks of ``H`` rows each are stacked in the weights:
  ``w_ih`` is ``(G*H, I)``, ``w_hh`` is ``(G*H, P)``, ``b_ih``/``b_hh`` are
  ``(G*H,)`` (or both ``None``: no bias).  Gate orders: LSTM ``i, f, g, o``;
  GRU ``r, z, n``.
* ``P`` is the size of the hidden state ``h``: ``H``, or the projection size
  of an LSTM with ``w_hr`` of shape ``(P, H)`` (torch's ``weight_hr_l0``).
* ``lengths`` (int array ``(B,)``, each in ``1..T``) follows packed-sequence
  semantics: at time ``t`` only the sequences with ``t < lengths[b]`` are
  *active*.  Inactive (padding) rows produce ``y[t, b] = 0`` and leave the
  state untouched, so ``h_n``/``c_n`` are the states at each sequence's last
  valid step.  With ``reverse=True`` time runs ``T-1 .. 0``: the padding steps
  come first and are skipped, so each sequence effectively starts from ``h0``
  at its own last valid step ``lengths[b]-1``.

The input projection ``x @ w_ih.T + b_ih`` does not depend on the state, so,
like the native kernels, it is computed for all time steps at once before the
loop; likewise the gradients ``dw_ih``, ``db_ih`` and ``dx`` are matrix
products over all valid ``(t, b)`` rows after the backward loop.  Everything
else happens step by step.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = [
    "CELLS",
    "gates_per_cell",
    "layer_forward",
    "layer_backward",
    "gemm",
    "vexp",
    "vsigmoid",
    "vtanh",
    "rnn_step_forward",
    "rnn_step_backward",
    "lstm_step_forward",
    "lstm_step_backward",
    "gru_step_forward",
    "gru_step_backward",
    "gru_reset_before_step_forward",
    "gru_reset_before_step_backward",
]

#: number of gate blocks G of each cell
CELLS = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3, "gru_reset_before": 3}


def gates_per_cell(cell: str) -> int:
    """Number of stacked gate blocks ``G`` of ``cell`` (1, 4 or 3)."""
    try:
        return CELLS[cell]
    except KeyError:
        raise ValueError(f"cell: expected one of {sorted(CELLS)}, got {cell!r}") from None


# ---------------------------------------------------------------------------
# Elementwise math and GEMM
# ---------------------------------------------------------------------------

def vexp(x):
    """Elementwise ``exp(x)`` (a new array, same dtype)."""
    return np.exp(np.asarray(x))


def vsigmoid(x):
    """Elementwise logistic sigmoid ``1 / (1 + exp(-x))``, without overflow.

    For ``x >= 0`` it evaluates ``1 / (1 + exp(-x))``, otherwise the
    algebraically equal ``exp(x) / (1 + exp(x))``, so ``exp`` never overflows.
    """
    x = np.asarray(x)
    e = np.exp(-np.abs(x))  # in (0, 1]
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def vtanh(x):
    """Elementwise ``tanh(x)`` (a new array, same dtype)."""
    return np.tanh(np.asarray(x))


def _dsigmoid(s):
    """Derivative of the sigmoid expressed through its output ``s``."""
    return s * (1 - s)


def _dtanh(t):
    """Derivative of tanh expressed through its output ``t``."""
    return 1 - t * t


def _is_trans(flag) -> bool:
    if isinstance(flag, str):
        if flag.upper() not in ("N", "T"):
            raise ValueError(f"trans flag: expected 'N' or 'T' (or a bool), got {flag!r}")
        return flag.upper() == "T"
    return bool(flag)


def gemm(trans_a, trans_b, A, B, beta=0.0, C=None):
    """BLAS-style ``C = beta * C + op(A) @ op(B)``; ``op(X)`` is ``X.T`` if trans.

    ``trans_a``/``trans_b`` are bools (or ``'N'``/``'T'``).  If ``C`` is None a
    new array is returned (``beta`` is then irrelevant).  Otherwise the result
    is written into ``C`` in place and ``C`` is returned; as in BLAS, with
    ``beta == 0`` the old contents of ``C`` are not read (NaNs there do not
    propagate).
    """
    A = np.asarray(A)
    B = np.asarray(B)
    opA = A.T if _is_trans(trans_a) else A
    opB = B.T if _is_trans(trans_b) else B
    if opA.ndim != 2 or opB.ndim != 2 or opA.shape[1] != opB.shape[0]:
        raise ValueError(
            f"gemm: op(A) {opA.shape} and op(B) {opB.shape} are not compatible matrices"
        )
    prod = opA @ opB
    if C is None:
        return prod
    if C.shape != prod.shape:
        raise ValueError(f"gemm: C: expected shape {prod.shape}, got {C.shape}")
    if beta == 0:
        C[...] = prod
    else:
        C[...] = beta * C + prod
    return C


# ---------------------------------------------------------------------------
# Cells.  Each step function works on a batch of rows:
#   forward(xg, h, [c,] w_hh, b_hh, ...) -> new state(s), step cache
#   backward(dh, [dc,] cache, w_hh, ..., grads) -> dxg, dh_prev, [dc_prev]
# ``xg = x @ w_ih.T + b_ih`` (B, G*H) is the precomputed input projection and
# ``dxg`` its gradient.  The recurrent weight gradients (dw_hh, db_hh, dw_hr)
# are accumulated into the dict ``grads`` (entries may be None).
# ---------------------------------------------------------------------------

def _affine(h, w, b):
    """``h @ w.T + b`` (``b`` may be None)."""
    out = h @ w.T
    if b is not None:
        out = out + b
    return out


def _accumulate_hh(grads, dhg, h_in, rows=slice(None)):
    """``dw_hh[rows] += dhg.T @ h_in`` and ``db_hh[rows] += sum(dhg)``."""
    grads["dw_hh"][rows] += dhg.T @ h_in
    if grads["db_hh"] is not None:
        grads["db_hh"][rows] += dhg.sum(axis=0)


# -- Elman RNN ---------------------------------------------------------------

def rnn_step_forward(xg, h, w_hh, b_hh, nonlinearity="tanh"):
    """Elman RNN step (torch.nn.RNN)::

        h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh),   act = tanh or relu
    """
    a = xg + _affine(h, w_hh, b_hh)
    if nonlinearity == "tanh":
        h_new = np.tanh(a)
    else:
        h_new = np.maximum(a, 0)
    return h_new, (h, h_new, nonlinearity)


def rnn_step_backward(dh, cache, w_hh, grads):
    """Backward of :func:`rnn_step_forward`::

        da = dh' * act'(a)         (tanh: 1 - h'^2;  relu: [a > 0])
        dh = da W_hh,   dW_hh += da^T h,   db_hh += sum(da),   dxg = da
    """
    h, h_new, nonlinearity = cache
    if nonlinearity == "tanh":
        da = dh * _dtanh(h_new)
    else:
        da = np.where(h_new > 0, dh, 0)
    _accumulate_hh(grads, da, h)
    return da, da @ w_hh


# -- LSTM --------------------------------------------------------------------

def lstm_step_forward(xg, h, c, w_hh, b_hh, w_hr=None, w_peep=None):
    """LSTM step (torch.nn.LSTM), gate order i, f, g, o::

        [i, f, g, o] = x W_ih^T + b_ih + h W_hh^T + b_hh
        i, f = sigmoid(. + p_i * c), sigmoid(. + p_f * c)    (p = 0 without peepholes)
        g = tanh(.)
        c' = f * c + i * g
        o = sigmoid(. + p_o * c')
        m  = o * tanh(c')
        h' = m              (no projection)
        h' = m W_hr^T       (proj_size > 0: h is P-dimensional)

    ``w_peep`` ``(3*H,)`` holds the peephole weights ``p_i, p_f, p_o`` (ONNX's ``P``) or is None.
    """
    H = c.shape[1]
    a = xg + _affine(h, w_hh, b_hh)
    p_i, p_f, p_o = (0, 0, 0) if w_peep is None else (w_peep[:H], w_peep[H:2 * H], w_peep[2 * H:])
    i = vsigmoid(a[:, 0 * H:1 * H] + p_i * c)
    f = vsigmoid(a[:, 1 * H:2 * H] + p_f * c)
    g = np.tanh(a[:, 2 * H:3 * H])
    c_new = f * c + i * g
    o = vsigmoid(a[:, 3 * H:4 * H] + p_o * c_new)
    tanh_c = np.tanh(c_new)
    m = o * tanh_c
    h_new = m if w_hr is None else m @ w_hr.T
    return h_new, c_new, (h, c, i, f, g, o, c_new, tanh_c, m)


def lstm_step_backward(dh, dc, cache, w_hh, w_hr, grads, w_peep=None):
    """Backward of :func:`lstm_step_forward`::

        dm  = dh'  (or dh' W_hr, with dW_hr += dh'^T m)
        da_o = dm * tanh(c') * o(1-o)
        dc~ = dc' + dm * o * (1 - tanh(c')^2) + da_o * p_o
        da_i = dc~ * g * i(1-i),  da_f = dc~ * c * f(1-f),  da_g = dc~ * i * (1-g^2)
        dc = dc~ * f + da_i * p_i + da_f * p_f
        dp += [sum(da_i * c), sum(da_f * c), sum(da_o * c')]     (peepholes)
        dh = da W_hh,   dW_hh += da^T h,   db_hh += sum(da),   dxg = da
    """
    h, c, i, f, g, o, c_new, tanh_c, m = cache
    H = c.shape[1]
    if w_hr is None:
        dm = dh
    else:
        grads["dw_hr"] += dh.T @ m
        dm = dh @ w_hr
    da_o = dm * tanh_c * _dsigmoid(o)
    dc_tot = dc + dm * o * _dtanh(tanh_c)
    if w_peep is not None:
        dc_tot = dc_tot + da_o * w_peep[2 * H:]
    da_i = dc_tot * g * _dsigmoid(i)
    da_f = dc_tot * c * _dsigmoid(f)
    da = np.concatenate([da_i, da_f, dc_tot * i * _dtanh(g), da_o], axis=1)
    _accumulate_hh(grads, da, h)
    dc_prev = dc_tot * f
    if w_peep is not None:
        dc_prev = dc_prev + da_i * w_peep[:H] + da_f * w_peep[H:2 * H]
        dw_peep = grads["dw_peep"]
        dw_peep[:H] += (da_i * c).sum(axis=0)
        dw_peep[H:2 * H] += (da_f * c).sum(axis=0)
        dw_peep[2 * H:] += (da_o * c_new).sum(axis=0)
    return da, da @ w_hh, dc_prev


# -- GRU, reset gate after the recurrent product (PyTorch, cuDNN) -------------

def gru_step_forward(xg, h, w_hh, b_hh):
    """GRU step as in torch.nn.GRU (ONNX linear_before_reset=1), order r, z, n::

        [x_r, x_z, x_n] = x W_ih^T + b_ih
        [h_r, h_z, h_n] = h W_hh^T + b_hh
        r = sigmoid(x_r + h_r)
        z = sigmoid(x_z + h_z)
        n = tanh(x_n + r * h_n)
        h' = (1 - z) * n + z * h
    """
    H = h.shape[1]
    hg = _affine(h, w_hh, b_hh)
    r = vsigmoid(xg[:, 0:H] + hg[:, 0:H])
    z = vsigmoid(xg[:, H:2 * H] + hg[:, H:2 * H])
    hn = hg[:, 2 * H:3 * H]
    n = np.tanh(xg[:, 2 * H:3 * H] + r * hn)
    h_new = (1 - z) * n + z * h
    return h_new, (h, r, z, n, hn)


def gru_step_backward(dh, cache, w_hh, grads):
    """Backward of :func:`gru_step_forward`::

        dn~ = dh' * (1 - z) * (1 - n^2)                 (d pre-tanh of n)
        dr~ = dn~ * h_n * r(1-r),   dz~ = dh' * (h - n) * z(1-z)
        dxg = [dr~, dz~, dn~]
        dhg = [dr~, dz~, dn~ * r]                       (grad of h W_hh^T + b_hh)
        dh  = dh' * z + dhg W_hh,   dW_hh += dhg^T h,   db_hh += sum(dhg)
    """
    h, r, z, n, hn = cache
    dn_pre = dh * (1 - z) * _dtanh(n)
    dr_pre = dn_pre * hn * _dsigmoid(r)
    dz_pre = dh * (h - n) * _dsigmoid(z)
    dxg = np.concatenate([dr_pre, dz_pre, dn_pre], axis=1)
    dhg = np.concatenate([dr_pre, dz_pre, dn_pre * r], axis=1)
    _accumulate_hh(grads, dhg, h)
    return dxg, dh * z + dhg @ w_hh


# -- GRU, reset gate before the recurrent product (ONNX default, Keras v1) ----

def gru_reset_before_step_forward(xg, h, w_hh, b_hh):
    """Original GRU (ONNX linear_before_reset=0, Keras reset_after=False)::

        [x_r, x_z, x_n] = x W_ih^T + b_ih
        r = sigmoid(x_r + h W_hr^T + b_hr)
        z = sigmoid(x_z + h W_hz^T + b_hz)
        n = tanh(x_n + (r * h) W_hn^T + b_hn)
        h' = (1 - z) * n + z * h

    (``W_hr, W_hz, W_hn`` are the three row blocks of ``w_hh``.)
    """
    H = h.shape[1]
    b_rz = None if b_hh is None else b_hh[:2 * H]
    b_n = None if b_hh is None else b_hh[2 * H:]
    hg = _affine(h, w_hh[:2 * H], b_rz)
    r = vsigmoid(xg[:, 0:H] + hg[:, 0:H])
    z = vsigmoid(xg[:, H:2 * H] + hg[:, H:2 * H])
    rh = r * h
    n = np.tanh(xg[:, 2 * H:3 * H] + _affine(rh, w_hh[2 * H:], b_n))
    h_new = (1 - z) * n + z * h
    return h_new, (h, r, z, n, rh)


def gru_reset_before_step_backward(dh, cache, w_hh, grads):
    """Backward of :func:`gru_reset_before_step_forward`::

        dn~  = dh' * (1 - z) * (1 - n^2)
        drh  = dn~ W_hn,        dW_hn += dn~^T (r*h),  db_hn += sum(dn~)
        dr~  = drh * h * r(1-r),  dz~ = dh' * (h - n) * z(1-z)
        dW_h[rz] += [dr~, dz~]^T h,   db_h[rz] += sum([dr~, dz~])
        dh   = dh' * z + drh * r + [dr~, dz~] W_h[rz]
        dxg  = [dr~, dz~, dn~]
    """
    h, r, z, n, rh = cache
    H = h.shape[1]
    dn_pre = dh * (1 - z) * _dtanh(n)
    drh = dn_pre @ w_hh[2 * H:]
    _accumulate_hh(grads, dn_pre, rh, rows=slice(2 * H, 3 * H))
    dr_pre = drh * h * _dsigmoid(r)
    dz_pre = dh * (h - n) * _dsigmoid(z)
    drz = np.concatenate([dr_pre, dz_pre], axis=1)
    _accumulate_hh(grads, drz, h, rows=slice(0, 2 * H))
    dh_prev = dh * z + drh * r + drz @ w_hh[:2 * H]
    return np.concatenate([dr_pre, dz_pre, dn_pre], axis=1), dh_prev


# ---------------------------------------------------------------------------
# The layer: the time loop shared by every cell
# ---------------------------------------------------------------------------

def _step_forward(cell, xg, h, c, w_hh, b_hh, w_hr, w_peep):
    """Dispatch one step; returns (h', c' or None, step cache)."""
    if cell == "lstm":
        return lstm_step_forward(xg, h, c, w_hh, b_hh, w_hr, w_peep)
    if cell == "gru":
        h_new, cache = gru_step_forward(xg, h, w_hh, b_hh)
    elif cell == "gru_reset_before":
        h_new, cache = gru_reset_before_step_forward(xg, h, w_hh, b_hh)
    else:
        h_new, cache = rnn_step_forward(xg, h, w_hh, b_hh, cell[len("rnn_"):])
    return h_new, None, cache


def _step_backward(cell, dh, dc, cache, w_hh, w_hr, grads, w_peep):
    """Dispatch one backward step; returns (dxg, dh_prev, dc_prev or None)."""
    if cell == "lstm":
        return lstm_step_backward(dh, dc, cache, w_hh, w_hr, grads, w_peep)
    if cell == "gru":
        dxg, dh_prev = gru_step_backward(dh, cache, w_hh, grads)
    elif cell == "gru_reset_before":
        dxg, dh_prev = gru_reset_before_step_backward(dh, cache, w_hh, grads)
    else:
        dxg, dh_prev = rnn_step_backward(dh, cache, w_hh, grads)
    return dxg, dh_prev, None


def _check_shape(name, a, shape):
    if a is None or tuple(a.shape) != tuple(shape):
        got = None if a is None else tuple(a.shape)
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {got}")


def _valid_mask(lengths, T, B):
    """Boolean ``(T, B)`` mask, True where step ``t`` of sequence ``b`` is valid."""
    if lengths is None:
        return np.ones((T, B), dtype=bool)
    lengths = np.asarray(lengths)
    _check_shape("lengths", lengths, (B,))
    if B and (lengths.min() < 1 or lengths.max() > T):
        raise ValueError(f"lengths: each must be in 1..{T}, got {lengths.tolist()}")
    return np.arange(T)[:, None] < lengths[None, :]


class PackedWeights(NamedTuple):
    """What :func:`pack_layer` returns here: a snapshot of the weights (the native kernels
    keep them in their SIMD panel layout instead)."""

    cell: str
    arrays: tuple


def pack_layer(cell, w_ih, w_hh, b_ih, b_hh, w_hr, w_peep=None):
    """The weights of one layer and direction packed once for repeated inference calls
    (a copy: later changes to the arrays do not reach it)."""
    return PackedWeights(cell, tuple(None if a is None else np.array(a, copy=True)
                                     for a in (w_ih, w_hh, b_ih, b_hh, w_hr, w_peep)))


def _check_packed(packed, cell, arrays):
    """``packed`` must come from :func:`pack_layer` for a layer of this call's cell and shapes."""
    if packed is None:
        return
    if not isinstance(packed, PackedWeights):
        raise TypeError("packed must be None or the PackedWeights returned by pack_layer")
    same = packed.cell == cell and all(
        (a is None) == (b is None) and (a is None or (a.shape == b.shape and a.dtype == b.dtype))
        for a, b in zip(packed.arrays, arrays))
    if not same:
        raise ValueError("packed weights were made for a different layer (cell, dtype or shape) than this call's")


def layer_forward(cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, reverse, training, packed,
                  w_peep=None, outputs=True):
    """Run one layer in one direction over the whole sequence.

    Returns ``(y, h_n, c_n, cache)``: ``y`` ``(T, B, P)``, ``h_n`` ``(B, P)``,
    ``c_n`` ``(B, H)`` for LSTM else None, and ``cache`` (the opaque record
    :func:`layer_backward` needs) if ``training`` else None; ``y`` is None with
    ``outputs=False`` (inference that needs only the final state).  The inputs are
    never modified. ``packed`` (:func:`pack_layer` of the same weights, or None) is
    checked and otherwise only a speed-up for the native kernels. ``w_peep`` ``(3*H,)``:
    the LSTM's peephole weights (see :func:`lstm_step_forward`) or None.
    """
    _check_packed(packed, cell, (w_ih, w_hh, b_ih, b_hh, w_hr, w_peep))
    if training and not outputs:
        raise ValueError("outputs=False is for inference: training needs y")
    G = gates_per_cell(cell)
    x = np.asarray(x)
    T, B, I = x.shape
    dtype = x.dtype
    H = w_ih.shape[0] // G
    if w_hr is not None and cell != "lstm":
        raise ValueError("w_hr: a projection is only defined for lstm")
    P = H if w_hr is None else w_hr.shape[0]
    _check_shape("w_ih", w_ih, (G * H, I))
    _check_shape("w_hh", w_hh, (G * H, P))
    if (b_ih is None) != (b_hh is None):
        raise ValueError("b_ih, b_hh: give both biases or neither")
    if b_ih is not None:
        _check_shape("b_ih", b_ih, (G * H,))
        _check_shape("b_hh", b_hh, (G * H,))
    if w_hr is not None:
        _check_shape("w_hr", w_hr, (P, H))
    if w_peep is not None:
        if cell != "lstm":
            raise ValueError("w_peep: peepholes are only defined for lstm")
        _check_shape("w_peep", w_peep, (3 * H,))
    _check_shape("h0", h0, (B, P))
    if cell == "lstm":
        _check_shape("c0", c0, (B, H))
    mask = _valid_mask(lengths, T, B)

    # Input projection of every time step at once: (T, B, G*H).
    xg = _affine(x.reshape(T * B, I), w_ih, b_ih).reshape(T, B, G * H)

    y = np.zeros((T, B, P), dtype=dtype)
    h = np.array(h0, dtype=dtype, copy=True)
    c = np.array(c0, dtype=dtype, copy=True) if cell == "lstm" else None
    order = range(T - 1, -1, -1) if reverse else range(T)
    steps = []
    for t in order:
        # Only the active sequences take a step (packed-sequence semantics);
        # the others keep their state and output zero.
        act = mask[t]
        cs = None if c is None else c[act]
        h_new, c_new, step_cache = _step_forward(cell, xg[t, act], h[act], cs, w_hh, b_hh, w_hr, w_peep)
        h[act] = h_new
        if c is not None:
            c[act] = c_new
        y[t, act] = h_new
        if training:
            steps.append((t, act, step_cache))

    cache = None
    if training:
        cache = {
            "cell": cell, "x": x.copy(), "mask": mask, "steps": steps,
            "reverse": bool(reverse), "shapes": (T, B, I, H, P, G),
            "bias": b_ih is not None, "dtype": dtype, "peepholes": w_peep is not None,
        }
    return (y if outputs else None), h, c, cache


def layer_step(x, h, c, packed):
    """One inference step of one layer on :func:`pack_layer`'s weights: ``x`` ``(B, I)``,
    ``h`` ``(B, P)``, ``c`` ``(B, H)`` (LSTM) or None; the states may also be ``(1, B, P)``
    and ``(1, B, H)``.  Returns ``(h_new, c_new)`` shaped like ``h`` and ``c``; the same math
    as a T = 1 :func:`layer_forward`."""
    if not isinstance(packed, PackedWeights):
        raise TypeError("packed must be the PackedWeights returned by pack_layer")
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"x: expected shape (B, I), got {x.shape}")

    def unstacked(state):
        state = None if state is None else np.asarray(state)
        return state[0] if state is not None and state.ndim == 3 and state.shape[0] == 1 else state

    *arrays, w_peep = packed.arrays
    _, h_new, c_new, _ = layer_forward(packed.cell, x[None], unstacked(h), unstacked(c),
                                       *arrays, None, False, False, packed, w_peep)
    if np.ndim(h) == 3:
        h_new = h_new[None]
    if c_new is not None and np.ndim(c) == 3:
        c_new = c_new[None]
    return h_new, c_new


def layer_backward(cell, cache, dy, dh_n, dc_n, w_ih, w_hh, w_hr, dw_ih, dw_hh, db_ih, db_hh, dw_hr,
                   w_peep=None, dw_peep=None, input_grad=True):
    """Backpropagation through time of the :func:`layer_forward` that gave ``cache``.

    ``dy`` ``(T, B, P)``, ``dh_n`` ``(B, P)``, ``dc_n`` ``(B, H)`` may each be
    None (zeros); ``dy`` at padding positions is ignored.  The parameter
    gradients are accumulated in place into ``dw_ih``, ``dw_hh``, ``db_ih``,
    ``db_hh`` (None without bias), ``dw_hr`` (None without projection) and ``dw_peep``
    (None without peepholes, then ``w_peep`` is None too).
    Returns ``(dx, dh0, dc0)`` with ``dc0`` None unless LSTM and ``dx`` None with
    ``input_grad=False``.
    """
    if cache is None:
        raise RuntimeError("layer_backward: no cache (the forward ran with training=False)")
    if cache["cell"] != cell:
        raise ValueError(f"cell: the cache was made by {cache['cell']!r}, got {cell!r}")
    T, B, I, H, P, G = cache["shapes"]
    dtype = cache["dtype"]
    x, mask = cache["x"], cache["mask"]
    if cache["peepholes"] != (w_peep is not None) or (w_peep is None) != (dw_peep is None):
        raise ValueError("w_peep and dw_peep must be given exactly when the forward had peepholes")

    dh = np.zeros((B, P), dtype=dtype) if dh_n is None else np.array(dh_n, dtype=dtype)
    dc = None
    if cell == "lstm":
        dc = np.zeros((B, H), dtype=dtype) if dc_n is None else np.array(dc_n, dtype=dtype)
    if dy is not None:
        _check_shape("dy", dy, (T, B, P))
    grads = {"dw_hh": dw_hh, "db_hh": db_hh, "dw_hr": dw_hr, "dw_peep": dw_peep}

    dxg = np.zeros((T, B, G * H), dtype=dtype)
    for t, act, step_cache in reversed(cache["steps"]):
        dh_act = dh[act]
        if dy is not None:
            dh_act = dh_act + dy[t, act]
        dc_act = None if dc is None else dc[act]
        dxg_t, dh_prev, dc_prev = _step_backward(cell, dh_act, dc_act, step_cache, w_hh, w_hr, grads, w_peep)
        dxg[t, act] = dxg_t
        dh[act] = dh_prev           # inactive rows: the gradient passes unchanged
        if dc is not None:
            dc[act] = dc_prev

    # Input-side gradients as products over all valid (t, b) rows.
    dxg_valid = dxg[mask]           # (N, G*H)
    dw_ih += dxg_valid.T @ x[mask]
    if db_ih is not None:
        db_ih += dxg_valid.sum(axis=0)
    dx = (dxg.reshape(T * B, G * H) @ w_ih).reshape(T, B, I) if input_grad else None
    return dx, dh, dc
