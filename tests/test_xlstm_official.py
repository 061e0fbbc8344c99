"""Parity with the official ``xlstm`` package (skipped when it or torch is missing): the same
weights through ``pyrnn.xlstm.from_official`` give the same outputs and gradients as its CPU
vanilla sLSTM backend and its mLSTM backends (parallel, chunkwise, recurrent step)."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
xlstm = pytest.importorskip("xlstm")

from pyrnn.xlstm import from_official  # noqa: E402

E, NH, B, T = 16, 4, 3, 12
DH = E // NH


def _slstm_layer(dtype):
    from xlstm import sLSTMLayer, sLSTMLayerConfig

    torch.manual_seed(0)
    cfg = sLSTMLayerConfig(embedding_dim=E, num_heads=NH, conv1d_kernel_size=0, backend="vanilla",
                           dtype="float32", bias_init="powerlaw_blockdependent",
                           recurrent_weight_init="standard")
    layer = sLSTMLayer(cfg).to(dtype)
    with torch.no_grad():  # make the (zero-initialised) biases non-trivial
        layer.slstm_cell._bias_.add_(0.3 * torch.randn_like(layer.slstm_cell._bias_))
    return layer


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_slstm_layer_matches_official_vanilla_backend(dtype):
    tdt = torch.float64 if dtype == np.float64 else torch.float32
    off = _slstm_layer(tdt)
    x = torch.randn(B, T, E, dtype=tdt, requires_grad=True)
    # the official layer's cell output (before its dropout and group norm)
    gates = torch.cat([off.fgate(x), off.igate(x), off.zgate(x), off.ogate(x)], dim=-1)
    y_off, _ = off.slstm_cell(gates)
    y_off = y_off.permute(0, 2, 1, 3).reshape(B, T, E)   # (B, NH, T, DH) -> (B, T, E)
    g = torch.randn_like(y_off)
    (y_off * g).sum().backward()

    mine = from_official(off, dtype=dtype)
    mine.batch_first = True
    y, _ = mine(x.detach().numpy())
    dx, _ = mine.backward(g.numpy())
    tol = dict(rtol=1e-9, atol=1e-11) if dtype == np.float64 else dict(rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(y, y_off.detach().numpy(), **tol)
    np.testing.assert_allclose(dx, x.grad.numpy(), **tol)
    # weight gradients in the official layouts
    gr = mine.grads
    w_ih = gr["weight_ih_l0"]                                  # headwise (4E, E/NH)
    assert w_ih.shape == (4 * E, E // NH)
    for k, mod in enumerate([off.fgate, off.igate, off.zgate, off.ogate]):
        np.testing.assert_allclose(w_ih[k * E:(k + 1) * E].reshape(NH, DH, E // NH), mod.weight.grad.numpy(), **tol)
    cell = off.slstm_cell
    R_grad = cell._recurrent_kernel_.grad.numpy()             # (NH, 4*DH, DH), row g*DH + j
    mine_R = gr["weight_hh_l0"].reshape(4, NH, DH, DH).transpose(1, 0, 2, 3).reshape(NH, 4 * DH, DH)
    np.testing.assert_allclose(mine_R, R_grad, **tol)
    b_grad = cell._bias_.grad.numpy()                          # (4*NH*DH,) gate-major
    np.testing.assert_allclose(gr["bias_l0"], b_grad, **tol)


def test_slstm_cell_matches_official_with_state_continuation():
    off = _slstm_layer(torch.float64).slstm_cell
    raw = torch.randn(B, T, 4 * E, dtype=torch.float64) * 3  # large pre-activations
    y1, s1 = off(raw[:, :T // 2])
    y2, s2 = off(raw[:, T // 2:], state=s1)
    mine = from_official(off, dtype=np.float64)
    mine.batch_first = True
    y, fin = mine(raw.numpy())
    y_off = torch.cat([y1, y2], dim=2).permute(0, 2, 1, 3).reshape(B, T, E).detach().numpy()
    np.testing.assert_allclose(y, y_off, rtol=1e-9, atol=1e-11)
    # states after the first step agree exactly (the official first-step rule m_1 = i~ is
    # pyrnn's empty-memory rule)
    for a, b in zip(fin, s2.detach().numpy()):
        np.testing.assert_allclose(a[0], b, rtol=1e-9, atol=1e-11)


def _mlstm_cell(dtype):
    from xlstm.blocks.mlstm.cell import mLSTMCell, mLSTMCellConfig

    torch.manual_seed(1)
    cell = mLSTMCell(mLSTMCellConfig(context_length=T, embedding_dim=E, num_heads=NH)).to(dtype)
    with torch.no_grad():
        cell.igate.weight.normal_(0, 0.3)
        cell.fgate.weight.normal_(0, 0.3)
    return cell


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_mlstm_matches_official_parallel_backend(dtype):
    from xlstm.blocks.mlstm.backends import parallel_stabilized_simple

    tdt = torch.float64 if dtype == np.float64 else torch.float32
    cell = _mlstm_cell(tdt)
    q, k, v = (torch.randn(B, T, E, dtype=tdt, requires_grad=True) for _ in range(3))
    qkv = torch.cat([q, k, v], dim=-1)
    ig = cell.igate(qkv).transpose(1, 2).unsqueeze(-1)
    fg = cell.fgate(qkv).transpose(1, 2).unsqueeze(-1)
    heads = [t.view(B, T, NH, DH).transpose(1, 2) for t in (q, k, v)]
    h_off = parallel_stabilized_simple(*heads, ig, fg)                  # (B, NH, T, DH)
    h_off = h_off.transpose(1, 2).reshape(B, T, E)
    g = torch.randn_like(h_off)
    (h_off * g).sum().backward()

    mine = from_official(cell, dtype=dtype)
    mine.batch_first = True
    y, _ = mine(qkv.detach().numpy())
    dx, _ = mine.backward(g.numpy())
    tol = dict(rtol=1e-8, atol=1e-10) if dtype == np.float64 else dict(rtol=2e-3, atol=2e-4)
    np.testing.assert_allclose(y, h_off.detach().numpy(), **tol)
    np.testing.assert_allclose(dx, np.concatenate([q.grad, k.grad, v.grad], axis=-1), **tol)
    gw = mine.grads["weight_ih_l0"]
    np.testing.assert_allclose(gw[3 * E:3 * E + NH], cell.igate.weight.grad.numpy(), **tol)
    np.testing.assert_allclose(gw[3 * E + NH:], cell.fgate.weight.grad.numpy(), **tol)
    gb = mine.grads["bias_l0"]
    np.testing.assert_allclose(gb[3 * E:3 * E + NH], cell.igate.bias.grad.numpy(), **tol)
    np.testing.assert_allclose(gb[3 * E + NH:], cell.fgate.bias.grad.numpy(), **tol)


def test_mlstm_matches_official_chunkwise_and_recurrent_step():
    from xlstm.blocks.mlstm.backends import chunkwise_simple, recurrent_step_stabilized_simple

    cell = _mlstm_cell(torch.float64)
    qkv = torch.randn(B, T, 3 * E, dtype=torch.float64)
    q, k, v = qkv.split(E, dim=-1)
    ig = cell.igate(qkv).transpose(1, 2).detach()                      # (B, NH, T)
    fg = cell.fgate(qkv).transpose(1, 2).detach()
    heads = [t.reshape(B, T, NH, DH).transpose(1, 2) for t in (q, k, v)]
    mine = from_official(cell, dtype=np.float64)
    mine.batch_first = True
    mine.eval()
    y, (C, n, m) = mine(qkv.numpy())
    h_chunk, (C_off, n_off, m_off) = chunkwise_simple(*heads, ig, fg, chunk_size=4, return_last_state=True)
    np.testing.assert_allclose(y, h_chunk.transpose(1, 2).reshape(B, T, E).numpy(), rtol=1e-6, atol=1e-8)
    # recurrent steps from the official zero state (m0 = 0); both memories are k v^T
    c_s = torch.zeros(B, NH, DH, DH, dtype=torch.float64)
    n_s = torch.zeros(B, NH, DH, 1, dtype=torch.float64)
    m_s = torch.zeros(B, NH, 1, 1, dtype=torch.float64)
    outs = []
    for t in range(T):
        h, (c_s, n_s, m_s) = recurrent_step_stabilized_simple(
            c_s, n_s, m_s, *(x[:, :, t:t + 1].clone() for x in heads),
            ig[:, :, t, None, None], fg[:, :, t, None, None])
        outs.append(h[:, :, 0] if h.dim() == 4 else h)
    h_rec = torch.stack(outs, dim=2).reshape(B, NH, T, DH).transpose(1, 2).reshape(B, T, E)
    np.testing.assert_allclose(y, h_rec.numpy(), rtol=1e-6, atol=1e-8)
    # the final states describe the same memory: C / exp(-m) agree across conventions
    scale_mine = np.exp(m[0])[..., None, None]
    scale_off = torch.exp(m_s).numpy()
    np.testing.assert_allclose(C[0] * scale_mine, c_s.numpy() * scale_off, rtol=1e-8)


# ---------------------------------------------------------------------------------------------
# whole blocks and stacks: convolution, headwise q/k/v, group norms, learnable skip, feed-forward


def _official_stack(tdt, slstm_at=(1,), num_blocks=3, m_conv=4, s_conv=4, act="gelu", seed=2, heads=NH,
                    blocksize=4, group_norm_weight=True, bias=False, post_norm=True):
    from xlstm import mLSTMBlockConfig, sLSTMBlockConfig, xLSTMBlockStack, xLSTMBlockStackConfig
    from xlstm.blocks.mlstm.layer import mLSTMLayerConfig
    from xlstm.blocks.slstm.layer import sLSTMLayerConfig
    from xlstm.components.feedforward import FeedForwardConfig

    torch.manual_seed(seed)
    cfg = xLSTMBlockStackConfig(
        mlstm_block=mLSTMBlockConfig(mlstm=mLSTMLayerConfig(conv1d_kernel_size=m_conv, qkv_proj_blocksize=blocksize,
                                                            num_heads=heads)),
        slstm_block=sLSTMBlockConfig(slstm=sLSTMLayerConfig(backend="vanilla", num_heads=heads,
                                                            conv1d_kernel_size=s_conv,
                                                            group_norm_weight=group_norm_weight),
                                     feedforward=FeedForwardConfig(proj_factor=1.3, act_fn=act, bias=bias)),
        context_length=T, num_blocks=num_blocks, embedding_dim=E, slstm_at=list(slstm_at), bias=bias,
        add_post_blocks_norm=post_norm)
    stack = xLSTMBlockStack(cfg).to(tdt)
    with torch.no_grad():  # every weight away from its (often zero or one) initialisation
        for p in stack.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return stack


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_block_stack_matches_official_forward_and_gradients(dtype):
    tdt = torch.float64 if dtype == np.float64 else torch.float32
    off = _official_stack(tdt)
    x = torch.randn(B, T, E, dtype=tdt, requires_grad=True)
    y_off = off(x)
    g = torch.randn_like(y_off)
    (y_off * g).sum().backward()

    mine = from_official(off, dtype=dtype)
    assert mine.block_types == ["m", "s", "m"] and mine.conv_kernel_size == 4 and mine.qkv_blocksize == 4
    mine.batch_first = True
    y = mine(x.detach().numpy())
    dx = mine.backward(g.numpy())
    tol = dict(rtol=1e-9, atol=1e-11) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(y, y_off.detach().numpy(), **tol)
    np.testing.assert_allclose(dx, x.grad.numpy(), **tol)
    # parameter gradients, in the official layouts
    gr, m0, s1 = mine.grads, off.blocks[0].xlstm, off.blocks[1]
    F = s1.ffn.config._proj_up_dim
    pairs = {
        "blocks.0.norm.weight": off.blocks[0].xlstm_norm.weight,
        "blocks.0.up_g.weight": m0.proj_up.weight.grad[m0.config._inner_embedding_dim:],
        "blocks.0.conv.weight": m0.conv1d.conv.weight.grad[:, 0],
        "blocks.0.conv.bias": m0.conv1d.conv.bias,
        "blocks.0.q_proj.weight": m0.q_proj.weight, "blocks.0.k_proj.weight": m0.k_proj.weight,
        "blocks.0.v_proj.weight": m0.v_proj.weight,
        "blocks.0.igate.weight": m0.mlstm_cell.igate.weight, "blocks.0.fgate.bias": m0.mlstm_cell.fgate.bias,
        "blocks.0.skip.weight": m0.learnable_skip,
        "blocks.0.group_norm.weight": m0.mlstm_cell.outnorm.weight,
        "blocks.0.down.weight": m0.proj_down.weight,
        "blocks.1.conv.weight": s1.xlstm.conv1d.conv.weight.grad[:, 0],
        "blocks.1.group_norm.weight": s1.xlstm.group_norm.weight,
        "blocks.1.up_g.weight": s1.ffn.proj_up.weight.grad[:F],
        "blocks.1.up_a.weight": s1.ffn.proj_up.weight.grad[F:],
        "blocks.1.ffn_norm.weight": s1.ffn_norm.weight,
        "post_norm.weight": off.post_blocks_norm.weight,
    }
    # the sLSTM's input weights: i from the official fgate module on the convolved half
    w_ih = gr["blocks.1.xlstm.weight_ih_l0"].reshape(4, NH, DH, 2 * DH)
    checks = [(name, gr[name], ref.grad if isinstance(ref, torch.nn.Parameter) else ref)
              for name, ref in pairs.items()]
    checks += [("i from fgate", w_ih[0, :, :, :DH], s1.xlstm.fgate.weight.grad),
               ("o from ogate", w_ih[3, :, :, DH:], s1.xlstm.ogate.weight.grad)]
    for name, mine_grad, ref in checks:
        ref = ref.numpy()
        # float32: sums over B*T terms, compared relative to the gradient's scale
        grad_tol = tol if dtype == np.float64 else dict(rtol=2e-4, atol=2e-5 * np.abs(ref).max())
        np.testing.assert_allclose(mine_grad, ref, **grad_tol, err_msg=name)


@pytest.mark.parametrize("kind", ["s", "m"])
def test_single_official_blocks_load_without_post_norm(kind):
    # an sLSTM block without a convolution and with a swish feed-forward; an mLSTM block with a
    # 2-tap convolution (the official mLSTM layer cannot be built without one)
    off = _official_stack(torch.float64, slstm_at=(0,) if kind == "s" else (), num_blocks=1, m_conv=2, s_conv=0,
                          act="swish").blocks[0]
    mine = from_official(off, dtype=np.float64)
    assert not mine.post_norm and mine.conv_kernel_size == (2 if kind == "m" else 0)
    assert mine.ffn_activation == "silu"
    mine.batch_first = True
    x = torch.randn(B, T, E, dtype=torch.float64)
    np.testing.assert_allclose(mine(x.numpy()), off(x).detach().numpy(), rtol=1e-9, atol=1e-11)


def test_official_stack_variants_load():
    # two heads, blocks of 8, biases everywhere, an sLSTM group norm without weight, no final norm
    off = _official_stack(torch.float64, slstm_at=(0, 3), num_blocks=4, m_conv=3, s_conv=3, heads=2, blocksize=8,
                          group_norm_weight=False, bias=True, post_norm=False)
    mine = from_official(off, dtype=np.float64)
    assert mine.block_types == ["s", "m", "m", "s"] and mine.num_heads == 2 and not mine.post_norm
    mine.batch_first = True
    x = torch.randn(B, T, E, dtype=torch.float64)
    np.testing.assert_allclose(mine(x.numpy()), off(x).detach().numpy(), rtol=1e-9, atol=1e-11)


def test_official_stack_with_mixed_settings_is_refused():
    off = _official_stack(torch.float64, m_conv=4, s_conv=2)
    with pytest.raises(ValueError, match="convolution size"):
        from_official(off)
    with pytest.raises(TypeError, match="xLSTMBlockStack"):
        from_official(torch.nn.Linear(2, 2))
