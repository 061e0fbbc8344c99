"""Thread policy: the default thread count (the cores this process may use), OpenMP's idle
spin, and NumPy's BLAS thread count with a context manager that limits both pools together.

Only OpenBLAS (NumPy's wheels) is handled by the BLAS helpers; elsewhere they report False /
None.
"""
from __future__ import annotations

import contextlib
import ctypes
import math
import os
from collections.abc import Iterator

# Iterations libgomp's idle threads spin after a parallel region before they sleep: a fraction
# of a millisecond (its default, 300000, keeps a core busy for milliseconds after every call,
# time a library called next has to share). Back-to-back calls, a streaming loop's steps
# included, come well within it and find the threads awake.
OPENMP_SPIN_COUNT = "10000"


def prepare_openmp() -> None:
    """Shorten libgomp's idle spin unless the user chose a wait policy. libgomp reads its
    settings once, when it is loaded: this must run before pyrnn._core is first imported, and
    changes nothing if libgomp is in the process already."""
    if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ or _libgomp_loaded():
        return
    os.environ["GOMP_SPINCOUNT"] = OPENMP_SPIN_COUNT


def _libgomp_loaded() -> bool:
    try:
        with open("/proc/self/maps") as f:
            return any("/libgomp.so" in line for line in f)
    except OSError:
        return False


# -- the cores this process may use ----------------------------------------------------------

def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _cgroup_mounts(root: str) -> list[tuple[str, str, str]]:
    """(version, mount root, mount point) of the cgroup hierarchies that control CPU time:
    version "2" or "1" (v1 only when it has the cpu controller)."""
    text = _read(os.path.join(root, "proc/self/mountinfo")) or ""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        fstype, _, options = line.split(" - ", 1)[1].split()[:3]
        if fstype == "cgroup2":
            mounts.append(("2", fields[3], fields[4]))
        elif fstype == "cgroup" and "cpu" in options.split(","):
            mounts.append(("1", fields[3], fields[4]))
    return mounts


def _cgroup_paths(root: str) -> dict[str, str]:
    """This process's cgroup path per version ("2": the unified one, "1": the cpu controller's)."""
    paths = {}
    for line in (_read(os.path.join(root, "proc/self/cgroup")) or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            paths["2"] = parts[2]
        elif "cpu" in parts[1].split(","):
            paths["1"] = parts[2]
    return paths


def _quota_at(version: str, folder: str) -> float | None:
    """CPUs' worth of time the cgroup at `folder` may use, or None without a limit."""
    if version == "2":
        fields = (_read(os.path.join(folder, "cpu.max")) or "").split()  # "<quota|max> <period>"
        if len(fields) < 2 or fields[0] == "max" or int(fields[1]) <= 0:
            return None
        return int(fields[0]) / int(fields[1])
    quota, period = _read(os.path.join(folder, "cpu.cfs_quota_us")), _read(os.path.join(folder, "cpu.cfs_period_us"))
    if quota is None or period is None or int(quota) <= 0 or int(period) <= 0:
        return None
    return int(quota) / int(period)


def cgroup_cpu_limit(root: str = "/") -> float | None:
    """The tightest CPU quota on this process's cgroup and its ancestors (cgroup v2 cpu.max,
    v1 cpu.cfs_quota_us / cpu.cfs_period_us), in CPUs; None when there is none."""
    limits = []
    paths = _cgroup_paths(root)
    for version, mount_root, mount_point in _cgroup_mounts(root):
        path = paths.get(version)
        if path is None:
            continue
        # The path is relative to the hierarchy's root; the mount shows mount_root at mount_point.
        rel = os.path.relpath(path, mount_root) if path.startswith(mount_root) else path.lstrip("/")
        folder = os.path.normpath(os.path.join(root, mount_point.lstrip("/"), rel))
        top = os.path.normpath(os.path.join(root, mount_point.lstrip("/")))
        while True:
            try:
                limit = _quota_at(version, folder)
            except (ValueError, IndexError):
                limit = None
            if limit is not None:
                limits.append(limit)
            if folder == top or not folder.startswith(top):
                break
            folder = os.path.dirname(folder)
    return min(limits) if limits else None


def available_cores(root: str = "/") -> tuple[int, str]:
    """The cores this process may use: its CPU affinity mask, capped by the cgroup CPU quota
    (rounded up), and a description of where the number came from."""
    try:
        affinity = len(os.sched_getaffinity(0))
        detail = f"affinity mask {affinity} CPUs"
    except (AttributeError, OSError):
        affinity = os.cpu_count() or 1
        detail = f"{affinity} CPUs"
    quota = cgroup_cpu_limit(root)
    if quota is None:
        return affinity, detail + ", no cgroup CPU quota"
    cores = max(1, min(affinity, math.ceil(quota - 1e-9)))
    return cores, detail + f", cgroup CPU quota {quota:g}"


def _positive_int(name: str, text: str) -> int:
    try:
        n = int(text.strip())
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"{name}={text!r}: expected a whole number of threads >= 1")
    return n


def default_threads() -> tuple[int, str]:
    """pyrnn's thread count at import and where it comes from: PYRNN_NUM_THREADS, else
    OMP_NUM_THREADS (its first level), else the cores this process may use."""
    if os.environ.get("PYRNN_NUM_THREADS", "").strip():
        return _positive_int("PYRNN_NUM_THREADS", os.environ["PYRNN_NUM_THREADS"]), "PYRNN_NUM_THREADS"
    if os.environ.get("OMP_NUM_THREADS", "").strip():
        first = os.environ["OMP_NUM_THREADS"].split(",")[0]
        return _positive_int("OMP_NUM_THREADS", first), "OMP_NUM_THREADS"
    cores, detail = available_cores()
    return cores, f"cores this process may use ({detail})"


# -- NumPy's BLAS -----------------------------------------------------------------------------

_SET = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
        "openblas_set_num_threads64_", "openblas_set_num_threads")
_GET = ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads",
        "openblas_get_num_threads64_", "openblas_get_num_threads")


def _openblas_function(names: tuple[str, ...]):
    try:
        with open("/proc/self/maps") as f:
            libs = sorted({line.split()[-1] for line in f
                           if "openblas" in line.lower() and line.split()[-1].startswith("/")})
    except OSError:
        return None
    for path in libs:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in names:
            fn = getattr(lib, name, None)
            if fn is not None:
                return fn
    return None


def set_blas_threads(n: int) -> bool:
    """Set NumPy's OpenBLAS thread count; returns whether it could."""
    fn = _openblas_function(_SET)
    if fn is None:
        return False
    fn(ctypes.c_int(int(n)))
    return True


def get_blas_threads() -> int | None:
    fn = _openblas_function(_GET)
    return None if fn is None else int(fn())


@contextlib.contextmanager
def limit_threads(n: int, blas: int | None = None) -> Iterator[None]:
    """Run pyrnn's kernels with ``n`` threads and NumPy's BLAS with ``blas`` (default ``n``)
    inside the block, then restore both."""
    from .config import get_num_threads, set_num_threads

    old, old_blas = get_num_threads(), get_blas_threads()
    set_num_threads(n)
    set_blas_threads(n if blas is None else blas)
    try:
        yield
    finally:
        set_num_threads(old)
        if old_blas is not None:
            set_blas_threads(old_blas)
