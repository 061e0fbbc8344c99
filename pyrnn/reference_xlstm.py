"""Pure-NumPy reference of pyrnn's xLSTM kernels: sLSTM and mLSTM layers (one layer, whole
sequence, time-major), forward and backward. The test oracle of the native
``_core.slstm_forward/slstm_backward/mlstm_forward/mlstm_backward`` (same names, same
arguments, same results up to rounding), written to be read.

Shapes: ``x`` (T, B, I); H hidden units split into NH heads of DH = H / NH units.

sLSTM (scalar memory, memory mixing within a head)
-------------------------------------------------
Gate pre-activations, gate order **i, f, z, o** (H rows each)::

    raw_t = x_t W_ih^T + bias + R h_{t-1}        w_ih (4H, I), bias (4H,), w_hh (4H, DH)

``w_hh`` holds the block-diagonal recurrent matrix compactly: row ``g*H + h*DH + j`` is the
weight row of unit j of head h in gate g, over the DH units of the same head of h_{t-1}.
Stabilised exponential gating (state h, c, n, m)::

    log f = logsigmoid(f~)            (forget_exp=True: log f = f~)
    m'    = -inf if n_{t-1} == 0 else m_{t-1}      an empty memory's stabiliser is ignored
    m_t   = max(log f + m', i~)
    i'    = exp(i~ - m_t),   f' = exp(log f + m' - m_t)
    c_t   = f' c_{t-1} + i' tanh(z~),   n_t = f' n_{t-1} + i',   h_t = sigmoid(o~) c_t / n_t

mLSTM (matrix memory, no recurrent weights)
-------------------------------------------
One projection of the input, rows **q, k, v** (H each), **i, f** (NH each, scalar gates per
head) and, with ``output_gate``, **o** (H): ``w_ih`` (3H + 2NH [+ H], I). Per head, with
k scaled by 1/sqrt(DH) and the state (C (DH, DH), n (DH,), m)::

    m' = -inf if n_{t-1} == 0 (all entries) else m_{t-1};  m_t, i', f' as for the sLSTM
    C_t = f' C_{t-1} + i' k v^T,   n_t = f' n_{t-1} + i' k     (C[j, i]: key j, value i)
    h~  = C_t^T q / (max(|n_t . q|, exp(-m_t)) + eps),   h = sigmoid(o~) * h~  (or h~)

``exp(-m_t)`` is evaluated as ``exp(min(-m_t, 60))`` so that extreme gates cannot make it
overflow (at that point h~ is ~1e-26 of |C q| anyway). Dividing the stabilised state by
exp(-m) makes this max(|n.q|, 1) of the unstabilised memory: h does not depend on m.

Lengths (int (B,), each in 1..T): steps past a sequence's length leave the state untouched
and output zeros; gradients pass through them unchanged.

For the max in m_t the gradient goes to i~ when i~ >= log f + m' (ties to i~).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["slstm_forward", "slstm_backward", "mlstm_forward", "mlstm_backward",
           "mlstm_parallel", "mlstm_rows", "EXP_NEG_M_CAP"]

#: exp(-m) in the mLSTM denominator is exp(min(-m, EXP_NEG_M_CAP))
EXP_NEG_M_CAP = 60.0


def _sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _logsigmoid(x):
    return np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))


def _valid(lengths, T, B):
    if lengths is None:
        return np.ones((T, B), bool)
    return np.arange(T)[:, None] < np.asarray(lengths)[None, :]


def _forget(fg, forget_exp):
    """(log f, d log f / d f~)."""
    if forget_exp:
        return fg, np.ones_like(fg)
    return _logsigmoid(fg), _sigmoid(-fg)


def _stabilised_gates(ig, logf, m_prev, empty):
    mp = np.where(empty, -np.inf, m_prev)
    a = logf + mp
    m = np.maximum(a, ig)
    return a, m, np.exp(ig - m), np.exp(a - m)


def _route_m(dm, ig, a, di, da):
    """Gradient of m = max(a, i~): to i~ where i~ >= a, else to a."""
    to_i = ig >= a
    return di + np.where(to_i, dm, 0), da + np.where(to_i, 0, dm)


def _masked_input(x, valid):
    # padding steps never enter the weight gradients (0 * NaN would leak)
    return np.where(valid[:, :, None], x, 0)


# ---------------------------------------------------------------------------------------------
# sLSTM


def _head_of_rows(H, NH):
    """Head of each of the 4H gate rows (row g*H + h*DH + j belongs to head h)."""
    return (np.arange(4 * H) % H) // (H // NH)


def _dense_input_weight(w_ih, I, NH, headwise):
    """The (4H, I) input weight: ``w_ih`` itself, or, headwise, its (4H, I/NH) rows placed on
    their head's block of inputs (zeros elsewhere)."""
    if not headwise:
        return w_ih
    H, DI = w_ih.shape[0] // 4, I // NH
    dense = np.zeros((4 * H, I), w_ih.dtype)
    heads = _head_of_rows(H, NH)
    for h in range(NH):
        dense[heads == h, h * DI:(h + 1) * DI] = w_ih[heads == h]
    return dense


