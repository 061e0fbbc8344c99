"""The implementations compared: pyrnn, PyTorch, ONNX Runtime and pyrnn's NumPy reference.

Each peer turns one case (cell, shape, weights, inputs) into a ``Bench``: a ``run`` callable that
is timed, and a ``result`` callable returning the last run's outputs as NumPy arrays under
common names, so the harness can check that every peer computed the same thing before it
trusts the timings. A peer returns ``None`` for what it cannot do (ONNX Runtime has no
training; the reference has no streaming cell). Every peer gets the same weights, given with
torch.nn's names (``weight_ih_l0``, ...), and the same inputs.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from shapes import Shape


@dataclass
class Bench:
    run: Callable[[], object]
    result: Callable[[], dict[str, np.ndarray]]
    note: str = ""


@dataclass
class _Last:
    """Where a ``run`` closure leaves its outputs (the timed loop never converts them)."""

    values: dict = field(default_factory=dict)


def make_weights(cell: str, I: int, H: int, seed: int = 0) -> dict[str, np.ndarray]:  # noqa: E741
    """PyTorch's default initialisation, U(-1/sqrt(H), 1/sqrt(H)), with layer names."""
    from shapes import GATES

    rng = np.random.default_rng(seed)
    bound = 1.0 / np.sqrt(H)
    gh = GATES[cell] * H
    shapes = {"weight_ih_l0": (gh, I), "weight_hh_l0": (gh, H), "bias_ih_l0": (gh,), "bias_hh_l0": (gh,)}
    return {k: rng.uniform(-bound, bound, s).astype(np.float32) for k, s in shapes.items()}


