"""Gate orders of pyrnn (PyTorch's) and ONNX's recurrent operators, and the conversions.

pyrnn: LSTM (i, f, g, o), GRU (r, z, n), peepholes (i, f, o).
ONNX:  LSTM (i, o, f, c), GRU (z, r, h), peepholes P (i, o, f).
"""
from __future__ import annotations

import numpy as np

# Block k of the ONNX layout is block ONNX_FROM_PYRNN[kind][k] of pyrnn's, and the reverse.
ONNX_FROM_PYRNN = {"lstm": (0, 3, 1, 2), "gru": (1, 0, 2), "rnn": (0,), "peephole": (0, 2, 1)}
PYRNN_FROM_ONNX = {"lstm": (0, 2, 3, 1), "gru": (1, 0, 2), "rnn": (0,), "peephole": (0, 2, 1)}


def reorder(array: np.ndarray, order: tuple[int, ...]) -> np.ndarray:
    """The equal row blocks of ``array`` (first axis) rearranged: block k of the result is
    block ``order[k]`` of ``array``."""
    blocks = np.split(np.asarray(array), len(order), axis=0)
    return np.concatenate([blocks[k] for k in order], axis=0)


def operator_kind(cell: str) -> str:
    """``"lstm"``, ``"gru"`` or ``"rnn"`` for a pyrnn cell name."""
    if cell == "lstm":
        return "lstm"
    return "gru" if cell.startswith("gru") else "rnn"
