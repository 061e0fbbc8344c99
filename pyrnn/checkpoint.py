"""Checkpoints as safetensors files, read and written in pure NumPy (no pickle: loading an
untrusted file cannot run code).

Format (https://github.com/huggingface/safetensors): 8 bytes little-endian u64 ``N``, then
``N`` bytes of JSON ``{name: {"dtype", "shape", "data_offsets": [begin, end]}, ...,
"__metadata__": {str: str}}``, then the tensors' raw little-endian bytes, contiguous.
``pyrnn.save`` stores a model's weights and, in the metadata, its class and constructor
config as JSON, so ``pyrnn.load`` rebuilds it. Files interoperate with ``safetensors.numpy``.

Writes are atomic: a temporary file in the same folder, flushed and fsynced, then
``os.replace`` onto the target, so a crash mid-save leaves any previous checkpoint intact.
"""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from typing import Any

import numpy as np

FORMAT = "pyrnn"
FORMAT_VERSION = "1"

_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
           "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?"}
_CODES = {np.dtype(v).newbyteorder("<") if np.dtype(v).itemsize > 1 else np.dtype(v): k for k, v in _DTYPES.items()}
MAX_HEADER = 100 * 2**20


class CheckpointError(ValueError):
    """A checkpoint file that is truncated, corrupt, or does not match what it is loaded into."""


def _code(arr: np.ndarray, name: str) -> str:
    dt = arr.dtype.newbyteorder("<") if arr.dtype.itemsize > 1 else arr.dtype
    if dt not in _CODES:
        raise TypeError(f"save_file: tensor {name!r} has dtype {arr.dtype}, which safetensors cannot store "
                        f"(supported: {', '.join(_DTYPES)})")
    return _CODES[dt]


