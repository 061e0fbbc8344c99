"""pyrnn's sLSTM and mLSTM layers against the official ``xlstm`` package on CPU.

    python benchmarks/xlstm_compare.py [--batch 16] [--steps 256] [--dim 256] [--heads 4]
                                       [--threads N] [--repeats 5] [--json out.json]

Same computation on both sides, float32, medians of ``--repeats`` runs (milliseconds):

* sLSTM: the official ``sLSTMLayer`` path without convolution on its CPU "vanilla" backend --
  the four head-wise gate projections and the sLSTM cell -- against ``pyrnn.SLSTM(E, E,
  num_heads)`` (one dense (4E, E) projection, which holds those block-diagonal projections).
* mLSTM: q, k, v projections (three E x E linears) and the official ``mLSTMCell`` (gate
  projections and its parallel stabilised form; its output norm included) against
  ``pyrnn.MLSTM(E, E, num_heads)`` (one projection for q, k, v, gates and output gate, then
  the recurrent form).

"forward" is inference (torch.no_grad / pyrnn eval mode); "train" is forward + backward with
the gradients of the input and every weight.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np


def _median_ms(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def bench_pyrnn(B, T, E, NH, repeats):
    import pyrnn

    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, E)).astype(np.float32)
    dy = rng.standard_normal((T, B, E)).astype(np.float32)
    out = {}
    for name, layer in (("slstm", pyrnn.SLSTM(E, E, num_heads=NH, seed=0)),
                        ("mlstm", pyrnn.MLSTM(E, E, num_heads=NH, seed=0))):
        layer.eval()
        out[(name, "forward")] = _median_ms(lambda: layer(x), repeats)
        layer.train()

        def step():
            layer(x)
            layer.backward(dy)

        out[(name, "train")] = _median_ms(step, repeats)
    return out


def bench_official(B, T, E, NH, repeats):
    import torch
    from xlstm import sLSTMLayer, sLSTMLayerConfig
    from xlstm.blocks.mlstm.cell import mLSTMCell, mLSTMCellConfig

    torch.manual_seed(0)
    x = torch.randn(B, T, E)
    out = {}
    s = sLSTMLayer(sLSTMLayerConfig(embedding_dim=E, num_heads=NH, conv1d_kernel_size=0, backend="vanilla",
                                    dtype="float32"))

    def s_forward(inp):
        g = torch.cat([s.fgate(inp), s.igate(inp), s.zgate(inp), s.ogate(inp)], dim=-1)
        return s.slstm_cell(g)[0]

    qkv = [torch.nn.Linear(E, E) for _ in range(3)]
    m = mLSTMCell(mLSTMCellConfig(context_length=T, embedding_dim=E, num_heads=NH))

    def m_forward(inp):
        return m(*(lin(inp) for lin in qkv))

    for name, fwd in (("slstm", s_forward), ("mlstm", m_forward)):
        def inference():
            with torch.no_grad():
                fwd(x)

        def train():
            xi = x.clone().requires_grad_(True)
            fwd(xi).sum().backward()

        out[(name, "forward")] = _median_ms(inference, repeats)
        out[(name, "train")] = _median_ms(train, max(1, repeats // 2))
    return out


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
    mine = bench_pyrnn(a.batch, a.steps, a.dim, a.heads, a.repeats)
    try:
        official = bench_official(a.batch, a.steps, a.dim, a.heads, a.repeats)
    except ImportError as e:
        print(f"official xlstm package not available ({e}); pyrnn only")
        official = {}
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
