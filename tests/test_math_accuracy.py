"""Maximum errors of the vectorised exp, sigmoid and tanh on every available ISA, over the
whole float32 range (a sweep of bit patterns) and a wide float64 sample, plus special values.
The bounds are the ones documented at the top of csrc/kernels/math.cpp."""
import numpy as np
import pytest

from pyrnn import _core

ISAS = _core.available_isas()
F32 = np.finfo(np.float32)
F64 = np.finfo(np.float64)

# (relative bound for exp and sigmoid, absolute bound for tanh, relative bound for small tanh)
BOUNDS = {np.float32: (4e-6, 5e-6, 4e-6), np.float64: (1e-14, 1e-14, 1e-14)}
MATH = {np.float32: _core._math_f32, np.float64: _core._math_f64}


def reference(fn, x, wide):
    """fn(x) in the wider type `wide` (float64 for float32 inputs, long double for float64)."""
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        xw = x.astype(wide)  # signalling NaNs raise "invalid" in the cast
        if fn == "exp":
            return np.exp(xw)
        if fn == "sigmoid":
            return 1 / (1 + np.exp(-xw))
        return np.tanh(xw)


def check(fn, x, dtype, ref):
    """Asserts the documented bounds for fn(x) on the active ISA given the wide reference."""
    rel, abs_tanh, rel_small_tanh = BOUNDS[dtype]
    info = np.finfo(dtype)
    y = MATH[dtype](fn, x)
    nan = np.isnan(x)
    assert np.array_equal(np.isnan(y), nan), f"{fn}: NaN in != NaN out"
    x, y, ref = x[~nan], y[~nan].astype(ref.dtype), ref[~nan]
    with np.errstate(over="ignore", invalid="ignore"):
        if fn == "tanh":
            err = np.abs(y - ref)
            assert err.max(initial=0) <= abs_tanh, f"tanh abs error {err.max()}"
            small = (np.abs(x) < 0.625) & (x != 0)
            rerr = err[small] / np.abs(ref[small])
            assert rerr.max(initial=0) <= rel_small_tanh, f"tanh small-x rel error {rerr.max()}"
            return
        # Past the overflow threshold the answer is +inf (a finite result near MAX is fine).
        over = ref > info.max * (1 - rel)
        assert np.all(np.isinf(y[ref > info.max * (1 + rel)])), f"{fn} should overflow to inf"
        y, ref = y[~over], ref[~over]
        assert np.all(np.isfinite(y)), f"{fn}: spurious inf"
        # Relative where the true result is normal; results below it may be flushed to zero.
        normal = ref >= info.tiny
        rerr = np.abs(y[normal] - ref[normal]) / ref[normal]
        assert rerr.max(initial=0) <= rel, f"{fn} rel error {rerr.max()}"
        assert np.all(np.abs(y[~normal] - ref[~normal]) <= info.tiny), f"{fn} tiny results"


def check_all_isas(fn, x, dtype):
    """check() on every available ISA (restored afterwards), the reference computed once."""
    ref = reference(fn, x, np.float64 if dtype == np.float32 else np.longdouble)
    saved = _core.active_isa()
    try:
        for isa in ISAS:
            _core.select_isa(isa)
            check(fn, x, dtype, ref)
    finally:
        _core.select_isa(saved)


@pytest.mark.parametrize("fn", ["exp", "sigmoid", "tanh"])
def test_float32_whole_range(fn):
    """Every 257th float32 bit pattern (16.7 million values: every exponent, both signs, NaNs)
    and a dense grid over [-20, 20] where the functions bend."""
    step, chunk = 257, 1 << 22
    for start in range(0, 1 << 32, chunk * step):
        bits = np.arange(start, min(start + chunk * step, 1 << 32), step, dtype=np.uint64)
        check_all_isas(fn, bits.astype(np.uint32).view(np.float32), np.float32)
    check_all_isas(fn, np.linspace(-20, 20, 400001, dtype=np.float32), np.float32)


def float64_sample(rng):
    """Uniform over the interesting range, log-uniform magnitudes and raw bit patterns."""
    uniform = rng.uniform(-760, 760, 400_000)
    logs = rng.choice([-1.0, 1.0], 300_000) * 10.0 ** rng.uniform(-310, 3, 300_000)
    bits = rng.integers(0, 2**63, 300_000, dtype=np.uint64).view(np.float64)
    grid = np.linspace(-20, 20, 200_001)
    return np.concatenate([uniform, logs, bits, -bits, grid])


@pytest.mark.parametrize("fn", ["exp", "sigmoid", "tanh"])
def test_float64_sample(fn):
    check_all_isas(fn, float64_sample(np.random.default_rng(7)), np.float64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_special_values(isa, dtype):
    info = np.finfo(dtype)
    x = np.array([np.inf, -np.inf, 0.0, -0.0, np.nan, info.max, -info.max], dtype)
    f = MATH[dtype]
    exp, sig, tanh = f("exp", x), f("sigmoid", x), f("tanh", x)
    np.testing.assert_array_equal(exp[:4], [np.inf, 0, 1, 1])
    np.testing.assert_array_equal(sig[:4], [1, 0, 0.5, 0.5])
    np.testing.assert_array_equal(tanh[:4], [1, -1, 0, 0])
    assert np.signbit(tanh[3]) and not np.signbit(tanh[2])
    assert np.isnan(exp[4]) and np.isnan(sig[4]) and np.isnan(tanh[4])
    np.testing.assert_array_equal(exp[5:], [np.inf, 0])
    np.testing.assert_array_equal(sig[5:], [1, 0])
    np.testing.assert_array_equal(tanh[5:], [1, -1])
    tiny = np.array([info.tiny, info.smallest_subnormal, -info.smallest_subnormal], dtype)
    np.testing.assert_array_equal(f("tanh", tiny), tiny)
    np.testing.assert_array_equal(f("exp", tiny), [1, 1, 1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [0, 1, 3, 7, 8, 9, 17, 31, 33])
def test_lengths_and_tails(isa, dtype, n):
    """Partial vectors at the end of an array give the same values as full ones."""
    x = np.linspace(-3, 3, 64).astype(dtype)
    for fn in ["exp", "sigmoid", "tanh"]:
        np.testing.assert_array_equal(MATH[dtype](fn, x[:n]), MATH[dtype](fn, x)[:n])


def test_unknown_function_raises():
    with pytest.raises(ValueError):
        _core._math_f32("log", np.ones(3, np.float32))
