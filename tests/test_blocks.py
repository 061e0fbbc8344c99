"""The building blocks' kernels (pyrnn._core.blocks) against their NumPy reference
(pyrnn.reference_blocks): the reference by finite differences in float64, the native kernels
equal to it on every instruction set, bitwise equal to themselves on 1 and 2 threads with the
per-thread grain lowered so that every kernel really splits, and bad input refused."""
from __future__ import annotations

import numpy as np
import pytest

from pyrnn import _core, _dense, reference_blocks as ref
from pyrnn.testing import use_backend

from _fd import numeric_grad

nat = _core.blocks
ACTS = ["identity", "tanh", "sigmoid", "relu", "leaky_relu"]
DTYPES = [np.float32, np.float64]
# float32 kernels use the vectorised exp/tanh/sigmoid (relative error <= 4e-6).
TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}


@pytest.fixture
def split():
    """Every kernel splits any work, however small, among its threads (all restored after)."""
    threads, testing = _core.get_num_threads(), _core._thread_testing()
    _core._set_thread_testing(0.0, "auto")
    yield
    _core._set_thread_testing(*testing)
    _core.set_num_threads(threads)


def _rand(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def _cases(dtype):
    """(name, function of the ops module) for every kernel, on odd sizes that leave loop tails."""
    rng = np.random.default_rng(0)
    x = _rand(rng, (37, 29), dtype)
    w = _rand(rng, (11, 29), dtype)
    b = _rand(rng, (11,), dtype)
    a3 = _rand(rng, (5, 7, 9), dtype)
    b3 = _rand(rng, (5, 9, 6), dtype)
    scores = _rand(rng, (13, 19), dtype) * 4
    scores[2, 3:7] = -np.inf
    y_soft = ref.softmax(scores)
    targets = rng.integers(0, 19, 13).astype(np.int64)
    scale = rng.random(13).astype(dtype)
    ids = rng.integers(0, 6, 41).astype(np.int64)
    dout = _rand(rng, (41, 23), dtype)
    p, g = _rand(rng, (103,), dtype), _rand(rng, (103,), dtype)
    m, v = _rand(rng, (103,), dtype), np.abs(_rand(rng, (103,), dtype))

    def inplace(fn):
        def run(ops):
            arrays = [arr.copy() for arr in (p, g, m, v)]
            fn(ops, *arrays)
            return arrays
        return run

    cases = {
        "gemm": lambda o: o.gemm(x, w, False, True),
        "gemm_ta": lambda o: o.gemm(np.ascontiguousarray(x.T), w, True, True),
        "gemm_beta": lambda o: o.gemm(x, np.ascontiguousarray(w.T), False, False, np.ones((37, 11), dtype), 1.0),
        "gemm_batched": lambda o: o.gemm(a3, b3),
        "gemm_batched_shared_b": lambda o: o.gemm(a3, b3[0]),
        "gemm_batched_tt": lambda o: o.gemm(np.ascontiguousarray(a3.transpose(0, 2, 1)),
                                            np.ascontiguousarray(b3.transpose(0, 2, 1)), True, True),
        "linear": lambda o: o.linear(x, w, b),
        "linear_no_bias": lambda o: o.linear(x, w),
        "column_sums": lambda o: (lambda out: (o.column_sums(x, out), out)[1])(b[:1].repeat(29).copy()),
        "softmax": lambda o: o.softmax(scores),
        "log_softmax": lambda o: o.softmax(scores[3:], True),
        "softmax_backward": lambda o: o.softmax_backward(y_soft, x[:13, :19].copy()),
        "cross_entropy": lambda o: o.cross_entropy(scores[3:], targets[3:], scale[3:], 0.0),
        "cross_entropy_smoothed": lambda o: o.cross_entropy(scores[3:], targets[3:], scale[3:], 0.1),
        "adam": inplace(lambda o, p, g, m, v: o.adam_update(p, g, m, v, 1e-2, 0.9, 0.999, 1e-8, 0.0, False, 3)),
        "adam_l2": inplace(lambda o, p, g, m, v: o.adam_update(p, g, m, v, 1e-2, 0.8, 0.99, 1e-6, 0.1, False, 1)),
        "adamw": inplace(lambda o, p, g, m, v: o.adam_update(p, g, m, v, 1e-2, 0.9, 0.999, 1e-8, 0.01, True, 7)),
        "sgd": inplace(lambda o, p, g, m, v: o.sgd_update(p, g, None, 0.1, 0.0, 0.0, 0.0, False, False)),
        "sgd_momentum": inplace(lambda o, p, g, m, v: o.sgd_update(p, g, m, 0.1, 0.9, 0.1, 0.01, False, False)),
        "sgd_momentum_first": inplace(lambda o, p, g, m, v: o.sgd_update(p, g, m, 0.1, 0.9, 0.0, 0.0, True, True)),
        "embedding_backward": lambda o: (lambda dw: (o.embedding_backward(ids, dout, 2, dw), dw)[1])(
            np.ones((6, 23), dtype)),
        "sum_squares": lambda o: np.float64(o.sum_squares(x)),
    }
    for kind in ACTS:
        y = ref.activation(kind, x, 0.1)
        cases[f"{kind}"] = lambda o, kind=kind: o.activation(kind, x, 0.1)
        cases[f"{kind}_backward"] = lambda o, kind=kind, y=y: o.activation_backward(kind, x, y, x[::-1].copy(), 0.1)
    return cases


CASE_NAMES = list(_cases(np.float64))


def _flat(result):
    if isinstance(result, (tuple, list)):
        return [np.asarray(r) for r in result]
    return [np.asarray(result)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", CASE_NAMES)
def test_native_matches_reference(isa, split, dtype, name):
    case = _cases(dtype)[name]
    want = _flat(case(ref))
    _core.set_num_threads(1)
    got1 = _flat(case(nat))
    _core.set_num_threads(2)
    _core._reset_split_counts()
    got2 = _flat(case(nat))
    assert sum(_core._split_counts().values()) > 0, f"{name} ran on one thread"
    assert len(want) == len(got1) == len(got2)
    for w, a, b in zip(want, got1, got2):
        assert a.dtype == w.dtype and a.shape == w.shape
        np.testing.assert_allclose(a, w, **TOL[dtype])
        np.testing.assert_array_equal(a, b)   # bitwise: NaN positions and values alike


@pytest.mark.parametrize("shape", [(0, 5), (4, 0)])
def test_empty_arrays(shape):
    x = np.zeros(shape, np.float32)
    assert nat.activation("tanh", x).shape == shape
    assert nat.softmax(x).shape == shape
    out = np.zeros(shape[1], np.float32)
    nat.column_sums(x, out)
    assert not out.any()
    assert nat.sum_squares(x) == 0.0


def test_special_values():
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0], np.float32)
    np.testing.assert_array_equal(nat.activation("relu", x), [np.nan, np.inf, 0, 0, 0])
    np.testing.assert_array_equal(nat.activation("tanh", x), [np.nan, 1, -1, 0, -0.0])
    np.testing.assert_array_equal(nat.activation("sigmoid", x)[1:], [1, 0, 0.5, 0.5])
    p = nat.softmax(np.array([[0.0, -np.inf, 0.0]], np.float32))
    np.testing.assert_array_equal(p, [[0.5, 0, 0.5]])


