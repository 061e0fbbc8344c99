"""Parity of bit strings with pyrnn's xLSTM layers (the xLSTM paper's formal-language test):
train on lengths 3-40, test on lengths 40-256. A model with sLSTM (memory mixing) learns the
rule and extrapolates; an mLSTM-only model (no memory mixing) cannot represent the running
XOR and stays near chance, as the paper reports.

    python examples/parity_bits.py [--model slstm|mlstm|both] [--steps 1500] [--seed 0]

Model: bits as one-hot inputs -> one SLSTM (or MLSTM) layer -> a linear read-out of the state
at each sequence's last valid step (``lengths`` with right padding) -> logistic loss. The
training loop (Adam, gradient clipping) is written out here with NumPy.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import pyrnn


def batch(rng, size, lo, hi):
    lengths = rng.integers(lo, hi + 1, size)
    T = int(lengths.max())
    bits = rng.integers(0, 2, (T, size))
    valid = np.arange(T)[:, None] < lengths[None, :]
    bits = bits * valid
    x = np.zeros((T, size, 2), np.float32)
    x[..., 0] = (bits == 0) & valid
    x[..., 1] = bits == 1
    labels = bits.sum(axis=0) % 2
    return x, lengths, labels


class Model:
    def __init__(self, kind, hidden, heads, seed):
        self.kind = kind
        if kind == "slstm":
            self.rnn = pyrnn.SLSTM(2, hidden, num_heads=heads, seed=seed)
        else:
            self.rnn = pyrnn.MLSTM(2, hidden, num_heads=heads, seed=seed)
        rng = np.random.default_rng(seed + 1)
        self.w = (rng.standard_normal(hidden) / np.sqrt(hidden)).astype(np.float32)
        self.b = np.zeros(1, np.float32)

    def logits(self, x, lengths):
        y, _ = self.rnn(x, lengths=lengths)
        self.last = y[lengths - 1, np.arange(len(lengths))]        # (B, H): last valid step
        self.y_shape, self.lengths = y.shape, lengths
        return self.last @ self.w + self.b[0]

    def backward(self, dlogit):
        dlast = np.outer(dlogit, self.w).astype(np.float32)
        dy = np.zeros(self.y_shape, np.float32)
        dy[self.lengths - 1, np.arange(len(self.lengths))] = dlast
        self.rnn.backward(dy)
        return {"w": self.last.T @ dlogit, "b": np.array([dlogit.sum()], np.float32)}

    def params_and_grads(self, head_grads):
        p, g = self.rnn.parameters(), self.rnn.grads
        out = [(p[k], g[k]) for k in p]
        return out + [(self.w, head_grads["w"]), (self.b, head_grads["b"])]


class Adam:
    def __init__(self, lr=3e-3, betas=(0.9, 0.999), eps=1e-8):
        self.lr, self.b1, self.b2, self.eps, self.t, self.m, self.v = lr, *betas, eps, 0, {}, {}

    def step(self, pairs, clip=1.0):
        self.t += 1
        norm = np.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for _, g in pairs))
        scale = min(1.0, clip / (norm + 1e-12))
        for i, (p, g) in enumerate(pairs):
            g = g * scale
            m = self.m.setdefault(i, np.zeros_like(p))
            v = self.v.setdefault(i, np.zeros_like(p))
            m += (1 - self.b1) * (g - m)
            v += (1 - self.b2) * (g * g - v)
            mh = m / (1 - self.b1 ** self.t)
            vh = v / (1 - self.b2 ** self.t)
            p -= (self.lr * mh / (np.sqrt(vh) + self.eps)).astype(p.dtype)


def accuracy(model, rng, lo, hi, n=512, chunk=128):
    model.rnn.eval()
    correct = 0
    for _ in range(n // chunk):
        x, lengths, labels = batch(rng, chunk, lo, hi)
        correct += int(((model.logits(x, lengths) > 0) == labels).sum())
    model.rnn.train()
    return correct / n


def train(kind, steps, seed, hidden, heads, batch_size=64, lr=1e-2, log=True):
    """Curriculum: lengths 3..max_len, max_len growing from 5 to 40 by 5 whenever the last
    50 training batches were >= 95% right; the rest of the steps train on the full 3-40."""
    rng = np.random.default_rng(seed)
    model = Model(kind, hidden, heads, seed)
    opt = Adam(lr)
    t0 = time.perf_counter()
    max_len, recent = 5, []
    for step in range(1, steps + 1):
        x, lengths, labels = batch(rng, batch_size, 3, max_len)
        z = model.logits(x, lengths)
        p = 1 / (1 + np.exp(-z))
        loss = float(np.mean(np.logaddexp(0, z) - labels * z))
        recent = (recent + [float(np.mean((z > 0) == labels))])[-50:]
        if max_len < 40 and len(recent) == 50 and np.mean(recent) >= 0.95:
            max_len, recent = min(40, max_len + 5), []
        model.rnn.zero_grad()
        head = model.backward(((p - labels) / batch_size).astype(np.float32))
        opt.step(model.params_and_grads(head))
        if log and (step % 250 == 0 or step == steps):
            acc = accuracy(model, np.random.default_rng(123), 3, 40, n=256)
            print(f"  [{kind}] step {step:5d}  max length {max_len:2d}  loss {loss:.4f}  "
                  f"accuracy on 3-40 {acc:.3f}  "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
    test = accuracy(model, np.random.default_rng(7), 40, 256, n=512)
    return test, time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=["slstm", "mlstm", "both"], default="both")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--heads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="small batches: 1 thread is fastest")
    a = ap.parse_args()
    pyrnn.set_num_threads(a.threads)
    kinds = ["slstm", "mlstm"] if a.model == "both" else [a.model]
    results = {}
    for kind in kinds:
        print(f"training {kind}: hidden {a.hidden}, {a.heads} head(s), {a.steps} steps, lengths 3-40")
        acc, secs = train(kind, a.steps, a.seed, a.hidden, a.heads)
        results[kind] = acc
        print(f"{kind}: test accuracy on lengths 40-256: {acc:.3f}  (training {secs:.0f} s)")
    print("summary: " + ", ".join(f"{k} {v:.3f}" for k, v in results.items()))


if __name__ == "__main__":
    main()
