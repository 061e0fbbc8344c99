"""The one module model: every parameterised object (layers, cells, xLSTM layers and cells,
the xLSTM block stack, the ``nn`` building blocks and the models) is a :class:`Module`.

A module holds its own parameters (``name -> ndarray``) with matching gradient accumulators,
and child modules registered by attribute assignment. Parameter names are dotted paths
(``encoder.weight_ih_l0``, ``head.weight``) as in PyTorch's ``state_dict``.

Contract:

- forward through ``__call__``; in training mode it keeps what ``backward`` needs;
- ``backward(...)`` returns the input gradients and *adds* the parameter gradients into ``grads``;
- ``parameters()`` returns the live arrays (an optimizer updates them in place), ``grads`` the
  accumulators with the same keys, ``zero_grad()`` resets them;
- ``state_dict()`` (copies) / ``load_state_dict()`` (checked by name and shape);
- ``train()`` / ``eval()``;
- pickling and copying keep parameters, gradients, mode and random streams, and drop what a
  forward left for ``backward`` and any packed weights (they are rebuilt on demand).

There is no autograd: each module's ``backward`` is written out and tested against finite
differences.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _checks

# Gates per cell kind, in PyTorch's order: LSTM (i, f, g, o), GRU (r, z, n).
GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3, "gru_reset_before": 3}


def torch_to_numpy(value: Any) -> Any:
    """A torch tensor (even one that requires grad) as a NumPy array; anything else unchanged."""
    if hasattr(value, "detach") and hasattr(value, "numpy"):
        return value.detach().cpu().numpy()
    return value


def checked_state(params: Mapping[str, np.ndarray], state: Any, owner: str) -> dict[str, np.ndarray]:
    """The arrays of ``state`` for a ``load_state_dict`` into ``params``: every name and shape
    checked before anything is written, problems reported together, by name."""
    if not isinstance(state, Mapping):
        raise TypeError(f"load_state_dict expects a mapping of name -> array, got {type(state).__name__}")
    missing = [k for k in params if k not in state]
    unexpected = [k for k in state if k not in params]
    values, wrong_shape = {}, []
    for name, param in params.items():
        if name not in state:
            continue
        arr = np.asarray(torch_to_numpy(state[name]))
        if arr.dtype.kind not in "fiu" and arr.dtype != param.dtype:  # bfloat16 weights: their own dtype
            raise TypeError(f"state_dict[{name!r}] must be numeric, got dtype {arr.dtype}")
        if arr.shape != param.shape:
            wrong_shape.append(f"{name}: expected {_checks.shape_str(param.shape)}, "
                               f"got {_checks.shape_str(arr.shape)}")
        values[name] = arr
    if missing or unexpected or wrong_shape:
        problems = []
        if missing:
            problems.append("missing keys: " + ", ".join(missing))
        if unexpected:
            problems.append("unexpected keys: " + ", ".join(map(str, unexpected)))
        if wrong_shape:
            problems.append("wrong shapes: " + "; ".join(wrong_shape))
        raise ValueError(f"load_state_dict for {owner}: " + " | ".join(problems))
    return values


@dataclass
class Tape:
    """What one training-mode forward of a layer leaves for its ``backward``."""

    T: int
    B: int
    batched: bool
    caches: list[Any]                    # per (layer, direction), from the kernels' forward
    masks: list[np.ndarray | None]       # dropout mask applied to each layer's output


def _canonical(dtype: Any) -> np.dtype:
    """NumPy's own dtype object for ``dtype`` (unpickled and copied dtypes are equal but new objects)."""
    return np.dtype(np.dtype(dtype).name)