# ---------------------------------------------------------------------------------------------
# the reference by finite differences (float64)


@pytest.mark.parametrize("kind", ACTS)
def test_reference_activation_gradient(kind):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 5)) + 0.05   # away from relu's kink at 0
    R = rng.standard_normal((4, 5))
    y = ref.activation(kind, x, 0.1)
    got = ref.activation_backward(kind, x, y, R, 0.1)
    want = numeric_grad(lambda: float(np.sum(ref.activation(kind, x, 0.1) * R)), x)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)


def test_reference_softmax_gradient():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 6))
    R = rng.standard_normal((3, 6))
    got = ref.softmax_backward(ref.softmax(x), R)
    want = numeric_grad(lambda: float(np.sum(ref.softmax(x) * R)), x)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_reference_cross_entropy_gradient(smoothing):
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((4, 7))
    targets = np.array([0, 6, 3, 3], np.int64)
    scale = rng.random(4)
    _, got = ref.cross_entropy(logits, targets, scale, smoothing)
    want = numeric_grad(lambda: float(np.sum(ref.cross_entropy(logits, targets, scale, smoothing)[0] * scale)), logits)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)


def test_reference_cross_entropy_is_the_negative_log_likelihood():
    logits = np.log(np.array([[0.2, 0.3, 0.5]]))
    loss, _ = ref.cross_entropy(logits, np.array([2]), np.ones(1), 0.0)
    np.testing.assert_allclose(loss, [-np.log(0.5)])


