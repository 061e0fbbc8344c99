"""pyrnn: RNN, LSTM and GRU layers and cells on C++ SIMD + OpenMP kernels, with a NumPy API
shaped like PyTorch's (same arguments, shapes, parameter names and results)."""
from ._threads import prepare_openmp

prepare_openmp()  # before _core loads OpenMP, which reads its settings then
try:
    from . import _core  # noqa: F401  (no pure-Python fallback: a missing build must fail here)
except ImportError as e:
    if isinstance(e, ModuleNotFoundError):
        hint = ("Install pyrnn with `pip install .`, which compiles it, and run Python outside "
                "the source folder: its pyrnn/ has no compiled module and shadows the installed one.")
    else:
        hint = "The compiled module is broken or incomplete: rebuild and reinstall with `pip install .`."
    raise ImportError(f"pyrnn's compiled extension pyrnn._core could not be imported ({e}). {hint}") from e
from ._version import __version__

# An extension left from another version (a stale build next to updated Python files) would
# misbehave in obscure ways: refuse it here, before anything calls it.
if getattr(_core, "__version__", None) != __version__:
    raise ImportError(
        f"pyrnn {__version__}'s compiled extension is version {getattr(_core, '__version__', 'unknown')} "
        f"({_core.__file__}): reinstall pyrnn (pip install --force-reinstall --no-deps pyrnn, or "
        "pip install . in its source folder)")

from .cells import GRUCell, LSTMCell, RNNCell
from .config import get_num_threads, release_memory, set_num_threads, show_config
from .layers import GRU, LSTM, RNN
from ._recurrent import PerformanceWarning
from .xlstm import MLSTM, SLSTM, MLSTMCell, SLSTMCell, xLSTMBlockStack
from . import distributed, losses, metrics, models, nn, optim  # noqa: E402
from .checkpoint import load, save
from .quantize import quantize
from .models import EncoderDecoder, Seq2Seq, Seq2Vec, Vec2Seq
from .torch_convert import from_torch, to_torch
from .training import EarlyStopping, History, ModelCheckpoint, evaluate, fit, make_streams, plot_history


__all__ = ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell",
           "SLSTM", "MLSTM", "SLSTMCell", "MLSTMCell", "xLSTMBlockStack",
           "set_num_threads", "get_num_threads", "release_memory", "show_config", "__version__",
           "nn", "losses", "metrics", "optim", "models", "distributed", "Seq2Vec", "Seq2Seq", "Vec2Seq", "EncoderDecoder",
           "from_torch", "to_torch", "fit", "evaluate", "make_streams", "History", "EarlyStopping", "ModelCheckpoint", "plot_history", "save", "load",
           "quantize", "PerformanceWarning"]
