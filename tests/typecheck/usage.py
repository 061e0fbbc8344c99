"""Typical use of pyrnn, type-checked by CI with ``mypy --warn-unused-ignores`` against
the installed package (its py.typed marker and the stub of the compiled module). Each
``type: ignore[...]`` marks a misuse that mypy must report: if it did not see the signature,
the ignore would be unused and mypy would fail."""
from __future__ import annotations

import numpy as np
import numpy.typing as npt

import pyrnn
from pyrnn import _core

x: npt.NDArray[np.float32] = np.zeros((5, 2, 16), np.float32)
lstm = pyrnn.LSTM(16, 32, num_layers=2, bidirectional=True, seed=0)
y, (h_n, c_n) = lstm(x)
lstm.zero_grad()
lstm.backward(np.ones_like(y))
cell = pyrnn.GRUCell(16, 32, seed=0).eval()
slstm = pyrnn.SLSTM(16, 32, num_heads=4)

pyrnn.set_num_threads(2)
threads: int = pyrnn.get_num_threads()
isa: str = _core.active_isa()
isas: list[str] = list(_core.available_isas())
path: str = pyrnn.save(pyrnn.Seq2Vec(16, 2, hidden_size=8), "/tmp/pyrnn-typecheck.safetensors")
history: pyrnn.History = pyrnn.fit(pyrnn.Seq2Vec(16, 2), (x, np.zeros(5)), "mse",
                                   pyrnn.optim.SGD(pyrnn.Seq2Vec(16, 2)), epochs=1)

pyrnn.LSTM("16", 32)  # type: ignore[arg-type]
pyrnn.set_num_threads("2")  # type: ignore[arg-type]
_core.select_isa(2)  # type: ignore[arg-type]
wrong: str = _core.get_num_threads()  # type: ignore[assignment]
pyrnn.fit(lstm, x, "mse", None, epochs="3")  # type: ignore[arg-type]
