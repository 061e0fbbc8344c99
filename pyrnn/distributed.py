"""Synchronous data-parallel training over MPI (``mpi4py``), the model Horovod uses.

Launch the same script on every rank (``mpiexec -n 4 python train.py``) and pass
``distributed=True`` to :func:`pyrnn.fit`. Then:

- at start every rank checks that its model and optimizer have the same parameter names,
  shapes and dtypes as rank 0's (a clear error on every rank otherwise), and rank 0's
  parameters and optimizer state are broadcast to all;
- every epoch all ranks draw the same seeded permutation; each global batch of
  ``batch_size * size`` examples is cut into ``size`` contiguous shards, one per rank (the last,
  ragged batch too: a rank whose shard is empty contributes nothing);
- after each backward the gradients are averaged in ONE Allreduce over a flat buffer, each
  rank's gradient weighted by its share of the batch's valid positions, so that N ranks with
  batch b compute the gradient of the same global mean loss as one rank with batch N*b;
  clipping and the optimizer then see the averaged gradients, and the weights stay identical;
- training and validation losses and metrics are reduced over ranks; only rank 0 shows
  progress and writes checkpoints.

Failure: MPI itself does not end a job whose rank raised (the others wait in the next
collective forever). pyrnn does: an exception on any rank inside ``fit`` prints that rank's
traceback and aborts the whole job (``MPI_Abort``), so ``mpiexec`` exits non-zero with the
error; and every collective has a timeout (``PYRNN_DIST_TIMEOUT`` seconds, default 600) after
which the job is aborted with a message naming the collective, instead of hanging.
"""
from __future__ import annotations

import hashlib
import os
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

_ENV_SIZE = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS")


def launched_with_mpi() -> bool:
    """Whether this process was started by an MPI launcher with more than one rank (read from
    the launcher's environment; mpi4py is not imported)."""
    return launch_size() > 1


def launch_rank() -> int:
    """This process's rank as the MPI launcher set it (0 when not launched by one)."""
    for name in ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "SLURM_PROCID"):
        value = os.environ.get(name)
        if value and value.isdigit():
            return int(value)
    return 0


def launch_size() -> int:
    """The number of ranks the MPI launcher started (1 when not launched by one)."""
    for name in _ENV_SIZE:
        value = os.environ.get(name)
        if value and value.isdigit():
            return int(value)
    return 1


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError("distributed training needs mpi4py and an MPI library: "
                          'pip install "pyrnn[mpi]" (mpi4py and the mpich wheel)') from e
    return MPI


def _timeout() -> float:
    value = os.environ.get("PYRNN_DIST_TIMEOUT", "600")
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"PYRNN_DIST_TIMEOUT must be a number of seconds, got {value!r}") from None
    if not seconds > 0:
        raise ValueError(f"PYRNN_DIST_TIMEOUT must be > 0, got {value!r}")
    return seconds