def slstm_forward(x, h0, c0, n0, m0, w_ih, w_hh, bias, num_heads, forget_exp, headwise, lengths, training):
    """One sLSTM layer over the sequence. Returns (y, h_n, c_n, n_n, m_n, cache or None).
    ``headwise``: ``w_ih`` is (4H, I/NH), each head's gates reading only its share of the input
    (the official package's headwise gate projections); else (4H, I)."""
    x = np.asarray(x)
    T, B, I = x.shape
    H = w_ih.shape[0] // 4
    NH = int(num_heads)
    DH = H // NH
    R = w_hh.reshape(4, NH, DH, DH)
    xg = x @ _dense_input_weight(w_ih, I, NH, headwise).T + (bias if bias is not None else 0)
    valid = _valid(lengths, T, B)
    h, c, n, m = (np.array(s, dtype=x.dtype) for s in (h0, c0, n0, m0))
    y = np.zeros((T, B, H), x.dtype)
    steps = []
    for t in range(T):
        ry = np.einsum("bhk,ghjk->bghj", h.reshape(B, NH, DH), R).reshape(B, 4 * H)
        raw = xg[t] + ry
        ig, fg, zg, og = raw[:, :H], raw[:, H:2 * H], raw[:, 2 * H:3 * H], raw[:, 3 * H:]
        logf, sfn = _forget(fg, forget_exp)
        empty = n == 0
        a, m_new, ip, fp = _stabilised_gates(ig, logf, m, empty)
        z, o = np.tanh(zg), _sigmoid(og)
        c_new = fp * c + ip * z
        n_new = fp * n + ip
        h_new = o * c_new / n_new
        act = valid[t][:, None]
        steps.append(dict(h=h, c=c, n=n, ig=ig, a=a, ip=ip, fp=fp, z=z, o=o, sfn=sfn,
                          empty=empty, c_new=c_new, n_new=n_new))
        h, c, n, m = (np.where(act, new, old) for new, old in
                      ((h_new, h), (c_new, c), (n_new, n), (m_new, m)))
        y[t] = np.where(act, h_new, 0)
    cache = dict(x=x, lengths=lengths, steps=steps, NH=NH, forget_exp=forget_exp,
                 headwise=headwise) if training else None
    return y, h, c, n, m, cache


