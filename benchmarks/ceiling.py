"""The machine's matrix-multiply ceiling: NumPy float32 matmul of 2048^3 in GFLOP/s.

Big RNN shapes are GEMM-bound, so "% of the sgemm ceiling" says how close a kernel is to what
this machine can do at all. The thread count comes from the environment the parent gave this
process (OPENBLAS_NUM_THREADS/OMP_NUM_THREADS), set before NumPy loaded its BLAS.
"""
from __future__ import annotations

import numpy as np

from timing import Budget, measure


def sgemm_gflops(budget: Budget, n: int = 2048) -> dict:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), np.float32)
    t = measure(lambda: np.matmul(a, b, out=c), budget)
    flop = 2.0 * n ** 3
    return {"n": n, "gflops": flop / t["median_s"] / 1e9, "best_gflops": flop / t["min_s"] / 1e9,
            "repeats": t["repeats"], "blas": blas_name()}


def blas_name() -> str:
    try:
        cfg = np.show_config(mode="dicts")
        return str(cfg["Build Dependencies"]["blas"].get("name", "?"))
    except Exception:  # np.show_config's layout is not a stable API
        return "?"
