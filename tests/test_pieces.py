"""The training pieces against PyTorch (and scikit-learn for F1): losses with their gradients,
RMSprop and Adagrad, the schedules, LayerNorm / GroupNorm (finite differences and parity) and
the metrics."""
import math

import numpy as np
import pytest

from pyrnn import losses, metrics, optim
from pyrnn.nn import GroupNorm, LayerNorm

from _fd import check_input_grad, check_param_grads

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _torch_loss(fn, pred, *args, **kw):
    t = torch.tensor(pred, dtype=torch.float64, requires_grad=True)
    value = fn(t, *args, **kw)
    value.backward()
    return value.item(), t.grad.numpy()


RNG = np.random.default_rng(0)
PRED = RNG.standard_normal((4, 5))
TARGET = RNG.standard_normal((4, 5))
PROBS = 1 / (1 + np.exp(-PRED))
BINARY = (RNG.random((4, 5)) > 0.5).astype(np.float64)


@pytest.mark.parametrize("ours,theirs,pred,target", [
    (losses.l1, F.l1_loss, PRED, TARGET),
    (losses.huber, F.huber_loss, 2 * PRED, TARGET),
    (lambda p, t: losses.huber(p, t, delta=0.5), lambda p, t: F.huber_loss(p, t, delta=0.5), 2 * PRED, TARGET),
    (losses.bce, F.binary_cross_entropy, PROBS, BINARY),
    (losses.bce_with_logits, F.binary_cross_entropy_with_logits, 10 * PRED, BINARY),
    (lambda p, t: losses.bce_with_logits(p, t, pos_weight=np.arange(1, 6.0)),
     lambda p, t: F.binary_cross_entropy_with_logits(p, t, pos_weight=torch.arange(1, 6.0, dtype=torch.float64)),
     PRED, BINARY),
])
def test_elementwise_losses_match_torch(ours, theirs, pred, target):
    value, grad = ours(pred, target)
    ref, ref_grad = _torch_loss(lambda t: theirs(t, torch.tensor(target)), pred)
    assert value == pytest.approx(ref, rel=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-10, atol=1e-14)


def test_elementwise_loss_mask_is_the_loss_of_the_valid_part():
    mask = np.array([1, 1, 0, 1], bool)
    value, grad = losses.huber(PRED, TARGET, mask=mask)
    ref, _ = losses.huber(PRED[mask], TARGET[mask])
    assert value == pytest.approx(ref)
    assert not grad[2].any()


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("weighted", [False, True])
def test_class_losses_match_torch(smoothing, weighted):
    logits = RNG.standard_normal((2, 6, 5))
    targets = RNG.integers(0, 5, (2, 6))
    targets[1, 4:] = -100
    w = np.array([0.5, 2.0, 1.0, 3.0, 0.1]) if weighted else None
    tw = None if w is None else torch.tensor(w)
    tt = torch.tensor(targets)
    value, grad = losses.weighted_cross_entropy(logits, targets, weight=w, ignore_index=-100, label_smoothing=smoothing)
    ref, ref_grad = _torch_loss(lambda t: F.cross_entropy(t.permute(0, 2, 1), tt, weight=tw, ignore_index=-100,
                                                          label_smoothing=smoothing), logits)
    assert value == pytest.approx(ref, rel=1e-10)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-9, atol=1e-14)
    logp = np.log(np.exp(logits) / np.exp(logits).sum(-1, keepdims=True))
    value, grad = losses.nll(logp, targets, weight=w, ignore_index=-100, label_smoothing=smoothing)
    if smoothing == 0:     # torch's nll_loss has no label smoothing
        ref, ref_grad = _torch_loss(lambda t: F.nll_loss(t.permute(0, 2, 1), tt, weight=tw, ignore_index=-100), logp)
        assert value == pytest.approx(ref, rel=1e-10)
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-9, atol=1e-14)


