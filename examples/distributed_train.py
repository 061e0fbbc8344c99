"""Data-parallel training over MPI with pyrnn.fit.

On one machine (2 ranks, each on its own core):

    pip install "pyrnn[mpi]"
    mpiexec -n 2 python examples/distributed_train.py

On a cluster, the same script with the cluster's launcher and a host file, e.g.
``mpiexec -n 16 -f hosts python examples/distributed_train.py`` (MPICH; Open MPI:
``mpirun -np 16 --hostfile hosts ...``; Slurm: ``srun -n 16 ...``), with pyrnn and mpi4py
installed on every node against the cluster's MPI. Every rank builds the same model; rank 0's
weights are broadcast at start, each rank trains on its shard of every batch, and the
gradients are averaged after each backward. Only rank 0 prints and writes the checkpoint.
"""
import numpy as np

import pyrnn

rng = np.random.default_rng(0)
n, T = 4096, 40
X = rng.standard_normal((n, T, 8)).astype(np.float32)
y = (X[:, :, 0].sum(axis=1) > 0).astype(np.int64)          # the sign of a running sum

model = pyrnn.Seq2Vec(input_size=8, output_size=2, hidden_size=64, seed=0)
opt = pyrnn.optim.Adam(model, lr=3e-3)
history = pyrnn.fit(model, (X[:3584], y[:3584]), "cross_entropy", opt, epochs=5,
                    batch_size=32,                          # per rank: the global batch is 32 * ranks
                    validation_data=(X[3584:], y[3584:]), metrics=["accuracy"],
                    callbacks=[pyrnn.ModelCheckpoint("distributed_model.safetensors", monitor="val_accuracy",
                                                     mode="max")],
                    distributed=True)
if pyrnn.distributed.is_main_process():
    print(f"validation accuracy {history['val_accuracy'][-1]:.3f}")
