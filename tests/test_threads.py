"""Results are bitwise identical for any thread count on the same instruction set: threads
split output rows and columns, never a reduction."""
import numpy as np
import pytest

import pyrnn

CASES = [
    (pyrnn.RNN, {}), (pyrnn.LSTM, {}), (pyrnn.LSTM, {"proj_size": "half"}), (pyrnn.GRU, {}),
    (pyrnn.GRU, {"reset_after": False}),
]


def run(cls, kwargs, threads, x, lengths, hidden):
    if kwargs.get("proj_size") == "half":
        kwargs = {"proj_size": hidden // 2}
    pyrnn.set_num_threads(threads)
    try:
        layer = cls(x.shape[2], hidden, num_layers=2, bidirectional=True, seed=7, **kwargs)
        y, state = layer(x, lengths=lengths)
        dx, dstate = layer.backward(np.cos(y))
        y_eval, _ = layer.eval()(x, lengths=lengths)   # inference on cached panels
        np.testing.assert_array_equal(y_eval, y)
        step_y, _ = layer.__class__(x.shape[2], hidden, seed=7, **kwargs).eval().step(x[0])
        states = state if isinstance(state, tuple) else (state,)
        dstates = dstate if isinstance(dstate, tuple) else (dstate,)
        return [y, *states, dx, *dstates, step_y, *layer.grads.values()]
    finally:
        pyrnn.set_num_threads(2)


# Small layers split the time loop's steps by batch rows, larger ones (recurrent weights over
# 1 MB) by hidden units (layer_plan.h: plan_loop); 32 and 520 hidden units cover both for
# every cell.
@pytest.mark.parametrize("hidden", [32, 520])
@pytest.mark.parametrize("cls,kwargs", CASES)
def test_one_and_two_threads_bitwise_equal(isa, cls, kwargs, hidden):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((9, 40, 33)).astype(np.float32)    # big enough to use 2 threads
    lengths = rng.integers(1, 10, size=40)
    one = run(cls, kwargs, 1, x, lengths, hidden)
    two = run(cls, kwargs, 2, x, lengths, hidden)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)
