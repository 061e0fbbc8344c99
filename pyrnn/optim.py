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
    """Base class: holds the live parameters, gradients, learning rate and per-parameter state."""

    def __init__(self, target: Any, lr: float) -> None:
        if not lr >= 0:
            raise ValueError(f"lr must be >= 0, got {lr}")
        self.params, self.grads = _params_and_grads(target)
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


class StepLR:
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


class CosineLR:
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