def save_file(tensors: Mapping[str, Any], path: str | os.PathLike, metadata: Mapping[str, str] | None = None) -> None:
    """Write ``name -> array`` and a ``str -> str`` metadata map as a safetensors file, atomically."""
    header: dict[str, Any] = {}
    if metadata:
        bad = [k for k, v in metadata.items() if not isinstance(k, str) or not isinstance(v, str)]
        if bad:
            raise TypeError(f"save_file: metadata must map str to str; bad entries: {bad}")
        header["__metadata__"] = dict(metadata)
    arrays, offset = [], 0
    for name, value in tensors.items():
        if not isinstance(name, str) or name == "__metadata__":
            raise ValueError(f"save_file: invalid tensor name {name!r}")
        arr = np.asarray(value)
        code = _code(arr, name)
        arr = np.ascontiguousarray(arr, dtype=np.dtype(_DTYPES[code]))
        header[name] = {"dtype": code, "shape": list(arr.shape), "data_offsets": [offset, offset + arr.nbytes]}
        offset += arr.nbytes
        arrays.append(arr)
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)                      # pad so the data starts 8-byte aligned
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-" + os.path.basename(path) + "-", dir=folder)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)                 # mkstemp's 0600 -> the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(len(raw).to_bytes(8, "little"))
            f.write(raw)
            for arr in arrays:
                f.write(arr.tobytes())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def load_file(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read a safetensors file: ``(tensors, metadata)``. Every structural problem (truncation,
    a bad header, overlapping or out-of-range offsets, unknown dtypes, sizes that do not match
    shapes) raises :class:`CheckpointError` naming the file and the problem."""
    path = os.fspath(path)

    def fail(msg: str) -> CheckpointError:
        return CheckpointError(f"{path}: {msg}")

    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise fail(f"truncated: {len(data)} bytes, fewer than the 8-byte header length (not a safetensors file?)")
    n = int.from_bytes(data[:8], "little")
    if n > MAX_HEADER:
        raise fail(f"corrupt header length {n} (more than {MAX_HEADER} bytes): not a safetensors file?")
    if 8 + n > len(data):
        raise fail(f"truncated: the header needs {n} bytes but only {len(data) - 8} follow")
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise fail(f"corrupt header (not valid JSON: {e})") from None
    if not isinstance(header, dict):
        raise fail("corrupt header (not a JSON object)")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise fail("corrupt header (__metadata__ must map strings to strings)")
    body = memoryview(data)[8 + n:]
    spans, tensors = [], {}
    for name, info in header.items():
        if not isinstance(info, dict) or set(info) - {"dtype", "shape", "data_offsets"} or len(info) != 3:
            raise fail(f"corrupt entry for tensor {name!r}: expected dtype, shape and data_offsets")
        code, shape, offs = info["dtype"], info["shape"], info["data_offsets"]
        if code not in _DTYPES:
            raise fail(f"tensor {name!r} has unsupported dtype {code!r}")
        if (not isinstance(shape, list) or not all(isinstance(s, int) and s >= 0 for s in shape)
                or not isinstance(offs, list) or len(offs) != 2 or not all(isinstance(o, int) for o in offs)):
            raise fail(f"corrupt entry for tensor {name!r}: shape {shape!r}, data_offsets {offs!r}")
        dt = np.dtype(_DTYPES[code])
        begin, end = offs
        expected = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
        if not 0 <= begin <= end or end - begin != expected:
            raise fail(f"tensor {name!r}: data_offsets {offs} do not hold {code}{shape} ({expected} bytes)")
        if end > len(body):
            raise fail(f"truncated: tensor {name!r} ends at byte {end} of the data, which has {len(body)} bytes")
        spans.append((begin, end, name))
        tensors[name] = np.frombuffer(body[begin:end], dtype=dt).reshape(shape).astype(dt.newbyteorder("="))
    position = 0
    for begin, end, name in sorted(spans):
        if begin != position:
            raise fail(f"corrupt layout: tensor {name!r} starts at byte {begin}, expected {position} "
                       "(tensors overlap or leave gaps)")
        position = end
    if position != len(body):
        raise fail(f"corrupt layout: {len(body) - position} unexpected bytes after the last tensor")
    return tensors, dict(metadata)


# ---------------------------------------------------------------------------------------------
# models


def _core_config(model: Any) -> dict[str, Any] | None:
    from .cells import GRUCell, LSTMCell, RNNCell
    from .layers import GRU, LSTM, RNN

    if not isinstance(model, (RNN, LSTM, GRU, RNNCell, LSTMCell, GRUCell)):
        return None
    cfg: dict[str, Any] = {"input_size": model.input_size, "hidden_size": model.hidden_size,
                           "bias": model.bias, "dtype": model.dtype.name}
    if isinstance(model, (RNN, LSTM, GRU)):
        cfg.update(num_layers=model.num_layers, batch_first=model.batch_first, dropout=model.dropout,
                   bidirectional=model.bidirectional)
    if isinstance(model, (RNN, RNNCell)):
        cfg["nonlinearity"] = model.nonlinearity
    if isinstance(model, LSTM):
        cfg["proj_size"] = model.proj_size
    if isinstance(model, (GRU, GRUCell)):
        cfg["reset_after"] = model.reset_after
    return cfg


def _classes() -> dict[str, Any]:
    from . import cells, layers
    from .models import MODELS

    out = dict(MODELS)
    for name in ("RNN", "LSTM", "GRU"):
        out[name] = getattr(layers, name)
    for name in ("RNNCell", "LSTMCell", "GRUCell"):
        out[name] = getattr(cells, name)
    return out


def save(model: Any, path: str | os.PathLike, metadata: Mapping[str, str] | None = None) -> str:
    """Save ``model``'s weights and architecture (class and config) to one safetensors file,
    atomically. Works for the architectures in ``pyrnn.models`` and the core layers and cells."""
    from . import __version__
    from .quantize import float_class_name, quantized_dtype

    name = float_class_name(model)
    config = model.get_config() if hasattr(model, "get_config") else _core_config(model)
    if config is None or name not in _classes():
        raise TypeError(f"pyrnn.save: don't know how to rebuild a {name}; save its state_dict() with "
                        "pyrnn.checkpoint.save_file instead")
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "pyrnn_version": __version__,
            "class": name, "config": json.dumps(config, sort_keys=True)}
    if quantized_dtype(model):
        meta["quantization"] = quantized_dtype(model)  # load quantizes the rebuilt float model
    if metadata:
        meta.update({f"user.{k}": str(v) for k, v in metadata.items()})
    save_file(model.state_dict(), path, meta)
    return os.fspath(path)


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata of a checkpoint (class, config, versions, user entries)."""
    return load_file(path)[1]


def load(path: str | os.PathLike, into: Any = None) -> Any:
    """Rebuild the model saved by :func:`save` (or, with ``into``, load the weights into that
    model after checking that its class and every name and shape match)."""
    tensors, meta = load_file(path)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{os.fspath(path)}: not a pyrnn checkpoint (its metadata has no "
                              "format=pyrnn); read it with pyrnn.checkpoint.load_file")
    name = meta.get("class")
    classes = _classes()
    if into is None:
        if name not in classes:
            raise CheckpointError(f"{os.fspath(path)}: unknown model class {name!r}")
        try:
            config = json.loads(meta.get("config", ""))
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{os.fspath(path)}: corrupt config in the metadata ({e})") from None
        cls = classes[name]
        try:
            model = cls.from_config(config) if hasattr(cls, "from_config") else cls(**config)
            if meta.get("quantization"):
                from .quantize import quantize

                model = quantize(model.eval(), meta["quantization"])
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{os.fspath(path)}: cannot rebuild {name} from its config: {e}") from None
    else:
        from .quantize import float_class_name, quantized_dtype

        model = into
        if float_class_name(model) != name or quantized_dtype(model) != (meta.get("quantization") or None):
            held = f"{meta['quantization']} " if meta.get("quantization") else ""
            raise CheckpointError(f"{os.fspath(path)}: holds a {held}{name}, cannot load it into a {type(model).__name__}")
    try:
        model.load_state_dict(tensors)
    except ValueError as e:
        raise CheckpointError(f"{os.fspath(path)}: weights do not match the {name}: {e}") from None
    return model
