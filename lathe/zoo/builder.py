"""A few lines of help for writing CNNs as ONNX graphs: weights become initializers, nodes get readable names."""

from __future__ import annotations

from typing import Any

import numpy as np

OPSET = 17
IR_VERSION = 8  # the IR version that goes with opset 17; newer ones would shut out older runtimes


class GraphBuilder:
    """Collects nodes and initializers; each layer method returns the name of its output."""

    def __init__(self, name: str):
        self.name = name
        self.nodes: list[Any] = []
        self.weights: dict[str, np.ndarray] = {}

    def const(self, name: str, value: np.ndarray) -> str:
        if name in self.weights:
            raise ValueError(f"initializer {name!r} defined twice")
        self.weights[name] = np.ascontiguousarray(value)
        return name

    def node(self, op: str, inputs: list[str], name: str, **attrs: Any) -> str:
        from onnx import helper

        self.nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def conv(self, x: str, name: str, w: np.ndarray, stride: int = 1, pad: int | tuple[int, int, int, int] = 0,
             group: int = 1, bias: np.ndarray | None = None) -> str:
        pads = [pad] * 4 if isinstance(pad, int) else list(pad)  # ONNX order: top, left, bottom, right
        inputs = [x, self.const(f"{name}.weight", w.astype(np.float32))]
        if bias is not None:
            inputs.append(self.const(f"{name}.bias", bias.astype(np.float32)))
        return self.node("Conv", inputs, name, kernel_shape=list(w.shape[2:]), strides=[stride, stride], pads=pads,
                         group=group)

    def batchnorm(self, x: str, name: str, gamma: np.ndarray, beta: np.ndarray, mean: np.ndarray, var: np.ndarray,
                  eps: float = 1e-5) -> str:
        params = [self.const(f"{name}.{k}", v.astype(np.float32))
                  for k, v in (("weight", gamma), ("bias", beta), ("running_mean", mean), ("running_var", var))]
        return self.node("BatchNormalization", [x, *params], name, epsilon=eps)

    def relu(self, x: str) -> str:
        return self.node("Relu", [x], f"{x}.relu")

    def relu6(self, x: str) -> str:
        # Clip takes its bounds as inputs since opset 11; one shared pair of scalars serves every ReLU6
        if "relu6.min" not in self.weights:
            self.const("relu6.min", np.array(0.0, np.float32))
            self.const("relu6.max", np.array(6.0, np.float32))
        return self.node("Clip", [x, "relu6.min", "relu6.max"], f"{x}.relu6")

    def add(self, a: str, b: str, name: str) -> str:
        return self.node("Add", [a, b], name)

    def classifier(self, x: str, w: np.ndarray, b: np.ndarray, out: str) -> str:
        """Global average pool, flatten, and a fully connected layer (w is [classes, features], torch's layout)."""
        pooled = self.node("GlobalAveragePool", [x], "avgpool")
        flat = self.node("Flatten", [pooled], "flatten", axis=1)
        w_name, b_name = self.const("fc.weight", w.astype(np.float32)), self.const("fc.bias", b.astype(np.float32))
        return self.node("Gemm", [flat, w_name, b_name], out, transB=1)

    def model(self, inp: str, out: str, batch: int, classes: int, doc: str) -> Any:
        """The finished, checked ModelProto: one float32 NCHW image input, one [batch, classes] output."""
        import onnx
        from onnx import TensorProto, helper, numpy_helper

        graph = helper.make_graph(
            self.nodes, self.name,
            [helper.make_tensor_value_info(inp, TensorProto.FLOAT, [batch, 3, 224, 224])],
            [helper.make_tensor_value_info(out, TensorProto.FLOAT, [batch, classes])],
            initializer=[numpy_helper.from_array(v, k) for k, v in self.weights.items()])
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
                                  producer_name="lathe.zoo", doc_string=doc)
        onnx.checker.check_model(proto)
        return proto
