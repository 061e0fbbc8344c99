"""Optimizers that update a module's ``parameters()`` in place from its ``grads``, gradient
clipping, and learning-rate schedules.

``opt = pyrnn.optim.Adam(model, lr=1e-3)`` takes anything with ``parameters()`` and ``grads``
(a model, a core layer) or an explicit ``(params, grads)`` pair of dicts with the same keys.
``opt.step()`` applies one update; ``opt.zero_grad()`` resets the gradients.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from . import _dense
from ._module import Module


def _params_and_grads(target: Any) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    if isinstance(target, tuple) and len(target) == 2 and all(isinstance(t, Mapping) for t in target):
        params, grads = dict(target[0]), dict(target[1])
    elif hasattr(target, "parameters") and hasattr(target, "grads"):
        params, grads = target.parameters(), target.grads
    else:
        raise TypeError("expected a module (with parameters() and grads) or a (params, grads) pair of "
                        f"dicts, got {type(target).__name__}")
    if set(params) != set(grads):
        raise ValueError("params and grads must have the same keys; differing: "
                         + ", ".join(sorted(set(params) ^ set(grads))))
    for k in params:
        if params[k].shape != grads[k].shape:
            raise ValueError(f"{k}: parameter shape {params[k].shape} != gradient shape {grads[k].shape}")
    return params, grads


def _grads_of(target: Any) -> dict[str, np.ndarray]:
    if isinstance(target, Mapping):
        return dict(target)
    if hasattr(target, "grads"):
        return target.grads
    raise TypeError(f"expected a module or a dict of gradients, got {type(target).__name__}")


def global_grad_norm(target: Any) -> float:
    """The L2 norm of all gradients together."""
    return math.sqrt(sum(_dense.sum_squares(g) for g in _grads_of(target).values()))


def clip_grad_norm(target: Any, max_norm: float) -> float:
    """Scale all gradients in place so their global L2 norm is at most ``max_norm`` (as
    ``torch.nn.utils.clip_grad_norm_``). Returns the norm before clipping."""
    if not max_norm > 0:
        raise ValueError(f"max_norm must be > 0, got {max_norm}")
    grads = _grads_of(target)
    norm = global_grad_norm(grads)
    scale = max_norm / (norm + 1e-6)
    if scale < 1:
        for g in grads.values():
            g *= g.dtype.type(scale)
    return norm


def clip_grad_value(target: Any, clip_value: float) -> None:
    """Clamp every gradient element into [-clip_value, clip_value], in place."""
    if not clip_value > 0:
        raise ValueError(f"clip_value must be > 0, got {clip_value}")
    for g in _grads_of(target).values():
        np.clip(g, -clip_value, clip_value, out=g)


class Optimizer:
    """Base class: holds the live parameters, gradients, learning rate and per-parameter state.

    An optimizer of a module pickles and copies with that module (its parameters are the
    module's arrays again after unpickling); one of a ``(params, grads)`` pair with the arrays.
    """

    def __init__(self, target: Any, lr: float) -> None:
        if not lr >= 0:
            raise ValueError(f"lr must be >= 0, got {lr}")
        self.params, self.grads = _params_and_grads(target)
        self._module = target if isinstance(target, Module) else None
        self.lr = float(lr)
        self.initial_lr = float(lr)
        self.state: dict[str, dict[str, np.ndarray]] = {k: {} for k in self.params}
        self.steps = 0

    def zero_grad(self) -> None:
        for g in self.grads.values():
            g.fill(0)

    def step(self) -> None:
        frozen = [name for name, p in self.params.items() if not p.flags.writeable]
        if frozen:
            raise RuntimeError(f"{type(self).__name__}.step: parameters {', '.join(frozen[:3])}"
                               f"{' ...' if len(frozen) > 3 else ''} are read-only because their layer is "
                               "in eval mode (which keeps its weights packed); call .train() first")
        self.steps += 1
        for name, p in self.params.items():
            self._update(name, p, self.grads[name], self.state[name])

    def _update(self, name: str, p: np.ndarray, g: np.ndarray, state: dict) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(lr={self.lr:g}, {len(self.params)} parameters)"

    # -- saving and resuming -----------------------------------------------------------------------

    _not_hyperparameters = ("params", "grads", "state", "_module")

    def state_dict(self) -> dict[str, Any]:
        """What resuming needs: ``{"type", "hyperparameters", "state"}`` with the
        hyperparameters as they are now (``lr`` as scheduled, ``steps`` taken, betas, ...) and
        copies of the per-parameter arrays (moments, momentum buffers) by parameter name."""
        hyper = {k: v for k, v in self.__dict__.items() if k not in self._not_hyperparameters}
        return {"type": type(self).__name__, "hyperparameters": hyper,
                "state": {name: {k: v.copy() for k, v in st.items()} for name, st in self.state.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` (of an optimizer of the same type over parameters of the
        same names and shapes); everything is checked before anything changes."""
        if not isinstance(state, Mapping) or not {"type", "hyperparameters", "state"} <= set(state):
            raise ValueError("load_state_dict expects the mapping optimizer.state_dict() returns "
                             "(keys type, hyperparameters, state)")
        if state["type"] != type(self).__name__:
            raise ValueError(f"load_state_dict: the state is of a {state['type']}, this is a {type(self).__name__}")
        hyper = dict(state["hyperparameters"])
        unknown = sorted(set(hyper) - set(self.__dict__) - set(self._not_hyperparameters))
        if unknown:
            raise ValueError(f"load_state_dict: unknown hyperparameters {', '.join(unknown)}")
        arrays: dict[str, dict[str, np.ndarray]] = {}
        for name, entries in state["state"].items():
            if name not in self.params:
                raise ValueError(f"load_state_dict: the state has parameter {name!r}, which this optimizer "
                                 "does not update")
            p = self.params[name]
            arrays[name] = {}
            for key, value in entries.items():
                arr = np.array(value, dtype=p.dtype)
                if arr.shape != p.shape:
                    raise ValueError(f"load_state_dict: state {name}.{key} has shape {arr.shape}, the "
                                     f"parameter {p.shape}")
                arrays[name][key] = arr
        for key, value in hyper.items():
            current = self.__dict__.get(key)
            self.__dict__[key] = tuple(value) if isinstance(current, tuple) else value
        self.state = {name: arrays.get(name, {}) for name in self.params}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self._module is not None:   # the module's own arrays: found again through it
            del state["params"], state["grads"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self._module is not None:
            self.params, self.grads = _params_and_grads(self._module)


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov momentum and L2 weight decay,
    with PyTorch's update rule (``buf = momentum * buf + (1 - dampening) * g``)."""

    def __init__(self, target: Any, lr: float = 0.01, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False) -> None:
        super().__init__(target, lr)
        if momentum < 0 or weight_decay < 0:
            raise ValueError("momentum and weight_decay must be >= 0")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("nesterov needs momentum > 0 and dampening = 0")
        self.momentum, self.dampening = float(momentum), float(dampening)
        self.weight_decay, self.nesterov = float(weight_decay), bool(nesterov)

    def _update(self, name, p, g, state):
        buf, first = None, False
        if self.momentum:
            buf = state.get("momentum")
            if buf is None:
                buf = state["momentum"] = np.zeros_like(p)
                first = True
        _dense.sgd_update(p, g, buf, self.lr, self.momentum, self.dampening, self.weight_decay, self.nesterov, first)


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction; ``weight_decay`` is the L2 penalty added to the
    gradient (as ``torch.optim.Adam``). For decoupled decay use :class:`AdamW`."""

    decoupled = False

    def __init__(self, target: Any, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        super().__init__(target, lr)
        if not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"betas must be in [0, 1), got {betas}")
        self.betas, self.eps, self.weight_decay = (float(betas[0]), float(betas[1])), float(eps), float(weight_decay)

    def _update(self, name, p, g, state):
        if "m" not in state:
            state["m"] = np.zeros_like(p)
            state["v"] = np.zeros_like(p)
        _dense.adam_update(p, g, state["m"], state["v"], self.lr, self.betas[0], self.betas[1], self.eps,
                           self.weight_decay, self.decoupled, self.steps)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): ``p *= 1 - lr * weight_decay``
    before the Adam step, as ``torch.optim.AdamW`` (default weight_decay 0.01)."""

    decoupled = True

    def __init__(self, target: Any, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.01) -> None:
        super().__init__(target, lr, betas, eps, weight_decay)


class Scheduler:
    """Base of the learning-rate schedules: ``state_dict`` / ``load_state_dict`` hold
    everything but the optimizer (counters, best values, the schedule's settings)."""

    optimizer: Optimizer

    def state_dict(self) -> dict[str, Any]:
        return {"type": type(self).__name__,
                "state": {k: v for k, v in self.__dict__.items() if k != "optimizer"}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if not isinstance(state, Mapping) or state.get("type") != type(self).__name__:
            got = state.get("type") if isinstance(state, Mapping) else type(state).__name__
            raise ValueError(f"load_state_dict: expected the state_dict() of a {type(self).__name__}, got {got}")
        values = dict(state["state"])
        unknown = sorted(set(values) - set(self.__dict__))
        if unknown:
            raise ValueError(f"load_state_dict: unknown entries {', '.join(unknown)}")
        self.__dict__.update(values)


class StepLR(Scheduler):
    """Multiply the learning rate by ``gamma`` every ``step_size`` calls of ``step()`` (epochs)."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1) -> None:
        if step_size < 1:
            raise ValueError(f"step_size must be >= 1, got {step_size}")
        self.optimizer, self.step_size, self.gamma = optimizer, int(step_size), float(gamma)
        self.epoch = 0

    def step(self) -> float:
        self.epoch += 1
        self.optimizer.lr = self.optimizer.initial_lr * self.gamma ** (self.epoch // self.step_size)
        return self.optimizer.lr


class CosineLR(Scheduler):
    """Cosine annealing from the initial rate to ``eta_min`` over ``T_max`` calls of ``step()``
    (as ``torch.optim.lr_scheduler.CosineAnnealingLR``, then held at ``eta_min``); optional
    linear ``warmup`` steps first."""

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0, warmup: int = 0) -> None:
        if T_max < 1:
            raise ValueError(f"T_max must be >= 1, got {T_max}")
        self.optimizer, self.T_max, self.eta_min, self.warmup = optimizer, int(T_max), float(eta_min), int(warmup)
        self.epoch = 0
        if self.warmup:
            optimizer.lr = optimizer.initial_lr / (self.warmup + 1)

    def step(self) -> float:
        self.epoch += 1
        base, e = self.optimizer.initial_lr, self.epoch
        if e <= self.warmup:
            lr = base * (e + 1) / (self.warmup + 1)
        else:
            t = min(e - self.warmup, self.T_max)
            lr = self.eta_min + (base - self.eta_min) * (1 + math.cos(math.pi * t / self.T_max)) / 2
        self.optimizer.lr = lr
        return lr


class RMSprop(Optimizer):
    """RMSprop with PyTorch's update rule: ``v = alpha v + (1 - alpha) g^2``, optionally centred
    (divides by the variance estimate ``v - mean(g)^2``), with momentum and L2 weight decay."""

    def __init__(self, target: Any, lr: float = 0.01, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False) -> None:
        super().__init__(target, lr)
        if not 0 <= alpha < 1 or momentum < 0 or weight_decay < 0 or eps < 0:
            raise ValueError("need 0 <= alpha < 1 and momentum, weight_decay, eps >= 0")
        self.alpha, self.eps, self.weight_decay = float(alpha), float(eps), float(weight_decay)
        self.momentum, self.centered = float(momentum), bool(centered)

    def _update(self, name, p, g, state):
        if self.weight_decay:
            g = g + self.weight_decay * p
        if "square_avg" not in state:
            state["square_avg"] = np.zeros_like(p)
            if self.centered:
                state["grad_avg"] = np.zeros_like(p)
            if self.momentum:
                state["momentum_buffer"] = np.zeros_like(p)
        v = state["square_avg"]
        v *= self.alpha
        v += (1 - self.alpha) * (g * g)
        if self.centered:
            ga = state["grad_avg"]
            ga *= self.alpha
            ga += (1 - self.alpha) * g
            avg = np.sqrt(v - ga * ga) + self.eps
        else:
            avg = np.sqrt(v) + self.eps
        if self.momentum:
            buf = state["momentum_buffer"]
            buf *= self.momentum
            buf += g / avg
            p -= (self.lr * buf).astype(p.dtype, copy=False)
        else:
            p -= (self.lr * g / avg).astype(p.dtype, copy=False)


class Adagrad(Optimizer):
    """Adagrad with PyTorch's update rule: ``sum += g^2; p -= lr_t g / (sqrt(sum) + eps)`` with
    ``lr_t = lr / (1 + (step - 1) lr_decay)``, optional L2 weight decay."""

    def __init__(self, target: Any, lr: float = 0.01, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10) -> None:
        super().__init__(target, lr)
        if lr_decay < 0 or weight_decay < 0 or initial_accumulator_value < 0 or eps < 0:
            raise ValueError("lr_decay, weight_decay, initial_accumulator_value and eps must be >= 0")
        self.lr_decay, self.weight_decay, self.eps = float(lr_decay), float(weight_decay), float(eps)
        self.initial_accumulator_value = float(initial_accumulator_value)

    def _update(self, name, p, g, state):
        if self.weight_decay:
            g = g + self.weight_decay * p
        if "sum" not in state:
            state["sum"] = np.full_like(p, self.initial_accumulator_value)
        acc = state["sum"]
        acc += g * g
        lr = self.lr / (1 + (self.steps - 1) * self.lr_decay)
        p -= (lr * g / (np.sqrt(acc) + self.eps)).astype(p.dtype, copy=False)


class _BatchSchedule(Scheduler):
    """A schedule over optimizer steps: ``fit`` calls ``step()`` after every batch
    (``interval = "batch"``); calling it once per epoch instead counts epochs."""

    interval = "batch"

    def __init__(self, optimizer: Optimizer, total_steps: int) -> None:
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        self.optimizer, self.total_steps = optimizer, int(total_steps)
        self.step_count = 0
        optimizer.lr = self.lr_at(0)

    def lr_at(self, step: int) -> float:
        raise NotImplementedError

    def step(self) -> float:
        self.step_count += 1
        self.optimizer.lr = self.lr_at(min(self.step_count, self.total_steps))
        return self.optimizer.lr


class WarmupCosineLR(_BatchSchedule):
    """Linear warm-up from 0 to the optimizer's rate over ``warmup_steps`` optimizer steps, then
    cosine annealing to ``eta_min`` at ``total_steps`` (held there after). Steps per batch."""

    def __init__(self, optimizer: Optimizer, warmup_steps: int, total_steps: int, eta_min: float = 0.0) -> None:
        if not 0 <= warmup_steps < total_steps:
            raise ValueError(f"need 0 <= warmup_steps < total_steps, got {warmup_steps} and {total_steps}")
        self.warmup_steps, self.eta_min = int(warmup_steps), float(eta_min)
        super().__init__(optimizer, total_steps)

    def lr_at(self, step: int) -> float:
        base = self.optimizer.initial_lr
        if step < self.warmup_steps:
            return base * step / self.warmup_steps
        t = (step - self.warmup_steps) / (self.total_steps - self.warmup_steps)
        return self.eta_min + (base - self.eta_min) * (1 + math.cos(math.pi * t)) / 2


class OneCycleLR(_BatchSchedule):
    """The one-cycle policy as ``torch.optim.lr_scheduler.OneCycleLR`` (cosine annealing, two
    phases, no momentum cycling): from ``max_lr / div_factor`` up to ``max_lr`` over
    ``pct_start`` of ``total_steps``, then down to ``initial / final_div_factor``. Steps per batch."""

    def __init__(self, optimizer: Optimizer, max_lr: float, total_steps: int, pct_start: float = 0.3,
                 div_factor: float = 25.0, final_div_factor: float = 1e4) -> None:
        if not 0 < pct_start < 1 or max_lr <= 0:
            raise ValueError("need 0 < pct_start < 1 and max_lr > 0")
        self.max_lr = float(max_lr)
        self.initial = self.max_lr / float(div_factor)
        self.final = self.initial / float(final_div_factor)
        self.peak_step = float(pct_start * total_steps) - 1
        super().__init__(optimizer, total_steps)

    @staticmethod
    def _cos(start: float, end: float, pct: float) -> float:
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)

    def lr_at(self, step: int) -> float:
        if step <= self.peak_step:
            return self._cos(self.initial, self.max_lr, step / self.peak_step)
        return self._cos(self.max_lr, self.final, (step - self.peak_step) / (self.total_steps - 1 - self.peak_step))

    def step(self) -> float:
        self.step_count += 1
        self.optimizer.lr = self.lr_at(min(self.step_count, self.total_steps - 1))
        return self.optimizer.lr


class ReduceLROnPlateau(Scheduler):
    """Multiply the rate by ``factor`` when ``monitor`` (a log of ``fit``, e.g. ``"val_loss"``) has
    not improved for ``patience`` epochs, as ``torch.optim.lr_scheduler.ReduceLROnPlateau``
    (relative threshold, cooldown, ``min_lr``). ``step(value)`` once per epoch; ``fit`` passes
    the monitored value."""

    interval = "epoch"

    def __init__(self, optimizer: Optimizer, monitor: str = "val_loss", mode: str = "min", factor: float = 0.1,
                 patience: int = 10, threshold: float = 1e-4, cooldown: int = 0, min_lr: float = 0.0,
                 eps: float = 1e-8) -> None:
        if mode not in ("min", "max") or not 0 < factor < 1:
            raise ValueError("mode must be 'min' or 'max' and factor in (0, 1)")
        self.optimizer, self.monitor, self.mode, self.factor = optimizer, monitor, mode, float(factor)
        self.patience, self.threshold, self.cooldown = int(patience), float(threshold), int(cooldown)
        self.min_lr, self.eps = float(min_lr), float(eps)
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = self.cooldown_counter = 0

    def _improved(self, value: float) -> bool:
        if self.mode == "min":
            return value < self.best * (1 - self.threshold)
        return value > self.best * (1 + self.threshold)

    def step(self, value: float) -> float:
        value = float(value)
        if self._improved(value):
            self.best, self.num_bad_epochs = value, 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            new = max(self.optimizer.lr * self.factor, self.min_lr)
            if self.optimizer.lr - new > self.eps:
                self.optimizer.lr = new
            self.cooldown_counter, self.num_bad_epochs = self.cooldown, 0
        return self.optimizer.lr
