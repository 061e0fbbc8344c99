"""``pyrnn demo [--task reverse|adding|sine] [--epochs N] [--seed S] [--threads T] [--out DIR]``."""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import numpy as np

from .. import optim
from ..distributed import launch_rank, launch_size
from ..checkpoint import load, save
from ..config import get_num_threads
from ..models import EncoderDecoder, Seq2Seq, Seq2Vec
from .._threads import limit_threads
from ..training import fit, plot_history
from . import tasks


# Under ``mpiexec -n N`` every rank runs the demo and trains data-parallel; rank 0 alone
# prints and writes. Each rank takes 1/N of the batch, so the global batch (and the result) is
# that of one process.
MAIN = launch_rank() == 0


def _say(msg: str = "") -> None:
    if MAIN:
        print(msg, flush=True)


def _fit(*args: Any, batch_size: int, **kwargs: Any) -> Any:
    return fit(*args, batch_size=max(1, batch_size // launch_size()), distributed="auto",
               progress=MAIN, **kwargs)


def _save_outputs(model: Any, history: Any, out: str, title: str) -> tuple[str, str | None]:
    if not MAIN:
        return os.path.join(out, "model.safetensors"), None
    os.makedirs(out, exist_ok=True)
    model_path = save(model, os.path.join(out, "model.safetensors"))
    try:
        png = plot_history(history, os.path.join(out, "loss.png"), title=title)
    except ImportError as e:
        _say(f"(no loss curve: {e})")
        png = None
    return model_path, png


# ---------------------------------------------------------------------------------------------


def demo_reverse(args: argparse.Namespace) -> dict[str, Any]:
    rng = np.random.default_rng(args.seed)
    n_train, n_test = args.train_size or 12000, args.test_size or 1000
    epochs = args.epochs or 8
    X, Y = tasks.digit_reversal(n_train, rng)
    Xv, Yv = tasks.digit_reversal(500, rng)
    Xt, Yt = tasks.digit_reversal(n_test, rng)
    model = EncoderDecoder(tasks.DIGIT_VOCAB, tasks.DIGIT_VOCAB, hidden_size=64, embedding_dim=16, cell="gru",
                           bidirectional=True, attention="general", pad_id=tasks.PAD, bos_id=tasks.BOS,
                           eos_id=tasks.EOS, seed=args.seed)
    _say(f"task: reverse digit strings of 3-12 digits, e.g. {tasks.tokens_to_digits(X[0])} -> "
         f"{tasks.tokens_to_digits(Y[0])}")
    _say(f"model: EncoderDecoder (bidirectional GRU encoder, GRU decoder, Luong 'general' attention), "
         f"{model.num_parameters():,} parameters; {n_train} training / {n_test} held-out examples")
    opt = optim.Adam(model, lr=5e-3)
    sched = optim.CosineLR(opt, T_max=max(epochs, 1), eta_min=2e-4)
    t0 = time.perf_counter()
    history = _fit(model, (X, Y), "cross_entropy", opt, epochs=epochs, batch_size=64, validation_data=(Xv, Yv),
                  metrics=["accuracy"], clip_grad_norm=1.0, scheduler=sched, seed=args.seed)
    train_time = time.perf_counter() - t0
    pred = model.generate(Xt, max_len=14)
    acc = float(np.mean([p == list(y) for p, y in zip(pred, Yt)]))
    _say(f"\nheld-out exact-match accuracy (greedy): {acc:.1%} on {n_test} strings "
         f"(training took {train_time:.1f}s)")
    show = list(range(5))
    beams = model.generate([Xt[i] for i in show], max_len=14, beam_width=3)
    _, weights = model.generate([Xt[i] for i in show], max_len=14, return_attention=True)
    _say("examples (beam search, width 3):")
    for k, i in enumerate(show):
        src, out = tasks.tokens_to_digits(Xt[i]), tasks.tokens_to_digits(beams[k])
        ok = "ok" if beams[k] == list(Yt[i]) else f"expected {tasks.tokens_to_digits(Yt[i])}"
        _say(f"  {src:>12} -> {out:<12} {ok}")
    L = len(Xt[0])
    focus = [int(np.argmax(weights[0, t, :L])) for t in range(min(L, weights.shape[1]))]
    _say(f"attention of the first example: output step t looks at input position {focus} "
         "(reversal: L-1-t)")
    model_path, png = _save_outputs(model, history, args.out, "reverse digits: EncoderDecoder + attention")
    if MAIN:
        again = load(model_path).generate([Xt[i] for i in show], max_len=14)
        _say(f"saved {model_path} (reloaded: same predictions: {again == model.generate([Xt[i] for i in show], max_len=14)})"
             + (f" and {png}" if png else ""))
    return {"accuracy": acc, "train_time": train_time, "history": history, "model": model_path, "plot": png}


def demo_adding(args: argparse.Namespace) -> dict[str, Any]:
    rng = np.random.default_rng(args.seed)
    T = args.length or 100
    n_train, n_test = args.train_size or 20000, args.test_size or 2000
    epochs = args.epochs or 20
    X, Y = tasks.adding_problem(n_train, T, rng)
    Xt, Yt = tasks.adding_problem(n_test, T, rng)
    model = Seq2Vec(2, 1, hidden_size=64, cell="lstm", seed=args.seed)
    _say(f"task: the adding problem, T={T} (the sum of the two marked values among {T} uniform ones; "
         "predicting the mean gives MSE 0.167)")
    _say(f"model: Seq2Vec (LSTM, 64 hidden) with {model.num_parameters():,} parameters")
    opt = optim.Adam(model, lr=5e-3)
    from ..training import Callback

    class StopAtTarget(Callback):
        def on_epoch_end(self, epoch, logs, model):
            return logs.get("val_loss", 1.0) < args.target

    t0 = time.perf_counter()
    history = _fit(model, (X, Y), "mse", opt, epochs=epochs, batch_size=64, validation_data=(Xt, Yt),
                  clip_grad_norm=1.0, seed=args.seed, callbacks=[StopAtTarget()])
    train_time = time.perf_counter() - t0
    mse = float(np.mean((model.predict(Xt)[:, 0] - Yt) ** 2))
    _say(f"\nheld-out MSE: {mse:.4f} (target < {args.target}; predicting the mean: "
         f"{float(np.mean((Yt - Y.mean()) ** 2)):.3f}) after {len(history.epochs)} epochs, {train_time:.1f}s")
    p = model.predict(Xt[:5])[:, 0]
    for k in range(5):
        _say(f"  target {Yt[k]:.3f}  predicted {p[k]:.3f}")
    model_path, png = _save_outputs(model, history, args.out, f"adding problem T={T}: Seq2Vec LSTM")
    _say(f"saved {model_path}" + (f" and {png}" if png else ""))
    return {"mse": mse, "train_time": train_time, "history": history, "model": model_path, "plot": png}


def demo_sine(args: argparse.Namespace) -> dict[str, Any]:
    rng = np.random.default_rng(args.seed)
    T = args.length or 200
    n_train, n_test = args.train_size or 2000, args.test_size or 200
    epochs = args.epochs or 8
    X, Y = tasks.sine_waves(n_train, T, rng)
    Xt, Yt = tasks.sine_waves(n_test, T, rng)
    model = Seq2Seq(1, 1, hidden_size=32, cell="lstm", seed=args.seed)
    _say(f"task: next-value forecasting of noisy sine waves (T={T}, noise std 0.05), truncated BPTT in "
         "chunks of 50 steps")
    opt = optim.Adam(model, lr=5e-3)
    t0 = time.perf_counter()
    history = _fit(model, (X, Y), "mse", opt, epochs=epochs, batch_size=32, validation_data=(Xt, Yt),
                  tbptt=50, clip_grad_norm=1.0, seed=args.seed)
    train_time = time.perf_counter() - t0
    pred = model.predict(Xt)
    warm = min(20, T // 4)
    mse = float(np.mean((pred[:, warm:] - Yt[:, warm:]) ** 2))
    naive = float(np.mean((Xt[:, warm:] - Yt[:, warm:]) ** 2))
    _say(f"\nheld-out MSE after a {warm}-step warm-up: {mse:.5f} (repeating the last noisy value: {naive:.5f}); "
         f"training took {train_time:.1f}s")
    model_path, png = _save_outputs(model, history, args.out, "sine forecasting: Seq2Seq LSTM")
    _say(f"saved {model_path}" + (f" and {png}" if png else ""))
    return {"mse": mse, "naive_mse": naive, "train_time": train_time, "history": history,
            "model": model_path, "plot": png}


TASKS = {"reverse": demo_reverse, "adding": demo_adding, "sine": demo_sine}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", choices=sorted(TASKS), default="reverse",
                        help="reverse (default): encoder-decoder with attention reversing digit strings; "
                             "adding: Seq2Vec LSTM on the adding problem; sine: Seq2Seq forecasting")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default per task)")
    parser.add_argument("--seed", type=int, default=0, help="seed for data, weights and shuffling (default 0)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for pyrnn's kernels (default: pyrnn's, the cores this process may use "
                             "or PYRNN_NUM_THREADS); NumPy's BLAS runs on one thread meanwhile, so that its "
                             "pool does not compete with pyrnn's for the cores")
    parser.add_argument("--out", default="pyrnn-demo", help="folder for the model and loss curve (default ./pyrnn-demo)")
    parser.add_argument("--train-size", type=int, default=None, help="training examples (default per task)")
    parser.add_argument("--test-size", type=int, default=None, help="held-out examples (default per task)")
    parser.add_argument("--length", type=int, default=None, help="sequence length T for adding/sine")
    parser.add_argument("--target", type=float, default=0.01, help="adding: stop once the held-out MSE is below this")


def run_demo(args: argparse.Namespace) -> dict[str, Any]:
    if args.threads is not None and args.threads < 1:
        raise SystemExit("--threads must be >= 1")
    threads = get_num_threads() if args.threads is None else args.threads
    with limit_threads(threads):             # restored afterwards when called from Python
        _say(f"pyrnn demo '{args.task}' (seed {args.seed}, {get_num_threads()} threads, output in {args.out}/)")
        t0 = time.perf_counter()
        result = TASKS[args.task](args)
        result["wall_time"] = time.perf_counter() - t0
    _say(f"total wall time {result['wall_time']:.1f}s")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pyrnn demo", description=__doc__)
    add_arguments(parser)
    run_demo(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