def test_unweighted_class_loss_equals_cross_entropy():
    logits, targets = RNG.standard_normal((7, 4)), RNG.integers(0, 4, 7)
    a, ga = losses.cross_entropy(logits, targets, label_smoothing=0.1)
    b, gb = losses.NLLLoss(label_smoothing=0.1, from_logits=True)(logits, targets)
    assert a == pytest.approx(b)
    np.testing.assert_allclose(ga, gb, atol=1e-12)


def test_bad_loss_inputs_are_clear():
    with pytest.raises(ValueError, match="bce_with_logits"):
        losses.bce(PRED, BINARY)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        losses.bce_with_logits(PRED, TARGET)
    with pytest.raises(ValueError, match="class weights"):
        losses.nll(PRED, np.zeros(4, int), weight=[1, 2])


# ---------------------------------------------------------------------------------------------
# optimizers and schedules


def _run_optimizer(ours_cls, theirs_cls, kwargs, steps=6):
    p0 = RNG.standard_normal((3, 4))
    params = {"w": p0.copy()}
    grads = {"w": np.zeros_like(p0)}
    opt = ours_cls((params, grads), **kwargs)
    tp = torch.tensor(p0.copy(), requires_grad=True)
    topt = theirs_cls([tp], **kwargs)
    for k in range(steps):
        g = np.sin(np.arange(12.0).reshape(3, 4) * (k + 1)) + params["w"]
        grads["w"][...] = g
        opt.step()
        tp.grad = torch.tensor(np.sin(np.arange(12.0).reshape(3, 4) * (k + 1)) + tp.detach().numpy())
        topt.step()
        np.testing.assert_allclose(params["w"], tp.detach().numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kwargs", [{}, dict(momentum=0.9), dict(centered=True, weight_decay=0.1),
                                    dict(centered=True, momentum=0.5, alpha=0.9, lr=0.05)])
def test_rmsprop_matches_torch(kwargs):
    _run_optimizer(optim.RMSprop, torch.optim.RMSprop, kwargs)


@pytest.mark.parametrize("kwargs", [{}, dict(lr_decay=0.1, weight_decay=0.01, initial_accumulator_value=0.5)])
def test_adagrad_matches_torch(kwargs):
    _run_optimizer(optim.Adagrad, torch.optim.Adagrad, kwargs)


def _torch_opt(lr):
    return torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)


def _ours_opt(lr):
    return optim.SGD(({"w": np.zeros(1)}, {"w": np.zeros(1)}), lr=lr)


def test_one_cycle_matches_torch():
    ours_opt, theirs_opt = _ours_opt(0.1), _torch_opt(0.1)
    ours = optim.OneCycleLR(ours_opt, max_lr=0.5, total_steps=40, pct_start=0.25)
    theirs = torch.optim.lr_scheduler.OneCycleLR(theirs_opt, max_lr=0.5, total_steps=40, pct_start=0.25,
                                                 cycle_momentum=False)
    assert ours.interval == "batch"
    for _ in range(39):
        assert ours_opt.lr == pytest.approx(theirs_opt.param_groups[0]["lr"], rel=1e-12)
        theirs_opt.step()
        theirs.step()
        ours.step()


def test_reduce_on_plateau_matches_torch():
    ours_opt, theirs_opt = _ours_opt(1.0), _torch_opt(1.0)
    ours = optim.ReduceLROnPlateau(ours_opt, factor=0.5, patience=2, cooldown=1, min_lr=0.05)
    theirs = torch.optim.lr_scheduler.ReduceLROnPlateau(theirs_opt, factor=0.5, patience=2, cooldown=1, min_lr=0.05)
    for value in [5, 4, 4, 4, 4, 3.9999, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 1, 1, 1, 1, 1]:
        ours.step(value)
        theirs.step(value)
        assert ours_opt.lr == pytest.approx(theirs_opt.param_groups[0]["lr"], rel=1e-12)


