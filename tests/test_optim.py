"""Optimizers, clipping and schedules: update rules against torch.optim (skipped without torch)
and against hand-computed steps."""
import math

import numpy as np
import pytest

from pyrnn import optim
from pyrnn.nn import Linear


def _pair(seed=0):
    rng = np.random.default_rng(seed)
    p = {"w": rng.standard_normal((3, 2)), "b": rng.standard_normal(2)}
    return p


def _run_ours(make, steps=5):
    params = _pair()
    grads = {k: np.zeros_like(v) for k, v in params.items()}
    opt = make((params, grads))
    for s in range(steps):
        for k in params:
            grads[k][...] = np.sin(params[k] * (s + 1)) + 0.1 * params[k]
        opt.step()
    return params


def _run_torch(torch, make, steps=5):
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in _pair().items()}
    opt = make(list(tp.values()))
    for s in range(steps):
        opt.zero_grad()
        for t in tp.values():
            t.grad = torch.sin(t.detach() * (s + 1)) + 0.1 * t.detach()
        opt.step()
    return {k: v.detach().numpy() for k, v in tp.items()}


CASES = [
    (lambda t: optim.SGD(t, lr=0.1), lambda T, p: T.optim.SGD(p, lr=0.1)),
    (lambda t: optim.SGD(t, lr=0.1, momentum=0.9), lambda T, p: T.optim.SGD(p, lr=0.1, momentum=0.9)),
    (lambda t: optim.SGD(t, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
     lambda T, p: T.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    (lambda t: optim.SGD(t, lr=0.1, momentum=0.5, dampening=0.3), lambda T, p: T.optim.SGD(p, lr=0.1, momentum=0.5, dampening=0.3)),
    (lambda t: optim.Adam(t, lr=0.01), lambda T, p: T.optim.Adam(p, lr=0.01)),
    (lambda t: optim.Adam(t, lr=0.01, weight_decay=0.1), lambda T, p: T.optim.Adam(p, lr=0.01, weight_decay=0.1)),
    (lambda t: optim.AdamW(t, lr=0.01, weight_decay=0.1), lambda T, p: T.optim.AdamW(p, lr=0.01, weight_decay=0.1)),
]


@pytest.mark.parametrize("ours,theirs", CASES)
def test_matches_torch_optim(ours, theirs):
    torch = pytest.importorskip("torch")
    a = _run_ours(ours)
    b = _run_torch(torch, lambda p: theirs(torch, p))
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-10, atol=1e-12)


def test_sgd_by_hand_and_module_target():
    lin = Linear(2, 1, dtype=np.float64, seed=0)
    w0 = lin.weight.copy()
    lin.grads["weight"][...] = 1.0
    opt = optim.SGD(lin, lr=0.5)
    opt.step()
    np.testing.assert_allclose(lin.weight, w0 - 0.5)      # in place, live
    opt.zero_grad()
    assert not lin.grads["weight"].any()


def test_clip_grad_norm_and_value():
    grads = {"a": np.array([3.0, 0.0]), "b": np.array([[4.0]])}
    norm = optim.clip_grad_norm(grads, 1.0)
    assert norm == pytest.approx(5.0)
    assert optim.global_grad_norm(grads) == pytest.approx(1.0, rel=1e-5)
    small = {"a": np.array([0.1])}
    optim.clip_grad_norm(small, 1.0)
    assert small["a"][0] == 0.1                           # below the limit: untouched
    g = {"a": np.array([-3.0, 0.2, 5.0])}
    optim.clip_grad_value(g, 1.0)
    np.testing.assert_array_equal(g["a"], [-1.0, 0.2, 1.0])
    with pytest.raises(ValueError):
        optim.clip_grad_norm(grads, 0)


def test_clip_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((3, 4)), rng.standard_normal(5)]
    ts = [torch.zeros(a.shape, dtype=torch.float64, requires_grad=True) for a in arrays]
    for t, a in zip(ts, arrays):
        t.grad = torch.tensor(a)
    ref = torch.nn.utils.clip_grad_norm_(ts, 0.7)
    grads = {str(i): a.copy() for i, a in enumerate(arrays)}
    assert optim.clip_grad_norm(grads, 0.7) == pytest.approx(ref.item())
    for i, t in enumerate(ts):
        np.testing.assert_allclose(grads[str(i)], t.grad.numpy(), rtol=1e-12)


def test_schedules():
    opt = optim.SGD(({"w": np.zeros(1)}, {"w": np.zeros(1)}), lr=1.0)
    step = optim.StepLR(opt, step_size=2, gamma=0.5)
    assert [step.step() for _ in range(5)] == [1.0, 0.5, 0.5, 0.25, 0.25]
    opt = optim.SGD(({"w": np.zeros(1)}, {"w": np.zeros(1)}), lr=1.0)
    cos = optim.CosineLR(opt, T_max=4, eta_min=0.1)
    lrs = [cos.step() for _ in range(6)]
    expected = [0.1 + 0.9 * (1 + math.cos(math.pi * e / 4)) / 2 for e in (1, 2, 3, 4, 4, 4)]
    np.testing.assert_allclose(lrs, expected)
    opt = optim.SGD(({"w": np.zeros(1)}, {"w": np.zeros(1)}), lr=1.0)
    warm = optim.CosineLR(opt, T_max=2, warmup=2)
    assert opt.lr == pytest.approx(1 / 3)
    assert [round(warm.step(), 4) for _ in range(4)] == [round(2 / 3, 4), 1.0, 0.5, 0.0]


def test_cosine_matches_torch_scheduler():
    torch = pytest.importorskip("torch")
    t = torch.zeros(1, requires_grad=True)
    topt = torch.optim.SGD([t], lr=0.3)
    tsched = torch.optim.lr_scheduler.CosineAnnealingLR(topt, T_max=5, eta_min=0.01)
    opt = optim.SGD(({"w": np.zeros(1)}, {"w": np.zeros(1)}), lr=0.3)
    sched = optim.CosineLR(opt, T_max=5, eta_min=0.01)
    for _ in range(5):
        topt.step()
        tsched.step()
        assert sched.step() == pytest.approx(topt.param_groups[0]["lr"])


def test_bad_arguments():
    with pytest.raises(TypeError, match="module"):
        optim.SGD(3)
    with pytest.raises(ValueError, match="same keys"):
        optim.SGD(({"a": np.zeros(1)}, {"b": np.zeros(1)}))
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD(({"a": np.zeros(1)}, {"a": np.zeros(1)}), nesterov=True)
