"""Batch-inference throughput of ``pyrnn.dask.predict`` on a LocalCluster of N worker processes
(1 thread each) against in-process ``model.predict`` on 1 thread, over the same dataset.

    python benchmarks/dask_predict.py                          # 100k sequences, 2 workers
    python benchmarks/dask_predict.py --n 20000 --workers 2 --repeat 3

The data are made on the workers block by block and persisted before timing (as a dataset
read from distributed storage would be there); the in-process run gets the same arrays. Both
sides run one untimed block first (the workers import pyrnn at their first task).
Prints sequences per second and the ratio, medians over ``--repeat`` runs taken in turns, and
writes ``dask_predict.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--T", type=int, default=50)
    p.add_argument("--features", type=int, default=8)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--chunk", type=int, default=5_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = p.parse_args()
    os.environ.setdefault("PYRNN_NUM_THREADS", "1")
    import dask.array as da
    from dask.distributed import Client, LocalCluster, wait

    import pyrnn
    import pyrnn.dask

    pyrnn.set_num_threads(1)
    model = pyrnn.Seq2Vec(input_size=args.features, output_size=4, hidden_size=args.hidden, seed=0).eval()
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        x = da.random.default_rng(0).standard_normal((args.n, args.T, args.features),
                                                     chunks=(args.chunk, args.T, args.features)).astype(np.float32)
        lengths = da.random.default_rng(1).integers(1, args.T + 1, size=args.n, chunks=args.chunk)
        x, lengths = client.persist([x, lengths])
        wait([x, lengths])
        x_local, lengths_local = x.compute(), lengths.compute()
        # Both sides warm: the workers import pyrnn and pack the weights on their first task, as
        # this process did before its first timed call.
        model.predict(x_local[:args.chunk], lengths=lengths_local[:args.chunk])
        pyrnn.dask.predict(model, x[:args.chunk], lengths[:args.chunk]).compute()
        local_s, dask_s = [], []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            want = np.concatenate([model.predict(x_local[i:i + args.chunk], lengths=lengths_local[i:i + args.chunk])
                                   for i in range(0, args.n, args.chunk)])
            local_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            got = pyrnn.dask.predict(model, x, lengths).compute()
            dask_s.append(time.perf_counter() - t0)
            if not np.array_equal(got, want):
                raise SystemExit("the Dask result differs from in-process predict")
        local, dist = float(np.median(local_s)), float(np.median(dask_s))
    print(f"{args.n} sequences (T={args.T}, {args.features} features), Seq2Vec LSTM hidden {args.hidden}, "
          f"chunks of {args.chunk}; medians of {args.repeat}")
    print("| run | seconds | sequences/s | ratio |")
    print("| --- | --- | --- | --- |")
    print(f"| in-process, 1 thread | {local:.2f} | {args.n / local:.0f} | 1.00x |")
    print(f"| Dask, {args.workers} workers x 1 thread | {dist:.2f} | {args.n / dist:.0f} | {local / dist:.2f}x |")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "dask_predict.json"), "w") as f:
        json.dump({"args": vars(args), "in_process_s": local_s, "dask_s": dask_s,
                   "speedup": local / dist}, f, indent=1)


if __name__ == "__main__":
    main()
