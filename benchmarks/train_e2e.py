"""The whole job: a sequence classifier trained with ``pyrnn.fit`` + Adam against the same model
in a PyTorch loop written the way its tutorials write it (nn.LSTM + nn.Linear + Adam + cross
entropy, a DataLoader), seconds per epoch; and the ``pyrnn demo`` reverse task's training.

Every case runs in a fresh process with the thread count set before any library loads
(OMP/OpenBLAS/MKL variables, ``pyrnn.set_num_threads``, ``torch.set_num_threads``); the cases
take turns over the repeats so that a slow spell of a shared machine hits all alike; medians
are reported. In the pyrnn processes the machine's sgemm ceiling (NumPy float32 matmul 2048^3
at the same thread count) is measured too, so that a training step's GFLOP/s can be put
against it.

    python benchmarks/train_e2e.py                              # both models, 1..cores threads
    python benchmarks/train_e2e.py --threads 1,2 --sequences 512 --repeats 5
    python benchmarks/train_e2e.py --models small --peers pyrnn --no-demo

Writes ``e2e.json`` and ``e2e.png`` to ``--out`` (default benchmarks/results/).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
CLASSES = 10


@dataclass(frozen=True)
class Model:
    """A one-layer LSTM classifier: input (B, T, I) -> last hidden state -> Linear -> CLASSES."""

    name: str
    I: int
    H: int
    T: int
    B: int

    def train_flops(self, sequences: int) -> float:
        """Flops of the LSTM's forward and backward over `sequences` (3x the forward's products)."""
        return 3 * 2.0 * 4 * self.H * (self.I + self.H) * self.T * sequences


MODELS = {m.name: m for m in (Model("large", 32, 256, 100, 64), Model("small", 32, 64, 50, 32),
                              Model("tiny", 4, 8, 6, 4))}


def _data(model: Model, sequences: int):
    import numpy as np

    rng = np.random.default_rng(0)
    X = rng.standard_normal((sequences, model.T, model.I), dtype=np.float32)
    y = rng.integers(0, CLASSES, sequences)
    return X, y


# ---------------------------------------------------------------------------------------------
# one case, in this process


def run_pyrnn(model: Model, sequences: int, epochs: int, threads: int) -> list[float]:
    """Seconds of each of `epochs` epochs of pyrnn.fit (after one warm-up epoch on a few batches)."""
    import pyrnn

    pyrnn.set_num_threads(threads)
    X, y = _data(model, sequences)
    net = pyrnn.Seq2Vec(input_size=model.I, output_size=CLASSES, hidden_size=model.H, seed=0)
    opt = pyrnn.optim.Adam(net, lr=1e-3)
    warm = min(sequences, 4 * model.B)
    pyrnn.fit(net, (X[:warm], y[:warm]), "cross_entropy", opt, epochs=1, batch_size=model.B, progress=False)
    history = pyrnn.fit(net, (X, y), "cross_entropy", opt, epochs=epochs, batch_size=model.B, progress=False)
    return list(history["time"])


def torch_classifier(model: Model):
    import torch
    from torch import nn

    class LSTMClassifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(model.I, model.H, batch_first=True)
            self.fc = nn.Linear(model.H, CLASSES)

        def forward(self, x):
            _, (h, _) = self.lstm(x)
            return self.fc(h[-1])

    torch.manual_seed(0)
    return LSTMClassifier()


def run_torch(model: Model, sequences: int, epochs: int, threads: int) -> list[float]:
    """Seconds of each of `epochs` epochs of the tutorial-style PyTorch loop (after a warm-up)."""
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    torch.set_num_threads(threads)
    X, y = _data(model, sequences)
    net = torch_classifier(model)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    dataset = TensorDataset(torch.from_numpy(X), torch.from_numpy(y))

    def epoch(loader):
        net.train()
        for xb, yb in loader:
            optimizer.zero_grad()
            loss = criterion(net(xb), yb)
            loss.backward()
            optimizer.step()

    warm = min(sequences, 4 * model.B)
    epoch(DataLoader(torch.utils.data.Subset(dataset, range(warm)), batch_size=model.B, shuffle=True))
    loader = DataLoader(dataset, batch_size=model.B, shuffle=True)
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        epoch(loader)
        times.append(time.perf_counter() - t0)
    return times


def run_demo(sequences: int, epochs: int, threads: int) -> list[float]:
    """Seconds of each epoch after the first of ``pyrnn demo --task reverse --epochs epochs+1``
    (its training, with its validation; the first epoch pays the process's first calls)."""
    import tempfile

    from pyrnn.demo.run import add_arguments
    from pyrnn.demo.run import run_demo as demo

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    with tempfile.TemporaryDirectory() as out:
        args = parser.parse_args(["--task", "reverse", "--epochs", str(epochs + 1), "--threads", str(threads),
                                  "--train-size", str(sequences), "--test-size", "50", "--out", out])
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):
            result = demo(args)
    return [float(t) for t in result["history"]["time"][1:]]


