"""Training one shared module from several threads: each thread's forward keeps its own tape for
its own backward, and gradients add up under the module's lock (no errors, no mixed-up tapes)."""
import copy
import threading

import numpy as np
import pytest

import pyrnn
from pyrnn.models import Seq2Vec

THREADS, CALLS = 4, 6


def _run_threads(work):
    barrier = threading.Barrier(THREADS)
    results, errors = [None] * THREADS, []

    def target(i):
        try:
            barrier.wait()
            results[i] = work(i)
        except BaseException as e:          # reported by the test, not lost in the thread
            errors.append(e)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results


def _inputs(shape, dtype=np.float32):
    rng = np.random.default_rng(1)
    return [rng.standard_normal(shape).astype(dtype) for _ in range(THREADS)]


@pytest.mark.parametrize("make", [lambda: pyrnn.GRU(3, 16, num_layers=2, dtype=np.float64, seed=0),
                                  lambda: pyrnn.LSTM(3, 16, bidirectional=True, dtype=np.float64, seed=0),
                                  lambda: pyrnn.SLSTM(4, 16, num_heads=2, dtype=np.float64, seed=0)],
                         ids=["GRU", "LSTM", "SLSTM"])
def test_shared_layer_trains_from_threads(make):
    layer = make()
    reference = copy.deepcopy(layer)
    xs = _inputs((40, 8, layer.input_size), np.float64)

    def work(i):
        out = []
        for _ in range(CALLS):
            y, _ = layer(xs[i])
            dx, _ = layer.backward(np.ones_like(y))
            out.append(dx)
        return out

    results = _run_threads(work)
    for i in range(THREADS):                # each thread got the gradient of its own forward
        y, _ = reference(xs[i])
        want, _ = reference.backward(np.ones_like(y))
        for dx in results[i]:
            np.testing.assert_array_equal(dx, want)
    reference.zero_grad()
    for i in range(THREADS):
        for _ in range(CALLS):
            y, _ = reference(xs[i])
            reference.backward(np.ones_like(y))
    for k, g in layer.grads.items():        # every call's gradient added once
        np.testing.assert_allclose(g, reference.grads[k], rtol=1e-10, atol=1e-10, err_msg=k)


def test_shared_cell_unrolls_from_threads():
    cell = pyrnn.LSTMCell(3, 8, seed=0)
    reference = copy.deepcopy(cell)
    xs = _inputs((5, 2, 3))

    def unroll(c, x):
        state, dxs = None, []
        for t in range(len(x)):
            state = c(x[t], state)
        d = (np.ones((2, 8), np.float32), None)
        for _ in range(len(x)):
            dx, d = c.backward(d)
            dxs.append(dx)
        return dxs

    results = _run_threads(lambda i: unroll(cell, xs[i]))
    for i in range(THREADS):
        for got, want in zip(results[i], unroll(reference, xs[i])):
            np.testing.assert_array_equal(got, want)


def test_shared_model_trains_from_threads():
    model = Seq2Vec(3, 2, hidden_size=8, seed=0)
    reference = copy.deepcopy(model)
    xs = _inputs((6, 10, 3))

    def work(i):
        return [model.backward(np.ones_like(model(xs[i]))) for _ in range(CALLS)]

    results = _run_threads(work)
    for i in range(THREADS):
        want = reference.backward(np.ones_like(reference(xs[i])))
        for dx in results[i]:
            np.testing.assert_array_equal(dx, want)


def test_eval_drops_every_threads_tape():
    layer = pyrnn.GRU(3, 4)
    x = np.ones((2, 1, 3), np.float32)
    done = threading.Event()
    ready = threading.Event()
    errors = []

    def other():
        layer(x)
        ready.set()
        done.wait()
        try:
            layer.backward(np.ones((2, 1, 4), np.float32))
        except RuntimeError as e:
            errors.append(e)

    t = threading.Thread(target=other)
    t.start()
    ready.wait()
    layer.eval()
    layer.train()
    done.set()
    t.join()
    assert len(errors) == 1 and "training-mode" in str(errors[0])
