"""pyrnn: RNN, LSTM and GRU layers and cells on C++ SIMD + OpenMP kernels, with a NumPy API
shaped like PyTorch's (same arguments, shapes, parameter names and results)."""
try:
    from . import _core  # noqa: F401  (no pure-Python fallback: a missing build must fail here)
except ImportError as e:
    raise ImportError(
        f"pyrnn's compiled extension pyrnn._core could not be imported ({e}). Install pyrnn "
        "with `pip install .`, which compiles it, and run Python outside the source folder: "
        "its pyrnn/ directory has no compiled module and would shadow the installed one.") from e

from .cells import GRUCell, LSTMCell, RNNCell
from .config import get_num_threads, set_num_threads, show_config
from .config import version as _version
from .layers import GRU, LSTM, RNN
from .xlstm import MLSTM, SLSTM, MLSTMCell, SLSTMCell, xLSTMBlockStack

__version__ = _version()

__all__ = ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell",
           "SLSTM", "MLSTM", "SLSTMCell", "MLSTMCell", "xLSTMBlockStack",
           "set_num_threads", "get_num_threads", "show_config", "__version__"]
