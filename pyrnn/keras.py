"""Keras models on pyrnn: ``load(path)`` reads a ``.keras`` file (or ``.weights.h5`` with the
model's config) without Keras installed (zip + JSON + h5py); ``from_keras(obj)`` converts a live
Keras layer or Sequential model.

Supported layers: LSTM, GRU (``reset_after`` True and False), SimpleRNN, Bidirectional (merge
modes concat, sum, mul, ave), Embedding (``mask_zero``), Dense, InputLayer, stacked in a
Sequential; ``return_sequences``, ``go_backwards`` and masks from ``mask_zero`` (right padding,
which pyrnn runs as per-sequence lengths: Keras skips masked steps and outputs zeros there).
"""
from __future__ import annotations

import json
import os
import zipfile
from typing import Any

import numpy as np

from . import nn
from ._reverse import run_reversed
from .layers import GRU, LSTM, RNN

__all__ = ["load", "from_keras", "KerasModel", "KerasImportError"]


class KerasImportError(ValueError):
    """A file that is not a usable Keras model, or a layer or option pyrnn does not support."""


_ACTIVATIONS = {"linear": None, None: None, "relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid",
                "softmax": "softmax"}
_GRU_FROM_KERAS = (1, 0, 2)   # Keras GRU gates (z, r, h) -> pyrnn (r, z, n)


def _dense_activation(name: str | None, y: np.ndarray) -> np.ndarray:
    if name is None:
        return y
    if name == "relu":
        return np.maximum(y, 0)
    if name == "tanh":
        return np.tanh(y)
    if name == "sigmoid":
        return (0.5 * (1 + np.tanh(0.5 * y))).astype(y.dtype)
    e = np.exp(y - y.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _gates(array: np.ndarray, order: tuple[int, ...]) -> np.ndarray:
    blocks = np.split(np.asarray(array), len(order), axis=0)
    return np.concatenate([blocks[k] for k in order], axis=0)


class _Recurrent:
    """A Keras LSTM / GRU / SimpleRNN (or a Bidirectional pair) as one pyrnn layer."""

    def __init__(self, name: str, cls_name: str, cfg: dict, weights: list[np.ndarray],
                 backward: tuple[dict, list[np.ndarray]] | None, merge_mode: str | None) -> None:
        self.name = name
        where = f"layer {name!r} ({cls_name})"
        if cfg.get("return_state") or cfg.get("stateful"):
            raise KerasImportError(f"{where}: return_state and stateful are not supported")
        act, rec_act = cfg.get("activation", "tanh"), cfg.get("recurrent_activation", "sigmoid")
        self.return_sequences = bool(cfg.get("return_sequences", False))
        self.go_backwards = bool(cfg.get("go_backwards", False)) and backward is None
        self.merge_mode = merge_mode
        self.bidirectional = backward is not None
        kind = cfg["__class__"]
        units, bias = int(cfg["units"]), bool(cfg.get("use_bias", True))
        I = np.asarray(weights[0]).shape[0]
        kw = dict(bias=bias, batch_first=True, bidirectional=self.bidirectional, dtype=np.float32)
        if kind == "SimpleRNN":
            if act not in ("tanh", "relu"):
                raise KerasImportError(f"{where}: activation {act!r} is not supported (tanh or relu)")
            self.layer = RNN(I, units, nonlinearity=act, **kw)
        else:
            if act != "tanh" or rec_act != "sigmoid":
                raise KerasImportError(f"{where}: activation {act!r} / recurrent_activation {rec_act!r} are not "
                                       "supported (tanh and sigmoid)")
            if kind == "LSTM":
                self.layer = LSTM(I, units, **kw)
            else:
                self.layer = GRU(I, units, reset_after=bool(cfg.get("reset_after", True)), **kw)
        state = {}
        for suffix, (c, w) in zip(("_l0", "_l0_reverse"), [(cfg, weights)] + ([backward] if backward else [])):
            state.update(self._convert(kind, c, w, suffix, units, bias, where))
        self.layer.load_state_dict(state)
        self.layer.eval()

    @staticmethod
    def _convert(kind: str, cfg: dict, w: list, suffix: str, units: int, bias: bool, where: str) -> dict:
        want = 3 if bias else 2
        if len(w) != want:
            raise KerasImportError(f"{where}: expected {want} weight arrays (kernel, recurrent_kernel"
                                   f"{', bias' if bias else ''}), got {len(w)}")
        kernel, recurrent = np.asarray(w[0], np.float32).T, np.asarray(w[1], np.float32).T
        G = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}[kind]
        if kernel.shape[0] != G * units or recurrent.shape != (G * units, units):
            raise KerasImportError(f"{where}: kernel {w[0].shape} / recurrent_kernel {w[1].shape} do not fit "
                                   f"units={units}")
        b_ih = b_hh = None
        if bias:
            b = np.asarray(w[2], np.float32)
            if kind == "GRU" and cfg.get("reset_after", True):
                b_ih, b_hh = b.reshape(2, 3 * units)
            else:
                b_ih, b_hh = b.reshape(G * units), np.zeros(G * units, np.float32)
        order = _GRU_FROM_KERAS if kind == "GRU" else tuple(range(G))
        out = {"weight_ih" + suffix: _gates(kernel, order), "weight_hh" + suffix: _gates(recurrent, order)}
        if bias:
            out["bias_ih" + suffix], out["bias_hh" + suffix] = _gates(b_ih, order), _gates(b_hh, order)
        return out

    def __call__(self, x: np.ndarray, lengths: np.ndarray | None) -> np.ndarray:
        if self.go_backwards:
            y, h_n, _ = run_reversed(self.layer, x, [None, None], lengths)
            y = y[:, ::-1]                       # Keras returns the steps in processing order
        else:
            y, state = self.layer(x, lengths=lengths)
            h_n = state[0] if isinstance(state, tuple) else state
        H = self.layer.hidden_size
        if self.return_sequences:
            if self.bidirectional and self.merge_mode != "concat":
                return _merge(self.merge_mode, y[..., :H], y[..., H:])
            return np.ascontiguousarray(y)
        last = [h_n[d] for d in range(h_n.shape[0])]       # (B, H) per direction
        if self.bidirectional and self.merge_mode != "concat":
            return _merge(self.merge_mode, *last)
        return last[0] if len(last) == 1 else np.concatenate(last, axis=-1)


