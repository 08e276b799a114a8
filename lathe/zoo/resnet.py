"""ResNet-18 (torchvision's layout) with seeded random weights: a realistic workload for speed work.

Weights are random but scaled so activations stay O(1): He-normal convs (variance 2/fan_in keeps the
second moment through a ReLU) and BatchNorms whose statistics are near identity. The second BN of each
residual branch gets gamma about 0.5 so that the eight residual additions do not double the variance
each time. On the preprocessed sample cat every activation's RMS stays between 0.3 and 1.7, and the
logits have a standard deviation of about 0.7.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lathe.zoo.builder import GraphBuilder

STAGES = (64, 128, 256, 512)
BLOCKS_PER_STAGE = 2


class _Init:
    """Seeded weight factory."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def conv(self, c_out: int, c_in: int, k: int) -> np.ndarray:
        return self.rng.normal(0.0, np.sqrt(2.0 / (c_in * k * k)), (c_out, c_in, k, k))

    def bn(self, c: int, gamma: float = 1.0) -> tuple[np.ndarray, ...]:
        r = self.rng
        return (gamma * r.uniform(0.9, 1.1, c), r.normal(0.0, 0.05, c), r.normal(0.0, 0.05, c), r.uniform(0.8, 1.2, c))


def _conv_bn(g: GraphBuilder, init: _Init, x: str, name: str, c_in: int, c_out: int, k: int, stride: int,
             gamma: float = 1.0) -> str:
    h = g.conv(x, f"{name}.conv", init.conv(c_out, c_in, k), stride=stride, pad=k // 2)
    return g.batchnorm(h, f"{name}.bn", *init.bn(c_out, gamma))


def _basic_block(g: GraphBuilder, init: _Init, x: str, name: str, c_in: int, c_out: int, stride: int) -> str:
    """conv3x3-BN-ReLU-conv3x3-BN, plus the input (through a 1x1 conv + BN where the shape changes), ReLU."""
    h = g.relu(_conv_bn(g, init, x, f"{name}.1", c_in, c_out, 3, stride))
    h = _conv_bn(g, init, h, f"{name}.2", c_out, c_out, 3, 1, gamma=0.5)
    skip = x if stride == 1 and c_in == c_out else _conv_bn(g, init, x, f"{name}.downsample", c_in, c_out, 1, stride)
    return g.relu(g.add(h, skip, f"{name}.add"))


def resnet18(batch: int = 1, seed: int = 0) -> Any:
    """ResNet-18 with random weights as an ONNX opset-17 ModelProto: "input" [batch,3,224,224] -> "logits"."""
    g, init = GraphBuilder("resnet18"), _Init(seed)
    h = g.relu(_conv_bn(g, init, "input", "stem", 3, 64, 7, 2))
    h = g.node("MaxPool", [h], "maxpool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    c_in = 64
    for s, c_out in enumerate(STAGES):
        for b in range(BLOCKS_PER_STAGE):
            stride = 2 if s > 0 and b == 0 else 1
            h = _basic_block(g, init, h, f"layer{s + 1}.{b}", c_in, c_out, stride)
            c_in = c_out
    bound = 1.0 / np.sqrt(c_in)  # torch's default Linear init
    w, b = init.rng.uniform(-bound, bound, (1000, c_in)), init.rng.uniform(-bound, bound, 1000)
    g.classifier(h, w, b, "logits")
    return g.model("input", "logits", batch, 1000, f"ResNet-18, random weights (seed {seed})")
