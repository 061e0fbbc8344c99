"""The pool of large buffers (csrc/buffer_pool.h): training workspaces and gate gradients are
reused between steps, results never depend on what a reused block held, and the idle memory is
bounded and can be released."""
from __future__ import annotations

import numpy as np
import pytest

import pyrnn
from pyrnn import _core

pytestmark = pytest.mark.skipif(not _core._buffer_pool_stats()["enabled"],
                                reason="the pool keeps nothing under AddressSanitizer")

# (T, B, I, H) of an LSTM whose training workspace (7 * H floats per step and row) is over the
# pool's 32 MB.
BIG = (100, 64, 8, 192)


def _train_step(seed: int, sizes=BIG, lengths=None):
    T, B, I, H = sizes
    layer = pyrnn.LSTM(I, H, seed=seed)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    y, _ = layer(x, lengths=lengths)
    dx, _ = layer.backward(np.ones_like(y))
    return y, dx, {k: g.copy() for k, g in layer.grads.items()}


def test_training_steps_reuse_their_buffers(restore_native_settings):
    pyrnn.release_memory()
    _train_step(0)
    before = _core._buffer_pool_stats()["reused"]
    _train_step(0)
    assert _core._buffer_pool_stats()["reused"] >= before + 1


@pytest.mark.parametrize("threads", [1, 2])
def test_results_do_not_depend_on_what_a_reused_block_held(threads, restore_native_settings):
    _core.set_num_threads(threads)
    pyrnn.release_memory()
    lengths = np.arange(64) % 100 + 1
    fresh = _train_step(1, lengths=lengths)
    # Leave blocks holding other data (NaN gradients of another model and shape) in the pool.
    T, B, I, H = BIG
    layer = pyrnn.LSTM(I, H + 8, seed=2)
    y, _ = layer(np.full((T + 4, B, I), np.nan, np.float32))
    layer.backward(np.full_like(y, np.nan))
    del layer, y
    assert _core._buffer_pool_stats()["idle_blocks"] > 0
    reused = _train_step(1, lengths=lengths)
    for a, b in zip(fresh[:2], reused[:2]):
        assert np.array_equal(a, b)
    for k in fresh[2]:
        assert np.array_equal(fresh[2][k], reused[2][k]), k


def test_idle_memory_is_bounded_and_released():
    pyrnn.release_memory()
    for H in range(192, 192 + 10 * 8, 8):  # ten workspace sizes, each over 32 MB
        _train_step(3, sizes=(100, 64, 8, H))
    stats = _core._buffer_pool_stats()
    assert 0 < stats["idle_blocks"] <= 8 and stats["idle_bytes"] <= 1 << 30
    pyrnn.release_memory()
    stats = _core._buffer_pool_stats()
    assert stats["idle_blocks"] == 0 and stats["idle_bytes"] == 0
