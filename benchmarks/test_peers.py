"""The harness itself: every peer adapter computes what pyrnn's NumPy reference computes (same
weights reach torch and, gate-permuted, ONNX Runtime), and the report arithmetic is right.

``pytest benchmarks/test_peers.py`` (quick; skipped by ``--benchmark-only``). Peers that are
not installed are skipped.
"""
from __future__ import annotations

import numpy as np
import pytest

import combine
import compare
import report
from peers import PEERS, Bench, load_peers, make_weights, max_rel_diff
from shapes import CELLS, STREAM_CELLS, Shape, flops

SMALL = Shape("tiny", 6, 3, 5, 7)  # I != H catches transposed or swapped weights
TOL = 1e-4


def _peer(name):
    peers, skipped = load_peers([name])
    if name not in peers:
        pytest.skip(f"{name}: {skipped[name]}")
    peers[name].set_threads(1)
    return peers[name]


def _inputs():
    rng = np.random.default_rng(3)
    return (rng.standard_normal((SMALL.T, SMALL.B, SMALL.I), dtype=np.float32),
            rng.standard_normal((SMALL.T, SMALL.B, SMALL.H), dtype=np.float32))


def _result(bench):
    bench.run()
    return bench.result()


@pytest.mark.parametrize("name", ["pyrnn", "torch", "onnxruntime"])
@pytest.mark.parametrize("cell", CELLS)
def test_inference_matches_reference(name, cell):
    x, _ = _inputs()
    w = make_weights(cell, SMALL.I, SMALL.H)
    want = _result(_peer("reference").inference(cell, SMALL, w, x))
    got = _result(_peer(name).inference(cell, SMALL, w, x))
    assert want.keys() == got.keys() == {"y"}
    assert max_rel_diff(got, want) < TOL


@pytest.mark.parametrize("name", ["pyrnn", "torch"])
@pytest.mark.parametrize("cell", CELLS)
def test_training_matches_reference(name, cell):
    x, dy = _inputs()
    w = make_weights(cell, SMALL.I, SMALL.H)
    want = _result(_peer("reference").training(cell, SMALL, w, x, dy))
    bench = _peer(name).training(cell, SMALL, w, x, dy)
    bench.run()
    got = _result(bench)  # a second step: gradients must be zeroed per step, not accumulated
    assert set(want) == set(got) == {"dx", *w}
    assert max_rel_diff(got, want) < TOL


@pytest.mark.parametrize("cell", STREAM_CELLS)
def test_stream_torch_matches_pyrnn(cell):
    H = 8
    xs = list(np.random.default_rng(4).standard_normal((5, 1, H), dtype=np.float32))
    w = make_weights(cell, H, H)
    got = _result(_peer("torch").stream(cell, H, w, xs))
    want = _result(_peer("pyrnn").stream(cell, H, w, xs))
    assert max_rel_diff(got, want) < TOL


def test_peers_without_a_capability_say_so():
    x, dy = _inputs()
    w = make_weights("lstm", SMALL.I, SMALL.H)
    assert _peer("onnxruntime").training("lstm", SMALL, w, x, dy) is None
    assert _peer("reference").stream("lstm", SMALL.H, w, list(x[:, :1])) is None


def test_missing_peer_is_skipped(monkeypatch):
    class Missing:
        def __init__(self):
            raise ImportError("No module named 'nothing'")
    monkeypatch.setitem(PEERS, "ghost", Missing)
    loaded, skipped = load_peers(["ghost"])
    assert loaded == {} and "nothing" in skipped["ghost"]


def test_child_env_sets_threads_and_drops_openblas_overrides(monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.setenv("OPENBLAS_L2_SIZE", "512")
    env = compare.child_env(3)
    assert "OPENBLAS_CORETYPE" not in env and "OPENBLAS_L2_SIZE" not in env
    assert all(env[k] == "3" for k in compare.THREAD_ENV)


def test_flops_and_ratios():
    s = Shape("x", 10, 2, 3, 4)
    assert flops("lstm", s, "inference") == 2 * 4 * 4 * (3 + 4) * 2 * 10
    assert flops("gru", s, "training") == 3 * 2 * 3 * 4 * 7 * 2 * 10
    case = {"threads": 2, "flops": 2e9, "cell": "lstm", "mode": "inference",
            "peers": {"pyrnn": {"median_s": 0.01}, "torch": {"median_s": 0.03},
                      "onnxruntime": {"median_s": 0.02}}}
    d = report.derive(case, {2: 400.0})
    assert d["pyrnn_gflops"] == pytest.approx(200.0)
    assert d["pct_ceiling"] == pytest.approx(50.0)
    assert d["ratios"] == pytest.approx({"torch": 3.0, "onnxruntime": 2.0, "best": 2.0})


def test_combine_takes_the_median_of_each_case_over_runs():
    def run(infer_best, train_torch, step_s):
        shapes = [{"group": "shapes", "cell": "gru", "mode": "inference", "shape": "A", "threads": 1,
                   "ratios": {"torch": 9.0, "best": infer_best}},
                  {"group": "shapes", "cell": "gru", "mode": "training", "shape": "A", "threads": 1,
                   "ratios": {"torch": train_torch}}]
        stream = [{"group": "stream", "cell": "gru", "H": 128, "threads": 1,
                   "peers": {"pyrnn": {"median_s": step_s}}}]
        return {"cases": shapes + stream}
    runs = [run(1.0, 5.0, 3e-6), run(3.0, 4.0, 1e-6), run(2.0, 6.0, 2e-6)]
    assert combine.median_ratios(runs) == {("gru", "inference", "A", 1): 2.0,
                                           ("gru", "training", "A", 1): 5.0}
    assert combine.median_steps(runs) == {("gru", 128, 1): {"pyrnn": 2e-6}}
    table = combine.format_markdown(runs)
    assert "| GRU | inference, vs faster of torch/ORT | 1 | 2 | - | - | - | - |" in table
    assert "step gru H=128 threads 1: pyrnn 2.0 us" in table


def test_one_thread_turns_restore_the_threads_and_report_the_speedup(monkeypatch):
    """pyrnn on 1 thread is timed as a peer next to pyrnn (compare.Child._with_one_thread): its
    run sets 1 thread and restores the run's count; its ratio is the speedup over 1 thread."""
    calls = []

    class FakePyrnn:
        def set_threads(self, n):
            calls.append(("threads", n))

    child = compare.Child.__new__(compare.Child)
    child.threads, child.peers = 2, {"pyrnn": FakePyrnn()}
    builds = {"pyrnn": lambda: Bench(lambda: calls.append("run"), dict), "torch": lambda: None}
    wrapped = child._with_one_thread(builds)
    assert list(wrapped) == ["pyrnn", report.ONE_THREAD, "torch"]
    wrapped[report.ONE_THREAD]().run()
    assert calls == [("threads", 1), "run", ("threads", 2)]

    case = {"threads": 2, "flops": 1e9, "cell": "gru", "mode": "training", "shape": "E", "group": "shapes",
            "peers": {"pyrnn": {"median_s": 0.01}, report.ONE_THREAD: {"median_s": 0.015, "diff": 0.0}}}
    d = report.derive(case, {})
    assert d["ratios"] == pytest.approx({report.ONE_THREAD: 1.5})
    text = report.format_scaling({"cases": [d]})
    assert "bitwise equal to 1 thread's: yes" in text and "gru   train  2 thr  E 1.50" in text
    assert combine.median_scaling([{"cases": [d]}]) == {("gru", "training", "E", 2): 1.5}
