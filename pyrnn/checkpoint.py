"""Checkpoints as safetensors files, read and written in pure NumPy (no pickle: loading an
untrusted file cannot run code).

Format (https://github.com/huggingface/safetensors): 8 bytes little-endian u64 ``N``, then
``N`` bytes of JSON ``{name: {"dtype", "shape", "data_offsets": [begin, end]}, ...,
"__metadata__": {str: str}}``, then the tensors' raw little-endian bytes, contiguous.
``pyrnn.save`` stores a model's weights and, in the metadata, its class and constructor
config as JSON, so ``pyrnn.load`` rebuilds it. Files interoperate with ``safetensors.numpy``.

Integrity: ``save_file`` stores the SHA-256 of the tensors (names, dtypes, shapes and bytes, in
name order, so it does not depend on the layout) under the metadata key ``pyrnn.sha256``, and
``load_file`` verifies it; files written by other tools have none and load without the check.
Every malformed file raises :class:`CheckpointError`, whatever its header holds.

Writes are atomic: a temporary file in the target's folder, flushed and fsynced, then
``os.replace`` onto the target, so a crash mid-save leaves any previous checkpoint intact. A
symlink is written through (its target is replaced, the link stays), an existing file keeps its
permission bits, and the temporaries that killed saves left behind are removed by the next
save to the same file (only those whose process no longer runs on this host).
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import socket
import tempfile
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

FORMAT = "pyrnn"
FORMAT_VERSION = "1"
DIGEST_KEY = "pyrnn.sha256"

#: bfloat16 as NumPy holds it: the 16-bit patterns in a one-field structured dtype, so that it
#: stays apart from uint16 (safetensors' BF16; torch reads such tensors as torch.bfloat16)
BFLOAT16 = np.dtype([("bfloat16", "<u2")])
_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
           "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?", "BF16": BFLOAT16}
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


def _digest(tensors: Iterable[tuple[str, str, list[int], Any]]) -> str:
    """SHA-256 over ``(name, dtype code, shape, little-endian bytes)`` of each tensor, in name order."""
    h = hashlib.sha256()
    for name, code, shape, data in sorted(tensors, key=lambda t: t[0]):
        h.update(json.dumps([name, code, shape]).encode("utf-8") + b"\0")
        h.update(data)
    return h.hexdigest()


def save_file(tensors: Mapping[str, Any], path: str | os.PathLike, metadata: Mapping[str, str] | None = None) -> None:
    """Write ``name -> array`` and a ``str -> str`` metadata map as a safetensors file, atomically,
    with the tensors' SHA-256 in the metadata (key ``pyrnn.sha256``)."""
    meta: dict[str, str] = {}
    if metadata:
        bad = [k for k, v in metadata.items() if not isinstance(k, str) or not isinstance(v, str)]
        if bad:
            raise TypeError(f"save_file: metadata must map str to str; bad entries: {bad}")
        meta.update(metadata)
    header: dict[str, Any] = {}
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
    meta[DIGEST_KEY] = _digest((name, header[name]["dtype"], header[name]["shape"], arr.data)
                               for name, arr in zip(header, arrays))
    header = {"__metadata__": meta, **header}
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)                      # pad so the data starts 8-byte aligned

    def write(f: Any) -> None:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for arr in arrays:
            f.write(arr.data)

    write_atomically(path, write)


# -- atomic writes ------------------------------------------------------------------------------

def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:            # exists, owned by someone else
        return True
    except OSError as e:
        return e.errno != errno.ESRCH
    return True


def _remove_stale_temporaries(folder: str, base: str) -> None:
    """Delete ``.tmp-<base>-<host>-<pid>-*`` left by saves whose process died on this host.
    Temporaries of live processes (a save in progress), of other hosts sharing the folder, and
    of other targets are left alone."""
    pattern = re.compile(r"\.tmp-" + re.escape(base) + r"-" + _host_tag() + r"-(\d+)-[^-]+")
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        m = pattern.fullmatch(name)
        if m and not _process_alive(int(m.group(1))):
            try:
                os.unlink(os.path.join(folder, name))
            except OSError:
                pass


def write_atomically(path: str | os.PathLike, write: Any) -> None:
    """Call ``write(file)`` on a temporary file next to ``path`` (its target if ``path`` is a
    symlink), fsync it, and rename it onto the target. The target keeps its permission bits if
    it exists; a new file gets the usual ``0o666 & ~umask``."""
    target = os.path.realpath(os.fspath(path))
    folder, base = os.path.split(target)
    _remove_stale_temporaries(folder, base)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{base}-{_host_tag()}-{os.getpid()}-", dir=folder)
    try:
        try:
            mode = os.stat(target).st_mode & 0o7777
        except FileNotFoundError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)                          # mkstemp creates it 0600
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:                                             # make the rename itself durable
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


# -- reading ------------------------------------------------------------------------------------