def slstm_backward(cache, dy, dh_n, dc_n, dn_n, dm_n, w_ih, w_hh, dw_ih, dw_hh, db):
    """BPTT through the forward that made ``cache``; dw_ih, dw_hh, db (or None) are
    accumulated in place. Returns (dx, dh0, dc0, dn0, dm0)."""
    x, steps, NH = cache["x"], cache["steps"], cache["NH"]
    T, B, _ = x.shape
    H = w_ih.shape[0] // 4
    DH = H // NH
    R = w_hh.reshape(4, NH, DH, DH)
    valid = _valid(cache["lengths"], T, B)
    zeros = np.zeros((B, H), x.dtype)
    dh, dc, dn, dm = (zeros.copy() if g is None else np.array(g, dtype=x.dtype)
                      for g in (dh_n, dc_n, dn_n, dm_n))
    draw = np.zeros((T, B, 4 * H), x.dtype)
    for t in reversed(range(T)):
        s = steps[t]
        act = valid[t][:, None]
        dht = dh + (dy[t] if dy is not None else 0)
        o, ip, fp, z = s["o"], s["ip"], s["fp"], s["z"]
        dog = dht * s["c_new"] / s["n_new"] * o * (1 - o)
        dct = dc + dht * o / s["n_new"]
        dnt = dn - dht * o * s["c_new"] / s["n_new"] ** 2
        dzg = dct * ip * (1 - z * z)
        dip = dct * z + dnt
        dfp = dct * s["c"] + dnt * s["n"]
        dmt = dm - dip * ip - dfp * fp
        dig, da = _route_m(dmt, s["ig"], s["a"], dip * ip, dfp * fp)
        dfg = da * s["sfn"]
        g = np.concatenate([dig, dfg, dzg, dog], axis=1)
        g = np.where(act, g, 0)
        draw[t] = g
        dh_prev = np.einsum("bghj,ghjk->bhk", g.reshape(B, 4, NH, DH), R).reshape(B, H)
        dh = np.where(act, dh_prev, dh)
        dc = np.where(act, dct * fp, dc)
        dn = np.where(act, dnt * fp, dn)
        dm = np.where(act, np.where(s["empty"], 0, da), dm)
    flat = draw.reshape(T * B, 4 * H)
    I, headwise = x.shape[2], cache["headwise"]
    dx = (flat @ _dense_input_weight(w_ih, I, NH, headwise)).reshape(x.shape)
    dw_dense = flat.T @ _masked_input(x, valid).reshape(T * B, -1)
    if headwise:
        DI, heads = I // NH, _head_of_rows(H, NH)
        for h in range(NH):
            dw_ih[heads == h] += dw_dense[heads == h, h * DI:(h + 1) * DI]
    else:
        dw_ih += dw_dense
    if db is not None:
        db += flat.sum(axis=0)
    hprev = np.stack([s["h"] for s in steps]).reshape(T * B, NH, DH)
    dR = np.einsum("rghj,rhk->ghjk", flat.reshape(T * B, 4, NH, DH), hprev)
    dw_hh += dR.reshape(4 * H, DH)
    return dx, dh, dc, dn, dm


# ---------------------------------------------------------------------------------------------
# mLSTM


def mlstm_rows(hidden_size, num_heads, output_gate):
    """Rows of the mLSTM projection: q, k, v (H each), i, f (NH each), o (H, optional)."""
    return 3 * hidden_size + 2 * num_heads + (hidden_size if output_gate else 0)


def _split_projection(xg, H, NH, output_gate):
    DH = H // NH
    lead = xg.shape[:-1]
    q = xg[..., :H].reshape(*lead, NH, DH)
    k = xg[..., H:2 * H].reshape(*lead, NH, DH) / math.sqrt(DH)
    v = xg[..., 2 * H:3 * H].reshape(*lead, NH, DH)
    ig = xg[..., 3 * H:3 * H + NH]
    fg = xg[..., 3 * H + NH:3 * H + 2 * NH]
    og = xg[..., 3 * H + 2 * NH:] if output_gate else None
    return q, k, v, ig, fg, og


def _exp_neg_m(m):
    """(exp(min(-m, cap)), d/dm of it)."""
    capped = -m > EXP_NEG_M_CAP
    e = np.exp(np.minimum(-m, EXP_NEG_M_CAP))
    return e, np.where(capped, 0, -e)


