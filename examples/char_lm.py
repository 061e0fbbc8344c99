"""A character-level language model on text that ships with Python (the standard library's
docstrings), trained statefully: the text is cut into parallel streams whose state carries
from one batch to the next, so the model reads context far beyond one segment. Reports the
validation bits per character and samples text; ``--torch`` trains the same model (same initial
weights, same batches, same Adam) in PyTorch for comparison; ``--xlstm`` trains an xLSTM block
stack (sLSTM + mLSTM blocks) with ``fit`` next to it.

    python examples/char_lm.py [--chars 200000] [--epochs 4] [--torch] [--xlstm]
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import math
import sys
import time

import numpy as np

import pyrnn

MODULES = ("collections", "functools", "itertools", "json", "pathlib", "re", "string", "textwrap",
           "argparse", "subprocess", "threading", "logging", "typing", "datetime", "decimal", "fractions",
           "statistics", "random", "heapq", "bisect", "shutil", "tempfile", "csv", "configparser",
           "dataclasses", "enum", "inspect", "pickle", "copy", "unittest", "asyncio", "email", "http.client",
           "urllib.parse", "zipfile", "tarfile", "gzip", "hashlib", "hmac", "secrets", "calendar", "locale",
           "gettext", "doctest", "pdb", "timeit", "trace", "traceback", "warnings", "contextlib", "abc",
           "numbers", "operator", "socket", "ssl", "select", "selectors", "signal", "mmap", "codecs", "io")


def stdlib_text(max_chars: int) -> str:
    """Docstrings of standard-library modules and their public members, in a fixed order, as
    ASCII text of at most ``max_chars`` characters."""
    parts: list[str] = []
    size = 0
    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        members = [module] + [obj for key, obj in sorted(vars(module).items())
                              if not key.startswith("_") and (inspect.isfunction(obj) or inspect.isclass(obj))
                              and getattr(obj, "__module__", None) == module.__name__]
        for obj in members:
            doc = inspect.getdoc(obj)
            if doc:
                parts.append(doc.encode("ascii", "ignore").decode() + "\n\n")
                size += len(parts[-1])
                if size >= max_chars:
                    return "".join(parts)[:max_chars]
    return "".join(parts)[:max_chars]


def encode(text: str) -> tuple[np.ndarray, list[str]]:
    vocab = sorted(set(text))
    index = {c: i for i, c in enumerate(vocab)}
    return np.array([index[c] for c in text], np.int64), vocab


def split(ids: np.ndarray, batch_size: int, steps: int, val_share: float = 0.1):
    cut = int(len(ids) * (1 - val_share))
    return pyrnn.make_streams(ids[:cut], batch_size, steps), pyrnn.make_streams(ids[cut:], batch_size, steps)


def lstm_model(vocab_size: int, hidden: int, embed: int, seed: int = 0) -> pyrnn.Seq2Seq:
    return pyrnn.Seq2Seq(vocab_size=vocab_size, output_size=vocab_size, hidden_size=hidden, embedding_dim=embed,
                         cell="lstm", seed=seed)


def xlstm_model(vocab_size: int, embed: int, seed: int = 0) -> pyrnn.Seq2Seq:
    stack = pyrnn.xLSTMBlockStack(embed, blocks="ms", num_heads=4, batch_first=True, seed=seed)
    return pyrnn.Seq2Seq(vocab_size=vocab_size, output_size=vocab_size, embedding_dim=embed, cell=stack, seed=seed)


def train(model, train_data, val_data, batch_size: int, epochs: int, lr: float, stateful: bool = True,
          progress: bool = False) -> dict[str, float]:
    opt = pyrnn.optim.Adam(model, lr=lr)
    t0 = time.perf_counter()
    hist = pyrnn.fit(model, train_data, "cross_entropy", opt, epochs=epochs, batch_size=batch_size,
                     stateful=stateful, shuffle=False, clip_grad_norm=1.0, validation_data=val_data,
                     metrics=["bpc"], progress=progress)
    return {"val_bpc": hist["val_bpc"][-1], "seconds": time.perf_counter() - t0}


def torch_train(model: pyrnn.Seq2Seq, train_data, val_data, batch_size: int, epochs: int, lr: float) -> float:
    """The same LSTM model, initial weights, batches and Adam in PyTorch; returns the validation
    bits per character after the last epoch (stateful evaluation, as pyrnn's)."""
    import torch

    torch.manual_seed(0)
    V, E, H = model.embedding.num_embeddings, model.embedding.embedding_dim, model.rnn.hidden_size
    emb, lstm, head = torch.nn.Embedding(V, E), torch.nn.LSTM(E, H, batch_first=True), torch.nn.Linear(H, V)
    state = model.state_dict()
    with torch.no_grad():
        emb.weight.copy_(torch.from_numpy(state["embedding.weight"]))
        for name, p in lstm.named_parameters():
            p.copy_(torch.from_numpy(state["rnn." + name]))
        head.weight.copy_(torch.from_numpy(state["head.weight"]))
        head.bias.copy_(torch.from_numpy(state["head.bias"]))
    params = list(emb.parameters()) + list(lstm.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    loss_fn = torch.nn.CrossEntropyLoss()

    def run(data, learn):
        X, Y = (torch.from_numpy(a) for a in data)
        hc, total = None, 0.0
        for s in range(0, len(X), batch_size):
            x, y = X[s:s + batch_size], Y[s:s + batch_size]
            with torch.set_grad_enabled(learn):
                out, hc = lstm(emb(x), hc)
                loss = loss_fn(head(out).reshape(-1, V), y.reshape(-1))
            if learn:
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
            hc = tuple(h.detach() for h in hc)
            total += loss.item()
        return total / (len(X) // batch_size)

    for _ in range(epochs):
        run(train_data, True)
    return run(val_data, False) / math.log(2)


def sample(model: pyrnn.Seq2Seq, vocab: list[str], prompt: str, steps: int, temperature: float = 0.8) -> str:
    index = {c: i for i, c in enumerate(vocab)}
    ids = model.generate([index[c] for c in prompt if c in index], steps, temperature=temperature, seed=0)
    return prompt + "".join(vocab[i] for i in ids)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chars", type=int, default=200_000)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--embed", type=int, default=32)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--torch", action="store_true", help="train the same model in PyTorch and compare")
    ap.add_argument("--xlstm", action="store_true", help="also train an xLSTM block stack (sLSTM + mLSTM)")
    args = ap.parse_args()

    ids, vocab = encode(stdlib_text(args.chars))
    train_data, val_data = split(ids, args.batch, args.steps)
    print(f"{len(ids)} characters of standard-library docstrings, {len(vocab)} symbols; "
          f"{len(train_data[0]) // args.batch} batches of {args.batch} streams x {args.steps} steps per epoch")
    model = lstm_model(len(vocab), args.hidden, args.embed)
    initial = model.state_dict()
    res = train(model, train_data, val_data, args.batch, args.epochs, args.lr, progress=sys.stderr.isatty())
    print(f"pyrnn LSTM   : validation {res['val_bpc']:.3f} bits/char ({res['seconds']:.0f} s)")
    print("sample:", repr(sample(model, vocab, "Return the ", 200)))
    if args.torch:
        twin = lstm_model(len(vocab), args.hidden, args.embed)
        twin.load_state_dict(initial)
        t0 = time.perf_counter()
        bpc = torch_train(twin, train_data, val_data, args.batch, args.epochs, args.lr)
        print(f"torch LSTM   : validation {bpc:.3f} bits/char ({time.perf_counter() - t0:.0f} s); "
              f"pyrnn / torch = {res['val_bpc'] / bpc:.4f}")
    if args.xlstm:
        xm = xlstm_model(len(vocab), args.embed * 2)
        xres = train(xm, train_data, val_data, args.batch, args.epochs, args.lr, stateful=False,
                     progress=sys.stderr.isatty())
        print(f"pyrnn xLSTM  : validation {xres['val_bpc']:.3f} bits/char ({xres['seconds']:.0f} s, "
              "blocks 'ms', segments read independently)")


if __name__ == "__main__":
    main()