def cell_weights(weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Layer names -> cell names (``weight_ih_l0`` -> ``weight_ih``)."""
    return {k.removesuffix("_l0"): v for k, v in weights.items()}


def max_rel_diff(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> float:
    """Largest |got - want| over the common keys, relative to max(1, |want|max) per array."""
    worst = 0.0
    for k in want.keys() & got.keys():
        a = np.asarray(got[k], np.float64).reshape(want[k].shape)
        b = np.asarray(want[k], np.float64)
        if a.size:
            worst = max(worst, float(np.max(np.abs(a - b)) / max(1.0, float(np.max(np.abs(b))))))
    return worst


class PyrnnPeer:
    name = "pyrnn"

    def __init__(self) -> None:
        import pyrnn

        self.pyrnn = pyrnn
        self.version = pyrnn.__version__
        self.layers = {"lstm": pyrnn.LSTM, "gru": pyrnn.GRU, "rnn": pyrnn.RNN}
        self.cells = {"lstm": pyrnn.LSTMCell, "gru": pyrnn.GRUCell}

    def set_threads(self, n: int) -> None:
        self.pyrnn.set_num_threads(n)

    def _layer(self, cell: str, shape: Shape, weights):
        layer = self.layers[cell](shape.I, shape.H, seed=0)
        layer.load_state_dict(weights)
        return layer

    def inference(self, cell: str, shape: Shape, weights, x) -> Bench | None:
        layer = self._layer(cell, shape, weights).eval()
        last = _Last()

        def run():
            last.values["y"] = layer(x)[0]
        return Bench(run, lambda: last.values)

    def training(self, cell: str, shape: Shape, weights, x, dy) -> Bench | None:
        layer = self._layer(cell, shape, weights).train()
        last = _Last()

        def run():
            layer.zero_grad()      # a training step starts from zeroed gradients (as torch's below)
            y, _ = layer(x)
            last.values["dx"] = layer.backward(dy)[0]
        return Bench(run, lambda: {**last.values, **layer.grads})

    def stream(self, cell: str, H: int, weights, xs) -> Bench | None:
        """Batch-1 steps, one Python call each: ``layer.step`` where it exists, else the cell."""
        bench = self._stream_layer_step(cell, H, weights, xs)
        if bench is not None:
            return bench
        c = self.cells[cell](H, H, seed=0).eval()
        c.load_state_dict(cell_weights(weights))
        return _stream_cell_loop(cell, c, xs, np.zeros((1, H), np.float32), "pyrnn cell")

    def _stream_layer_step(self, cell: str, H: int, weights, xs) -> Bench | None:
        layer = self._layer(cell, Shape("step", 1, 1, H, H), weights).eval()
        if not hasattr(layer, "step"):
            return None
        last = _Last()

        def run():
            state = None
            for x_t in xs:
                y, state = layer.step(x_t, state)  # assumed ``y_t, state = step(x_t, state)``
            last.values["h"] = y
        try:
            run()
        except (TypeError, ValueError) as e:  # an API of another shape than assumed: use the cell
            print(f"  pyrnn layer.step unusable ({e}); timing the cell instead", flush=True)
            return None
        return Bench(run, lambda: last.values, "layer.step")


def _stream_cell_loop(cell: str, c, xs, zeros, note: str) -> Bench:
    """Time ``len(xs)`` steps of a cell from a zero state (shared by pyrnn's and torch's cells)."""
    last = _Last()
    if cell == "lstm":
        def run():
            h, s = zeros, zeros
            for x_t in xs:
                h, s = c(x_t, (h, s))
            last.values["h"] = h
    else:
        def run():
            h = zeros
            for x_t in xs:
                h = c(x_t, h)
            last.values["h"] = h
    return Bench(run, lambda: {k: _numpy(v) for k, v in last.values.items()}, note)


def _numpy(v):
    return v.detach().numpy() if hasattr(v, "detach") else v


class TorchPeer:
    name = "torch"

    def __init__(self) -> None:
        import torch

        self.torch = torch
        self.version = torch.__version__
        self.layers = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}
        self.cells = {"lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell}

    def set_threads(self, n: int) -> None:
        self.torch.set_num_threads(n)

    def _module(self, factory, weights):
        m = factory()
        m.load_state_dict({k: self.torch.from_numpy(v.copy()) for k, v in weights.items()})
        return m

    def inference(self, cell: str, shape: Shape, weights, x) -> Bench | None:
        torch = self.torch
        m = self._module(lambda: self.layers[cell](shape.I, shape.H), weights).eval()
        xt = torch.from_numpy(x)
        last = _Last()

        def run():
            with torch.no_grad():
                last.values["y"] = m(xt)[0]
        return Bench(run, lambda: {k: _numpy(v) for k, v in last.values.items()})

    def training(self, cell: str, shape: Shape, weights, x, dy) -> Bench | None:
        torch = self.torch
        m = self._module(lambda: self.layers[cell](shape.I, shape.H), weights).train()
        params = dict(m.named_parameters())
        for p in params.values():  # gradient buffers exist up front, as pyrnn's do
            p.grad = torch.zeros_like(p)
        xt = torch.from_numpy(x.copy()).requires_grad_()
        dyt = torch.from_numpy(dy)

        def run():
            for p in params.values():
                p.grad.zero_()
            xt.grad = None
            y, _ = m(xt)
            y.backward(dyt)

        def result():
            return {"dx": _numpy(xt.grad), **{k: _numpy(p.grad) for k, p in params.items()}}
        return Bench(run, result)

    def stream(self, cell: str, H: int, weights, xs) -> Bench | None:
        torch = self.torch
        c = self._module(lambda: self.cells[cell](H, H), cell_weights(weights)).eval()
        steps = [torch.from_numpy(x_t) for x_t in xs]
        bench = _stream_cell_loop(cell, c, steps, torch.zeros(1, H), "torch cell")
        inner = bench.run

        def run():
            with torch.no_grad():
                inner()
        return Bench(run, bench.result, bench.note)


class OnnxRuntimePeer:
    name = "onnxruntime"

    def __init__(self) -> None:
        import onnx  # noqa: F401  (the model is built with onnx.helper)
        import onnxruntime

        self.version = onnxruntime.__version__
        self.threads = 1

    def set_threads(self, n: int) -> None:
        self.threads = n  # read when each session is created

    def _session(self, cell: str, weights, H: int):
        from onnx_model import session

        return session(cell, weights, H, self.threads)

    def inference(self, cell: str, shape: Shape, weights, x) -> Bench | None:
        sess = self._session(cell, weights, shape.H)
        if sess is None:
            return None
        feed = {"X": x}
        last = _Last()

        def run():
            last.values["y"] = sess.run(["Y"], feed)[0]
        return Bench(run, lambda: last.values)

    def training(self, cell, shape, weights, x, dy) -> Bench | None:
        return None  # ONNX Runtime's inference package has no RNN training

    def stream(self, cell, H, weights, xs) -> Bench | None:
        return None


class ReferencePeer(PyrnnPeer):
    """pyrnn's layers on the pure-NumPy backend: the oracle, slow by design."""

    name = "reference"

    def __init__(self) -> None:
        super().__init__()
        from pyrnn.testing import use_backend

        self.use_backend = use_backend

    def _on_reference(self, bench: Bench) -> Bench:
        inner = bench.run

        def run():
            with self.use_backend("reference"):
                inner()
        return Bench(run, bench.result, bench.note)

    def inference(self, cell, shape, weights, x) -> Bench | None:
        return self._on_reference(super().inference(cell, shape, weights, x))

    def training(self, cell, shape, weights, x, dy) -> Bench | None:
        return self._on_reference(super().training(cell, shape, weights, x, dy))

    def stream(self, cell, H, weights, xs) -> Bench | None:
        return None


class _PyrnnQuantizedPeer(PyrnnPeer):
    """pyrnn's layers quantized by ``pyrnn.quantize`` (inference and streaming only)."""

    dtype = "int8"

    def _layer(self, cell: str, shape: Shape, weights):
        return self.pyrnn.quantize(super()._layer(cell, shape, weights).eval(), self.dtype)

    def training(self, cell, shape, weights, x, dy) -> Bench | None:
        return None

    def stream(self, cell: str, H: int, weights, xs) -> Bench | None:
        return self._stream_layer_step(cell, H, weights, xs)


class PyrnnInt8Peer(_PyrnnQuantizedPeer):
    name = "pyrnn_int8"
    dtype = "int8"


class PyrnnBf16Peer(_PyrnnQuantizedPeer):
    name = "pyrnn_bf16"
    dtype = "bf16"


class OnnxRuntimeInt8Peer(OnnxRuntimePeer):
    """ONNX Runtime on the model quantized by its ``quantize_dynamic`` (DynamicQuantizeLSTM).
    It quantizes LSTM only: the GRU and RNN ops stay float, so they are left out here."""

    name = "onnxruntime_int8"

    def _session(self, cell: str, weights, H: int):
        from onnx_model import quantized_session

        return quantized_session(cell, weights, H, self.threads) if cell == "lstm" else None


PEERS = {p.name: p for p in (PyrnnPeer, TorchPeer, OnnxRuntimePeer, ReferencePeer, PyrnnInt8Peer,
                             PyrnnBf16Peer, OnnxRuntimeInt8Peer)}


def load_peers(names) -> tuple[dict, dict[str, str]]:
    """Instantiate the named peers; those whose packages are missing are skipped, with why."""
    loaded, skipped = {}, {}
    for name in names:
        try:
            loaded[name] = PEERS[name]()
        except ImportError as e:
            skipped[name] = str(e).splitlines()[0]
    return loaded, skipped
