"""One-year-ahead forecasting of the yearly sunspot numbers (1700-2008, statsmodels'
``sunspots`` data set): a Seq2Seq LSTM reads the series and predicts the next year at every
step; trained on 1700-1949 windows, tested on 1950-2008 against the last-value baseline.

    python examples/sunspots.py [--epochs 12] [--cell lstm]
"""
from __future__ import annotations

import argparse

import numpy as np

import pyrnn

SPLIT_YEAR = 1950


def load() -> tuple[np.ndarray, np.ndarray]:
    from statsmodels.datasets import sunspots

    data = sunspots.load_pandas().data
    return data["YEAR"].to_numpy().astype(int), data["SUNACTIVITY"].to_numpy(np.float64)


def scale(y: np.ndarray) -> np.ndarray:
    """The square root (steadier variance over the cycle), centred: the model's units."""
    return np.sqrt(y) / 5.0 - 1.0


def unscale(z: np.ndarray) -> np.ndarray:
    return (np.maximum(z + 1.0, 0.0) * 5.0) ** 2


def windows(z: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Every window of ``length`` years (inputs) and the same window a year later (targets)."""
    starts = np.arange(len(z) - length)
    idx = starts[:, None] + np.arange(length)
    return z[idx][..., None].astype(np.float32), z[idx + 1][..., None].astype(np.float32)


def run(epochs: int = 12, cell: str = "lstm", hidden: int = 32, window: int = 40, seed: int = 0,
        progress: bool = False) -> dict[str, float]:
    years, y = load()
    z = scale(y)
    n_train = int(np.searchsorted(years, SPLIT_YEAR))
    X, Y = windows(z[:n_train], window)
    model = pyrnn.Seq2Seq(input_size=1, output_size=1, hidden_size=hidden, cell=cell, seed=seed)
    opt = pyrnn.optim.Adam(model, lr=1e-2)
    sched = pyrnn.optim.ReduceLROnPlateau(opt, monitor="loss", factor=0.5, patience=5)
    pyrnn.fit(model, (X, Y), "mse", opt, epochs=epochs, batch_size=16, scheduler=sched, seed=seed,
              progress=progress)
    # one pass over the whole series: the prediction at year t is for year t + 1
    pred = unscale(model.predict(z[None, :-1, None].astype(np.float32))[0, :, 0])
    test = slice(n_train, len(y))
    rmse = float(np.sqrt(np.mean((pred[n_train - 1:] - y[test]) ** 2)))
    baseline = float(np.sqrt(np.mean((y[n_train - 1:-1] - y[test]) ** 2)))
    return {"rmse": rmse, "baseline_rmse": baseline, "improvement": 1 - rmse / baseline}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--cell", default="lstm")
    ap.add_argument("--hidden", type=int, default=32)
    args = ap.parse_args()
    res = run(args.epochs, args.cell, args.hidden)
    print(f"test {SPLIT_YEAR}-2008: {args.cell} RMSE {res['rmse']:.2f}, last-value baseline "
          f"{res['baseline_rmse']:.2f}: {100 * res['improvement']:.1f}% lower")


if __name__ == "__main__":
    main()
