"""Batch inference over a Dask collection with pyrnn.dask.predict.

On one machine (a local cluster of 2 worker processes with 1 thread each):

    pip install "pyrnn[dask]"
    python examples/dask_predict.py

On a cluster, start ``dask-scheduler`` on one host and ``dask-worker tcp://SCHEDULER:8786
--nthreads 1`` on each worker host (pyrnn installed there), then connect with
``Client("tcp://SCHEDULER:8786")`` instead of the LocalCluster below; the data would come from
storage the workers read (``da.from_zarr``, ``db.read_text``), not from this process.
"""
import dask.array as da
import dask.bag as db
import numpy as np
from dask.distributed import Client, LocalCluster

import pyrnn
import pyrnn.dask

if __name__ == "__main__":
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, Client(cluster):
        model = pyrnn.Seq2Vec(input_size=8, output_size=3, hidden_size=64, seed=0)
        # 20,000 padded sequences of up to 50 steps, made on the workers block by block
        x = da.random.default_rng(0).standard_normal((20_000, 50, 8), chunks=(2_000, 50, 8)).astype(np.float32)
        lengths = da.random.default_rng(1).integers(1, 51, size=20_000, chunks=2_000)
        logits = pyrnn.dask.predict(model, x, lengths)          # lazy: nothing has run yet
        print("classes:", np.bincount(logits.argmax(axis=1).compute(), minlength=3))

        # variable-length sequences in a bag: one output per sequence
        rng = np.random.default_rng(2)
        seqs = db.from_sequence([rng.standard_normal((k, 8)).astype(np.float32)
                                 for k in rng.integers(1, 60, size=1_000)], npartitions=4)
        outputs = pyrnn.dask.predict(model, seqs).compute()
        print(len(outputs), "outputs, the first:", outputs[0])
