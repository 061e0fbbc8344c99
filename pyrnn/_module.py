"""What layers and cells share: named parameters, gradients, state dicts and train/eval mode."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _backend, _checks, _core

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
        if arr.dtype.kind not in "fiu":
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


class ParameterModule:
    """Holds parameters as ``name -> ndarray`` with matching gradient accumulators.

    Subclasses call ``_create_parameters`` with the PyTorch names and shapes, in PyTorch's
    registration order (which is also the order the initial values are drawn in).
    """

    dtype: np.dtype
    training: bool

    def _create_parameters(self, shapes: dict[str, tuple[int, ...]], hidden_size: int,
                           rng: np.random.Generator) -> None:
        # PyTorch's default: every parameter U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)).
        bound = 1.0 / np.sqrt(hidden_size)
        total = sum(int(np.prod(s)) for s in shapes.values())
        _checks.fits_in_memory(2 * total, self.dtype, f"{type(self).__name__}'s parameters and gradients")
        self._params: dict[str, np.ndarray] = {}
        self._grads: dict[str, np.ndarray] = {}
        for name, shape in shapes.items():
            self._params[name] = rng.uniform(-bound, bound, size=shape).astype(self.dtype)
            self._grads[name] = np.zeros(shape, self.dtype)
        self.training = True

    # -- parameters and gradients ------------------------------------------------------------

    def parameters(self) -> dict[str, np.ndarray]:
        """The live parameter arrays by PyTorch name; in training mode update them in place
        (``params[k] -= lr * grads[k]``) and the next forward call uses the new values. In eval
        mode the layers and cells that pack their weights make them read-only (see ``eval``)."""
        return dict(self._params)

    @property
    def grads(self) -> dict[str, np.ndarray]:
        """Gradient accumulators, same keys and shapes as ``state_dict()``. ``backward`` adds
        to them; ``zero_grad()`` resets them."""
        return dict(self._grads)

    def zero_grad(self) -> None:
        for g in self._grads.values():
            g.fill(0)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the parameters by PyTorch name."""
        return {name: p.copy() for name, p in self._params.items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Copy values into the parameters (in place, so ``parameters()`` stays live).

        Accepts any array-likes, torch tensors included. Every name and shape is checked
        before anything is written; problems are reported together, by name.
        """
        values = checked_state(self._params, state, type(self).__name__)
        for name, arr in values.items():
            param = self._params[name]
            frozen = not param.flags.writeable
            param.flags.writeable = True
            np.copyto(param, arr, casting="unsafe")
            param.flags.writeable = not frozen
        self._forget_packing()

    # -- modes ---------------------------------------------------------------------------------

    def train(self, mode: bool = True):
        """Training mode (the default): forward calls keep what ``backward`` needs, and
        inter-layer dropout is active. Returns self."""
        self.training = bool(mode)
        if not self.training:
            self._drop_caches()
        if self._packs_weights:
            self._forget_packing()
            for p in self._params.values():
                p.flags.writeable = self.training
        return self

    def eval(self):
        """Inference mode: no cache is kept (``backward`` is unavailable), no dropout.

        The core layers and cells then pack their weights for the kernels once, at the first
        call, and reuse the packing for every later call and step; their parameter arrays are
        read-only meanwhile, so the packing can never go stale (``load_state_dict`` still
        works and repacks; ``train()`` makes the arrays writable again)."""
        return self.train(False)

    def _drop_caches(self) -> None:  # overridden by subclasses that keep caches
        pass

    # -- packed weights (layers and cells whose kernels multiply with packed panels) ------------

    _packs_weights = False
    _pack_cache: dict[int, Any] = {}
    _pack_ops: Any = None
    # The native eval-mode packing that streaming steps hand straight to ``_core.layer_step``
    # (set by a step once its checked path found that it applies; dropped with the pack cache):
    # a step is a few microseconds, so the usual loop skips every other lookup.
    _step_packing: Any = None

    def _forget_packing(self) -> None:
        self._pack_cache, self._step_packing = {}, None

    def _packed(self, k: int, cell: str, arrays: Callable[[], tuple]) -> Any:
        """Layer-direction ``k``'s weights (``arrays()`` gives w_ih, w_hh, b_ih, b_hh, w_hr)
        packed by the backend's ``pack_layer``: in eval mode (weights frozen) made once per
        backend and kept; in training mode made afresh."""
        ops = _backend.ops()
        if self.training:
            return ops.pack_layer(cell, *arrays())
        if self._pack_ops is not ops:
            self._forget_packing()
            self._pack_ops = ops
        packed = self._pack_cache.get(k)
        if packed is None:
            packed = self._pack_cache[k] = ops.pack_layer(cell, *arrays())
        return packed

    def _run_packed(self, k: int, cell: str, arrays: Callable[[], tuple], run: Callable[[Any], Any]) -> Any:
        """``run(packed)`` on :meth:`_packed`; packs again once if the active instruction set
        changed since the packing was made (its panel layout differs)."""
        try:
            return run(self._packed(k, cell, arrays))
        except _core.StalePackedWeights:
            self._forget_packing()
            return run(self._packed(k, cell, arrays))

    # -- backward bookkeeping of layers (subclasses that keep a Tape in ``self._tape``) ----------

    def _take_tape(self) -> Any:
        if self._tape is None:
            if not self.training:
                raise RuntimeError(
                    f"{type(self).__name__}.backward: the layer is in eval mode, where forward keeps "
                    "no cache for backpropagation; call .train() and run the forward again")
            raise RuntimeError(
                f"{type(self).__name__}.backward needs a training-mode forward call first "
                "(none was made, or its backward already ran: each forward supports one backward)")
        tape, self._tape = self._tape, None
        return tape

    # -- helpers for subclasses ------------------------------------------------------------------

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
