"""The module contract shared by every building block and model.

A :class:`Module` holds its own parameters (``name -> ndarray``) and child modules; the core
layers and cells (``pyrnn.LSTM``, ``pyrnn.GRUCell``, ...) can be children too, since they have
the same contract. Parameter names are dotted paths (``encoder.weight_ih_l0``, ``head.weight``)
as in PyTorch's ``state_dict``.

Contract (the same as the core layers):

- forward through ``__call__``; in training mode it keeps what ``backward`` needs;
- ``backward(dout)`` returns the gradient of the input and *adds* the parameter gradients into
  ``grads``;
- ``parameters()`` returns the live arrays (an optimizer updates them in place), ``grads`` the
  accumulators with the same keys, ``zero_grad()`` resets them;
- ``state_dict()`` (copies) / ``load_state_dict()`` (checked by name and shape);
- ``train()`` / ``eval()``.

There is no autograd: each module's ``backward`` is written out and tested against finite
differences.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .. import _checks
from .._module import checked_state


def _is_module(value: Any) -> bool:
    return all(hasattr(value, a) for a in ("parameters", "grads", "train", "zero_grad", "state_dict"))


class Module:
    """Base class: own parameters plus child modules, registered by attribute assignment."""

    def __init__(self, dtype: Any = np.float32) -> None:
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "_params", {})
        object.__setattr__(self, "_grads", {})
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "dtype", _checks.layer_dtype(dtype))

    def __setattr__(self, name: str, value: Any) -> None:
        modules = self.__dict__.get("_modules")
        if modules is None:
            raise RuntimeError(f"{type(self).__name__}: call Module.__init__ before assigning attributes")
        if _is_module(value) and not name.startswith("_"):
            modules[name] = value
        elif name in modules:
            del modules[name]
        object.__setattr__(self, name, value)

    def _add_parameter(self, name: str, value: np.ndarray) -> np.ndarray:
        value = np.ascontiguousarray(value, dtype=self.dtype)
        self._params[name] = value
        self._grads[name] = np.zeros_like(value)
        return value

    # -- parameters and gradients ---------------------------------------------------------------

    def children(self) -> dict[str, Any]:
        return dict(self._modules)

    def parameters(self) -> dict[str, np.ndarray]:
        """The live parameter arrays by dotted name; update them in place."""
        out = dict(self._params)
        for prefix, child in self._modules.items():
            for k, v in child.parameters().items():
                out[f"{prefix}.{k}"] = v
        return out

    @property
    def grads(self) -> dict[str, np.ndarray]:
        """Gradient accumulators: same keys and shapes as ``parameters()``."""
        out = dict(self._grads)
        for prefix, child in self._modules.items():
            for k, v in child.grads.items():
                out[f"{prefix}.{k}"] = v
        return out

    def zero_grad(self) -> None:
        for g in self._grads.values():
            g.fill(0)
        for child in self._modules.values():
            child.zero_grad()

    def num_parameters(self) -> int:
        return int(sum(p.size for p in self.parameters().values()))

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the parameters by dotted name."""
        return {k: v.copy() for k, v in self.parameters().items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Copy values into the parameters in place. Every name and shape is checked before
        anything is written; problems are reported together, by name."""
        values = checked_state(self.parameters(), state, type(self).__name__)
        # Each child loads its own part: layers that keep packed weights repack on load.
        for name, p in self._params.items():
            np.copyto(p, values[name], casting="unsafe")
        for prefix, child in self._modules.items():
            child.load_state_dict({k[len(prefix) + 1:]: v for k, v in values.items()
                                   if k.startswith(prefix + ".")})

    # -- modes ----------------------------------------------------------------------------------

    def train(self, mode: bool = True):
        """Training mode (the default): forward keeps caches for ``backward``; dropout active."""
        object.__setattr__(self, "training", bool(mode))
        if not self.training:
            self._drop_caches()
        for child in self._modules.values():
            child.train(mode)
        return self

    def eval(self):
        """Inference mode: no caches, no dropout."""
        return self.train(False)

    def _drop_caches(self) -> None:
        pass

    def _need_cache(self, cache: Any, what: str = "forward") -> Any:
        if cache is None:
            if not self.training:
                raise RuntimeError(f"{type(self).__name__}.backward: the module is in eval mode, where "
                                   "forward keeps no cache; call .train() and run the forward again")
            raise RuntimeError(f"{type(self).__name__}.backward needs a training-mode {what} call first "
                               "(none was made, or its backward already ran)")
        return cache

    def __repr__(self) -> str:
        extra = self._extra_repr()
        if not self._modules:
            return f"{type(self).__name__}({extra})"
        lines = [f"{type(self).__name__}({extra}"]
        for name, child in self._modules.items():
            lines.append(f"  ({name}): " + repr(child).replace("\n", "\n  "))
        return "\n".join(lines) + "\n)"

    def _extra_repr(self) -> str:
        return ""


class Sequential(Module):
    """Modules applied in order; ``backward`` runs them in reverse. Children are named
    ``"0"``, ``"1"``, ... as in ``torch.nn.Sequential``."""

    def __init__(self, *modules: Any, dtype: Any = np.float32) -> None:
        super().__init__(dtype)
        for i, m in enumerate(modules):
            if not _is_module(m):
                raise TypeError(f"Sequential: argument {i} is a {type(m).__name__}, not a module")
            self._modules[str(i)] = m

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