def run_case(case: dict) -> dict:
    """One case, in this process: seconds per epoch (scaled to case["sequences"])."""
    model = MODELS.get(case["model"])
    if case["peer"] == "demo":
        times = run_demo(case["sequences"], case["epochs"], case["threads"])
    else:
        runner = run_pyrnn if case["peer"] == "pyrnn" else run_torch
        times = runner(model, case["sequences"], case["epochs"], case["threads"])
    out = dict(case, seconds_per_epoch=statistics.median(times), epoch_times=times)
    if case["peer"] == "pyrnn" and model is not None:
        out["gflops"] = model.train_flops(case["sequences"]) / out["seconds_per_epoch"] / 1e9
        from ceiling import sgemm_gflops
        from timing import Budget

        out["sgemm_gflops"] = sgemm_gflops(Budget.quick())["gflops"]
    return out


# ---------------------------------------------------------------------------------------------
# the run: fresh processes, turns, medians


def child_env(threads: int) -> dict:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    env.pop("OPENBLAS_CORETYPE", None)   # OpenBLAS's own kernel choice for the sgemm ceiling
    env.pop("OPENBLAS_L2_SIZE", None)
    root = str(HERE.parent)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "") if "PYTHONPATH" in env else root
    return env


def run_child(case: dict) -> dict:
    r = subprocess.run([sys.executable, __file__, "--child", json.dumps(case)], capture_output=True, text=True,
                       env=child_env(case["threads"]), timeout=3600)
    if r.returncode != 0:
        return dict(case, error=(r.stderr.strip().splitlines() or ["failed"])[-1])
    return json.loads(r.stdout.strip().splitlines()[-1])


def summarise(results: list[dict]) -> list[dict]:
    """Median seconds per epoch of each (model, peer, threads), with the pyrnn rows' ratios."""
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        if "error" not in r:
            groups.setdefault((r["model"], r["peer"], r["threads"]), []).append(r)
    rows = []
    for (model, peer, threads), rs in sorted(groups.items()):
        row = {"model": model, "peer": peer, "threads": threads, "runs": len(rs),
               "seconds_per_epoch": statistics.median(r["seconds_per_epoch"] for r in rs)}
        if "gflops" in rs[0]:
            row["gflops"] = statistics.median(r["gflops"] for r in rs)
            row["sgemm_gflops"] = statistics.median(r["sgemm_gflops"] for r in rs)
            row["pct_of_sgemm"] = 100 * row["gflops"] / row["sgemm_gflops"]
        rows.append(row)
    by_key = {(r["model"], r["peer"], r["threads"]): r for r in rows}
    for row in rows:
        if row["peer"] not in ("pyrnn", "demo"):
            continue
        torch_row = by_key.get((row["model"], "torch", row["threads"]))
        if torch_row:
            row["torch_over_pyrnn"] = torch_row["seconds_per_epoch"] / row["seconds_per_epoch"]
        one = by_key.get((row["model"], row["peer"], 1))
        if one and row["threads"] > 1:
            row["speedup_over_1_thread"] = one["seconds_per_epoch"] / row["seconds_per_epoch"]
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| model | peer | threads | s/epoch | torch/pyrnn | vs 1 thread | GFLOP/s | % sgemm |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]

    def fmt(row, key, spec):
        return format(row[key], spec) if key in row else ""
    for r in rows:
        lines.append(f"| {r['model']} | {r['peer']} | {r['threads']} | {r['seconds_per_epoch']:.3f} | "
                     f"{fmt(r, 'torch_over_pyrnn', '.2f')} | {fmt(r, 'speedup_over_1_thread', '.2f')} | "
                     f"{fmt(r, 'gflops', '.1f')} | {fmt(r, 'pct_of_sgemm', '.0f')} |")
    return "\n".join(lines)


