"""ONNX export and import of pyrnn's recurrent layers and models.

``pyrnn.onnx.export(obj, path, lengths=False, initial_states=False)`` writes an ONNX file (opset
17, dynamic batch and time axes) for an RNN, LSTM or GRU layer, a Seq2Vec or a Seq2Seq model;
an EncoderDecoder becomes a folder with ``encoder.onnx`` and ``decoder_step.onnx``.
``pyrnn.onnx.load(path)`` reads an ONNX file whose graph is made of recurrent nodes (LSTM, GRU,
RNN) and the nodes exporters put around them, and returns a runnable :class:`OnnxModel`.

Both need the ``onnx`` package (``pip install 'pyrnn[onnx]'``); pyrnn itself does not.
"""
from __future__ import annotations

import os
from typing import Any

from .._files import atomic_write_bytes
from ._export import OPSET
from ._import import OnnxImportError, OnnxModel, load

__all__ = ["export", "load", "OnnxModel", "OnnxImportError", "OPSET"]


def require_onnx(what: str) -> Any:
    """The ``onnx`` module, or an ImportError that says how to install it."""
    try:
        import onnx
    except ImportError as e:
        raise ImportError(f"{what} needs the 'onnx' package: pip install 'pyrnn[onnx]' "
                          "(or pip install onnx)") from e
    return onnx


def _write(graph: Any, name: str, path: str) -> None:
    """Check the model and write it atomically: on any failure nothing is left at ``path``."""
    onnx = require_onnx("pyrnn.onnx.export")
    model = onnx.helper.make_model(graph.graph(name), producer_name="pyrnn",
                                   opset_imports=[onnx.helper.make_opsetid("", OPSET)])
    model.ir_version = min(model.ir_version, 8)  # readable by ONNX Runtime releases of the last years
    onnx.checker.check_model(model, full_check=True)
    atomic_write_bytes(path, model.SerializeToString())


def export(obj: Any, path: str | os.PathLike, *, lengths: bool = False,
           initial_states: bool = False) -> dict[str, str]:
    """Write ``obj`` as ONNX and return ``{graph name: file path}``.

    * ``pyrnn.RNN`` / ``LSTM`` / ``GRU`` (any options): inputs ``x`` in the layer's layout,
      ``lengths`` (int64 (B,), with ``lengths=True``; ONNX's ``sequence_lens``), ``h0`` and
      ``c0`` (with ``initial_states=True``); outputs ``y``, ``h_n`` and (LSTM) ``c_n``, as the
      layer's call returns them.
    * ``pyrnn.Seq2Vec`` / ``Seq2Seq``: input ``x`` (B, T, F) floats or (B, T) int64 token ids and
      ``lengths`` (with ``lengths=True``); output ``y``.
    * ``pyrnn.EncoderDecoder``: ``path`` is a folder (made if missing) that receives
      ``encoder.onnx`` (``src``, [``src_lengths``] -> ``keys``, ``h0``, [``c0``]) and
      ``decoder_step.onnx`` (``token`` (B,), ``h``, [``c``], ``keys``, ``src_mask`` -> ``logits``,
      ``h_n``, [``c_n``], [``attention``]): greedy or beam decoding loops over the step.

    Each file is validated by ``onnx.checker`` and written atomically.
    """
    require_onnx("pyrnn.onnx.export")
    from ..layers import _CoreLayer
    from ..models import EncoderDecoder, Seq2Seq, Seq2Vec
    from . import _export

    path = os.fspath(path)
    if isinstance(obj, _CoreLayer):
        _write(_export.layer_graph(obj, lengths, initial_states), type(obj).__name__, path)
        return {"layer": path}
    if initial_states:
        raise ValueError("initial_states=True is for the recurrent layers; models start from zeros")
    if isinstance(obj, Seq2Vec):
        _write(_export.seq2vec_graph(obj, lengths), "Seq2Vec", path)
        return {"model": path}
    if isinstance(obj, Seq2Seq):
        _write(_export.seq2seq_graph(obj, lengths), "Seq2Seq", path)
        return {"model": path}
    if isinstance(obj, EncoderDecoder):
        os.makedirs(path, exist_ok=True)
        files = {"encoder": os.path.join(path, "encoder.onnx"),
                 "decoder_step": os.path.join(path, "decoder_step.onnx")}
        _write(_export.encoder_graph(obj, lengths), "encoder", files["encoder"])
        _write(_export.decoder_step_graph(obj), "decoder_step", files["decoder_step"])
        return files
    raise TypeError(f"pyrnn.onnx.export supports RNN, LSTM, GRU, Seq2Vec, Seq2Seq and EncoderDecoder, "
                    f"got {type(obj).__name__}")