def _own_array(arr: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``arr`` with the canonical ``dtype`` object, as an array whose data it may write."""
    if not arr.flags.writeable:
        return arr.astype(dtype)
    if arr.dtype is not dtype and arr.dtype == dtype:
        arr.dtype = dtype
    return arr


class Module:
    """Base class: own parameters plus child modules, registered by attribute assignment.

    Subclasses call ``Module.__init__(self, dtype)`` before assigning child modules, then add
    parameters with ``_add_parameter`` or ``_create_parameters``. What a forward leaves for
    ``backward`` is cleared by ``_drop_caches`` (called by ``eval()`` and after unpickling);
    ``_transient`` names the attributes that pickling leaves out (caches, tapes, packings).
    """

    # Attributes never pickled nor copied: per-call caches and tapes, packed weights. After
    # unpickling they are None, then ``_drop_caches`` and ``_mode_changed`` set them up.
    _transient: tuple[str, ...] = ("_cache",)
    _cache: Any = None          # what the last training-mode forward kept for backward

    dtype: np.dtype
    training: bool

    def __init__(self, dtype: Any = np.float32) -> None:
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "_params", {})
        object.__setattr__(self, "_grads", {})
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "dtype", _checks.layer_dtype(dtype))

    def __setattr__(self, name: str, value: Any) -> None:
        modules = self.__dict__.get("_modules")
        if isinstance(value, Module) and not name.startswith("_"):
            if modules is None:
                raise RuntimeError(f"{type(self).__name__}: call Module.__init__ before assigning modules")
            modules[name] = value
        elif modules and name in modules:
            del modules[name]
        object.__setattr__(self, name, value)

    # -- building ---------------------------------------------------------------------------------

    def _add_parameter(self, name: str, value: Any) -> np.ndarray:
        value = np.ascontiguousarray(value, dtype=self.dtype)
        self._params[name] = value
        self._grads[name] = np.zeros_like(value)
        return value

    def _create_parameters(self, shapes: dict[str, tuple[int, ...]], hidden_size: int,
                           rng: np.random.Generator) -> None:
        """PyTorch's default initialisation of the recurrent layers: every parameter drawn from
        U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)), in the order of ``shapes``."""
        bound = 1.0 / np.sqrt(hidden_size)
        total = sum(int(np.prod(s)) for s in shapes.values())
        _checks.fits_in_memory(2 * total, self.dtype, f"{type(self).__name__}'s parameters and gradients")
        for name, shape in shapes.items():
            self._add_parameter(name, rng.uniform(-bound, bound, size=shape))

    def _add_module(self, name: str, module: Module) -> None:
        """Register a child under any name (attribute assignment registers public names)."""
        self._modules[name] = module

    # -- parameters and gradients -----------------------------------------------------------------

    def children(self) -> dict[str, Module]:
        return dict(self._modules)

    def parameters(self) -> dict[str, np.ndarray]:
        """The live parameter arrays by dotted name; update them in place (``params[k] -= lr *
        grads[k]``) and the next forward uses the new values. In eval mode the layers and cells
        that pack their weights make them read-only (see ``eval``)."""
        out = dict(self._params)
        for prefix, child in self._modules.items():
            for k, v in child.parameters().items():
                out[f"{prefix}.{k}"] = v
        return out

    @property
    def grads(self) -> dict[str, np.ndarray]:
        """Gradient accumulators, same keys and shapes as ``parameters()``. ``backward`` adds
        to them; ``zero_grad()`` resets them."""
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
        """Copy values into the parameters (in place, so ``parameters()`` stays live).

        Accepts any array-likes, torch tensors included. Every name and shape is checked
        before anything is written; problems are reported together, by name.
        """
        self._write_parameters_tree(checked_state(self.parameters(), state, type(self).__name__))

    def _write_parameters_tree(self, values: dict[str, np.ndarray]) -> None:
        self._write_parameters({name: values[name] for name in self._params})
        for prefix, child in self._modules.items():
            child._write_parameters_tree({k[len(prefix) + 1:]: v for k, v in values.items()
                                          if k.startswith(prefix + ".")})

    def _write_parameters(self, values: dict[str, np.ndarray]) -> None:
        for name, arr in values.items():
            param = self._params[name]
            frozen = not param.flags.writeable
            param.flags.writeable = True
            np.copyto(param, arr, casting="unsafe")
            param.flags.writeable = not frozen
        self._weights_changed()

    # -- modes ------------------------------------------------------------------------------------

    def train(self, mode: bool = True):
        """Training mode (the default): forward calls keep what ``backward`` needs, and dropout
        is active. Applies to the children too. Returns self."""
        object.__setattr__(self, "training", bool(mode))
        if not self.training:
            self._drop_caches()
        self._mode_changed()
        for child in self._modules.values():
            child.train(mode)
        return self

    def eval(self):
        """Inference mode: no cache is kept (``backward`` is unavailable), no dropout.

        The core layers and cells then pack their weights for the kernels once, at the first
        call, and reuse the packing for every later call and step; their parameter arrays are
        read-only meanwhile, so the packing can never go stale (``load_state_dict`` still
        works and repacks; ``train()`` makes the arrays writable again)."""
        return self.train(False)

    # -- hooks for subclasses ---------------------------------------------------------------------

    def _drop_caches(self) -> None:
        """Forget what forward calls kept for ``backward``."""
        self._cache = None

    def _mode_changed(self) -> None:
        """Called by ``train``/``eval`` after ``training`` is set."""

    def _weights_changed(self) -> None:
        """Called after ``load_state_dict`` wrote this module's own parameters."""

    def _need_cache(self, cache: Any, what: str = "forward") -> Any:
        """``cache`` (what a training-mode ``what``, "forward" or "call", kept), or a
        RuntimeError saying why there is none."""
        if cache is None:
            name = type(self).__name__
            if not self.training:
                raise RuntimeError(
                    f"{name}.backward: the {name} is in eval mode, where a {what} keeps no cache for "
                    f"backpropagation; call .train() and run the {what} again")
            raise RuntimeError(
                f"{name}.backward needs a training-mode {what} first (none was made, or its backward "
                f"already ran: each {what} supports one backward)")
        return cache

    # -- pickling and copying ---------------------------------------------------------------------

    @classmethod
    def _transient_names(cls) -> tuple[str, ...]:
        names: list[str] = []
        for klass in cls.__mro__:
            for name in klass.__dict__.get("_transient", ()):
                if name not in names:
                    names.append(name)
        return tuple(names)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for name in self._transient_names():
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        dtype = state["dtype"] = _canonical(state["dtype"])
        # Parameters and gradients as this module's own writable arrays of the canonical dtype
        # (NumPy makes new dtype objects when it unpickles, and protocol 5 gives back read-only
        # arrays over the pickle's bytes when they were frozen); attributes that were the same
        # array stay the same array.
        renamed: dict[int, np.ndarray] = {}
        for store in ("_params", "_grads"):
            arrays = state[store] = dict(state[store])
            for name, arr in arrays.items():
                arrays[name] = renamed.setdefault(id(arr), _own_array(arr, dtype))
        for name, value in state.items():
            if isinstance(value, np.ndarray) and id(value) in renamed:
                state[name] = renamed[id(value)]
        self.__dict__.update(state)
        for name in self._transient_names():
            object.__setattr__(self, name, None)
        self._drop_caches()
        self._mode_changed()

    # -- presentation -----------------------------------------------------------------------------

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

    # -- conversion from torch ---------------------------------------------------------------------

    @staticmethod
    def _dtype_of_torch(module: Any) -> np.dtype:
        import torch  # only ever imported by from_torch

        dtype = next(module.parameters()).dtype
        if dtype == torch.float64:
            return np.dtype(np.float64)
        if dtype == torch.float32:
            return np.dtype(np.float32)
        raise TypeError(f"from_torch supports float32 and float64 modules, got {dtype}")

    def _load_from_torch(self, module: Any) -> None:
        self.load_state_dict({k: v for k, v in module.state_dict().items()})
