"""Command line: ``pyrnn info`` prints the configuration and runs a self-check;
``pyrnn demo`` trains a model on a built-in task (see ``pyrnn.demo``)."""
from __future__ import annotations

import argparse
import sys

import numpy as np


def self_check() -> tuple[bool, str]:
    """A small LSTM (2 layers, bidirectional, projection, variable lengths) forward and backward
    on the native kernels against the NumPy reference, in float64 and float32."""
    from . import LSTM
    from .testing import use_backend

    worst = {}
    for dtype, tolerance in ((np.float64, 1e-9), (np.float32, 1e-4)):
        rng = np.random.default_rng(0)
        x = rng.standard_normal((7, 3, 5)).astype(dtype)
        dy = rng.standard_normal((7, 3, 2 * 3)).astype(dtype)
        lengths = np.array([7, 4, 1])
        results = {}
        for backend in ("native", "reference"):
            with use_backend(backend):
                lstm = LSTM(5, 4, num_layers=2, bidirectional=True, proj_size=3, dtype=dtype, seed=1)
                y, (h_n, c_n) = lstm(x, lengths=lengths)
                dx, (dh0, dc0) = lstm.backward(dy, (np.ones_like(h_n), None))
                results[backend] = [y, h_n, c_n, dx, dh0, dc0, *lstm.grads.values()]
        error = max(float(np.max(np.abs(a - b) / (1 + np.abs(b))))
                    for a, b in zip(results["native"], results["reference"]))
        worst[np.dtype(dtype).name] = (error, tolerance)
    ok = all(e <= tol for e, tol in worst.values())
    detail = ", ".join(f"{name} max rel diff {e:.1e} (tol {tol:.0e})" for name, (e, tol) in worst.items())
    return ok, detail


def info() -> int:
    from .config import show_config

    show_config()
    try:
        ok, detail = self_check()
    except Exception as e:  # a broken kernel must show as FAIL, not a traceback
        ok, detail = False, f"{type(e).__name__}: {e}"
    print(f"self-check: LSTM forward+backward, native vs NumPy reference: "
          f"{'PASS' if ok else 'FAIL'} ({detail})")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pyrnn", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="version, ISA, threads, and a native-vs-reference self-check")
    from .demo.run import add_arguments as add_demo_arguments

    add_demo_arguments(commands.add_parser(
        "demo", help="train an encoder-decoder with attention (or --task adding/sine) on a generated task"))
    args = parser.parse_args(argv)
    if args.command == "info":
        return info()
    if args.command == "demo":
        from .demo.run import run_demo

        run_demo(args)
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
