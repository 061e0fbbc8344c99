"""The end-to-end training benchmark itself (train_e2e.py): both loops train the same model,
each case runs in a fresh process, and the summary's arithmetic is right.

``pytest benchmarks/test_e2e.py`` (quick, tiny model). Skips the PyTorch parts without torch.
"""
from __future__ import annotations

import pytest

import train_e2e
from train_e2e import MODELS, run_case, summarise, table

TINY = MODELS["tiny"]


def _case(peer, threads=1):
    return dict(model="tiny", peer=peer, threads=threads, sequences=3 * TINY.B, epochs=2)


def test_pyrnn_case_times_epochs_and_measures_the_ceiling():
    r = run_case(_case("pyrnn"))
    assert len(r["epoch_times"]) == 2 and r["seconds_per_epoch"] > 0
    assert r["gflops"] > 0 and r["sgemm_gflops"] > 0


def test_torch_loop_trains_the_same_model():
    pytest.importorskip("torch")
    import pyrnn

    net = train_e2e.torch_classifier(TINY)
    ours = pyrnn.Seq2Vec(input_size=TINY.I, output_size=train_e2e.CLASSES, hidden_size=TINY.H)
    assert sum(p.numel() for p in net.parameters()) == ours.num_parameters()
    r = run_case(_case("torch"))
    assert len(r["epoch_times"]) == 2 and r["seconds_per_epoch"] > 0


def test_a_case_runs_in_a_fresh_process_with_its_threads():
    r = train_e2e.run_child(_case("pyrnn", threads=2))
    assert "error" not in r, r.get("error")
    assert r["threads"] == 2 and r["seconds_per_epoch"] > 0
    assert train_e2e.child_env(2)["OMP_NUM_THREADS"] == "2"


def test_summary_ratios_and_table():
    runs = [dict(model="m", peer="pyrnn", threads=1, seconds_per_epoch=s, gflops=g, sgemm_gflops=100.0)
            for s, g in ((2.0, 40.0), (4.0, 20.0), (3.0, 30.0))]
    runs += [dict(model="m", peer="pyrnn", threads=2, seconds_per_epoch=1.5, gflops=60.0, sgemm_gflops=150.0),
             dict(model="m", peer="torch", threads=1, seconds_per_epoch=6.0),
             dict(model="m", peer="torch", threads=2, seconds_per_epoch=3.0),
             dict(model="m", peer="torch", threads=2, error="boom")]
    rows = {(r["peer"], r["threads"]): r for r in summarise(runs)}
    one, two = rows[("pyrnn", 1)], rows[("pyrnn", 2)]
    assert one["runs"] == 3 and one["seconds_per_epoch"] == 3.0 and one["pct_of_sgemm"] == 30.0
    assert one["torch_over_pyrnn"] == 2.0 and two["torch_over_pyrnn"] == 2.0
    assert two["speedup_over_1_thread"] == 2.0 and "speedup_over_1_thread" not in one
    assert rows[("torch", 2)]["runs"] == 1
    text = table(summarise(runs))
    assert "| m | pyrnn | 2 | 1.500 | 2.00 | 2.00 | 60.0 | 40 |" in text
