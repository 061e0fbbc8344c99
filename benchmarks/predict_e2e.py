"""The whole inference job: ``Seq2Vec.predict`` on 10,000 sequences (T = 50, 8 features) against a
PyTorch ``nn.LSTM`` + ``nn.Linear`` under ``no_grad``, each case in a fresh process on the default
threads of both libraries, with NumPy (and its BLAS pool) used in the same process first, as a
user's script would. Medians of 5 calls after one untimed call; cases in turns over --repeats.

    python benchmarks/predict_e2e.py                   # hidden 64 and 256, 3 turns
    python benchmarks/predict_e2e.py --hidden 256 --repeats 5
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import numpy as np


def child(peer: str, hidden: int) -> dict:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((10000, 50, 8)).astype(np.float32)
    np.dot(X[:512, 0], X[:512, 0].T)
    if peer == "pyrnn":
        import pyrnn

        model = pyrnn.Seq2Vec(input_size=8, output_size=4, hidden_size=hidden, seed=0)
        run = lambda: model.predict(X)  # noqa: E731
        threads = pyrnn.get_num_threads()
    else:
        import torch

        lstm, head = torch.nn.LSTM(8, hidden, batch_first=True).eval(), torch.nn.Linear(hidden, 4).eval()
        Xt = torch.from_numpy(X)

        def run():
            with torch.no_grad():
                _, (h, _) = lstm(Xt)
                return head(h[-1]).numpy()
        threads = torch.get_num_threads()
    run()
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return {"peer": peer, "hidden": hidden, "threads": threads, "seconds": statistics.median(times)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hidden", default="64,256")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]))))
        return
    runs: dict[tuple[int, str], list[dict]] = {}
    for _ in range(args.repeats):
        for hidden in (int(h) for h in args.hidden.split(",")):
            for peer in ("pyrnn", "torch"):
                out = subprocess.run([sys.executable, __file__, "--child", peer, str(hidden)], check=True,
                                     capture_output=True, text=True).stdout.strip().splitlines()[-1]
                runs.setdefault((hidden, peer), []).append(json.loads(out))
    print("| hidden | threads | pyrnn s | PyTorch s | PyTorch / pyrnn |")
    print("| --- | --- | --- | --- | --- |")
    for hidden in sorted({h for h, _ in runs}):
        ours = statistics.median(r["seconds"] for r in runs[(hidden, "pyrnn")])
        theirs = statistics.median(r["seconds"] for r in runs[(hidden, "torch")])
        threads = runs[(hidden, "pyrnn")][0]["threads"]
        print(f"| {hidden} | {threads} | {ours:.3f} | {theirs:.3f} | {theirs / ours:.2f} |")


if __name__ == "__main__":
    main()
