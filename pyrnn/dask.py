"""Batch inference over Dask collections (``dask.distributed``): ``pyrnn.dask.predict``.

The model is scattered to every worker once (``client.scatter(model, broadcast=True)``) and the
tasks refer to it by its future, so a graph of thousands of blocks carries the model's bytes
zero times; each task runs ``model.predict`` on its block in eval mode with pyrnn on
``threads_per_task`` threads (default 1: Dask's parallelism is across tasks, and nested
thread pools would oversubscribe the cores). The result is lazy, like the input: compute it,
persist it or store it, and the scheduler streams the blocks, so a worker holds a few blocks
at a time, never the whole dataset.

Needs the optional extra: ``pip install "pyrnn[dask]"``.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np


def _dask():
    try:
        import dask  # noqa: F401
        import dask.array as da
        import dask.bag as db
        from dask.distributed import default_client
    except ImportError as e:
        raise ImportError('pyrnn.dask needs dask and distributed: pip install "pyrnn[dask]"') from e
    return da, db, default_client


def predict(model: Any, data: Any, lengths: Any = None, *, client: Any = None, batch_size: int = 512,
            threads_per_task: int = 1) -> Any:
    """``model.predict`` over a Dask collection, on the workers of ``client`` (default: the
    current ``dask.distributed`` client).

    - ``data`` a ``dask.array`` of padded sequences, (N, T, input_size) floats or (N, T) token
      ids for a token model, chunked along N (other axes are made whole), with ``lengths``
      (N,) as a NumPy or Dask array (None: every sequence has length T). Returns a Dask array
      with the rows of ``model.predict(x, lengths=lengths)``: (N, output_size) for a Seq2Vec,
      (N, T, output_size) for a Seq2Seq.
    - ``data`` a ``dask.bag`` of variable-length sequences (arrays (T_i, input_size), or token
      lists): returns a bag with one output per sequence, (output_size,) or (T_i, output_size).
      Each task pads ``batch_size`` sequences at a time.

    Shapes and dtypes of a Dask array (and of ``lengths``) are checked against the model before
    any work is sent; a bag's elements can only be checked on the workers, where a bad one
    raises with its index in the partition.
    """
    da, db, default_client = _dask()
    if not callable(getattr(model, "predict", None)) or not hasattr(model, "input_size"):
        raise TypeError(f"pyrnn.dask.predict needs a pyrnn sequence model (Seq2Vec, Seq2Seq), got {type(model).__name__}")
    if int(batch_size) < 1 or int(threads_per_task) < 1:
        raise ValueError(f"batch_size and threads_per_task must be >= 1, got {batch_size} and {threads_per_task}")
    client = client or default_client()
    tokens = getattr(model, "embedding", None) is not None
    if isinstance(data, da.Array):
        x, lens = _checked_array(model, data, lengths, tokens, da)
        out_tail, out_dtype, per_step = _output_layout(model, tokens)
        shared = client.scatter(model, broadcast=True, hash=False)
        x_index = "ntf"[:x.ndim]                       # n: sequences, t: steps, f: features
        out_index = ("nt" if per_step else "n") + "abc"[:len(out_tail)]
        return da.blockwise(_predict_block, out_index, x, x_index, lens, "n", shared, None,
                            int(threads_per_task), None, new_axes=dict(zip("abc", out_tail)),
                            concatenate=True, dtype=out_dtype, meta=np.empty((0,) * len(out_index), out_dtype))
    if isinstance(data, db.Bag):
        if lengths is not None:
            raise ValueError("lengths: a bag holds variable-length sequences, whose lengths are their own; "
                             "give lengths=None")
        shared = client.scatter(model, broadcast=True, hash=False)
        return data.map_partitions(_predict_partition, shared, int(batch_size), int(threads_per_task))
    raise TypeError(f"data must be a dask.array or a dask.bag, got {type(data).__name__} "
                    "(for NumPy data in this process use model.predict)")


def _checked_array(model: Any, x: Any, lengths: Any, tokens: bool, da: Any) -> tuple[Any, Any]:
    want = "(N, T) integer token ids" if tokens else f"(N, T, {model.input_size}) floats"
    if tokens:
        if x.ndim != 2 or x.dtype.kind not in "iu":
            raise ValueError(f"data: this model reads {want}, got a dask array of shape {x.shape} and dtype {x.dtype}")
    else:
        if x.ndim != 3 or x.shape[2] != model.input_size or x.dtype.kind != "f":
            hint = "; add a feature axis: data[..., None]" if x.ndim == 2 and model.input_size == 1 else ""
            raise ValueError(f"data: this model reads {want}, got a dask array of shape {x.shape} and dtype "
                             f"{x.dtype}{hint}")
    if any(np.isnan(n) for n in x.shape):
        raise ValueError("data: the dask array's shape is unknown (NaN chunks); call x.compute_chunk_sizes() first")
    x = x.rechunk({i: -1 for i in range(1, x.ndim)})
    N, T = x.shape[0], x.shape[1]
    if lengths is None:
        return x, da.full((N,), T, dtype=np.int64, chunks=(x.chunks[0],))
    lens = lengths if isinstance(lengths, da.Array) else np.asarray(lengths)
    if lens.ndim != 1 or lens.shape[0] != N or lens.dtype.kind not in "iu":
        raise ValueError(f"lengths: expected ({N},) integers (one per sequence), got shape {lens.shape} and "
                         f"dtype {lens.dtype}")
    if isinstance(lens, np.ndarray):
        if lens.size and (lens.min() < 1 or lens.max() > T):
            raise ValueError(f"lengths: each must be in 1..{T} (the padded length), got {lens.min()}..{lens.max()}")
        return x, da.from_array(lens, chunks=(x.chunks[0],))
    return x, lens.rechunk((x.chunks[0],))     # a dask array's values are checked in each task


def _output_layout(model: Any, tokens: bool) -> tuple[tuple[int, ...], np.dtype, bool]:
    """The trailing shape and dtype of the model's output, and whether it has a time axis,
    from a forward pass of one step of one zero sequence, in this process."""
    probe = np.zeros((1, 2), np.int64) if tokens else np.zeros((1, 2, model.input_size), model.dtype)
    y = np.asarray(model.predict(probe, lengths=np.array([2])))
    per_step = y.ndim >= 3
    return tuple(y.shape[2:] if per_step else y.shape[1:]), y.dtype, per_step


@contextmanager
def _threads(n: int) -> Iterator[None]:
    from .config import get_num_threads, set_num_threads

    old = get_num_threads()
    set_num_threads(n)
    try:
        yield
    finally:
        set_num_threads(old)


def _predict_block(x: np.ndarray, lengths: np.ndarray, model: Any, threads: int) -> np.ndarray:
    if len(x) == 0:
        y = model.predict(np.zeros((1,) + x.shape[1:], x.dtype), lengths=np.array([x.shape[1]]))
        return np.empty((0,) + y.shape[1:], y.dtype)
    lengths = np.asarray(lengths)
    if lengths.min() < 1 or lengths.max() > x.shape[1]:
        raise ValueError(f"lengths: each must be in 1..{x.shape[1]}, got {lengths.min()}..{lengths.max()}")
    with _threads(threads):
        return model.predict(x, lengths=lengths)


def _predict_partition(seqs: Any, model: Any, batch_size: int, threads: int) -> list[np.ndarray]:
    from .models._base import pad_sequences

    seqs = list(seqs)
    tokens = getattr(model, "embedding", None) is not None
    out: list[np.ndarray] = []
    with _threads(threads):
        for start in range(0, len(seqs), batch_size):
            part = seqs[start:start + batch_size]
            for k, s in enumerate(part):
                arr = np.asarray(s)
                ok = (arr.ndim == 1 and arr.dtype.kind in "iu") if tokens else \
                    (arr.ndim == 2 and arr.shape[1] == model.input_size and arr.dtype.kind == "f")
                if not ok or len(arr) == 0:
                    want = "a non-empty 1-D list of token ids" if tokens else f"a (T, {model.input_size}) float array, T >= 1"
                    raise ValueError(f"sequence {start + k} of this partition: expected {want}, got shape "
                                     f"{arr.shape} and dtype {arr.dtype}")
            x, lengths = pad_sequences(part, 0, np.int64 if tokens else model.dtype)
            y = model.predict(x, lengths=lengths)
            per_step = y.ndim >= 3
            out.extend(y[i, :n].copy() if per_step else y[i].copy() for i, n in enumerate(lengths))
    return out
