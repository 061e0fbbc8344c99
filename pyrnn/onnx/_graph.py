"""A small builder of ONNX graphs: unique names, constants as initializers, nodes in order."""
from __future__ import annotations

from typing import Any

import numpy as np


class GraphBuilder:
    """Collects the nodes, initializers, inputs and outputs of one ONNX graph."""

    def __init__(self, onnx: Any, prefix: str = "") -> None:
        self.onnx = onnx
        self.helper = onnx.helper
        self.prefix = prefix
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.inputs: list[Any] = []
        self.outputs: list[Any] = []
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{self.prefix}{hint}_{self._count}"

    def const(self, value: Any, hint: str = "c", dtype: Any = None) -> str:
        """An initializer holding ``value``; returns its name."""
        arr = np.asarray(value, dtype=dtype)
        name = self.name(hint)
        self.initializers.append(self.onnx.numpy_helper.from_array(arr.copy(order="C"), name))
        return name

    def op(self, op_type: str, inputs: list[str], n_out: int = 1, **attrs: Any) -> Any:
        """Add a node; returns its output name (or a list of names when ``n_out`` > 1)."""
        outs = [self.name(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(self.helper.make_node(op_type, inputs, outs, name=self.name(op_type), **attrs))
        return outs[0] if n_out == 1 else outs

    def input(self, name: str, elem: Any, shape: list[Any]) -> str:
        self.inputs.append(self.helper.make_tensor_value_info(name, self._elem(elem), shape))
        return name

    def output(self, source: str, name: str, elem: Any, shape: list[Any]) -> None:
        """Expose ``source`` as graph output ``name`` (through an Identity node)."""
        self.nodes.append(self.helper.make_node("Identity", [source], [name], name=self.name("out")))
        self.outputs.append(self.helper.make_tensor_value_info(name, self._elem(elem), shape))

    def _elem(self, elem: Any) -> int:
        return self.helper.np_dtype_to_tensor_dtype(np.dtype(elem))

    def graph(self, name: str) -> Any:
        return self.helper.make_graph(self.nodes, name, self.inputs, self.outputs, self.initializers)
