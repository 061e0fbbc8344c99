"""Type stub of pyrnn._core, the compiled module (written by .ci/core_stub.py from the
bindings' signatures; regenerate it after changing them)."""
import typing

import numpy
import numpy.typing

__version__: str

class LayerCache:
    """What a training-mode layer_forward keeps for its backward (opaque)."""
    @property
    def nbytes(self) -> int: ...

class MlstmCache:
    """What a training-mode mlstm_forward keeps for its backward (opaque)."""
    @property
    def nbytes(self) -> int: ...

class PackedWeights:
    """A layer's weights packed for the active kernels by pack_layer (opaque)."""
    @property
    def isa(self) -> str: ...

class SlstmCache:
    """What a training-mode slstm_forward keeps for its backward (opaque)."""
    @property
    def nbytes(self) -> int: ...

class StalePackedWeights(ValueError): ...

def _buffer_pool_stats() -> dict:
    """Whether the buffer pool keeps blocks, its idle blocks and bytes, and how many requests it
    served from them."""

def _gemm_f32(trans_a: bool, trans_b: bool, A: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], B: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], beta: typing.SupportsFloat | typing.SupportsIndex = ..., C: object = ...) -> numpy.typing.NDArray[numpy.float32]: ...

def _gemm_f64(trans_a: bool, trans_b: bool, A: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], B: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], beta: typing.SupportsFloat | typing.SupportsIndex = ..., C: object = ...) -> numpy.typing.NDArray[numpy.float64]: ...

def _input_chunk_bytes() -> int: ...

def _math_f32(fn: str, x: typing.Annotated[numpy.typing.ArrayLike, numpy.float32]) -> numpy.typing.NDArray[numpy.float32]: ...

def _math_f64(fn: str, x: typing.Annotated[numpy.typing.ArrayLike, numpy.float64]) -> numpy.typing.NDArray[numpy.float64]: ...

def _quant_matmul(type: str, a: object, w: object, s: object) -> numpy.typing.NDArray[numpy.float32]:
    """c = a w^T with w int8 (scales s per row) or bfloat16 bits (s None), as the quantized layers'
    products compute it (for tests)."""

def _reset_split_counts() -> None: ...

def _set_input_chunk_bytes(bytes: typing.SupportsInt | typing.SupportsIndex) -> None: ...

def _set_thread_testing(work_scale: typing.SupportsFloat | typing.SupportsIndex, loop_split: str = ..., absent_thread: typing.SupportsInt | typing.SupportsIndex = ...) -> None:
    """Scales every threshold on the work a thread needs (1: production, 0: split any work), forces
    how time loops split ('auto', 'units' or 'rows'), and makes thread absent_thread (-1:
    none) take no item of a loop shared step by step, as if descheduled."""

def _split_counts() -> dict:
    """How many times each way of splitting work among threads ran since the last reset."""

def _thread_testing() -> tuple[float, str, int]:
    """(work_scale, loop_split, absent_thread) now in force."""

def active_isa() -> str: ...

def available_isas() -> list: ...

def compiler() -> str: ...

def fork_limited() -> bool:
    """Whether this process was forked after OpenMP's pool ran: native calls then use one thread."""

def get_num_threads() -> int: ...

def layer_backward(cell: str, cache: object, dy: object, dh_n: object, dc_n: object, w_ih: object, w_hh: object, w_hr: object, dw_ih: object, dw_hh: object, db_ih: object, db_hh: object, dw_hr: object, w_peep: object = ..., dw_peep: object = ..., input_grad: bool = ...) -> tuple:
    """BPTT through the forward that made `cache`; accumulates weight gradients in place. Returns
    (dx, dh0, dc0 or None); dx is None with input_grad=False (the input's gradient is not
    needed, as for a model's data)."""

def layer_forward(cell: str, x: numpy.ndarray, h0: object, c0: object, w_ih: object, w_hh: object, b_ih: object, b_hh: object, w_hr: object, lengths: object, reverse: bool, training: bool, packed: object, w_peep: object = ..., outputs: bool = ...) -> tuple:
    """One layer, one direction, whole sequence; packed: pack_layer of the same weights or None.
    Returns (y, h_n, c_n or None, cache or None); y is None with outputs=False (inference
    that needs only the final state)."""

