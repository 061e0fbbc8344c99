"""Losses: values and gradients against finite differences and torch; masks, ignore_index and
label smoothing reduce correctly over variable-length batches."""
import numpy as np
import pytest

from pyrnn.losses import CrossEntropyLoss, MSELoss, cross_entropy, log_softmax, mse


def _fd(f, x, eps=1e-6):
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        g[idx] = (f(xp) - f(xm)) / (2 * eps)
    return g


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_gradient_fd(smoothing):
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((2, 3, 5))
    targets = rng.integers(0, 5, (2, 3))
    mask = np.array([[1, 1, 0], [1, 0, 0]], bool)
    loss, d = cross_entropy(logits, targets, mask=mask, label_smoothing=smoothing)
    np.testing.assert_allclose(d, _fd(lambda z: cross_entropy(z, targets, mask=mask, label_smoothing=smoothing)[0],
                                      logits), atol=1e-8)
    assert np.all(d[~mask] == 0)


def test_mse_gradient_and_mask():
    rng = np.random.default_rng(0)
    p, t = rng.standard_normal((2, 4, 3)), rng.standard_normal((2, 4, 3))
    mask = np.array([[1, 1, 1, 0], [1, 0, 0, 0]], bool)
    loss, d = mse(p, t, mask)
    np.testing.assert_allclose(d, _fd(lambda z: mse(z, t, mask)[0], p), atol=1e-8)
    np.testing.assert_allclose(loss, np.mean((p[mask] - t[mask]) ** 2))
    assert MSELoss()(p, t)[0] == pytest.approx(np.mean((p - t) ** 2))


def test_padded_batch_equals_concatenated_sequences():
    """Mean over valid tokens: padding (by mask or ignore_index) changes nothing."""
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((4, 6)), rng.standard_normal((2, 6))
    ta, tb = rng.integers(1, 6, 4), rng.integers(1, 6, 2)
    ref = cross_entropy(np.concatenate([a, b]), np.concatenate([ta, tb]))[0]
    logits = np.zeros((2, 4, 6))
    logits[0], logits[1, :2] = a, b
    targets = np.zeros((2, 4), int)
    targets[0], targets[1, :2] = ta, tb
    assert cross_entropy(logits, targets, ignore_index=0)[0] == pytest.approx(ref)
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0]], bool)
    assert CrossEntropyLoss()(logits, targets, mask=mask)[0] == pytest.approx(ref)


def test_cross_entropy_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((6, 5))
    targets = np.array([0, 3, -100, 4, 1, -100])
    for eps in (0.0, 0.1):
        lt = torch.from_numpy(logits).requires_grad_()
        ref = torch.nn.functional.cross_entropy(lt, torch.from_numpy(targets), ignore_index=-100, label_smoothing=eps)
        ref.backward()
        loss, d = cross_entropy(logits, targets, ignore_index=-100, label_smoothing=eps)
        assert loss == pytest.approx(ref.item(), rel=1e-12)
        np.testing.assert_allclose(d, lt.grad.numpy(), atol=1e-12)


def test_log_softmax_is_stable_and_errors():
    z = np.array([[1000.0, 0.0, -1000.0]])
    assert np.isfinite(log_softmax(z)).all()
    assert np.isfinite(cross_entropy(z, np.array([2]))[0])
    with pytest.raises(ValueError, match="targets: expected shape"):
        cross_entropy(np.zeros((2, 3)), np.zeros(3, int))
    with pytest.raises(TypeError, match="integer class"):
        cross_entropy(np.zeros((2, 3)), np.zeros(2))
    with pytest.raises(ValueError, match="outside 0..2"):
        cross_entropy(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="label_smoothing"):
        cross_entropy(np.zeros((2, 3)), np.array([0, 1]), label_smoothing=1.0)
    with pytest.raises(ValueError, match="target: expected shape"):
        mse(np.zeros((2, 3)), np.zeros((3, 2)))
    assert cross_entropy(np.zeros((2, 3), np.float32), np.array([0, 1]))[1].dtype == np.float32
