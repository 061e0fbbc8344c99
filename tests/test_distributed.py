"""Data-parallel training over MPI, run as real jobs: ``mpiexec -n 2`` from the pip-installed MPI
(the ``mpich`` wheel) on tests/mpi/train.py. Skipped when mpi4py or mpiexec is missing."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mpi4py")
MPIEXEC = shutil.which("mpiexec") or shutil.which("mpiexec", path=os.path.dirname(sys.executable))
pytestmark = pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec (pip install 'pyrnn[mpi]')")

SCRIPT = Path(__file__).parent / "mpi" / "train.py"


def run(tmp_path, ranks, *args, expect_ok=True, timeout=120):
    cmd = ([MPIEXEC, "-n", str(ranks)] if ranks else []) + [sys.executable, str(SCRIPT), *args]
    env = dict(os.environ, PYRNN_DIST_TIMEOUT="30")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=tmp_path, env=env)
    if expect_ok:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def weights(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files if not k.startswith("log_")}, {k: f[k] for k in f.files if k.startswith("log_")}


@pytest.mark.parametrize("optimizer,dtype", [("adam", "float32"), ("sgd", "float64")])
def test_two_ranks_equal_one_rank_with_twice_the_batch(tmp_path, optimizer, dtype):
    # 70 examples, global batch 16: the last batch is ragged (6), split 3/3
    common = ["--optimizer", optimizer, "--dtype", dtype, "--epochs", "2", "--clip", "1.0"]
    run(tmp_path, 2, "--out", str(tmp_path / "two"), "--batch", "8", "--distributed", "debug", *common)
    run(tmp_path, 0, "--out", str(tmp_path / "one"), "--batch", "16", "--distributed", "false", *common)
    w2, logs2 = weights(tmp_path / "two.rank0.npz")
    w2b, _ = weights(tmp_path / "two.rank1.npz")
    w1, logs1 = weights(tmp_path / "one.rank0.npz")
    for k in w1:
        np.testing.assert_array_equal(w2[k], w2b[k], err_msg=f"{k}: ranks differ")
        scale = np.abs(w1[k]).max()
        assert np.abs(w2[k] - w1[k]).max() <= 1e-6 * scale, k
    np.testing.assert_allclose(logs2["log_loss"], logs1["log_loss"], rtol=1e-6)
    np.testing.assert_allclose(logs2["log_val_loss"], logs1["log_val_loss"], rtol=1e-6)
    np.testing.assert_array_equal(logs2["log_val_accuracy"], logs1["log_val_accuracy"])


def test_ragged_last_batch_with_an_empty_shard(tmp_path):
    # 17 examples, global batch 16: the last batch has one example, so rank 1's shard is empty
    run(tmp_path, 2, "--out", str(tmp_path / "two"), "--batch", "8", "--n", "17", "--distributed", "debug")
    run(tmp_path, 0, "--out", str(tmp_path / "one"), "--batch", "16", "--n", "17", "--distributed", "false")
    w2, _ = weights(tmp_path / "two.rank0.npz")
    w1, _ = weights(tmp_path / "one.rank0.npz")
    for k in w1:
        assert np.abs(w2[k] - w1[k]).max() <= 1e-6 * np.abs(w1[k]).max(), k


def test_truncated_bptt_steps_stay_in_lockstep(tmp_path):
    # sequences of different lengths give the ranks different numbers of chunks per batch
    run(tmp_path, 2, "--out", str(tmp_path / "two"), "--batch", "4", "--n", "30", "--tbptt", "4",
        "--distributed", "debug")
    w0, _ = weights(tmp_path / "two.rank0.npz")
    w1, _ = weights(tmp_path / "two.rank1.npz")
    for k in w0:
        np.testing.assert_array_equal(w0[k], w1[k])


def test_a_failing_rank_ends_the_job_with_its_error(tmp_path):
    proc = run(tmp_path, 2, "--out", str(tmp_path / "f"), "--fail-rank", "1", expect_ok=False, timeout=60)
    assert proc.returncode != 0
    assert "deliberate failure on rank 1" in proc.stdout + proc.stderr


def test_mismatched_models_are_reported_at_start(tmp_path):
    proc = run(tmp_path, 2, "--out", str(tmp_path / "m"), "--mismatch", expect_ok=False, timeout=60)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "same model on every rank" in out and "rnn.weight_hh_l0" in out


def test_resume_with_another_number_of_ranks(tmp_path):
    ckpt = tmp_path / "ckpt.safetensors"
    run(tmp_path, 2, "--out", str(tmp_path / "a"), "--save", str(ckpt))
    w_saved, _ = weights(tmp_path / "a.rank0.npz")
    run(tmp_path, 0, "--out", str(tmp_path / "b"), "--resume", str(ckpt), "--distributed", "false", "--epochs", "0")
    w_loaded, _ = weights(tmp_path / "b.rank0.npz")
    for k in w_saved:
        np.testing.assert_array_equal(w_saved[k], w_loaded[k])
    run(tmp_path, 0, "--out", str(tmp_path / "c"), "--resume", str(ckpt), "--distributed", "false")
    run(tmp_path, 2, "--out", str(tmp_path / "d"), "--resume", str(ckpt), "--distributed", "debug")


def test_single_process_without_a_launcher(tmp_path):
    # distributed=True outside mpiexec is a world of one rank: same result as not distributed
    run(tmp_path, 0, "--out", str(tmp_path / "s"), "--distributed", "true")
    run(tmp_path, 0, "--out", str(tmp_path / "n"), "--distributed", "false")
    ws, _ = weights(tmp_path / "s.rank0.npz")
    wn, _ = weights(tmp_path / "n.rank0.npz")
    for k in wn:
        np.testing.assert_array_equal(ws[k], wn[k])
