"""The README's results, rerun at full size: `pyrnn demo` for each task and the parity-of-bit-
strings example, each checked against what the README states. Run by `.ci/run`; prints each
result and its time, and exits non-zero if any falls short."""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import os
import sys
import tempfile
import time

import pyrnn
from pyrnn.demo import run as demo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_demo(task: str, out: str) -> dict:
    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return demo.run_demo(parser.parse_args([f"--task={task}", f"--out={out}", "--threads=1"]))


def parity(kind: str, seed: int) -> float:
    spec = importlib.util.spec_from_file_location("parity_bits", os.path.join(ROOT, "examples", "parity_bits.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    pyrnn.set_num_threads(1)
    return module.train(kind, steps=1500, seed=seed, hidden=32, heads=1, log=False)[0]


def main() -> int:
    failures = 0

    def check(what: str, value: float, ok: bool, claim: str, seconds: float) -> None:
        nonlocal failures
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {what}: {value:.4g} (README: {claim}) [{seconds:.0f} s]", flush=True)

    with tempfile.TemporaryDirectory() as out:
        t = time.perf_counter()
        r = run_demo("reverse", out)
        check("pyrnn demo (reverse) held-out exact match", r["accuracy"], r["accuracy"] >= 0.99,
              "99.9%", time.perf_counter() - t)
        t = time.perf_counter()
        r = run_demo("adding", out)
        check("pyrnn demo --task adding held-out MSE", r["mse"], r["mse"] < 0.01,
              "0.0024, below the 0.01 target", time.perf_counter() - t)
        t = time.perf_counter()
        r = run_demo("sine", out)
        check("pyrnn demo --task sine held-out MSE", r["mse"], r["mse"] < 0.1 * r["naive_mse"],
              f"0.0019, against {r['naive_mse']:.3f} for repeating the last value", time.perf_counter() - t)
    for seed in (0, 1):
        t = time.perf_counter()
        acc = parity("slstm", seed)
        check(f"parity bits, sLSTM, seed {seed}, lengths 40-256", acc, acc >= 0.99, "1.000", time.perf_counter() - t)
        t = time.perf_counter()
        acc = parity("mlstm", seed)
        check(f"parity bits, mLSTM, seed {seed}, lengths 40-256", acc, 0.4 <= acc <= 0.6,
              "about 0.5 (chance)", time.perf_counter() - t)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