def mlstm_forward(x, c0, n0, m0, w_ih, bias, num_heads, eps, output_gate, lengths, training):
    """One mLSTM layer over the sequence (recurrent form). c0 (B, NH, DH, DH), n0 (B, NH, DH),
    m0 (B, NH). Returns (y, c_n, n_n, m_n, cache or None)."""
    x = np.asarray(x)
    T, B, _ = x.shape
    NH = int(num_heads)
    H = (w_ih.shape[0] - 2 * NH) // (4 if output_gate else 3)
    xg = x @ w_ih.T + (bias if bias is not None else 0)
    q, k, v, ig, fg, og = _split_projection(xg, H, NH, output_gate)
    logf, sfn = _forget(fg, False)
    valid = _valid(lengths, T, B)
    C, n, m = (np.array(s, dtype=x.dtype) for s in (c0, n0, m0))
    y = np.zeros((T, B, H), x.dtype)
    steps = []
    for t in range(T):
        empty = np.all(n == 0, axis=-1)
        a, m_new, ip, fp = _stabilised_gates(ig[t], logf[t], m, empty)
        C_new = fp[..., None, None] * C + ip[..., None, None] * k[t][..., :, None] * v[t][..., None, :]
        n_new = fp[..., None] * n + ip[..., None] * k[t]
        num = np.einsum("bhji,bhj->bhi", C_new, q[t])
        s = np.einsum("bhj,bhj->bh", n_new, q[t])
        e, _ = _exp_neg_m(m_new)
        den = np.maximum(np.abs(s), e) + eps
        ht = (num / den[..., None]).reshape(B, H)
        o = _sigmoid(og[t]) if output_gate else None
        h = o * ht if output_gate else ht
        act = valid[t][:, None]
        steps.append(dict(C=C, n=n, a=a, ip=ip, fp=fp, C_new=C_new, n_new=n_new, m_new=m_new,
                          num=num, s=s, den=den, ht=ht, o=o, empty=empty))
        C = np.where(act[:, :, None, None], C_new, C)
        n = np.where(act[:, :, None], n_new, n)
        m = np.where(act, m_new, m)
        y[t] = np.where(act, h, 0)
    cache = (dict(x=x, lengths=lengths, steps=steps, NH=NH, H=H, eps=eps, output_gate=output_gate,
                  q=q, k=k, v=v, ig=ig, sfn=sfn) if training else None)
    return y, C, n, m, cache