class DataParallel:
    """The collectives :func:`pyrnn.fit` needs, on one MPI communicator.

    ``comm``: an ``mpi4py`` communicator (default ``MPI.COMM_WORLD``); ``timeout``: seconds any
    collective may take before the job is aborted; ``check_every_epoch``: compare a checksum of
    the weights across ranks after every epoch (a debug mode: it costs one hash and one
    allgather of 32 bytes per epoch) and raise if they ever differ.
    """

    def __init__(self, comm: Any = None, timeout: float | None = None, check_every_epoch: bool = False) -> None:
        MPI = _mpi()
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.timeout = _timeout() if timeout is None else float(timeout)
        self.check_every_epoch = bool(check_every_epoch)
        self._buffers: dict[np.dtype, tuple[np.ndarray, np.ndarray]] = {}
        if launched_with_mpi() and "PYRNN_NUM_THREADS" not in os.environ:
            from .config import set_num_threads

            set_num_threads(default_threads_per_rank())
        self.allreduce_seconds = 0.0      # time spent in the gradient Allreduce, summed
        self.allreduce_calls = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # -- collectives with a timeout ------------------------------------------------------------

    def _wait(self, request: Any, what: str) -> None:
        """Complete a non-blocking collective, aborting the job if it takes over the timeout
        (a rank died or never reached it)."""
        # MPI progresses a non-blocking collective only inside calls like Test, and a gradient
        # Allreduce takes many message rounds: Test back to back while the other ranks are
        # likely close (a sleep between Tests would add up to one sleep per round), then sleep
        # between Tests, longer and longer, while waiting for a slow or failed rank.
        start = time.monotonic()
        deadline, busy_until = start + self.timeout, start + 0.05
        pause = 1e-4
        while not request.Test():
            now = time.monotonic()
            if now > deadline:
                self.abort(f"{what} did not complete within {self.timeout:g} s on rank {self.rank} "
                           "(another rank failed or is not calling it); set PYRNN_DIST_TIMEOUT to change the limit")
            if now > busy_until:
                time.sleep(pause)
                pause = min(pause * 2, 1e-3)

    def allreduce_sum(self, values: np.ndarray, what: str = "Allreduce") -> np.ndarray:
        out = np.empty_like(values)
        self._wait(self.comm.Iallreduce(values, out, op=self.MPI.SUM), what)
        return out

    def allreduce_max(self, value: int, what: str = "Allreduce") -> int:
        buf = np.array([value], np.int64)
        out = np.empty_like(buf)
        self._wait(self.comm.Iallreduce(buf, out, op=self.MPI.MAX), what)
        return int(out[0])

    def broadcast(self, array: np.ndarray, what: str = "Bcast") -> None:
        self._wait(self.comm.Ibcast(array, root=0), what)

    def broadcast_object(self, obj: Any, what: str = "bcast") -> Any:
        """Rank 0's ``obj`` on every rank (pickled; for small things such as signatures)."""
        data = np.frombuffer(_pickle(obj), np.uint8) if self.is_main else np.empty(0, np.uint8)
        n = np.array([data.size], np.int64)
        self.broadcast(n, what)
        buf = data.copy() if self.is_main else np.empty(int(n[0]), np.uint8)
        self.broadcast(buf, what)
        return obj if self.is_main else _unpickle(buf.tobytes())

    def allgather_object(self, obj: Any, what: str = "allgather") -> list[Any]:
        """Every rank's ``obj`` in rank order (pickled; for small things such as metric counts)."""
        data = np.frombuffer(_pickle(obj), np.uint8)
        sizes = np.empty(self.size, np.int64)
        self._wait(self.comm.Iallgather(np.array([data.size], np.int64), sizes), what)
        out = np.empty(int(sizes.sum()), np.uint8)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        self._wait(self.comm.Iallgatherv(data, [out, sizes, offsets, self.MPI.BYTE]), what)
        return [_unpickle(out[o:o + n].tobytes()) for o, n in zip(offsets, sizes)]

    def abort(self, message: str, code: int = 1) -> None:
        print(f"pyrnn.distributed: rank {self.rank}: {message}; aborting the job", file=sys.stderr, flush=True)
        self.comm.Abort(code)

    @contextmanager
    def abort_on_error(self) -> Iterator[None]:
        """An exception inside the block aborts every rank (after printing it), because the
        other ranks would otherwise wait for this one in their next collective forever."""
        try:
            yield
        except BaseException as e:   # noqa: BLE001 - KeyboardInterrupt must end the job too
            if self.size == 1 or isinstance(e, ModelMismatchError):
                raise
            # One write, then a moment for mpiexec to forward it: Abort kills the job at once,
            # and output still in its pipes would be lost.
            sys.stderr.write(f"pyrnn.distributed: rank {self.rank} of {self.size} raised:\n"
                             + traceback.format_exc())
            sys.stderr.flush()
            time.sleep(0.2)
            self.comm.Abort(1)
            raise

    @contextmanager
    def active(self) -> Iterator[None]:
        """Marks this object as the distributed context of the running ``fit``."""
        _active.append(self)
        try:
            yield
        finally:
            _active.remove(self)

    # -- start: same model everywhere ------------------------------------------------------------

    def start(self, model: Any, optimizer: Any = None) -> None:
        """Check that every rank holds the same architecture as rank 0 (a clear error on every
        rank otherwise, never a hang), then broadcast rank 0's parameters and optimizer state."""
        mine = _signature(model)
        reference = self.broadcast_object(mine, "the model check at start")
        differs = _describe_difference(reference, mine)
        bad = np.array([0 if differs is None else 1], np.int64)
        bad_ranks = self.allreduce_sum(bad, "the model check at start")[0]
        if bad_ranks:
            where = f"rank {self.rank}: {differs}" if differs else "on another rank"
            raise ModelMismatchError(f"distributed training needs the same model on every rank; {bad_ranks} rank(s) "
                              f"differ from rank 0 ({where}). Build the model the same way on every rank "
                              "(the weights themselves are broadcast from rank 0).")
        for p in model.parameters().values():
            _writable_broadcast(self, p)
        if optimizer is not None and hasattr(optimizer, "state_dict"):
            state = self.broadcast_object(optimizer.state_dict(), "the optimizer state at start")
            if not self.is_main:
                optimizer.load_state_dict(state)

    # -- the data each rank trains on ------------------------------------------------------------

    def shard(self, index: np.ndarray) -> np.ndarray:
        """This rank's contiguous share of one global batch's example indices (may be empty)."""
        n = len(index)
        lo, hi = n * self.rank // self.size, n * (self.rank + 1) // self.size
        return index[lo:hi]

    # -- gradients ---------------------------------------------------------------------------------

    def average_gradients(self, model: Any, weight: float) -> float:
        """Replace every gradient by the weighted mean over ranks, Σ_r w_r g_r / Σ_r w_r, where
        ``weight`` is this rank's number of valid positions in the batch (0 for an empty shard,
        whose gradients are then ignored). One Allreduce per dtype over a flat buffer that also
        carries the weights. Returns the total weight."""
        if self.size == 1:
            return float(weight)      # nothing to average: the gradients stay bit for bit
        grads = model.grads
        by_dtype: dict[np.dtype, list[np.ndarray]] = {}
        for g in grads.values():
            by_dtype.setdefault(g.dtype, []).append(g)
        total = 0.0
        for dtype, group in by_dtype.items():
            n = sum(g.size for g in group)
            send, recv = self._buffer(dtype, n + 1)
            offset = 0
            w = dtype.type(weight)
            for g in group:
                np.multiply(g.reshape(-1), w, out=send[offset:offset + g.size])
                offset += g.size
            send[n] = weight
            t0 = time.perf_counter()
            self._wait(self.comm.Iallreduce(send, recv, op=self.MPI.SUM), "the gradient Allreduce")
            self.allreduce_seconds += time.perf_counter() - t0
            self.allreduce_calls += 1
            total = float(recv[n])
            scale = dtype.type(1.0 / total) if total > 0 else dtype.type(0)
            offset = 0
            for g in group:
                np.multiply(recv[offset:offset + g.size], scale, out=g.reshape(-1))
                offset += g.size
        return total

    def _buffer(self, dtype: np.dtype, n: int) -> tuple[np.ndarray, np.ndarray]:
        buffers = self._buffers.get(dtype)
        if buffers is None or buffers[0].size != n:
            buffers = self._buffers[dtype] = (np.empty(n, dtype), np.empty(n, dtype))
        return buffers

    # -- checks --------------------------------------------------------------------------------------

    def check_same_weights(self, model: Any, epoch: int) -> None:
        """Raise on every rank if the weights differ anywhere (SHA-256 of every parameter)."""
        digest = hashlib.sha256()
        for name, p in sorted(model.parameters().items()):
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(p).tobytes())
        mine = np.frombuffer(digest.digest(), np.uint8).copy()
        reference = mine.copy()
        self.broadcast(reference, "the weight checksum")
        differs = np.array([int(not np.array_equal(mine, reference))], np.int64)
        count = int(self.allreduce_sum(differs, "the weight checksum")[0])
        if count:
            raise RuntimeError(f"distributed training: after epoch {epoch} the weights of {count} rank(s) "
                               "differ from rank 0's (the gradient averaging was bypassed, or the model "
                               "was changed on one rank only)")