def test_warmup_cosine_matches_lambda_lr():
    warm, total = 5, 30
    ours_opt, theirs_opt = _ours_opt(0.2), _torch_opt(0.2)
    ours = optim.WarmupCosineLR(ours_opt, warmup_steps=warm, total_steps=total)
    theirs = torch.optim.lr_scheduler.LambdaLR(theirs_opt, lambda s: s / warm if s < warm else
                                               0.5 * (1 + math.cos(math.pi * min(s - warm, total - warm) / (total - warm))))
    for _ in range(total + 3):
        assert ours_opt.lr == pytest.approx(theirs_opt.param_groups[0]["lr"], rel=1e-12, abs=1e-15)
        theirs_opt.step()
        theirs.step()
        ours.step()


# ---------------------------------------------------------------------------------------------
# normalisation


@pytest.mark.parametrize("make", [lambda: LayerNorm(6, dtype="float64"), lambda: GroupNorm(3, 6, dtype="float64"),
                                  lambda: GroupNorm(2, 6, bias=False, dtype="float64")])
def test_norm_gradients(make):
    m = make()
    rng = np.random.default_rng(1)
    for p in m.parameters().values():
        p[...] = rng.standard_normal(p.shape)
    x = rng.standard_normal((2, 3, 6))
    check_param_grads(m, lambda: m(x))
    check_input_grad(lambda xx: m(xx), m.backward, x)


def test_norms_match_torch():
    x = RNG.standard_normal((4, 3, 8))
    ln, tln = LayerNorm(8, dtype="float64"), torch.nn.LayerNorm(8, dtype=torch.float64)
    gn, tgn = GroupNorm(4, 8, dtype="float64"), torch.nn.GroupNorm(4, 8, dtype=torch.float64)
    for ours, theirs in ((ln, tln), (gn, tgn)):
        with torch.no_grad():
            theirs.weight.uniform_(0.5, 1.5)
            theirs.bias.uniform_(-1, 1)
        ours.load_state_dict(theirs.state_dict())
        tx = torch.tensor(x, requires_grad=True)
        # torch's GroupNorm reads channels on axis 1: move ours' last axis there
        ty = theirs(tx) if ours is ln else theirs(tx.reshape(-1, 8)).reshape(x.shape)
        R = RNG.standard_normal(x.shape)
        (ty * torch.tensor(R)).sum().backward()
        np.testing.assert_allclose(ours(x), ty.detach().numpy(), atol=1e-12)
        np.testing.assert_allclose(ours.backward(R), tx.grad.numpy(), atol=1e-12)
        np.testing.assert_allclose(ours.grads["weight"], theirs.weight.grad.numpy(), atol=1e-12)


# ---------------------------------------------------------------------------------------------
# metrics


def test_metrics():
    logits = RNG.standard_normal((50, 6))
    targets = RNG.integers(0, 6, 50)
    top3 = torch.tensor(logits).topk(3, dim=-1).indices.numpy()
    assert metrics.top_k_accuracy(logits, targets, 3) == pytest.approx(np.mean((top3 == targets[:, None]).any(1)))
    assert metrics.accuracy(logits, targets[:, None]) == pytest.approx(np.mean(logits.argmax(1) == targets))
    ce = F.cross_entropy(torch.tensor(logits), torch.tensor(targets)).item()
    assert metrics.perplexity(logits, targets) == pytest.approx(math.exp(ce))
    assert metrics.bits_per_character(logits, targets) == pytest.approx(ce / math.log(2))
    sk = pytest.importorskip("sklearn.metrics")
    assert metrics.f1_score(logits, targets) == pytest.approx(sk.f1_score(targets, logits.argmax(1), average="macro"))
    binary = RNG.standard_normal((30, 1))
    labels = RNG.integers(0, 2, (30, 1))
    assert metrics.f1_score(binary, labels) == pytest.approx(
        sk.f1_score(labels[:, 0], (binary[:, 0] > 0).astype(int), average="macro"))
    # accumulated over batches = at once
    m = metrics.get("f1")
    for s in range(0, 50, 16):
        m.update(logits[s:s + 16], targets[s:s + 16])
    assert m.result() == pytest.approx(metrics.f1_score(logits, targets))
    with pytest.raises(ValueError, match="unknown metric"):
        metrics.get("recall")
