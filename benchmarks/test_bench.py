"""pytest-benchmark cases for pyrnn alone: ``pytest benchmarks/ --benchmark-only``.

Not part of the test suite (its testpaths is tests/). For pyrnn against the other libraries,
with ratios and the sgemm ceiling, use compare.py.
"""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytest_benchmark")

from peers import PyrnnPeer, make_weights  # noqa: E402
from shapes import CELLS, SHAPES, STREAM_CELLS, STREAM_SIZES, flops, forward_flops  # noqa: E402

BENCH_SHAPES = ("A", "B", "E")


@pytest.fixture(scope="module")
def peer():
    return PyrnnPeer()


def _inputs(shape):
    rng = np.random.default_rng(1)
    return (rng.standard_normal((shape.T, shape.B, shape.I), dtype=np.float32),
            rng.standard_normal((shape.T, shape.B, shape.H), dtype=np.float32))


@pytest.mark.parametrize("shape", BENCH_SHAPES)
@pytest.mark.parametrize("cell", CELLS)
def test_inference(benchmark, peer, cell, shape):
    s = SHAPES[shape]
    x, _ = _inputs(s)
    bench = peer.inference(cell, s, make_weights(cell, s.I, s.H), x)
    benchmark.extra_info.update(shape=s.label, gflop=flops(cell, s, "inference") / 1e9)
    benchmark(bench.run)


@pytest.mark.parametrize("shape", BENCH_SHAPES)
@pytest.mark.parametrize("cell", CELLS)
def test_training(benchmark, peer, cell, shape):
    s = SHAPES[shape]
    x, dy = _inputs(s)
    bench = peer.training(cell, s, make_weights(cell, s.I, s.H), x, dy)
    benchmark.extra_info.update(shape=s.label, gflop=flops(cell, s, "training") / 1e9)
    benchmark(bench.run)


@pytest.mark.parametrize("H", STREAM_SIZES)
@pytest.mark.parametrize("cell", STREAM_CELLS)
def test_stream_step(benchmark, peer, cell, H):
    """One batch-1 step per call (layer.step where it exists, else the cell)."""
    x_t = np.random.default_rng(2).standard_normal((1, H), dtype=np.float32)
    bench = peer.stream(cell, H, make_weights(cell, H, H), [x_t])
    benchmark.extra_info.update(api=bench.note, gflop=forward_flops(cell, 1, 1, H, H) / 1e9)
    benchmark(bench.run)