def layer_step(x: numpy.ndarray, h: object, c: object, packed: object) -> tuple:
    """One inference step of one layer and direction on pack_layer's weights: x (B, I), h (B, P), c
    (B, H) or None (states may also be (1, B, P) and (1, B, H)). Returns (h_new, c_new or
    None) shaped like h and c."""

def layer_step_if_ready(x: object, h: object, c: object, packed: object, stacked: bool) -> object:
    """layer_step when x (B, I) and the states ((1, B, n) if stacked else (B, n)) are C-contiguous
    arrays of the packing's dtype in native byte order and the packing is for the active
    ISA; None otherwise (nothing is raised for arrays that do not fit)."""

def mlstm_backward(cache: object, dy: object, dc_n: object, dn_n: object, dm_n: object, w_ih: object, dw_ih: object, db: object) -> tuple:
    """BPTT through the forward that made `cache`; accumulates weight gradients in place. Returns
    (dx, dc0, dn0, dm0)."""

def mlstm_forward(x: object, c0: object, n0: object, m0: object, w_ih: object, bias: object, num_heads: typing.SupportsInt | typing.SupportsIndex, eps: typing.SupportsFloat | typing.SupportsIndex, output_gate: bool, lengths: object, training: bool) -> tuple:
    """One mLSTM layer over the sequence. Returns (y, c_n, n_n, m_n, cache or None)."""

def omp_max_threads() -> int: ...

def openmp_version() -> int: ...

def pack_layer(cell: str, w_ih: numpy.ndarray, w_hh: object, b_ih: object, b_hh: object, w_hr: object, w_peep: object = ...) -> PackedWeights:
    """The weights of one layer and direction packed once for the active kernels (a copy: later
    changes to the arrays do not reach it), for layer_forward and layer_step."""

def quant_kernels() -> dict:
    """What the active ISA runs for int8 and bf16 products."""

def quant_layer_forward(x: numpy.ndarray, h0: object, c0: object, b_hh: object, packed: object, lengths: object, reverse: bool) -> tuple:
    """Inference of one quantized layer and direction over a sequence: x (T, B, I) float32, b_hh
    the float32 recurrent bias or None. Returns (y, h_n, c_n or None)."""

def quant_pack_layer(type: str, cell: str, w_ih: object, s_ih: object, w_hh: object, s_hh: object, b_ih: object, b_hh: object, w_hr: object, s_hr: object) -> PackedWeights:
    """One layer and direction's quantized weights packed for the active kernels: type 'int8' (int8
    weights, float32 row scales s_*) or 'bf16' (uint16 bfloat16 bits, scales None); float32
    biases or None. A PackedWeights that layer_step and layer_step_if_ready take as they
    take pack_layer's, and quant_layer_forward."""

def release_idle_buffers() -> None:
    """Frees the large buffers kept idle for reuse between calls."""

def select_isa(name: str) -> None: ...

def set_num_threads(n: typing.SupportsInt | typing.SupportsIndex) -> None: ...

def slstm_backward(cache: object, dy: object, dh_n: object, dc_n: object, dn_n: object, dm_n: object, w_ih: object, w_hh: object, dw_ih: object, dw_hh: object, db: object) -> tuple:
    """BPTT through the forward that made `cache`; accumulates weight gradients in place. Returns
    (dx, dh0, dc0, dn0, dm0)."""

def slstm_forward(x: object, h0: object, c0: object, n0: object, m0: object, w_ih: object, w_hh: object, bias: object, num_heads: typing.SupportsInt | typing.SupportsIndex, forget_exp: bool, headwise: bool, lengths: object, training: bool) -> tuple:
    """One sLSTM layer over the sequence; headwise: w_ih (4H, I/num_heads) block-diagonal over
    heads. Returns (y, h_n, c_n, n_n, m_n, cache or None)."""
