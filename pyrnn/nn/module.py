"""The module contract of the building blocks and models is :class:`pyrnn._module.Module`, the
one base of every parameterised object in pyrnn (the core and xLSTM layers and cells too, so
any of them can be a child). This file adds :class:`Sequential`."""
from __future__ import annotations

from typing import Any

import numpy as np

from .._module import Module

__all__ = ["Module", "Sequential"]


class Sequential(Module):
    """Modules applied in order; ``backward`` runs them in reverse. Children are named
    ``"0"``, ``"1"``, ... as in ``torch.nn.Sequential``."""

    def __init__(self, *modules: Any, dtype: Any = np.float32) -> None:
        super().__init__(dtype)
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise TypeError(f"Sequential: argument {i} is a {type(m).__name__}, not a module")
            self._add_module(str(i), m)

    def __len__(self) -> int:
        return len(self._modules)

    def __getitem__(self, i: int):
        return list(self._modules.values())[i]

    def __call__(self, x: Any) -> np.ndarray:
        for m in self._modules.values():
            x = m(x)
        return x

    def backward(self, dout: Any) -> np.ndarray:
        for m in reversed(list(self._modules.values())):
            dout = m.backward(dout)
        return dout
