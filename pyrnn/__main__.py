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


def quantized_self_check() -> tuple[bool, str]:
    """int8 and bf16 products of the active kernels against pyrnn.reference_quant (bit for bit)."""
    from . import _core
    from . import reference_quant as rq

    rng = np.random.default_rng(0)
    a = rng.standard_normal((5, 37)).astype(np.float32)
    w = rng.uniform(-0.5, 0.5, (21, 37)).astype(np.float32)
    q, s = rq.quantize_weight(w)
    bits = rq.to_bfloat16(w)
    same = {"int8": np.array_equal(_core._quant_matmul("int8", a, q, s), rq.int8_product(a, q, s)),
            "bf16": np.array_equal(_core._quant_matmul("bf16", a, bits, None), rq.bf16_product(a, bits))}
    return all(same.values()), ", ".join(f"{k} {'equal' if v else 'DIFFERENT'}" for k, v in same.items())


def info() -> int:
    from . import _core
    from .config import show_config

    show_config()
    kernels = _core.quant_kernels()
    print(f"int8 kernel     {kernels['int8']}\nbf16 kernel     {kernels['bf16']}")
    passed = True
    for name, check in (("LSTM forward+backward, native vs NumPy reference", self_check),
                        ("quantized self-check, products native vs NumPy reference", quantized_self_check)):
        try:
            ok, detail = check()
        except Exception as e:  # a broken kernel must show as FAIL, not a traceback
            ok, detail = False, f"{type(e).__name__}: {e}"
        print(f"{'self-check: ' if check is self_check else ''}{name}: {'PASS' if ok else 'FAIL'} ({detail})")
        passed = passed and ok
    return 0 if passed else 1


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