def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise CheckpointError(f"corrupt header (the key {key!r} appears twice)")
        out[key] = value
    return out


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def load_file(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read a safetensors file: ``(tensors, metadata)``. Every structural problem (truncation,
    a bad header, overlapping or out-of-range offsets, unknown dtypes, sizes that do not match
    shapes, BOOL bytes other than 0 and 1, tensors that do not match their SHA-256) raises
    :class:`CheckpointError` naming the file and the problem."""
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
        header = json.loads(data[8:8 + n].decode("utf-8"), object_pairs_hook=_unique_keys)
    except CheckpointError as e:
        raise fail(str(e)) from None
    except RecursionError:
        raise fail("corrupt header (JSON nested too deeply)") from None
    except (UnicodeDecodeError, ValueError) as e:
        raise fail(f"corrupt header (not valid JSON: {e})") from None
    if not isinstance(header, dict):
        raise fail("corrupt header (not a JSON object)")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise fail("corrupt header (__metadata__ must map strings to strings)")
    body = memoryview(data)[8 + n:]
    spans, tensors, items = [], {}, []
    for name, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise fail(f"corrupt entry for tensor {name!r}: expected dtype, shape and data_offsets")
        code, shape, offs = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(code, str) or code not in _DTYPES:
            raise fail(f"tensor {name!r} has unsupported dtype {code!r}")
        if (not isinstance(shape, list) or not all(_is_count(s) for s in shape)
                or not isinstance(offs, list) or len(offs) != 2 or not all(_is_count(o) for o in offs)):
            raise fail(f"corrupt entry for tensor {name!r}: shape {shape!r}, data_offsets {offs!r} "
                       "(expected lists of non-negative integers)")
        dt = np.dtype(_DTYPES[code])
        begin, end = offs
        count = extent = 1
        for s in shape:                    # exact: Python integers do not overflow
            count *= s
            extent *= max(s, 1)
        if len(shape) > 32 or extent * dt.itemsize > np.iinfo(np.intp).max:
            raise fail(f"tensor {name!r}: shape {shape} is larger than an array can be")
        expected = count * dt.itemsize
        if begin > end or end - begin != expected:
            raise fail(f"tensor {name!r}: data_offsets {offs} do not hold {code}{shape} ({expected} bytes)")
        if end > len(body):
            raise fail(f"truncated: tensor {name!r} ends at byte {end} of the data, which has {len(body)} bytes")
        spans.append((begin, end, name))
        items.append((name, code, shape, body[begin:end]))
    position = 0
    for begin, end, name in sorted(spans):
        if begin != position:
            raise fail(f"corrupt layout: tensor {name!r} starts at byte {begin}, expected {position} "
                       "(tensors overlap or leave gaps)")
        position = end
    if position != len(body):
        raise fail(f"corrupt layout: {len(body) - position} unexpected bytes after the last tensor")
    stored = metadata.get(DIGEST_KEY)
    if stored is not None and stored != _digest(items):
        raise fail(f"the tensor data does not match its SHA-256 ({DIGEST_KEY} in the metadata): "
                   "the file is corrupt")
    for name, code, shape, raw_tensor in items:
        dt = np.dtype(_DTYPES[code])
        if code == "BOOL" and bytes(raw_tensor).translate(None, b"\0\1"):
            raise fail(f"tensor {name!r}: BOOL bytes must be 0 or 1")
        tensors[name] = np.frombuffer(raw_tensor, dtype=dt).reshape(shape).astype(dt.newbyteorder("="))
    return tensors, dict(metadata)


# -- what a file may ask load to build ---------------------------------------------------------

_SIZE_KEY = re.compile(r".*_size|.*_dim|num_.*")
_LAYER_INDEX = re.compile(r"_l(\d+)(?:_|$)")


def check_config(config: Any, tensors: Mapping[str, np.ndarray]) -> None:
    """Raise :class:`CheckpointError` unless the sizes in a model ``config`` fit the tensors
    the file holds, so that a small file cannot make :func:`load` build a huge model.

    Checked before anything is built, from the tensors' shapes alone: every size (``*_size``,
    ``*_dim``, ``num_*``) is a non-negative integer no larger than the file's largest tensor
    dimension; ``num_layers`` equals the number of layers the tensor names count (``_l0``,
    ``_l1``, ...); and each weight matrix the sizes imply (hidden size times input, projection,
    output, vocabulary or embedding size, divided by ``num_heads``) holds no more elements than
    the file's largest tensor. A model that passes is at most a small multiple of the file in
    size; its exact names and shapes are then checked by ``load_state_dict``."""
    if not isinstance(config, dict):
        raise CheckpointError(f"corrupt config in the metadata (a JSON object expected, got {type(config).__name__})")
    largest_dim = largest_count = 0
    layers = set()
    for name, t in tensors.items():
        if t.size:
            largest_dim = max(largest_dim, *t.shape, 0)
            largest_count = max(largest_count, t.size)
        m = _LAYER_INDEX.search(name)
        if m:
            layers.add(int(m.group(1)))
    sizes = {}
    for key, value in config.items():
        if not _SIZE_KEY.fullmatch(key) or value is None:
            continue
        if not _is_count(value):
            raise CheckpointError(f"config {key}={value!r} is not a size (a non-negative integer)")
        if key == "num_layers":
            named = max(layers) + 1 if layers else 0
            if (value != named) if layers else (value > len(tensors)):
                raise CheckpointError(f"config num_layers={value} does not match the file, whose tensor "
                                      f"names count {named} layers")
        elif value > largest_dim:
            raise CheckpointError(f"config {key}={value} is larger than any tensor dimension in the file "
                                  f"(largest: {largest_dim})")
        sizes[key] = value
    hidden = sizes.get("hidden_size")
    if not hidden:
        return
    heads = max(sizes.get("num_heads", 1), 1)
    for key, value in sizes.items():
        if key.startswith("num_"):
            continue
        if key == "hidden_size":
            width = sizes.get("proj_size") or hidden          # the recurrent weight (G*H, H_out)
        elif key.endswith("vocab_size") and sizes.get("embedding_dim"):
            width = sizes["embedding_dim"]                    # the embedding (V, E)
        else:
            width = hidden                                    # (G*H, I), (O, H), (P, H), (A, H), ...
        elements = value * width // heads
        if elements > largest_count:
            raise CheckpointError(f"config {key}={value} with hidden_size={hidden} implies a weight of "
                                  f"{elements} elements; the file's largest tensor has {largest_count}")


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


def check_dtypes(tensors: Mapping[str, np.ndarray], dtype: Any, convert: bool = False) -> dict[str, np.ndarray]:
    """The tensors for a model of ``dtype``: unchanged if they all have it; cast if ``convert``
    (numeric tensors only); otherwise :class:`CheckpointError` naming the tensors that differ."""
    dtype = np.dtype(dtype)
    other = {name: t.dtype for name, t in tensors.items() if t.dtype != dtype}
    if not other:
        return dict(tensors)
    listed = ", ".join(f"{name} ({dt})" for name, dt in list(other.items())[:5]) + (", ..." if len(other) > 5 else "")
    if not convert:
        raise CheckpointError(f"{len(other)} tensor(s) are not {dtype.name}, the model's dtype: {listed}; "
                              "pass convert=True to cast them")
    bad = [name for name, dt in other.items() if dt.kind not in "fiu"]
    if bad:
        raise CheckpointError(f"tensors {', '.join(bad)} are not numeric and cannot become {dtype.name}")
    return {name: t.astype(dtype, copy=False) for name, t in tensors.items()}


def load(path: str | os.PathLike, into: Any = None, *, convert: bool = False) -> Any:
    """Rebuild the model saved by :func:`save` (or, with ``into``, load the weights into that
    model after checking that its class and every name and shape match). The config is checked
    against the file's tensors before the model is built (:func:`check_config`). Tensors of
    another dtype than the model's are refused unless ``convert=True`` casts them."""
    from .quantize import float_class_name, quantize, quantized_dtype

    where = os.fspath(path)
    tensors, meta = load_file(path)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{where}: not a pyrnn checkpoint (its metadata has no "
                              "format=pyrnn); read it with pyrnn.checkpoint.load_file")
    name = meta.get("class")
    classes = _classes()
    quantization = meta.get("quantization") or None  # set by save for pyrnn.quantize's copies
    try:
        if into is None:
            if name not in classes:
                raise CheckpointError(f"unknown model class {name!r}")
            try:
                config = json.loads(meta.get("config", ""))
            except (ValueError, RecursionError) as e:
                raise CheckpointError(f"corrupt config in the metadata ({e})") from None
            check_config(config, tensors)
            try:
                dtype = np.dtype(config.get("dtype", "float32"))
            except (TypeError, ValueError) as e:
                raise CheckpointError(f"config dtype {config.get('dtype')!r} is not a dtype ({e})") from None
            if not quantization:  # a quantized model checks its own int8 / bf16 dtypes
                tensors = check_dtypes(tensors, dtype, convert)
            cls = classes[name]
            try:
                model = cls.from_config(config) if hasattr(cls, "from_config") else cls(**config)
                if quantization:
                    model = quantize(model.eval(), quantization)
            except (TypeError, ValueError, OverflowError) as e:
                raise CheckpointError(f"cannot rebuild {name} from its config: {e}") from None
        else:
            model = into
            if float_class_name(model) != name or quantized_dtype(model) != quantization:
                held = f"{quantization} " if quantization else ""
                raise CheckpointError(f"holds a {held}{name}, cannot load it into a {type(model).__name__}")
            if not quantization:
                tensors = check_dtypes(tensors, model.dtype, convert)
        try:
            model.load_state_dict(tensors)
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"weights do not match the {name}: {e}") from None
    except CheckpointError as e:
        raise CheckpointError(f"{where}: {e}") from None
    return model
