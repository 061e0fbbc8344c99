"""A one-direction core layer run backwards in time (ONNX's direction="reverse", Keras's
go_backwards): the layer's weights through the kernels' reverse direction, so padding steps
come first and are skipped and each sequence starts from the initial state at its last step."""
from __future__ import annotations

from typing import Any

import numpy as np

from . import _backend, _checks


def run_reversed(layer: Any, x: Any, states: list[Any], lengths: Any):
    """``(y, h_n, c_n or None)`` of a single-layer, one-direction layer in eval mode run from the
    last step back: y in the layer's layout with each step's output at its own position; states
    (1, B, ·) or None."""
    if layer.num_layers != 1 or layer.bidirectional:
        raise ValueError("run_reversed takes a single-layer, one-direction layer")
    xt, _ = _checks.sequence(x, layer.input_size, layer.batch_first, layer.dtype)
    T, B, _ = xt.shape
    is_lstm = layer.cell == "lstm"
    initial = layer._initial_states(list(states)[:len(layer.state_names)], B, True, layer.state_names)
    lengths = _checks.lengths(lengths, T, B, True)
    if T == 0 or B == 0:
        y = np.zeros((T, B, layer.output_size), layer.dtype)
        h_n, c_n = initial[0][0], (initial[1][0] if is_lstm else None)
    else:
        arrays = layer._arrays(layer._params, 0, 0)
        packed = None if layer.training else layer._packed(0, layer.cell, lambda: arrays)
        y, h_n, c_n, _ = _backend.ops().layer_forward(layer.cell, xt, initial[0][0], initial[1][0] if is_lstm else None,
                                                      *arrays[:5], lengths, True, False, packed, w_peep=arrays[5])
    if layer.batch_first:
        y = np.ascontiguousarray(y.transpose(1, 0, 2))
    return y, h_n[None], (c_n[None] if is_lstm else None)
