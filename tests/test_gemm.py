"""The native GEMM (pyrnn._core._gemm_f32/_f64) against NumPy on every available ISA:
all transpose combinations, edge sizes, beta, NaN in C with beta = 0, and bitwise-identical
results for 1 and 2 threads."""
import itertools

import numpy as np
import pytest

from pyrnn import _core

ISAS = _core.available_isas()
GEMM = {np.float32: _core._gemm_f32, np.float64: _core._gemm_f64}
EPS = {np.float32: np.finfo(np.float32).eps, np.float64: np.finfo(np.float64).eps}
TRANSPOSES = list(itertools.product([False, True], repeat=2))


@pytest.fixture
def threads():
    saved = _core.get_num_threads()
    yield _core.set_num_threads
    _core.set_num_threads(saved)


def operands(rng, dtype, M, N, K, trans_a, trans_b):
    A = rng.standard_normal((K, M) if trans_a else (M, K)).astype(dtype)
    B = rng.standard_normal((N, K) if trans_b else (K, N)).astype(dtype)
    return A, B


def check(dtype, trans_a, trans_b, A, B, beta=0.0, C=None):
    """Runs the native GEMM and compares with a float64 product, to the rounding-error bound
    K * eps * (|A| |B| + |beta C|)."""
    out = GEMM[dtype](trans_a, trans_b, A, B, beta, C)
    a = (A.T if trans_a else A).astype(np.float64)
    b = (B.T if trans_b else B).astype(np.float64)
    ref = a @ b
    bound = np.abs(a) @ np.abs(b)
    if beta != 0:
        ref = ref + beta * C.astype(np.float64)
        bound = bound + np.abs(beta * C.astype(np.float64))
    assert out.shape == ref.shape and out.dtype == dtype
    tol = 2 * (a.shape[1] + 2) * EPS[dtype] * bound + np.finfo(dtype).tiny
    assert np.all(np.abs(out - ref) <= tol), np.max(np.abs(out - ref) - tol)
    return out


SIZES = [0, 1, 2, 3, 5, 7, 16, 17, 33]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans_a,trans_b", TRANSPOSES)
def test_small_shapes(isa, dtype, trans_a, trans_b):
    rng = np.random.default_rng(1)
    for M, N, K in itertools.product(SIZES, SIZES, [0, 1, 3, 17, 64]):
        check(dtype, trans_a, trans_b, *operands(rng, dtype, M, N, K, trans_a, trans_b))


# Past every blocking size: several K slices, M blocks and N blocks, several column chunks
# of the few-row path (M <= 6), odd tails everywhere.
LARGE = [(1, 4500, 41), (5, 1000, 300), (7, 4100, 20), (13, 37, 700), (200, 129, 513),
         (401, 50, 33), (64, 1024, 256)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans_a,trans_b", TRANSPOSES)
@pytest.mark.parametrize("M,N,K", LARGE)
def test_large_shapes(isa, dtype, trans_a, trans_b, M, N, K):
    rng = np.random.default_rng(2)
    check(dtype, trans_a, trans_b, *operands(rng, dtype, M, N, K, trans_a, trans_b))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans_a,trans_b", TRANSPOSES)
@pytest.mark.parametrize("beta", [0.5, 1.0, -2.0])
def test_beta(isa, dtype, trans_a, trans_b, beta):
    rng = np.random.default_rng(3)
    for M, N, K in [(1, 1, 1), (5, 17, 3), (40, 70, 300), (3, 33, 0)]:
        A, B = operands(rng, dtype, M, N, K, trans_a, trans_b)
        C = rng.standard_normal((M, N)).astype(dtype)
        check(dtype, trans_a, trans_b, A, B, beta, C)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans_a,trans_b", TRANSPOSES)
def test_beta_zero_ignores_nan_in_c(isa, dtype, trans_a, trans_b):
    rng = np.random.default_rng(4)
    for M, N, K in [(1, 1, 1), (5, 17, 3), (40, 70, 300), (3, 33, 0), (1, 100, 20)]:
        A, B = operands(rng, dtype, M, N, K, trans_a, trans_b)
        C = np.full((M, N), np.nan, dtype)
        out = check(dtype, trans_a, trans_b, A, B, 0.0, C)
        assert not np.isnan(out).any()


def test_nan_in_operands_propagates(isa):
    A = np.ones((3, 4), np.float32)
    B = np.ones((4, 20), np.float32)
    A[1, 2] = np.nan
    out = _core._gemm_f32(False, False, A, B)
    assert np.isnan(out[1]).all() and not np.isnan(out[[0, 2]]).any()


# Shapes large enough to be split across threads (over 8 MFLOP: gemm.cpp's kMinFlopsPerThread),
# by columns and by rows.
THREADED = [(300, 257, 200), (1, 4096, 1100), (2000, 16, 300), (129, 1030, 70)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans_a,trans_b", TRANSPOSES)
def test_bitwise_identical_across_threads(isa, threads, dtype, trans_a, trans_b):
    rng = np.random.default_rng(5)
    for M, N, K in THREADED:
        A, B = operands(rng, dtype, M, N, K, trans_a, trans_b)
        threads(1)
        one = GEMM[dtype](trans_a, trans_b, A, B)
        threads(2)
        two = GEMM[dtype](trans_a, trans_b, A, B)
        assert np.array_equal(one.view(np.uint8), two.view(np.uint8))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_results_independent_of_other_rows(isa, dtype):
    """Each row is the same FMA chain whatever the tile shape it lands in (batch-1 == batch-n)."""
    rng = np.random.default_rng(6)
    A, B = operands(rng, dtype, 23, 300, 600, False, False)
    full = GEMM[dtype](False, False, A, B)
    for i in [0, 5, 22]:
        assert np.array_equal(GEMM[dtype](False, False, A[i:i + 1], B), full[i:i + 1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans_a", [False, True])
def test_packed_and_in_place_a_agree_bitwise(isa, dtype, trans_a):
    """gemm_serial reads A in place for few panels (N <= 128) and packs it into strips for
    many panels of rows a multiple of 2 KB apart or of a transposed A: the same FMA chains
    either way."""
    rng = np.random.default_rng(7)
    A, B = operands(rng, dtype, 50, 300, 512, trans_a, False)   # rows of 512: 2 or 4 KB
    packed = GEMM[dtype](trans_a, False, A, B)
    in_place = GEMM[dtype](trans_a, False, A, np.ascontiguousarray(B[:, :128]))
    assert np.array_equal(packed[:, :128].view(np.uint8), in_place.view(np.uint8))


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        _core._gemm_f32(False, False, np.ones((2, 3), np.float32), np.ones((4, 2), np.float32))
