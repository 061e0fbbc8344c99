"""Finite-difference gradient checking shared by the model and building-block tests."""
from __future__ import annotations

import numpy as np


def check_param_grads(module, forward, n_per_param=4, eps=1e-6, rtol=1e-5, atol=1e-7, seed=0):
    """Compare ``module.grads`` after ``module.backward(R)`` with central differences of
    ``sum(forward() * R)`` for a few random entries of every parameter. Returns R."""
    rng = np.random.default_rng(seed)
    out = forward()
    R = rng.standard_normal(out.shape)
    module.zero_grad()
    module.backward(R)
    grads = module.grads
    checked = 0
    for name, p in module.parameters().items():
        g = grads[name]
        for _ in range(n_per_param):
            idx = tuple(int(rng.integers(0, s)) for s in p.shape)
            old = p[idx]
            p[idx] = old + eps
            plus = float(np.sum(forward() * R))
            p[idx] = old - eps
            minus = float(np.sum(forward() * R))
            p[idx] = old
            numeric = (plus - minus) / (2 * eps)
            assert abs(numeric - g[idx]) <= atol + rtol * abs(numeric), (name, idx, numeric, g[idx])
            checked += 1
    assert checked > 0
    return R


def check_input_grad(forward_of, backward, x, n=8, eps=1e-6, rtol=1e-5, atol=1e-7, seed=1):
    """Compare the input gradient returned by ``backward(R)`` with central differences."""
    rng = np.random.default_rng(seed)
    out = forward_of(x)
    R = rng.standard_normal(out.shape)
    dx = backward(R)
    assert dx.shape == x.shape
    for _ in range(n):
        idx = tuple(int(rng.integers(0, s)) for s in x.shape)
        xp, xm = x.copy(), x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        numeric = (np.sum(forward_of(xp) * R) - np.sum(forward_of(xm) * R)) / (2 * eps)
        assert abs(numeric - dx[idx]) <= atol + rtol * abs(numeric), (idx, numeric, dx[idx])


def numeric_grad(f, x, eps=1e-6):
    """Central differences of the scalar ``f()`` with respect to every entry of ``x`` (changed
    in place and restored)."""
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + eps
        plus = f()
        x[idx] = old - eps
        minus = f()
        x[idx] = old
        g[idx] = (plus - minus) / (2 * eps)
    return g
