"""Conversion between pyrnn and PyTorch modules, both ways, with the same weights.

``pyrnn.to_torch(obj)`` (also ``layer.to_torch()`` / ``cell.to_torch()``) builds the equivalent
``torch.nn`` module; ``pyrnn.from_torch(module)`` converts a torch module, including a whole
``nn.Sequential``. Supported: RNN, LSTM (with ``proj_size``), GRU, their cells, Linear,
Embedding, Dropout, Identity, Tanh, Sigmoid, ReLU, LeakyReLU and Sequential. PyTorch has no
peephole LSTM and no reset-before GRU: converting those raises a ValueError.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import nn
from .cells import GRUCell, LSTMCell, RNNCell, _Cell
from .layers import GRU, LSTM, RNN, _CoreLayer

__all__ = ["to_torch", "from_torch"]


def _torch() -> Any:
    try:
        import torch
    except ImportError as e:
        raise ImportError("converting to or from PyTorch needs torch: pip install torch") from e
    return torch


def _torch_dtype(torch: Any, dtype: np.dtype) -> Any:
    return torch.float64 if np.dtype(dtype) == np.float64 else torch.float32


def _load(torch: Any, module: Any, state: dict[str, np.ndarray]) -> Any:
    module.load_state_dict({k: torch.from_numpy(np.array(v, copy=True)) for k, v in state.items()})
    return module.eval()


def _unsupported_by_torch(obj: Any) -> None:
    if getattr(obj, "peepholes", False):
        raise ValueError(f"{type(obj).__name__} with peepholes has no PyTorch equivalent (torch's LSTM has none)")
    if getattr(obj, "reset_after", True) is False:
        raise ValueError(f"{type(obj).__name__}(reset_after=False) has no PyTorch equivalent "
                         "(torch's GRU applies the reset gate after the product)")


def _layer_to_torch(torch: Any, layer: _CoreLayer) -> Any:
    _unsupported_by_torch(layer)
    kw = dict(num_layers=layer.num_layers, bias=layer.bias, batch_first=layer.batch_first,
              dropout=layer.dropout, bidirectional=layer.bidirectional, dtype=_torch_dtype(torch, layer.dtype))
    if isinstance(layer, LSTM):
        module = torch.nn.LSTM(layer.input_size, layer.hidden_size, proj_size=layer.proj_size, **kw)
    elif isinstance(layer, GRU):
        module = torch.nn.GRU(layer.input_size, layer.hidden_size, **kw)
    else:
        module = torch.nn.RNN(layer.input_size, layer.hidden_size, nonlinearity=layer.nonlinearity, **kw)
    return _load(torch, module, layer.state_dict())


def _cell_to_torch(torch: Any, cell: _Cell) -> Any:
    _unsupported_by_torch(cell)
    kw = dict(bias=cell.bias, dtype=_torch_dtype(torch, cell.dtype))
    if isinstance(cell, LSTMCell):
        module = torch.nn.LSTMCell(cell.input_size, cell.hidden_size, **kw)
    elif isinstance(cell, GRUCell):
        module = torch.nn.GRUCell(cell.input_size, cell.hidden_size, **kw)
    else:
        module = torch.nn.RNNCell(cell.input_size, cell.hidden_size, nonlinearity=cell.nonlinearity, **kw)
    return _load(torch, module, cell.state_dict())


_ACTIVATIONS_TO_TORCH = {nn.Identity: "Identity", nn.Tanh: "Tanh", nn.Sigmoid: "Sigmoid", nn.ReLU: "ReLU"}


def to_torch(obj: Any) -> Any:
    """The ``torch.nn`` module equivalent to ``obj`` (same weights, eval mode)."""
    torch = _torch()
    if isinstance(obj, _CoreLayer):
        return _layer_to_torch(torch, obj)
    if isinstance(obj, _Cell):
        return _cell_to_torch(torch, obj)
    if isinstance(obj, nn.Sequential):
        return torch.nn.Sequential(*(to_torch(m) for m in obj)).eval()
    if isinstance(obj, nn.Linear):
        module = torch.nn.Linear(obj.in_features, obj.out_features, bias=obj.bias is not None,
                                 dtype=_torch_dtype(torch, obj.dtype))
        return _load(torch, module, obj.state_dict())
    if isinstance(obj, nn.Embedding):
        module = torch.nn.Embedding(obj.num_embeddings, obj.embedding_dim, padding_idx=obj.padding_idx,
                                    dtype=_torch_dtype(torch, obj.dtype))
        return _load(torch, module, obj.state_dict())
    if isinstance(obj, nn.Dropout):
        return torch.nn.Dropout(obj.p).eval()
    if isinstance(obj, nn.LeakyReLU):
        return torch.nn.LeakyReLU(obj.negative_slope)
    if type(obj) in _ACTIVATIONS_TO_TORCH:
        return getattr(torch.nn, _ACTIVATIONS_TO_TORCH[type(obj)])()
    raise TypeError(f"to_torch: no PyTorch equivalent known for {type(obj).__name__}")


def _module_dtype(module: Any) -> np.dtype:
    params = list(module.parameters())
    if not params:
        return np.dtype(np.float32)
    return _CoreLayer._dtype_of_torch(module)


def from_torch(module: Any) -> Any:
    """The pyrnn equivalent of a torch module (same weights); ``nn.Sequential`` converts each
    child in order. Raises TypeError naming the first module pyrnn has no equivalent for."""
    torch = _torch()
    tnn = torch.nn
    for torch_cls, ours in ((tnn.LSTM, LSTM), (tnn.GRU, GRU), (tnn.RNN, RNN), (tnn.LSTMCell, LSTMCell),
                            (tnn.GRUCell, GRUCell), (tnn.RNNCell, RNNCell)):
        if type(module) is torch_cls:
            return ours.from_torch(module)
    if isinstance(module, tnn.Sequential):
        children = []
        for name, child in module.named_children():
            try:
                children.append(from_torch(child))
            except TypeError as e:
                raise TypeError(f"from_torch: Sequential child {name!r}: {e}") from None
        return nn.Sequential(*children, dtype=_module_dtype(module)).eval()
    dtype = _module_dtype(module)
    if type(module) is tnn.Linear:
        ours = nn.Linear(module.in_features, module.out_features, bias=module.bias is not None, dtype=dtype)
    elif type(module) is tnn.Embedding:
        ours = nn.Embedding(module.num_embeddings, module.embedding_dim, padding_idx=module.padding_idx, dtype=dtype)
    elif type(module) is tnn.Dropout:
        return nn.Dropout(module.p).eval()
    elif type(module) is tnn.LeakyReLU:
        return nn.LeakyReLU(module.negative_slope).eval()
    elif type(module) in (tnn.Identity, tnn.Tanh, tnn.Sigmoid, tnn.ReLU):
        return getattr(nn, type(module).__name__)().eval()
    else:
        raise TypeError(f"from_torch: no pyrnn equivalent for torch.nn.{type(module).__name__} (supported: RNN, "
                        "LSTM, GRU, their cells, Linear, Embedding, Dropout, Identity, Tanh, Sigmoid, ReLU, "
                        "LeakyReLU, Sequential)")
    ours.load_state_dict(module.state_dict())
    return ours.eval()
