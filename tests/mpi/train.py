"""Run by tests/test_distributed.py under ``mpiexec -n N`` (or alone): trains a small Seq2Vec
with ``pyrnn.fit`` and writes rank 0's weights (and every rank's, for the consistency check)."""
import argparse
import sys

import numpy as np

import pyrnn

p = argparse.ArgumentParser()
p.add_argument("--out", required=True)
p.add_argument("--batch", type=int, default=8)
p.add_argument("--n", type=int, default=70)            # not a multiple of the global batch: ragged
p.add_argument("--epochs", type=int, default=1)
p.add_argument("--dtype", default="float32")
p.add_argument("--optimizer", default="adam")
p.add_argument("--distributed", default="true")
p.add_argument("--fail-rank", type=int, default=-1)
p.add_argument("--mismatch", action="store_true")
p.add_argument("--resume", default=None)
p.add_argument("--save", default=None)
p.add_argument("--tbptt", type=int, default=0)
p.add_argument("--clip", type=float, default=0.0)
args = p.parse_args()

rank, size = 0, 1
if args.distributed != "false":
    from mpi4py import MPI
    rank, size = MPI.COMM_WORLD.Get_rank(), MPI.COMM_WORLD.Get_size()

rng = np.random.default_rng(0)
lengths = rng.integers(3, 12, size=args.n)
hidden = 12 + (4 if args.mismatch and rank == 1 else 0)
if args.tbptt:
    X = [rng.standard_normal((k, 3)).astype(args.dtype) for k in lengths]
    Y = [rng.standard_normal((k, 2)).astype(args.dtype) for k in lengths]
    model = pyrnn.Seq2Seq(input_size=3, output_size=2, hidden_size=hidden, cell="gru", dtype=args.dtype,
                          seed=rank if args.distributed != "false" else 0)
    loss = "mse"
else:
    X = [rng.standard_normal((k, 3)).astype(args.dtype) for k in lengths]
    Y = (np.array([x[:, 0].sum() for x in X]) > 0).astype(np.int64)
    model = pyrnn.Seq2Vec(input_size=3, output_size=2, hidden_size=hidden, dtype=args.dtype,
                          seed=rank if args.distributed != "false" else 0)   # different seeds: broadcast fixes
    loss = "cross_entropy"
if args.distributed == "false":
    model.load_state_dict(type(model)(**model.get_config() | {"seed": 0}).state_dict())
opt = pyrnn.optim.Adam(model, lr=0.01) if args.optimizer == "adam" else pyrnn.optim.SGD(model, lr=0.1, momentum=0.9)


class FailOnRank(pyrnn.training.Callback):
    def on_epoch_end(self, epoch, logs, model):
        if rank == args.fail_rank:
            raise RuntimeError(f"deliberate failure on rank {rank}")


if args.resume:
    model, opt_state = pyrnn.load(args.resume), None
    opt = pyrnn.optim.Adam(model, lr=0.01)

dist = {"true": True, "false": False, "debug": pyrnn.distributed.DataParallel(check_every_epoch=True)
        if args.distributed == "debug" else None}[args.distributed]
hist = pyrnn.fit(model, (X, Y), loss, opt, epochs=args.epochs, batch_size=args.batch, seed=3,
                 validation_data=(X[:31], Y[:31]), metrics=None if args.tbptt else ["accuracy"],
                 progress=True, distributed=dist, callbacks=[FailOnRank()], tbptt=args.tbptt or None,
                 clip_grad_norm=args.clip or None, file=sys.stdout)
np.savez(f"{args.out}.rank{rank}.npz", **model.state_dict(),
         **{f"log_{k}": np.array(v) for k, v in hist.history.items() if k != "time"})
if args.save and rank == 0:
    pyrnn.save(model, args.save)