def _merge(mode: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return {"sum": a + b, "mul": a * b, "ave": (a + b) / 2}[mode]


class KerasModel:
    """A Keras Sequential run on pyrnn: ``y = model(x)`` with x (B, T, F) floats or (B, T) token
    ids; ``model.layers`` lists ``(name, pyrnn module)`` in order."""

    def __init__(self, specs: list[tuple[str, str, dict, Any]], source: str) -> None:
        self.source = source
        self._stages: list[tuple[str, str, Any, Any]] = []
        self.layers: list[tuple[str, Any]] = []
        for cls_name, name, cfg, weights in specs:
            stage = self._convert(cls_name, name, cfg, weights)
            if stage is not None:
                self._stages.append(stage)
                self.layers.append((name, stage[2] if not isinstance(stage[2], _Recurrent) else stage[2].layer))

    def _convert(self, cls_name: str, name: str, cfg: dict, weights: Any):
        where = f"{self.source}: layer {name!r} ({cls_name})"
        if cls_name == "InputLayer":
            return None
        if cls_name == "Embedding":
            (table,) = _expect(weights, 1, where)
            emb = nn.Embedding(*np.shape(table), dtype=np.float32)
            emb.load_state_dict({"weight": table})
            return ("embedding", name, emb.eval(), bool(cfg.get("mask_zero", False)))
        if cls_name == "Dense":
            act = cfg.get("activation", "linear")
            if act not in _ACTIVATIONS:
                raise KerasImportError(f"{where}: activation {act!r} is not supported ({sorted(filter(None, _ACTIVATIONS))})")
            w = _expect(weights, 2 if cfg.get("use_bias", True) else 1, where)
            dense = nn.Linear(*np.shape(w[0]), bias=len(w) == 2, dtype=np.float32)
            dense.load_state_dict({"weight": np.asarray(w[0]).T, **({"bias": w[1]} if len(w) == 2 else {})})
            return ("dense", name, dense.eval(), _ACTIVATIONS[act])
        if cls_name in ("LSTM", "GRU", "SimpleRNN"):
            return ("recurrent", name, _Recurrent(name, cls_name, dict(cfg, __class__=cls_name), weights, None, None),
                    None)
        if cls_name == "Bidirectional":
            inner = cfg["layer"]
            back_cfg = (cfg.get("backward_layer") or inner)["config"]
            mode = cfg.get("merge_mode", "concat")
            if mode not in ("concat", "sum", "mul", "ave"):
                raise KerasImportError(f"{where}: merge_mode {mode!r} is not supported (concat, sum, mul, ave)")
            if inner["class_name"] not in ("LSTM", "GRU", "SimpleRNN"):
                raise KerasImportError(f"{where}: wraps a {inner['class_name']}, not LSTM, GRU or SimpleRNN")
            fwd_w, back_w = weights
            kind = inner["class_name"]
            fwd_cfg = dict(inner["config"], __class__=kind)
            return ("recurrent", name, _Recurrent(name, kind, fwd_cfg, fwd_w, (dict(back_cfg, __class__=kind), back_w),
                                                  mode), None)
        raise _unsupported(self.source, name, cls_name)

    def __call__(self, x: Any) -> np.ndarray:
        x = np.asarray(x)
        lengths = None
        for kind, name, module, extra in self._stages:
            if kind == "embedding":
                if extra:
                    lengths = _lengths_from_mask(x != 0, name)
                x = module(x)
            elif kind == "dense":
                x = _dense_activation(extra, module(x))
            else:
                x = module(np.asarray(x, np.float32), lengths)
                if not module.return_sequences:
                    lengths = None
        return x

    def __repr__(self) -> str:
        return f"KerasModel({self.source!r}, layers={[n for n, _ in self.layers]})"


def _unsupported(where: str, name: str, cls_name: str) -> KerasImportError:
    return KerasImportError(f"{where}: layer {name!r} ({cls_name}): layer type {cls_name} is not supported (LSTM, "
                            "GRU, SimpleRNN, Bidirectional, Embedding, Dense, InputLayer)")


def _lengths_from_mask(mask: np.ndarray, name: str) -> np.ndarray:
    """Per-sequence lengths of a right-padded mask (B, T); other masks raise."""
    lengths = mask.sum(axis=1)
    if not np.array_equal(mask, np.arange(mask.shape[1])[None, :] < lengths[:, None]):
        raise ValueError(f"layer {name!r}: mask_zero needs right padding (token 0 only after a sequence's "
                         "last token); pyrnn runs masks as per-sequence lengths")
    if mask.shape[1] and (lengths == 0).any():
        raise ValueError(f"layer {name!r}: a sequence is all padding (token 0); each needs at least one token")
    return lengths


def _expect(weights: Any, count: int, where: str) -> list:
    if len(weights) != count:
        raise KerasImportError(f"{where}: expected {count} weight arrays, got {len(weights)}")
    return list(weights)


# -- files ------------------------------------------------------------------------------------------

def _h5py() -> Any:
    try:
        import h5py
    except ImportError as e:
        raise ImportError("pyrnn.keras.load needs h5py: pip install 'pyrnn[keras]' (or pip install h5py)") from e
    return h5py


def _vars(group: Any) -> list[np.ndarray]:
    """The arrays under ``group/vars`` in their numeric order."""
    if "vars" not in group:
        return []
    v = group["vars"]
    return [np.asarray(v[k]) for k in sorted(v.keys(), key=int)]


def _layer_weights(cls_name: str, group: Any) -> Any:
    if cls_name == "Bidirectional":
        return tuple(_vars(group[side]["cell"]) if "cell" in group[side] else _vars(group[side])
                     for side in ("forward_layer", "backward_layer"))
    if "cell" in group:
        return _vars(group["cell"])
    return _vars(group)


# The weights file's group name of each supported layer class (Keras's snake case of the class).
_H5_NAMES = {"LSTM": "lstm", "GRU": "gru", "SimpleRNN": "simple_rnn", "Bidirectional": "bidirectional",
             "Embedding": "embedding", "Dense": "dense"}


def _sequential_layers(config: dict, where: str) -> list[dict]:
    if not isinstance(config, dict) or config.get("class_name") != "Sequential":
        got = config.get("class_name") if isinstance(config, dict) else type(config).__name__
        raise KerasImportError(f"{where}: only Sequential models are supported, got {got!r}")
    layers = config.get("config", {}).get("layers")
    if not isinstance(layers, list):
        raise KerasImportError(f"{where}: the config has no layer list")
    return layers


def _specs_from_h5(config: dict, h5file: Any, where: str) -> list:
    specs = []
    groups = h5file["layers"] if "layers" in h5file else {}
    seen: dict[str, int] = {}
    for layer in _sequential_layers(config, where):
        cls_name, cfg = layer.get("class_name"), layer.get("config", {})
        name = cfg.get("name", cls_name)
        if cls_name == "InputLayer":
            specs.append((cls_name, name, cfg, []))
            continue
        # Keras stores a Sequential's layers by class, numbered in model order: lstm, lstm_1, ...
        if cls_name not in _H5_NAMES:
            raise _unsupported(where, name, cls_name)
        base = _H5_NAMES[cls_name]
        count = seen.get(base, 0)
        seen[base] = count + 1
        group = base if count == 0 else f"{base}_{count}"
        if group not in groups:
            raise KerasImportError(f"{where}: no weights for layer {name!r} ({cls_name}) in the file "
                                   f"(looked for layers/{group})")
        specs.append((cls_name, name, cfg, _layer_weights(cls_name, groups[group])))
    return specs


def load(path: str | os.PathLike, config: Any = None) -> KerasModel:
    """Read a Keras 3 ``.keras`` file, or a ``.weights.h5`` file together with ``config`` (the
    model's config: a dict, a JSON string or the path of a JSON file such as the
    ``config.json`` inside a ``.keras`` file). Keras itself is not needed; h5py is."""
    h5py = _h5py()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise KerasImportError(f"{path}: no such file")
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as z:
                names = set(z.namelist())
                if not {"config.json", "model.weights.h5"} <= names:
                    raise KerasImportError(f"{path}: not a .keras file (needs config.json and model.weights.h5, "
                                           f"has {sorted(names)})")
                file_config = json.loads(z.read("config.json"))
                weights = z.read("model.weights.h5")
        except (zipfile.BadZipFile, OSError, EOFError, json.JSONDecodeError) as e:
            raise KerasImportError(f"{path}: a damaged .keras file ({e})") from None
        import io

        return _from_h5_bytes(h5py, config if config is not None else file_config, io.BytesIO(weights), path)
    if config is None:
        raise KerasImportError(f"{path}: a weights file needs the model's config (config=...)")
    return _from_h5_bytes(h5py, config, path, path)


def _from_h5_bytes(h5py: Any, config: Any, source: Any, where: str) -> KerasModel:
    if isinstance(config, (str, os.PathLike)):
        text = str(config)
        if os.path.isfile(text):
            with open(text, encoding="utf-8") as f:
                text = f.read()
        try:
            config = json.loads(text)
        except json.JSONDecodeError as e:
            raise KerasImportError(f"{where}: the config is not valid JSON ({e})") from None
    try:
        h5file = h5py.File(source, "r")
    except OSError as e:
        raise KerasImportError(f"{where}: not a Keras weights file, or a truncated one (HDF5: {e})") from None
    with h5file:
        try:
            specs = _specs_from_h5(config, h5file, where)
        except (KeyError, OSError) as e:
            raise KerasImportError(f"{where}: unexpected layout of the weights file ({e})") from None
    return KerasModel(specs, where)


def from_keras(obj: Any) -> KerasModel:
    """Convert a live Keras Sequential model or a single supported Keras layer."""
    if type(obj).__name__ == "Sequential":
        layers = [layer for layer in obj.layers]
    else:
        layers = [obj]
    specs = []
    for layer in layers:
        cls_name = type(layer).__name__
        cfg = layer.get_config()
        if cls_name == "Bidirectional":
            cfg = dict(cfg, layer={"class_name": type(layer.forward_layer).__name__,
                                   "config": layer.forward_layer.get_config()},
                       backward_layer={"class_name": type(layer.backward_layer).__name__,
                                       "config": layer.backward_layer.get_config()})
            weights = ([np.asarray(w) for w in layer.forward_layer.get_weights()],
                       [np.asarray(w) for w in layer.backward_layer.get_weights()])
        else:
            weights = [np.asarray(w) for w in layer.get_weights()]
        specs.append((cls_name, cfg.get("name", cls_name), cfg, weights))
    return KerasModel(specs, f"<{type(obj).__name__}>")
