"""What is measured: the shapes of issue 3, the DeepBench-like shapes, the streaming sizes,
and how many floating-point operations each case counts."""
from __future__ import annotations

from dataclasses import dataclass

CELLS = ("lstm", "gru", "rnn")
GATES = {"lstm": 4, "gru": 3, "rnn": 1}
MODES = ("inference", "training")


@dataclass(frozen=True)
class Shape:
    """One single-layer, unidirectional float32 problem, time-major (T, B, I), I == H here."""

    name: str
    T: int
    B: int
    I: int  # noqa: E741  (the letter every RNN paper uses)
    H: int

    @property
    def label(self) -> str:
        return f"{self.name} ({self.T},{self.B},{self.I})"


# Issue 3's shapes: A streaming-like, B/C/D growing towards GEMM-bound, E long and tiny.
SHAPES = {s.name: s for s in (
    Shape("A", 100, 1, 128, 128),
    Shape("B", 100, 32, 256, 256),
    Shape("C", 50, 64, 512, 512),
    Shape("D", 20, 128, 1024, 1024),
    Shape("E", 200, 16, 64, 64),
)}

# The NumPy reference is a Python loop over time steps: run it by default only where it is quick.
REFERENCE_SHAPES = ("A", "E")

# DeepBench's LSTM inference/training sizes, scaled to a 2-core machine (T=25 instead of 50+).
DEEPBENCH = tuple(Shape(f"DB{H}/{B}", 25, B, H, H) for H in (512, 1024) for B in (16, 64))
DEEPBENCH_CELLS = ("lstm",)

# Streaming: batch 1, one Python call per time step, I == H.
STREAM_CELLS = ("lstm", "gru")
STREAM_SIZES = (128, 512)

# The shape whose training peak memory is compared (issue 3, target 6).
MEMORY_SHAPE = "C"


def forward_flops(cell: str, T: int, B: int, I: int, H: int) -> int:  # noqa: E741
    """2*G*H*(I+H)*B*T: the two matrix products of every step; element-wise work is not counted."""
    return 2 * GATES[cell] * H * (I + H) * B * T


def flops(cell: str, shape: Shape, mode: str) -> int:
    """Forward FLOPs, or 3x that for a training step (forward + data and weight gradients)."""
    f = forward_flops(cell, shape.T, shape.B, shape.I, shape.H)
    return 3 * f if mode == "training" else f


def parse_shapes(names: str) -> list[Shape]:
    """``"A,C"`` -> the named shapes, in the order given."""
    out = []
    for name in filter(None, (n.strip().upper() for n in names.split(","))):
        if name not in SHAPES:
            raise ValueError(f"unknown shape {name!r}; known: {', '.join(SHAPES)}")
        out.append(SHAPES[name])
    return out
