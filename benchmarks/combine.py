"""Median over several compare.py runs: on a noisy machine one run's ratios move by 20-50%, so
the README quotes, for each case, the median over runs of that run's ratio (itself a ratio of
medians), and the median streaming step time.

    python benchmarks/combine.py run1/results.json run2/results.json run3/results.json
"""
from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict

from report import ONE_THREAD

SHAPES = "ABCDE"
LABELS = {"A": "A (100,1,128)", "B": "B (100,32,256)", "C": "C (50,64,512)",
          "D": "D (20,128,1024)", "E": "E (200,16,64)"}
ROWS = (("inference", "inference, vs faster of torch/ORT", "best"),
        ("training", "training, vs torch", "torch"))


def median_ratios(runs: list[dict]) -> dict[tuple, float]:
    """(cell, mode, shape, threads) -> median over the runs of the case's ratio against the
    peer its row compares with (``best`` for inference, ``torch`` for training)."""
    peer_of = {mode: peer for mode, _, peer in ROWS}
    found: dict[tuple, list[float]] = defaultdict(list)
    for run in runs:
        for c in run["cases"]:
            if c["group"] != "shapes":
                continue
            ratio = c.get("ratios", {}).get(peer_of[c["mode"]])
            if ratio is not None:
                found[(c["cell"], c["mode"], c["shape"], c["threads"])].append(ratio)
    return {key: statistics.median(values) for key, values in found.items()}


def median_scaling(runs: list[dict]) -> dict[tuple, float]:
    """(cell, mode, shape, threads) -> median over the runs of pyrnn's speedup on those threads
    over 1 thread, timed in turns within each run (report.ONE_THREAD)."""
    found: dict[tuple, list[float]] = defaultdict(list)
    for run in runs:
        for c in run["cases"]:
            ratio = c.get("ratios", {}).get(ONE_THREAD)
            if c["group"] == "shapes" and ratio is not None:
                found[(c["cell"], c["mode"], c["shape"], c["threads"])].append(ratio)
    return {key: statistics.median(values) for key, values in found.items()}


def median_steps(runs: list[dict]) -> dict[tuple, dict[str, float]]:
    """(cell, H, threads) -> {peer: median over the runs of its median seconds per step}."""
    found: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        for c in run["cases"]:
            if c["group"] == "stream":
                for peer, r in c["peers"].items():
                    if r.get("median_s"):
                        found[(c["cell"], c["H"], c["threads"])][peer].append(r["median_s"])
    return {key: {peer: statistics.median(v) for peer, v in peers.items()}
            for key, peers in found.items()}


def _number(v: float) -> str:
    return f"{v:.3g}" if v < 10 else f"{v:.1f}"


def format_markdown(runs: list[dict]) -> str:
    ratios = median_ratios(runs)
    threads = sorted({key[3] for key in ratios})
    lines = ["| cell | mode | threads | " + " | ".join(LABELS[s] for s in SHAPES) + " |",
             "| --- | --- | --- | " + " | ".join("---" for _ in SHAPES) + " |"]
    for cell in ("lstm", "gru", "rnn"):
        for mode, label, _ in ROWS:
            for n in threads:
                values = [ratios.get((cell, mode, s, n)) for s in SHAPES]
                if any(v is not None for v in values):
                    lines.append(f"| {cell.upper()} | {label} | {n} | " + " | ".join(
                        "-" if v is None else _number(v) for v in values) + " |")
    scaling = median_scaling(runs)
    if scaling:
        lines += ["", "pyrnn on n threads over 1 thread (timed in turns within each run):"]
        for cell in ("lstm", "gru", "rnn"):
            for mode, _, _ in ROWS:
                for n in sorted({key[3] for key in scaling}):
                    values = [scaling.get((cell, mode, s, n)) for s in SHAPES]
                    if any(v is not None for v in values):
                        lines.append(f"  {cell:<4} {mode:<9} {n} thr: " + "  ".join(
                            f"{s} {'-' if v is None else f'{v:.2f}'}" for s, v in zip(SHAPES, values)))
    lines.append("")
    for (cell, H, n), peers in sorted(median_steps(runs).items()):
        times = ", ".join(f"{peer} {seconds * 1e6:.1f} us" for peer, seconds in peers.items())
        lines.append(f"step {cell} H={H} threads {n}: {times}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", help="results.json files of compare.py runs")
    args = parser.parse_args()
    runs = []
    for path in args.results:
        with open(path) as f:
            runs.append(json.load(f))
    print(f"median over {len(runs)} run(s)")
    print(format_markdown(runs))


if __name__ == "__main__":
    main()