_active: list[DataParallel] = []


def is_main_process() -> bool:
    """False only inside a distributed :func:`pyrnn.fit` on a rank other than 0: what a callback
    that writes files or prints checks (the built-in ModelCheckpoint does)."""
    return not _active or _active[-1].is_main


class ModelMismatchError(ValueError):
    """Raised on every rank together (no abort needed): the models differ at start."""


def _pickle(obj: Any) -> bytes:
    import pickle

    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def _unpickle(data: bytes) -> Any:
    import pickle

    return pickle.loads(data)


def _signature(model: Any) -> list[tuple[str, tuple[int, ...], str]]:
    return [(name, tuple(p.shape), p.dtype.str) for name, p in model.parameters().items()]


def _describe_difference(reference: list, mine: list) -> str | None:
    if reference == mine:
        return None
    ref, own = {n: (s, d) for n, s, d in reference}, {n: (s, d) for n, s, d in mine}
    missing = [n for n in ref if n not in own]
    extra = [n for n in own if n not in ref]
    changed = [f"{n} {own[n][0]}/{own[n][1]} vs {ref[n][0]}/{ref[n][1]}" for n in own
               if n in ref and own[n] != ref[n]]
    parts = []
    if missing:
        parts.append("missing " + ", ".join(missing[:3]))
    if extra:
        parts.append("extra " + ", ".join(extra[:3]))
    if changed:
        parts.append("shape/dtype " + "; ".join(changed[:3]))
    return "; ".join(parts) or "parameter order differs"


def _writable_broadcast(dp: DataParallel, p: np.ndarray) -> None:
    frozen = not p.flags.writeable
    if frozen:
        p.flags.writeable = True
    try:
        dp.broadcast(p, "the parameter broadcast at start")
    finally:
        if frozen:
            p.flags.writeable = False


def data_parallel(distributed: Any) -> DataParallel | None:
    """The :class:`DataParallel` that :func:`pyrnn.fit` uses for its ``distributed`` argument:
    False/None -> none; True -> one on ``MPI.COMM_WORLD`` (also with a single rank); an
    instance -> itself; ``"auto"`` -> one if launched by ``mpiexec`` with more than one rank."""
    if distributed is None or distributed is False:
        return None
    if isinstance(distributed, DataParallel):
        return distributed
    if distributed == "auto":
        return DataParallel() if launched_with_mpi() else None
    if distributed is True:
        return DataParallel()
    raise TypeError(f"distributed must be True, False, 'auto' or a pyrnn.distributed.DataParallel, "
                    f"got {distributed!r}")


def default_threads_per_rank() -> int:
    """The cores this process may use divided among the ranks on its node (at least 1), so that
    ``mpiexec -n N`` on one machine does not oversubscribe it."""
    local = 1
    for name in ("OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "PMI_LOCAL_SIZE", "SLURM_NTASKS_PER_NODE"):
        value = os.environ.get(name)
        if value and value.isdigit():
            local = int(value)
            break
    else:
        local = launch_size()
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, cores // max(local, 1))
