"""Data-parallel training throughput over MPI: samples per second of ``pyrnn.fit`` on 1 rank
and on N ranks (each rank 1 thread, batch 64 per rank), for a Seq2Vec LSTM (input 32, hidden
256, T = 100), and the time each step spends in the gradient Allreduce.

    python benchmarks/mpi_train.py                 # ranks 1 and 2
    python benchmarks/mpi_train.py --ranks 1,2,4 --batches 30 --out benchmarks/results

Each rank count runs as its own ``mpiexec -n N`` job (this script with ``--worker``); the
parent prints a table and writes ``mpi_train.json``. The ring-allreduce cost model that
projects these numbers to clusters is in docs/distributed.md.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np


def worker(args: argparse.Namespace) -> None:
    import pyrnn
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    pyrnn.set_num_threads(1)
    rng = np.random.default_rng(0)
    n = args.batch * size * args.batches
    X = rng.standard_normal((n, args.T, args.input)).astype(np.float32)
    Y = rng.integers(0, 10, size=n)
    model = pyrnn.Seq2Vec(input_size=args.input, output_size=10, hidden_size=args.hidden, seed=0)
    opt = pyrnn.optim.Adam(model, lr=1e-3)
    dp = pyrnn.distributed.DataParallel()
    # one warm-up epoch of two batches, then the timed epoch
    pyrnn.fit(model, (X[:2 * args.batch * size], Y[:2 * args.batch * size]), "cross_entropy", opt, epochs=1,
              batch_size=args.batch, progress=False, distributed=dp)
    dp.allreduce_seconds, dp.allreduce_calls = 0.0, 0
    comm.Barrier()
    t0 = time.perf_counter()
    pyrnn.fit(model, (X, Y), "cross_entropy", opt, epochs=1, batch_size=args.batch, progress=False, distributed=dp)
    comm.Barrier()
    seconds = time.perf_counter() - t0
    allreduce = comm.allreduce(dp.allreduce_seconds, op=MPI.MAX)
    if rank == 0:
        grad_bytes = sum(g.nbytes for g in model.grads.values())
        print(json.dumps({"ranks": size, "samples": n, "seconds": seconds, "samples_per_s": n / seconds,
                          "steps": args.batches, "step_ms": 1e3 * seconds / args.batches,
                          "allreduce_ms_per_step": 1e3 * allreduce / max(args.batches, 1),
                          "gradient_bytes": grad_bytes}), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ranks", default="1,2")
    p.add_argument("--batches", type=int, default=20, help="timed batches per rank")
    p.add_argument("--batch", type=int, default=64, help="batch per rank")
    p.add_argument("--T", type=int, default=100)
    p.add_argument("--input", type=int, default=32)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--repeat", type=int, default=3, help="runs per rank count (the median is reported)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return
    mpiexec = shutil.which("mpiexec") or shutil.which("mpiexec", path=os.path.dirname(sys.executable))
    if mpiexec is None:
        raise SystemExit('no mpiexec: pip install "pyrnn[mpi]"')
    passthrough = ["--batches", str(args.batches), "--batch", str(args.batch), "--T", str(args.T),
                   "--input", str(args.input), "--hidden", str(args.hidden)]
    rows = []
    env = dict(os.environ, PYRNN_NUM_THREADS="1")
    for r in range(args.repeat):                  # rank counts in turns, so load affects each alike
        for ranks in [int(v) for v in args.ranks.split(",")]:
            cmd = [mpiexec, "-n", str(ranks), sys.executable, __file__, "--worker", *passthrough]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
    table = {}
    for ranks in sorted({row["ranks"] for row in rows}):
        runs = [row for row in rows if row["ranks"] == ranks]
        table[ranks] = {k: float(np.median([row[k] for row in runs])) for k in
                        ("samples_per_s", "step_ms", "allreduce_ms_per_step", "gradient_bytes")}
    base = table[min(table)]["samples_per_s"]
    print(f"Seq2Vec LSTM input {args.input}, hidden {args.hidden}, T {args.T}, batch {args.batch} per rank, "
          f"1 thread per rank; medians of {args.repeat} runs")
    print("| ranks | samples/s | speedup | step ms | Allreduce ms/step | gradient MB |")
    print("| --- | --- | --- | --- | --- | --- |")
    for ranks, row in table.items():
        print(f"| {ranks} | {row['samples_per_s']:.0f} | {row['samples_per_s'] / base:.2f}x | {row['step_ms']:.1f} | "
              f"{row['allreduce_ms_per_step']:.2f} | {row['gradient_bytes'] / 1e6:.2f} |")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "mpi_train.json"), "w") as f:
        json.dump({"args": vars(args), "runs": rows, "median": table}, f, indent=1)


if __name__ == "__main__":
    main()