def test_reference_linear_backward_gradients():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 5))
    w = rng.standard_normal((4, 5))
    b = rng.standard_normal(4)
    R = rng.standard_normal((2, 3, 4))
    with use_backend("reference"):
        dw, db = np.zeros_like(w), np.zeros_like(b)
        dx = _dense.linear_backward(x, R, w, dw, db)
        loss = lambda: float(np.sum(_dense.linear(x, w, b) * R))  # noqa: E731
        np.testing.assert_allclose(dx, numeric_grad(loss, x), rtol=1e-6)
        np.testing.assert_allclose(dw, numeric_grad(loss, w), rtol=1e-6)
        np.testing.assert_allclose(db, numeric_grad(loss, b), rtol=1e-6)


def test_reference_embedding_backward_accumulates_in_order():
    dw = np.zeros((3, 2))
    ref.embedding_backward(np.array([1, 0, 1, 2]), np.arange(8.0).reshape(4, 2), 2, dw)
    np.testing.assert_array_equal(dw, [[2, 3], [4, 6], [0, 0]])


def test_reference_adam_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    p0 = rng.standard_normal(10)
    grads = [rng.standard_normal(10) for _ in range(3)]
    for decoupled, wd in ((False, 0.0), (False, 0.1), (True, 0.05)):
        tp = torch.tensor(p0.copy(), requires_grad=True)
        opt = (torch.optim.AdamW if decoupled else torch.optim.Adam)([tp], lr=0.01, weight_decay=wd)
        p, m, v = p0.copy(), np.zeros(10), np.zeros(10)
        for step, g in enumerate(grads, 1):
            tp.grad = torch.tensor(g)
            opt.step()
            ref.adam_update(p, g, m, v, 0.01, 0.9, 0.999, 1e-8, wd, decoupled, step)
        np.testing.assert_allclose(p, tp.detach().numpy(), rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------------------------
# bad input


def test_bad_input_is_refused():
    x = np.ones((3, 4), np.float32)
    with pytest.raises(TypeError, match="float32 or float64"):
        nat.activation("tanh", x.astype(np.int32))
    with pytest.raises(ValueError, match="activation must be"):
        nat.activation("gelu", x)
    with pytest.raises(TypeError, match="b must have dtype float32"):
        nat.gemm(x, x.T.astype(np.float64))
    with pytest.raises(ValueError, match="C-contiguous"):
        nat.gemm(x, x.T)
    with pytest.raises(ValueError, match="inner dimensions"):
        nat.gemm(x, x)
    with pytest.raises(ValueError, match="different numbers of products"):
        nat.gemm(np.ones((2, 3, 4), np.float32), np.ones((3, 4, 5), np.float32))
    with pytest.raises(ValueError, match="out: expected shape"):
        nat.gemm(x, np.ones((4, 2), np.float32), out=np.zeros((3, 3), np.float32), beta=1.0)
    with pytest.raises(ValueError, match="beta != 0 needs out"):
        nat.gemm(x, np.ones((4, 2), np.float32), beta=1.0)
    frozen = np.zeros(4, np.float32)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="writable"):
        nat.column_sums(x, frozen)
    with pytest.raises(ValueError, match=r"targets\[1\] = 4 is outside 0..3"):
        nat.cross_entropy(x, np.array([0, 4, 1]), np.ones(3, np.float32))
    with pytest.raises(ValueError, match="label_smoothing"):
        nat.cross_entropy(x, np.array([0, 1, 1]), np.ones(3, np.float32), 1.0)
    with pytest.raises(ValueError, match=r"ids\[0\] = 9 is outside"):
        nat.embedding_backward(np.array([9, 0, 0]), x, -1, np.zeros((5, 4), np.float32))
    with pytest.raises(ValueError, match="g: expected shape"):
        nat.adam_update(x.copy(), x[:2].copy(), x.copy(), x.copy(), 0.1, 0.9, 0.999, 1e-8, 0.0, False, 1)
    with pytest.raises(ValueError, match="step must be >= 1"):
        nat.adam_update(x.copy(), x, x.copy(), x.copy(), 0.1, 0.9, 0.999, 1e-8, 0.0, False, 0)


def test_optimizer_on_strided_parameters_uses_the_reference_in_place():
    import pyrnn

    base = np.ones((4, 6), np.float32)
    params = {"w": base[:, ::2]}                      # a strided view the caller owns
    grads = {"w": np.full((4, 3), 0.5, np.float32)}
    pyrnn.optim.SGD((params, grads), lr=0.1).step()
    np.testing.assert_allclose(base[:, ::2], 0.95)
    np.testing.assert_array_equal(base[:, 1::2], 1.0)


def test_every_isa_runs_its_own_float_family(isa):
    # the dot-product ISAs add integer products only; their float kernels are their family's
    family = {"avx512_vnni": "avx512", "avx_vnni": "avx2"}.get(isa, isa)
    assert nat.isa() == family
