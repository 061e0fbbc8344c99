"""pyrnn's sLSTM and mLSTM layers against the official ``xlstm`` package on CPU.

    python benchmarks/xlstm_compare.py [--batch 16] [--steps 256] [--dim 256] [--heads 4]
                                       [--threads N] [--repeats 5] [--json out.json]

Same computation on both sides, float32, medians of ``--repeats`` runs (milliseconds):

* sLSTM: the official ``sLSTMLayer`` path without convolution on its CPU "vanilla" backend --
  the four head-wise gate projections and the sLSTM cell -- against ``pyrnn.SLSTM(E, E,
  num_heads, input_projection="headwise")`` (the same head-wise projections).
* mLSTM: q, k, v projections (three E x E linears) and the official ``mLSTMCell`` (gate
  projections and its parallel stabilised form; its output norm included) against
  ``pyrnn.MLSTM(E, E, num_heads)`` (one projection for q, k, v, gates and output gate, then
  the recurrent form).

* stack: the official ``xLSTMBlockStack`` of blocks mLSTM, sLSTM, mLSTM with its defaults
  (causal convolution of 4, headwise q/k/v of blocksize 4, group norms, learnable skip, GELU
  feed-forward of 1.3 E rounded up to a multiple of 64; sLSTM on the vanilla backend) against
  ``pyrnn.xLSTMBlockStack`` with the same options and sizes (what ``from_official`` builds).

"forward" is inference (torch.no_grad / pyrnn eval mode); "train" is forward + backward with
the gradients of the input and every weight. The two libraries' runs of each case alternate,
so both see the same machine load; ``--threads`` sets pyrnn's and torch's thread counts.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import numpy as np


def _official_ffn_size(E):
    """The official feed-forward's width: 1.3 E rounded up to a multiple of 64."""
    return math.ceil(1.3 * E / 64) * 64


def pyrnn_cases(B, T, E, NH):
    """{(cell, mode): callable} for pyrnn."""
    import pyrnn

    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, E)).astype(np.float32)
    dy = rng.standard_normal((T, B, E)).astype(np.float32)
    stack = pyrnn.xLSTMBlockStack(E, "msm", num_heads=NH, proj_factor=2.0, ffn_factor=_official_ffn_size(E) / E,
                                  conv_kernel_size=4, qkv_blocksize=4, group_norm=True, learnable_skip=True,
                                  ffn_activation="gelu", seed=0)
    cases = {}
    for name, layer in (("slstm", pyrnn.SLSTM(E, E, num_heads=NH, input_projection="headwise", seed=0)),
                        ("mlstm", pyrnn.MLSTM(E, E, num_heads=NH, seed=0)), ("stack", stack)):
        def forward(layer=layer):
            layer.eval()
            layer(x)

        def train(layer=layer):
            layer.train()
            layer(x)
            layer.backward(dy)

        cases[(name, "forward")] = forward
        cases[(name, "train")] = train
    return cases


def official_cases(B, T, E, NH):
    """{(cell, mode): callable} for the official package (raises ImportError without it)."""
    import torch
    from xlstm import (mLSTMBlockConfig, sLSTMBlockConfig, sLSTMLayer, sLSTMLayerConfig, xLSTMBlockStack,
                       xLSTMBlockStackConfig)
    from xlstm.blocks.mlstm.cell import mLSTMCell, mLSTMCellConfig
    from xlstm.blocks.mlstm.layer import mLSTMLayerConfig
    from xlstm.components.feedforward import FeedForwardConfig

    torch.manual_seed(0)
    x = torch.randn(B, T, E)
    s = sLSTMLayer(sLSTMLayerConfig(embedding_dim=E, num_heads=NH, conv1d_kernel_size=0, backend="vanilla",
                                    dtype="float32"))

    def s_forward(inp):
        g = torch.cat([s.fgate(inp), s.igate(inp), s.zgate(inp), s.ogate(inp)], dim=-1)
        return s.slstm_cell(g)[0]

    qkv = [torch.nn.Linear(E, E) for _ in range(3)]
    m = mLSTMCell(mLSTMCellConfig(context_length=T, embedding_dim=E, num_heads=NH))

    def m_forward(inp):
        return m(*(lin(inp) for lin in qkv))

    stack = xLSTMBlockStack(xLSTMBlockStackConfig(
        mlstm_block=mLSTMBlockConfig(mlstm=mLSTMLayerConfig(num_heads=NH)),
        slstm_block=sLSTMBlockConfig(slstm=sLSTMLayerConfig(backend="vanilla", num_heads=NH),
                                     feedforward=FeedForwardConfig(proj_factor=1.3, act_fn="gelu")),
        context_length=T, num_blocks=3, embedding_dim=E, slstm_at=[1]))

    cases = {}
    for name, fwd in (("slstm", s_forward), ("mlstm", m_forward), ("stack", stack)):
        def inference(fwd=fwd):
            with torch.no_grad():
                fwd(x)

        def train(fwd=fwd):
            xi = x.clone().requires_grad_(True)
            fwd(xi).sum().backward()

        cases[(name, "forward")] = inference
        cases[(name, "train")] = train
    return cases


def measure(mine, official, repeats):
    """Median ms per case; pyrnn's and the official package's runs of a case alternate, so
    both see the same machine load."""
    times = {("pyrnn", k): [] for k in mine}
    times.update({("official", k): [] for k in official})
    for key in mine:
        mine[key]()  # warm-up
        if key in official:
            official[key]()
        for _ in range(repeats):
            for lib, fn in (("pyrnn", mine[key]), ("official", official.get(key))):
                if fn is None:
                    continue
                t0 = time.perf_counter()
                fn()
                times[(lib, key)].append((time.perf_counter() - t0) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=256)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    import pyrnn

    if a.threads:
        pyrnn.set_num_threads(a.threads)
        try:
            import torch
            torch.set_num_threads(a.threads)
        except ImportError:
            pass
    print(f"B={a.batch} T={a.steps} E={a.dim} heads={a.heads} threads={pyrnn.get_num_threads()} "
          f"isa={pyrnn._core.active_isa()} float32, median ms of {a.repeats}")
    mine_cases = pyrnn_cases(a.batch, a.steps, a.dim, a.heads)
    try:
        official_cases_ = official_cases(a.batch, a.steps, a.dim, a.heads)
    except ImportError as e:
        print(f"official xlstm package not available ({e}); pyrnn only")
        official_cases_ = {}
    medians = measure(mine_cases, official_cases_, a.repeats)
    mine = {k: medians[("pyrnn", k)] for k in mine_cases}
    official = {k: medians[("official", k)] for k in official_cases_}
    print(f"{'cell':6} {'mode':8} {'pyrnn ms':>10} {'official ms':>12} {'speed-up':>9}")
    rows = []
    for key, ms in mine.items():
        off = official.get(key)
        ratio = off / ms if off else None
        rows.append(dict(cell=key[0], mode=key[1], pyrnn_ms=ms, official_ms=off, speedup=ratio))
        print(f"{key[0]:6} {key[1]:8} {ms:10.2f} {off if off else float('nan'):12.1f} "
              f"{(f'{ratio:.1f}x' if ratio else '-'):>9}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(batch=a.batch, steps=a.steps, dim=a.dim, heads=a.heads, rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
