"""Peak memory of training steps, measured in a fresh process (run by compare.py, one per peer).

    python benchmarks/memory.py --peer pyrnn --cell lstm --shape C --threads 2

prints one JSON object. Weights, inputs, output gradients and gradient buffers are allocated
before the baseline; the growth is the peak resident set during ``--steps`` training steps
(forward + backward) above that baseline, so it covers caches, workspaces and dx. Linux lets
a process reset its peak-RSS mark (``/proc/self/clear_refs``, value 5); then the baseline is
the current RSS. Without that, the baseline is ``ru_maxrss`` before the steps, which hides
growth below an earlier peak (e.g. one left by importing torch).
"""
from __future__ import annotations

import argparse
import gc
import json
import resource

import numpy as np

from peers import load_peers, make_weights
from shapes import SHAPES


def _current_rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise OSError("no VmRSS in /proc/self/status")


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _maxrss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux


def training_peak(peer_name: str, cell: str, shape_name: str, threads: int, steps: int) -> dict:
    peers, skipped = load_peers([peer_name])
    if peer_name not in peers:
        return {"peer": peer_name, "skipped": skipped[peer_name]}
    peer = peers[peer_name]
    peer.set_threads(threads)
    shape = SHAPES[shape_name]
    rng = np.random.default_rng(1)
    x = rng.standard_normal((shape.T, shape.B, shape.I), dtype=np.float32)
    dy = rng.standard_normal((shape.T, shape.B, shape.H), dtype=np.float32)
    bench = peer.training(cell, shape, make_weights(cell, shape.I, shape.H), x, dy)
    gc.collect()
    reset = _reset_peak()
    before = _current_rss_kb() if reset else _maxrss_kb()
    for _ in range(steps):
        bench.run()
    peak = _maxrss_kb()
    return {"peer": peer_name, "cell": cell, "shape": shape_name, "threads": threads,
            "steps": steps, "growth_mb": (peak - before) / 1024.0, "peak_mb": peak / 1024.0,
            "baseline": "current RSS after peak reset" if reset else "ru_maxrss before"}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peer", required=True)
    ap.add_argument("--cell", default="lstm")
    ap.add_argument("--shape", default="C")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=2)
    a = ap.parse_args(argv)
    print(json.dumps(training_peak(a.peer, a.cell, a.shape, a.threads, a.steps)))


if __name__ == "__main__":
    main()
