"""Project data-parallel scaling to clusters with the ring-allreduce cost model, from the compute
time per step and gradient size that benchmarks/mpi_train.py measured on this machine.

    python benchmarks/allreduce_model.py                       # reads benchmarks/results/mpi_train.json
    python benchmarks/allreduce_model.py --step-ms 80 --gradient-mb 1.2

Model (no overlap of communication with compute, the conservative case): one step on N nodes
takes compute(b) + allreduce(N), with

    allreduce(N) = 2 (N - 1) / N * S / bandwidth + 2 (N - 1) * latency

(a ring reduce-scatter then all-gather: each node sends and receives 2 (N-1)/N of the S bytes
of gradients in 2 (N-1) messages), and the scaling efficiency is compute / (compute + allreduce).
compute(b) is taken as proportional to the batch per node b (measured at one batch size).
"""
from __future__ import annotations

import argparse
import json
import math
import os

LINKS = {"10 Gb/s (TCP, 25 us)": (10e9 / 8, 25e-6), "100 Gb/s (RDMA, 3 us)": (100e9 / 8, 3e-6)}
NODES = (8, 64, 512)


def allreduce_seconds(nodes: int, nbytes: float, bandwidth: float, latency: float) -> float:
    return 2 * (nodes - 1) / nodes * nbytes / bandwidth + 2 * (nodes - 1) * latency


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default=os.path.join(os.path.dirname(__file__), "results", "mpi_train.json"))
    p.add_argument("--step-ms", type=float, default=None, help="compute per step on one node (default: measured)")
    p.add_argument("--gradient-mb", type=float, default=None, help="gradient size in MB (default: measured)")
    p.add_argument("--batch", type=int, default=None, help="batch per node of the measured step")
    args = p.parse_args()
    step_ms, grad_mb, batch = args.step_ms, args.gradient_mb, args.batch
    if step_ms is None or grad_mb is None or batch is None:
        with open(args.results) as f:
            measured = json.load(f)
        one = measured["median"]["1"]
        step_ms = step_ms or one["step_ms"]
        grad_mb = grad_mb or one["gradient_bytes"] / 1e6
        batch = batch or measured["args"]["batch"]
    compute = step_ms / 1e3
    nbytes = grad_mb * 1e6
    print(f"compute per step {step_ms:.1f} ms at batch {batch} per node, gradients {grad_mb:.2f} MB")
    print("| link | nodes | allreduce ms | efficiency | batch per node for >= 90% |")
    print("| --- | --- | --- | --- | --- |")
    for link, (bandwidth, latency) in LINKS.items():
        for n in NODES:
            ar = allreduce_seconds(n, nbytes, bandwidth, latency)
            eff = compute / (compute + ar)
            # compute(b) = compute * b / batch >= 9 * ar
            need = math.ceil(9 * ar / compute * batch)
            print(f"| {link} | {n} | {1e3 * ar:.2f} | {100 * eff:.1f}% | {need} |")


if __name__ == "__main__":
    main()