def mlstm_backward(cache, dy, dc_n, dn_n, dm_n, w_ih, dw_ih, db):
    """BPTT through the forward that made ``cache``; dw_ih and db (or None) accumulate.
    Returns (dx, dc0, dn0, dm0)."""
    x, steps, NH, H = cache["x"], cache["steps"], cache["NH"], cache["H"]
    q, k, v, ig, sfn = cache["q"], cache["k"], cache["v"], cache["ig"], cache["sfn"]
    output_gate = cache["output_gate"]
    T, B, _ = x.shape
    DH = H // NH
    valid = _valid(cache["lengths"], T, B)
    dC = np.zeros((B, NH, DH, DH), x.dtype) if dc_n is None else np.array(dc_n, dtype=x.dtype)
    dn = np.zeros((B, NH, DH), x.dtype) if dn_n is None else np.array(dn_n, dtype=x.dtype)
    dm = np.zeros((B, NH), x.dtype) if dm_n is None else np.array(dm_n, dtype=x.dtype)
    rows = w_ih.shape[0]
    dxg = np.zeros((T, B, rows), x.dtype)
    for t in reversed(range(T)):
        s = steps[t]
        act = valid[t]
        dht_out = dy[t] if dy is not None else np.zeros((B, H), x.dtype)
        if output_gate:
            o = s["o"]
            dog = dht_out * s["ht"] * o * (1 - o)
            dht = (dht_out * o).reshape(B, NH, DH)
        else:
            dog = None
            dht = dht_out.reshape(B, NH, DH)
        den = s["den"]
        dnum = dht / den[..., None]
        dden = -np.einsum("bhi,bhi->bh", dht, s["num"]) / den ** 2
        qt = q[t]
        dCt = dC + qt[..., :, None] * dnum[..., None, :]
        dq = np.einsum("bhji,bhi->bhj", s["C_new"], dnum)
        e, de_dm = _exp_neg_m(s["m_new"])
        use_s = np.abs(s["s"]) >= e
        ds = np.where(use_s, dden * np.sign(s["s"]), 0)
        dnt = dn + ds[..., None] * qt
        dq = dq + ds[..., None] * s["n_new"]
        dmt = dm + np.where(use_s, 0, dden * de_dm)
        ip, fp = s["ip"], s["fp"]
        vt, kt = v[t], k[t]
        dfp = np.einsum("bhij,bhij->bh", dCt, s["C"]) + np.einsum("bhj,bhj->bh", dnt, s["n"])
        dip = np.einsum("bhj,bhji,bhi->bh", kt, dCt, vt) + np.einsum("bhj,bhj->bh", dnt, kt)
        dv = ip[..., None] * np.einsum("bhji,bhj->bhi", dCt, kt)
        dk = ip[..., None] * (np.einsum("bhji,bhi->bhj", dCt, vt) + dnt)
        dmt = dmt - dip * ip - dfp * fp
        dig, da = _route_m(dmt, ig[t], s["a"], dip * ip, dfp * fp)
        dfg = da * sfn[t]
        parts = [dq.reshape(B, H), dk.reshape(B, H) / math.sqrt(DH), dv.reshape(B, H), dig, dfg]
        if output_gate:
            parts.append(dog)
        g = np.concatenate(parts, axis=1)
        dxg[t] = np.where(act[:, None], g, 0)
        dC = np.where(act[:, None, None, None], dCt * fp[..., None, None], dC)
        dn = np.where(act[:, None, None], dnt * fp[..., None], dn)
        dm = np.where(act[:, None], np.where(s["empty"], 0, da), dm)
    flat = dxg.reshape(T * B, rows)
    dx = (flat @ w_ih).reshape(x.shape)
    dw_ih += flat.T @ _masked_input(x, valid).reshape(T * B, -1)
    if db is not None:
        db += flat.sum(axis=0)
    return dx, dC, dn, dm


def mlstm_parallel(q, k, v, igate, fgate, eps):
    """The mLSTM's parallel form from a zero state: h~ (T, B, NH, DH) for q, k, v
    (T, B, NH, DH; k unscaled) and gate pre-activations (T, B, NH). Equal to the recurrent
    form up to rounding::

        log D[t, j] = sum_{l=j+1..t} log f_l + i~_j   (j <= t),   m_t = max_j log D[t, j]
        S = (q_t . k_j / sqrt(DH)) exp(log D - m_t)
        h~_t = sum_j S[t, j] v_j / (max(|sum_j S[t, j]|, exp(-m_t)) + eps)
    """
    T = q.shape[0]
    DH = q.shape[-1]
    logf = _logsigmoid(fgate)                                  # (T, B, NH)
    cum = np.concatenate([np.zeros_like(logf[:1]), np.cumsum(logf, axis=0)])  # (T+1, ...)
    logD = cum[1:, None] - cum[None, 1:] + igate[None, :]     # [t, j]
    causal = np.tril(np.ones((T, T), bool))[:, :, None, None]
    logD = np.where(causal, logD, -np.inf)
    m = logD.max(axis=1)                                       # (T, B, NH)
    D = np.exp(logD - m[:, None])
    S = np.einsum("tbhd,jbhd->tjbh", q, k) / math.sqrt(DH) * D
    e, _ = _exp_neg_m(m)
    den = np.maximum(np.abs(S.sum(axis=1)), e) + eps
    return np.einsum("tjbh,jbhd->tbhd", S, v) / den[..., None]
