"""Threads: every way the kernels split work, reached at small shapes through the testing hook
that lowers the split thresholds, against the NumPy reference and bitwise against one thread;
the default thread count and where it comes from; processes forked, spawned or started by a
fork server after pyrnn ran on several threads.

Results are bitwise identical for any thread count on the same instruction set: threads split
output rows and columns, never a reduction."""
from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import pytest

import pyrnn
from pyrnn import _core, _threads
from pyrnn.testing import use_backend
from test_native_vs_reference import TOLERANCE, _layer_run
from test_xlstm_native import TOL as XLSTM_TOL
from test_xlstm_native import _run as _xlstm_run


@pytest.fixture
def splitting():
    """Returns a function (threads, work_scale=0, loop_split="auto", absent_thread=-1) that sets
    the thread count and the testing thresholds and clears the split counts; restores all of
    them afterwards."""
    threads, testing, isa = _core.get_num_threads(), _core._thread_testing(), _core.active_isa()

    def split(n, work_scale=0.0, loop_split="auto", absent_thread=-1):
        _core.set_num_threads(n)
        _core._set_thread_testing(work_scale, loop_split, absent_thread)
        _core._reset_split_counts()

    yield split
    _core.set_num_threads(threads)
    _core._set_thread_testing(*testing)
    _core.select_isa(isa)


def _assert_bitwise(got: dict, want: dict, where: str) -> None:
    assert got.keys() == want.keys()
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=f"{key} ({where})")


def _assert_close(got: dict, want: dict, tolerance: dict, where: str) -> None:
    for key in want:
        np.testing.assert_allclose(got[key], want[key], **tolerance, err_msg=f"{key} ({where})")


# -- recurrent layers: the time loop split by units and by rows, the GEMM's splits ------------

LAYER_CASES = ["rnn_tanh", "lstm", "lstm_proj", "gru", "gru_reset_before"]
# Two layers, both directions, variable lengths, at (T, B, I, H) small enough that the
# production thresholds would keep every product and loop on one thread: H = 70 is three unit
# blocks of every ISA and dtype (the units split gives each thread whole blocks), B = 3 the
# batch _layer_run's lengths are for.
SIZES = (5, 3, 7, 70)


def _layer(cell: str, dtype) -> dict:
    opts = dict(num_layers=2, bidirectional=True, batch_first=False, proj=cell == "lstm_proj", bias=True,
                lengths=True, unbatched=False, initial_state=True, dropout=0.0)
    return _layer_run(cell.removesuffix("_proj"), opts, dtype, SIZES)


def _layer_with_steps(cell: str, dtype) -> dict:
    """Training forward + backward, inference on cached panels and one streaming step."""
    out = _layer(cell, dtype)
    kind = cell.removesuffix("_proj")
    kwargs = {"proj_size": 5} if cell == "lstm_proj" else {}
    if kind == "gru_reset_before":
        kwargs["reset_after"] = False
    cls = {"rnn_tanh": pyrnn.RNN, "lstm": pyrnn.LSTM, "gru": pyrnn.GRU, "gru_reset_before": pyrnn.GRU}[kind]
    T, B, I, H = SIZES
    x = np.random.default_rng(3).standard_normal((T, B, I)).astype(dtype)
    layer = cls(I, H, num_layers=2, bidirectional=True, dtype=dtype, seed=5, **kwargs).eval()
    lengths = np.array([T, 2, 4])
    out["eval y"], state = layer(x, lengths=lengths)
    # Without per-step outputs (what a 'last'-pooling Seq2Vec runs): the same final states.
    finals = layer._final_states(x, [None] * len(layer.state_names), lengths)
    for got, want in zip(finals, state if isinstance(state, tuple) else (state,)):
        np.testing.assert_array_equal(got, want)
    out["step y"], _ = cls(I, H, dtype=dtype, seed=5, **kwargs).eval().step(x[0])
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("loop_split", ["units", "rows"])
@pytest.mark.parametrize("cell", LAYER_CASES)
def test_layer_splits_match_reference_and_one_thread(cell, loop_split, dtype, isa, splitting):
    with use_backend("reference"):
        reference = _layer(cell, dtype)
    splitting(1, loop_split=loop_split)
    one = _layer_with_steps(cell, dtype)
    for threads in (2, 3):
        splitting(threads, loop_split=loop_split)
        many = _layer_with_steps(cell, dtype)
        counts = _core._split_counts()
        assert counts[f"loop_{loop_split}"] > 0, counts
        assert counts["gemm_rows"] + counts["gemm_columns"] + counts["gemm_grid"] > 0, counts
        where = f"{threads} threads split by {loop_split}, isa {isa}"
        _assert_close({k: many[k] for k in reference}, reference, TOLERANCE[dtype], where)
        _assert_bitwise(many, one, where)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("cell", ["rnn_tanh", "lstm", "gru"])
