"""How pyrnn's threads and another library's threads slow each other down in one process.

A library's worker threads often keep running for a while after its call returns (OpenBLAS
and ONNX Runtime spin waiting for the next call; so does OpenMP). When the next call is
another library's, the two pools share the cores. Each case measures, in a fresh process, one
library's call (the "victim") right after the other's call (the "neighbour") against the same
call right after a call of its own:

    pyrnn-after-numpy   pyrnn LSTM inference after a NumPy (OpenBLAS) matmul
    pyrnn-after-ort     ... after an ONNX Runtime LSTM session run
    pyrnn-after-ort_nospin  ... after the same session with ONNX Runtime's idle spinning
                        turned off (``session.intra_op.allow_spinning`` = 0), the remedy when
                        ORT's spin is what slows the next call
    pyrnn-after-torch   ... after a PyTorch LSTM forward
    numpy-after-pyrnn   the NumPy matmul after pyrnn's LSTM inference
    ort-after-pyrnn     the ONNX Runtime run after pyrnn's
    torch-after-pyrnn   the PyTorch forward after pyrnn's
    numpy-after-copy, pyrnn-after-copy
                        the same calls after a one-thread copy of 32 MB, which has no threads
                        at all: what any call in between costs the next one because the
                        caches hold its data (the part of a ratio no thread pool can remove)

Every library runs on the same thread count (default: all cores), NumPy's BLAS on its default.
The two orders are timed in turns (alone, after neighbour, alone, ...), each sample preceded by
its own untimed call or by the neighbour's; `ratio` is the median after the neighbour over the
median alone (1.0: no interference). `neighbour_cpu_ms` is the CPU time the neighbour's threads
ran during the victim's call (their idle spinning), and `bound` = 1 + that / (threads x alone):
the ratio to expect if the victim lost exactly that CPU time and nothing else, which a
descheduled thread waited for at a barrier, or the machine's other load, can only make worse.

    python benchmarks/interference.py                  # all cases, JSON into benchmarks/results/
    python benchmarks/interference.py --cases pyrnn-after-numpy --reps 31 --threads 2
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

LIBRARIES = ("numpy", "ort", "torch")
CASES = (tuple(f"pyrnn-after-{lib}" for lib in LIBRARIES + ("ort_nospin",))
         + tuple(f"{lib}-after-pyrnn" for lib in LIBRARIES) + ("numpy-after-copy", "pyrnn-after-copy"))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default=",".join(CASES), help="comma-separated cases (default: all)")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                   help="threads for every library (default: the cores this process may use)")
    p.add_argument("--shape", default="50,64,512", help="T,B,H of the LSTM (I = H)")
    p.add_argument("--matmul", type=int, default=512, help="size n of NumPy's n x n float32 matmul")
    p.add_argument("--reps", type=int, default=21, help="samples of each order")
    p.add_argument("--out", default=str(HERE / "results"), help="folder for interference.json")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


# -- the calls --------------------------------------------------------------------------------

def make_call(lib: str, args: argparse.Namespace):
    """A zero-argument callable running one call of `lib` on args.threads threads."""
    T, B, H = (int(v) for v in args.shape.split(","))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, H)).astype(np.float32)
    if lib == "pyrnn":
        import pyrnn

        pyrnn.set_num_threads(args.threads)
        layer = pyrnn.LSTM(H, H, seed=0).eval()
        return lambda: layer(x)
    if lib == "numpy":
        a = rng.standard_normal((args.matmul, args.matmul)).astype(np.float32)
        b = rng.standard_normal((args.matmul, args.matmul)).astype(np.float32)
        return lambda: a @ b
    if lib in ("ort", "ort_nospin"):
        from onnx_model import session
        from peers import make_weights

        sess = session("lstm", make_weights("lstm", H, H), H, args.threads, spinning=lib == "ort")
        return lambda: sess.run(["Y"], {"X": x})
    if lib == "torch":
        import torch

        torch.set_num_threads(args.threads)
        m = torch.nn.LSTM(H, H).eval()
        xt = torch.from_numpy(x)

        def run():
            with torch.no_grad():
                m(xt)
        return run
    if lib == "copy":
        src = np.ones(8 << 20, np.float32)
        dst = np.empty_like(src)
        return lambda: np.copyto(dst, src)
    raise ValueError(lib)


def _threads_now() -> set[str]:
    """This process's threads other than the main one."""
    return set(os.listdir("/proc/self/task")) - {str(os.getpid())}


def _cpu_seconds(tids: set[str]) -> float:
    """CPU time the threads `tids` have run, in seconds (exited ones count 0)."""
    total = 0
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:
            pass
    return total / 1e9


def run_case(case: str, args: argparse.Namespace) -> dict:
    victim, neighbour = case.split("-after-")
    # The worker threads of each library, told apart by when they appeared (NumPy's OpenBLAS
    # starts its own when NumPy is imported, before anything else here).
    before = _threads_now()
    victim_call = make_call(victim, args)
    for _ in range(3):  # warm-up: packing, allocations, the pool started
        victim_call()
    victims = _threads_now()
    neighbour_call = make_call(neighbour, args)
    for _ in range(3):
        neighbour_call()
        victim_call()
    neighbours = _threads_now() - victims
    if neighbour == "numpy":
        neighbours |= before
    alone, after, spin = [], [], []

    def timed() -> tuple[float, float]:
        """Seconds of one victim call, and the neighbour's CPU seconds meanwhile."""
        cpu0, t0 = _cpu_seconds(neighbours), time.perf_counter()
        victim_call()
        return time.perf_counter() - t0, _cpu_seconds(neighbours) - cpu0
    for _ in range(args.reps):
        victim_call()
        alone.append(timed()[0])
        neighbour_call()
        seconds, neighbour_cpu = timed()
        after.append(seconds)
        spin.append(neighbour_cpu)
    med_alone, med_after, med_spin = statistics.median(alone), statistics.median(after), statistics.median(spin)
    return {"case": case, "victim": victim, "neighbour": neighbour, "threads": args.threads,
            "alone_ms": 1e3 * med_alone, "after_ms": 1e3 * med_after, "ratio": med_after / med_alone,
            "neighbour_cpu_ms": 1e3 * med_spin,
            "bound": 1 + med_spin / (args.threads * med_alone),
            "reps": args.reps}


# -- parent -----------------------------------------------------------------------------------

def main(argv=None) -> None:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(run_case(args.child, args)))
        return
    cases = [c for c in args.cases.split(",") if c]
    unknown = set(cases) - set(CASES)
    if unknown:
        raise SystemExit(f"unknown cases {sorted(unknown)}; choose from {', '.join(CASES)}")
    passthrough = ["--threads", str(args.threads), "--shape", args.shape, "--matmul", str(args.matmul),
                   "--reps", str(args.reps)]
    results = []
    print(f"{'case':<20} {'alone ms':>9} {'after ms':>9} {'ratio':>6} {'nbr cpu ms':>10} {'bound':>6}")
    for case in cases:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", case] + passthrough
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{case:<20} failed: {proc.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(r)
        print(f"{case:<20} {r['alone_ms']:9.2f} {r['after_ms']:9.2f} {r['ratio']:6.2f} "
              f"{r['neighbour_cpu_ms']:10.2f} {r['bound']:6.2f}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "interference.json"
    path.write_text(json.dumps({"shape": args.shape, "matmul": args.matmul, "threads": args.threads,
                                "cases": results}, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