def chart(rows: list[dict], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    models = sorted({r["model"] for r in rows}, key=lambda m: list(MODELS).index(m) if m in MODELS else 99)
    fig, axes = plt.subplots(1, len(models), figsize=(4.5 * len(models), 3.6), squeeze=False)
    for ax, model in zip(axes[0], models):
        mine = [r for r in rows if r["model"] == model]
        peers = sorted({r["peer"] for r in mine})
        threads = sorted({r["threads"] for r in mine})
        width = 0.8 / len(peers)
        for k, peer in enumerate(peers):
            values = [next((r["seconds_per_epoch"] for r in mine if r["peer"] == peer and r["threads"] == t), 0)
                      for t in threads]
            ax.bar([i + k * width for i in range(len(threads))], values, width, label=peer)
        ax.set_xticks([i + width * (len(peers) - 1) / 2 for i in range(len(threads))])
        ax.set_xticklabels([f"{t} thr" for t in threads])
        spec = MODELS.get(model)
        ax.set_title(f"{model}: LSTM I={spec.I} H={spec.H} T={spec.T} B={spec.B}" if spec else
                     "pyrnn demo (reverse task), one epoch", fontsize=9)
        ax.set_ylabel("seconds per epoch (lower is better)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--models", default="large,small", help="large, small (and tiny, for tests)")
    parser.add_argument("--peers", default="pyrnn,torch", help="pyrnn, torch")
    parser.add_argument("--threads", default=None, help="thread counts, e.g. 1,2 (default 1..cores)")
    parser.add_argument("--sequences", type=int, default=2048, help="sequences per epoch (default 2048)")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per process (median taken)")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per case, in turns")
    parser.add_argument("--demo-sequences", type=int, default=2000, help="training examples of the demo case")
    parser.add_argument("--no-demo", action="store_true", help="leave out the demo case")
    parser.add_argument("--out", default=str(HERE / "results"), help="folder for e2e.json and e2e.png")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_case(json.loads(args.child))))
        return 0
    threads = ([int(t) for t in args.threads.split(",")] if args.threads
               else list(range(1, len(os.sched_getaffinity(0)) + 1)))
    cases = [dict(model=m, peer=p, threads=t, sequences=args.sequences, epochs=args.epochs)
             for m in args.models.split(",") for t in threads for p in args.peers.split(",")]
    if not args.no_demo:
        cases += [dict(model="demo", peer="demo", threads=t, sequences=args.demo_sequences, epochs=args.epochs)
                  for t in threads]
    results = []
    for rep in range(args.repeats):
        for case in cases:
            results.append(run_child(case))
            r = results[-1]
            print(f"[{rep + 1}/{args.repeats}] {case['model']:6s} {case['peer']:6s} {case['threads']} thr: "
                  + (f"{r['seconds_per_epoch']:.3f} s/epoch" if "error" not in r else f"ERROR {r['error']}"),
                  file=sys.stderr, flush=True)
    rows = summarise(results)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "cpus": len(os.sched_getaffinity(0)),
            "load_average": os.getloadavg(), "models": {k: asdict(v) for k, v in MODELS.items()}}
    (out / "e2e.json").write_text(json.dumps({"meta": meta, "summary": rows, "runs": results}, indent=1))
    png = chart(rows, out / "e2e.png")
    print(table(rows))
    print(f"\nwrote {out / 'e2e.json'}" + (f" and {png}" if png else " (no chart: matplotlib missing)"))
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
