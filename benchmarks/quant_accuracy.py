"""Accuracy of quantized models on real tasks: a float32 model is trained, quantized to int8 and
bf16 (pyrnn.quantize), and all three are scored on the same held-out data.

    python benchmarks/quant_accuracy.py [--tasks reverse,classify] [--seed 0]

reverse   the demo's task (pyrnn demo): reverse digit strings with an EncoderDecoder
          (bidirectional GRU encoder, GRU decoder, attention); exact-match accuracy, greedy
classify  a Seq2Vec LSTM classifier: noisy sine waves of T = 60 steps into 4 frequency bands
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import pyrnn
from pyrnn import optim
from pyrnn.demo import tasks
from pyrnn.models import EncoderDecoder, Seq2Vec


def reverse(seed: int):
    """The demo's model and training (pyrnn/demo/run.py), scored by exact match."""
    rng = np.random.default_rng(seed)
    X, Y = tasks.digit_reversal(12000, rng)
    Xv, Yv = tasks.digit_reversal(500, rng)
    Xt, Yt = tasks.digit_reversal(1000, rng)
    model = EncoderDecoder(tasks.DIGIT_VOCAB, tasks.DIGIT_VOCAB, hidden_size=64, embedding_dim=16, cell="gru",
                           bidirectional=True, attention="general", pad_id=tasks.PAD, bos_id=tasks.BOS,
                           eos_id=tasks.EOS, seed=seed)
    opt = optim.Adam(model, lr=5e-3)
    sched = optim.CosineLR(opt, T_max=8, eta_min=2e-4)
    pyrnn.fit(model, (X, Y), "cross_entropy", opt, epochs=8, batch_size=64, validation_data=(Xv, Yv),
              clip_grad_norm=5.0, scheduler=sched, seed=seed, progress=False)

    def score(m):
        pred = m.generate(Xt, max_len=14)
        return float(np.mean([p == list(y) for p, y in zip(pred, Yt)]))
    return model.eval(), score, "exact match, 1,000 held-out strings"


def sine_bands(n: int, T: int, rng: np.random.Generator):
    """Noisy sines (random phase and amplitude) labelled by which of 4 frequency bands they are in."""
    label = rng.integers(0, 4, n)
    freq = (0.03 + 0.03 * label + rng.uniform(0, 0.03, n))[:, None] * 2 * np.pi
    t = np.arange(T)[None, :]
    x = rng.uniform(0.5, 1.0, (n, 1)) * np.sin(freq * t + rng.uniform(0, 2 * np.pi, (n, 1)))
    x = x + 0.3 * rng.standard_normal((n, T))
    return x[..., None].astype(np.float32), label


def classify(seed: int):
    rng = np.random.default_rng(seed)
    X, y = sine_bands(8000, 60, rng)
    Xt, yt = sine_bands(4000, 60, rng)
    model = Seq2Vec(input_size=1, output_size=4, hidden_size=64, cell="lstm", seed=seed)
    opt = optim.Adam(model, lr=3e-3)
    # Without clipping this recipe sometimes collapses to the uniform prediction in its second
    # epoch (on every backend, the NumPy reference included): clip as LSTM recipes do.
    pyrnn.fit(model, (X, y), "cross_entropy", opt, epochs=6, batch_size=64, seed=seed, clip_grad_norm=5.0,
              progress=False)

    def score(m):
        return float(np.mean(np.argmax(m.predict(Xt), axis=1) == yt))
    return model.eval(), score, "accuracy, 4,000 held-out sequences"


TASKS = {"reverse": reverse, "classify": classify}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default="reverse,classify")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    print(f"{'task':<9} {'float32':>8} {'int8':>8} {'bf16':>8}  int8-float32 (points)  scored by")
    for name in args.tasks.split(","):
        t0 = time.perf_counter()
        model, score, what = TASKS[name](args.seed)
        scores = [score(model)] + [score(pyrnn.quantize(model, d)) for d in ("int8", "bf16")]
        print(f"{name:<9} " + " ".join(f"{100 * s:7.2f}%" for s in scores)
              + f"  {100 * (scores[1] - scores[0]):+.2f}  {what} ({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