def test_units_split_loop_survives_an_absent_thread(cell, dtype, isa, splitting):
    """A time loop split by units shares its steps from a counter: when a thread takes no item
    (as a descheduled one would not), the others take over its home range and the results stay
    bitwise those of one thread."""
    splitting(1, loop_split="units")
    one = _layer_with_steps(cell, dtype)
    for threads, absent in ((2, 1), (3, 0), (3, 2)):
        splitting(threads, loop_split="units", absent_thread=absent)
        many = _layer_with_steps(cell, dtype)
        counts = _core._split_counts()
        assert counts["loop_units"] > 0 and counts["loop_takeover"] > 0, counts
        _assert_bitwise(many, one, f"{threads} threads, thread {absent} absent, isa {isa}")


@pytest.mark.parametrize("hidden", [32, 520])
@pytest.mark.parametrize("cls,kwargs", [(pyrnn.LSTM, {}), (pyrnn.GRU, {"reset_after": False})])
def test_production_thresholds_bitwise_equal(isa, cls, kwargs, hidden, splitting):
    """Shapes big enough to split under the production thresholds: small layers by rows,
    large ones (recurrent weights over 1 MB) by units."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((9, 40, 33)).astype(np.float32)
    lengths = rng.integers(1, 10, size=40)

    def run():
        layer = cls(33, hidden, num_layers=2, bidirectional=True, seed=7, **kwargs)
        y, _ = layer(x, lengths=lengths)
        dx, _ = layer.backward(np.cos(y))
        return {"y": y, "dx": dx, **layer.grads}
    splitting(1, work_scale=1.0)
    one = run()
    splitting(2, work_scale=1.0)
    two = run()
    counts = _core._split_counts()
    assert counts["loop_rows" if hidden == 32 else "loop_units"] > 0, counts
    _assert_bitwise(two, one, f"hidden {hidden}")


# -- the GEMM: rows, columns and the 2-D grid ------------------------------------------------

@pytest.mark.parametrize("threads,shape,kind", [
    (2, (200, 9, 33), "gemm_rows"),       # tall: output rows split
    (2, (5, 300, 33), "gemm_columns"),    # wide: output columns split
    (4, (90, 140, 33), "gemm_grid"),      # both: a 2 x 2 grid of output blocks
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_gemm_splits(threads, shape, kind, dtype, isa, splitting):
    M, N, K = shape
    rng = np.random.default_rng(4)
    A, B = rng.standard_normal((M, K)).astype(dtype), rng.standard_normal((K, N)).astype(dtype)
    gemm = _core._gemm_f32 if dtype == np.float32 else _core._gemm_f64
    splitting(1)
    one = gemm(False, False, A, B)
    splitting(threads)
    many = gemm(False, False, A, B)
    assert _core._split_counts()[kind] == 1, _core._split_counts()
    np.testing.assert_array_equal(many, one)
    np.testing.assert_allclose(many, A.astype(np.float64) @ B, **TOLERANCE[dtype])


# -- sLSTM and mLSTM: (head, batch block) items, (row, head) pairs, whole-task products ----------

XLSTM_ROWS = [
    ("slstm", 2, False, True, False, True, True, "exp"),
    ("mlstm", 2, True, True, False, True, False, True),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("row", XLSTM_ROWS, ids=lambda r: r[0])
def test_xlstm_splits_match_reference_and_one_thread(row, dtype, isa, splitting):
    with use_backend("reference"):
        reference = _xlstm_run(row, dtype)
    splitting(1)
    one = _xlstm_run(row, dtype)
    splitting(3)
    many = _xlstm_run(row, dtype)
    assert _core._split_counts()["xlstm_items"] > 0, _core._split_counts()
    _assert_close(many, reference, XLSTM_TOL[dtype], f"3 threads, isa {isa}")
    _assert_bitwise(many, one, f"3 threads, isa {isa}")


def test_headwise_slstm_backward_shares_whole_products(splitting):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 3, 8)).astype(np.float64)

    def run():
        layer = pyrnn.SLSTM(8, 8, num_heads=4, input_projection="headwise", dtype=np.float64, seed=1)
        y, _ = layer(x)
        dx, _ = layer.backward(np.cos(y))
        return {"y": y, "dx": dx, **layer.grads}
    with use_backend("reference"):
        reference = run()
    splitting(1)
    one = run()
    splitting(2)
    two = run()
    assert _core._split_counts()["tasks"] > 0, _core._split_counts()
    _assert_close(two, reference, XLSTM_TOL[np.float64], "2 threads")
    _assert_bitwise(two, one, "2 threads")


def test_testing_hook_validates_and_restores(splitting):
    with pytest.raises(ValueError, match="loop_split"):
        _core._set_thread_testing(0.0, "diagonal")
    with pytest.raises(ValueError, match="work_scale"):
        _core._set_thread_testing(-1.0)
    assert _core._thread_testing() == (1.0, "auto", -1)


# -- default thread count ---------------------------------------------------------------------

def _fake_root(tmp_path, mountinfo: str, cgroup: str, files: dict[str, str]):
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/mountinfo").write_text(mountinfo)
    (tmp_path / "proc/self/cgroup").write_text(cgroup)
    for path, text in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    return str(tmp_path)


V2_MOUNT = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n"
V1_MOUNT = "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n"


def test_cgroup_v2_quota_tightest_of_ancestors(tmp_path):
    root = _fake_root(tmp_path, V2_MOUNT, "0::/jobs/one\n", {
        "sys/fs/cgroup/cpu.max": "max 100000\n",
        "sys/fs/cgroup/jobs/cpu.max": "150000 100000\n",
        "sys/fs/cgroup/jobs/one/cpu.max": "max 100000\n",
    })
    assert _threads.cgroup_cpu_limit(root) == 1.5


def test_cgroup_v1_quota_and_no_limit(tmp_path):
    root = _fake_root(tmp_path / "a", V1_MOUNT, "4:cpu,cpuacct:/docker/x\n0::/\n", {
        "sys/fs/cgroup/cpu,cpuacct/docker/x/cpu.cfs_quota_us": "50000\n",
        "sys/fs/cgroup/cpu,cpuacct/docker/x/cpu.cfs_period_us": "100000\n",
    })
    assert _threads.cgroup_cpu_limit(root) == 0.5
    unlimited = _fake_root(tmp_path / "b", V1_MOUNT + V2_MOUNT, "4:cpu,cpuacct:/\n0::/\n", {
        "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "-1\n",
        "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n",
        "sys/fs/cgroup/cpu.max": "max 100000\n",
    })
    assert _threads.cgroup_cpu_limit(unlimited) is None


def test_available_cores_capped_by_quota(tmp_path, monkeypatch):
    root = _fake_root(tmp_path, V2_MOUNT, "0::/\n", {"sys/fs/cgroup/cpu.max": "150000 100000\n"})
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    cores, detail = _threads.available_cores(root)
    assert cores == 2 and "affinity mask 4 CPUs" in detail and "quota 1.5" in detail


def _python(code: str, env_extra: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYRNN_NUM_THREADS", "OMP_NUM_THREADS", "GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    env.update(env_extra)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.path.dirname(os.path.dirname(pyrnn.__file__)),
                                                      env.get("PYTHONPATH")]))
    # outside the source tree: ``python -c`` puts the working directory first on sys.path, where
    # the source's pyrnn/ (without the compiled module) would shadow the installed one
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True,
                          text=True, timeout=timeout, cwd=tempfile.gettempdir())


@pytest.mark.parametrize("env,threads,source", [
    ({}, None, "cores this process may use"),
    ({"PYRNN_NUM_THREADS": "3"}, 3, "PYRNN_NUM_THREADS"),
    ({"OMP_NUM_THREADS": "1,2"}, 1, "OMP_NUM_THREADS"),
    ({"PYRNN_NUM_THREADS": "2", "OMP_NUM_THREADS": "1"}, 2, "PYRNN_NUM_THREADS"),
])
def test_default_thread_count_and_source(env, threads, source):
    proc = _python("""
        import os, pyrnn
        print(pyrnn.get_num_threads(), len(os.sched_getaffinity(0)))
        pyrnn.show_config()
    """, env)
    assert proc.returncode == 0, proc.stderr
    first, *config = proc.stdout.splitlines()
    got, cores = map(int, first.split())
    assert got == (cores if threads is None else threads)
    assert any(line.startswith("threads from") and source in line for line in config), config


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_bad_thread_environment_fails_at_import(value):
    proc = _python("import pyrnn", {"PYRNN_NUM_THREADS": value})
    assert proc.returncode != 0 and "PYRNN_NUM_THREADS" in proc.stderr


def test_openmp_spin_shortened_unless_chosen():
    code = "import os, pyrnn; print(os.environ.get('GOMP_SPINCOUNT'))"
    assert _python(code, {}).stdout.strip() == _threads.OPENMP_SPIN_COUNT
    assert _python(code, {"GOMP_SPINCOUNT": "5"}).stdout.strip() == "5"
    assert _python(code, {"OMP_WAIT_POLICY": "active"}).stdout.strip() == "None"


# -- processes started after pyrnn ran on several threads ---------------------------------------

def _lstm_output(threads: int | None = None) -> np.ndarray:
    if threads is not None:
        pyrnn.set_num_threads(threads)
    x = np.random.default_rng(6).standard_normal((12, 32, 96)).astype(np.float32)
    y, _ = pyrnn.LSTM(96, 128, num_layers=2, seed=9)(x)
    return y


def _worker(_):
    """Real work in the worker: training-mode forward and backward of a two-layer LSTM."""
    x = np.random.default_rng(6).standard_normal((12, 32, 96)).astype(np.float32)
    layer = pyrnn.LSTM(96, 128, num_layers=2, seed=9)
    y, _ = layer(x)
    layer.backward(np.ones_like(y))
    return y, pyrnn.get_num_threads(), _core.fork_limited()


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_workers_after_threads_ran(method, splitting):
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {method} start method here")
    splitting(2)
    expected = _lstm_output()
    assert sum(_core._split_counts().values()) > 0  # the parent's pool exists
    ctx = multiprocessing.get_context(method)
    with ctx.Pool(2) as pool:
        results = pool.map_async(_worker, range(2)).get(timeout=120)  # a hang fails here
    for y, threads, limited in results:
        np.testing.assert_array_equal(y, expected)
        if method == "fork":
            assert (threads, limited) == (1, True)
        else:
            assert not limited and threads >= 1


def test_forked_child_stays_on_one_thread_and_says_why(splitting):
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork here")
    proc = _python("""
        import os, warnings, numpy as np, pyrnn
        from pyrnn import _core
        _core._set_thread_testing(0.0)
        pyrnn.set_num_threads(2)
        x = np.ones((4, 8, 16), np.float32)
        pyrnn.GRU(16, 16)(x)
        pid = os.fork()
        if pid == 0:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                pyrnn.set_num_threads(2)
            pyrnn.GRU(16, 16)(x)
            print(pyrnn.get_num_threads(), pyrnn.config.thread_source().split(":")[0],
                  [str(w.category.__name__) for w in caught], flush=True)
            os._exit(0)
        os.waitpid(pid, 0)
    """, {}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1", "1", "['RuntimeWarning']"]
