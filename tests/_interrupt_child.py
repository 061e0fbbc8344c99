"""Run by tests/test_interrupt.py in a subprocess: sends itself SIGINT while a long native call
runs and reports, as one JSON object per case on stdout, whether the call raised
KeyboardInterrupt, how long after the signal it did, and whether the object still works.

Each call is sized (from a short timed run) to last about CALL_SECONDS uninterrupted, so that a
KeyboardInterrupt that only arrives when the call returns is told apart from a prompt one.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

import numpy as np

import pyrnn
from pyrnn import _core

# A shell starts background jobs with SIGINT ignored, and Python then leaves it ignored: a test
# run started that way would never see the signal this child sends itself.
signal.signal(signal.SIGINT, signal.default_int_handler)

SIGNAL_AFTER = 0.3   # seconds into the call
CALL_SECONDS = 2.5   # the call's length without an interrupt


def timed(prepare, repeat=3) -> float:
    """The shortest of `repeat` runs of the call prepare() returns (the first run also warms
    caches and packings)."""
    best = float("inf")
    for _ in range(repeat):
        call = prepare()
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def interrupt_during(call) -> dict:
    """Calls call() and sends SIGINT to this process SIGNAL_AFTER seconds in."""
    sent = []

    def send():
        sent.append(time.perf_counter())
        os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Timer(SIGNAL_AFTER, send)
    start = time.perf_counter()
    timer.start()
    try:
        try:
            call()
        except KeyboardInterrupt:
            return {"interrupted": True, "latency": time.perf_counter() - sent[0]}
        ran = time.perf_counter() - start
        timer.join()
        time.sleep(0.5)  # a signal sent after the call returned arrives here
    except KeyboardInterrupt:
        pass
    return {"interrupted": False, "ran": ran}


def same_results(make, state, use):
    """Whether a layer with `state` that went through an interrupted call still computes what a
    fresh one does (forward and, in training mode, backward)."""
    fresh = make()
    fresh.load_state_dict(state)
    return use(fresh)


def layer_case(make, x_shape, mode, what, T_probe=64):
    """An RNN-style layer case: `what` is 'forward' or 'backward'."""
    rng = np.random.default_rng(0)
    layer = make()
    getattr(layer, mode)()
    state = {k: v.copy() for k, v in layer.state_dict().items()}

    def inputs(T):
        return rng.standard_normal((T,) + x_shape, dtype=np.float32)

    def run(T):
        x = inputs(T)
        if what == "forward":
            return lambda: layer(x)
        y = layer(x)[0]
        dy = np.ones_like(y)
        return lambda: layer.backward(dy)

    per_step = timed(lambda: run(T_probe)) / T_probe
    T = int(min(max(CALL_SECONDS / per_step, 256), 2_000_000))
    result = interrupt_during(run(T))
    result.update(T=T, expected=per_step * T)

    # still usable: a short call gives what a fresh layer with the same weights gives
    def use(l):
        getattr(l, mode)()
        x = np.random.default_rng(1).standard_normal((5,) + x_shape, dtype=np.float32)
        out = l(x)
        if mode == "train":
            dx = l.backward(np.ones_like(out[0]))[0]
            return out[0], dx, l.grads
        return out[0], None, {}

    layer.zero_grad() if mode == "train" else None
    mine, theirs = use(layer), same_results(make, state, use)
    result["usable"] = bool(np.array_equal(mine[0], theirs[0]) and
                            (mine[1] is None or np.array_equal(mine[1], theirs[1])) and
                            all(np.array_equal(mine[2][k], theirs[2][k]) for k in mine[2]))
    return result


def gemm_case():
    rng = np.random.default_rng(0)
    m = 1024
    ones = np.ones((m, m), np.float32)
    probe = timed(lambda: lambda: _core._gemm_f32(False, False, ones, ones))
    n = int(min(max(m * (CALL_SECONDS / probe) ** (1 / 3), m), 8192))
    A, B = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    result = interrupt_during(lambda: _core._gemm_f32(False, False, A, B))
    a, b = A[:64, :64].copy(), B[:64, :64].copy()
    result["usable"] = bool(np.allclose(_core._gemm_f32(False, False, a, b), a @ b, rtol=1e-4, atol=1e-4))
    result.update(T=n, expected=probe * (n / m) ** 3)
    return result


def cases():
    I, H, B = 8, 512, 4
    return {
        "LSTM forward eval (units)": ("units", lambda: layer_case(
            lambda: pyrnn.LSTM(I, H, seed=0), (B, I), "eval", "forward")),
        "LSTM forward eval (rows, chunked input)": ("rows", lambda: layer_case(
            lambda: pyrnn.LSTM(I, H, seed=0), (B, I), "eval", "forward")),
        "GRU forward train (units)": ("units", lambda: layer_case(
            lambda: pyrnn.GRU(I, H, seed=0), (1, I), "train", "forward")),
        "LSTM backward (units)": ("units", lambda: layer_case(
            lambda: pyrnn.LSTM(I, H, seed=0), (1, I), "train", "backward")),
        "GRU backward (rows)": ("rows", lambda: layer_case(
            lambda: pyrnn.GRU(I, H, seed=0), (2, I), "train", "backward")),
        "RNN forward eval": ("auto", lambda: layer_case(
            lambda: pyrnn.RNN(I, 2 * H, seed=0), (B, I), "eval", "forward")),
        "SLSTM forward": ("auto", lambda: layer_case(
            lambda: pyrnn.SLSTM(I, H, num_heads=2, seed=0), (2, I), "eval", "forward")),
        "SLSTM backward": ("auto", lambda: layer_case(
            lambda: pyrnn.SLSTM(I, H, num_heads=2, seed=0), (1, I), "train", "backward")),
        "MLSTM forward": ("auto", lambda: layer_case(
            lambda: pyrnn.MLSTM(I, H, num_heads=2, seed=0), (2, I), "eval", "forward")),
        "MLSTM backward": ("auto", lambda: layer_case(
            lambda: pyrnn.MLSTM(I, H, num_heads=2, seed=0), (1, I), "train", "backward")),
        "GEMM": ("auto", gemm_case),
    }


def main(names):
    _core.set_num_threads(2)
    default_chunk = _core._input_chunk_bytes()
    for name, (split, run) in cases().items():
        if names and name not in names:
            continue
        _core._set_thread_testing(1.0, split)
        # split by rows, the inference input product runs in chunks that the threads meet around
        _core._set_input_chunk_bytes(1 << 16 if "chunked" in name else default_chunk)
        result = run()
        result["case"] = name
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
